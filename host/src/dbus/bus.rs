//! Which bus to use and how to open a connection to it.
//!
//! Every connection is built with zbus' internal executor thread switched off: the caller's
//! single [`Spawner`] drives all of them, so N services cost N sockets, not N threads.

use std::sync::Arc;

use zbus::connection::Builder;
use zbus::Connection;

/// The one async executor that drives every connection, dispatcher and owner task.
pub type Spawner = Arc<async_executor::Executor<'static>>;

/// Which bus to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusChoice {
    /// The Venus rule: session bus if `DBUS_SESSION_BUS_ADDRESS` is set, else the system bus.
    #[default]
    Auto,
    /// Force the system bus (`--system`).
    System,
    /// Force the session bus (`--session`).
    Session,
    /// An explicit bus address (tests with a private `dbus-daemon`).
    Address(String),
}

impl BusChoice {
    /// Resolves `Auto` against the environment (velib, localsettings and upstream all do this).
    pub fn resolve(&self) -> BusChoice {
        match self {
            BusChoice::Auto if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() => BusChoice::Session,
            BusChoice::Auto => BusChoice::System,
            other => other.clone(),
        }
    }
}

/// A connection plus the task that ticks its executor; dropping the task stops the connection's
/// internal reader, so the two are kept together.
pub struct BusConnection {
    /// The zbus connection (cheap to clone).
    pub conn: Connection,
    pub(crate) _ticker: async_executor::Task<()>,
}

/// The longest [`BusConnection::close`] waits for zbus' tasks on the connection to end.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl BusConnection {
    /// Closes the connection for good and waits (at most a few seconds)
    /// until zbus' own tasks on it have ended, then drops it.
    ///
    /// Why not just drop it: a dropped match-rule stream queues a
    /// `RemoveMatch` task on the connection's executor, and that task holds
    /// the connection. Only our ticker runs that executor, so dropping the
    /// ticker first would keep the task, and with it the whole connection
    /// (socket, buffers, match rules in the bus daemon), alive for ever.
    /// Closing the socket makes such tasks fail at once (the bus daemon
    /// drops the connection's match rules with it) and ends the reader.
    pub async fn close(self) {
        let conn = self.conn.clone();
        if let Err(e) = self.conn.clone().close().await {
            log::debug!("closing a D-Bus connection: {e}");
        }
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while !conn.executor().is_empty() && std::time::Instant::now() < deadline {
            async_io::Timer::after(std::time::Duration::from_millis(10)).await;
        }
        if !conn.executor().is_empty() {
            log::warn!("a closed D-Bus connection still has tasks after {CLOSE_WAIT:?}");
        }
    }
}

/// Opens a new private connection on `bus`, driven by `spawner`.
pub async fn connect(bus: &BusChoice, spawner: &Spawner) -> zbus::Result<BusConnection> {
    let builder = match bus.resolve() {
        BusChoice::System | BusChoice::Auto => Builder::system()?,
        BusChoice::Session => Builder::session()?,
        BusChoice::Address(address) => Builder::address(address.as_str())?,
    };
    let conn = builder.internal_executor(false).build().await?;
    // With the internal executor off, nothing reads the socket until someone ticks the
    // connection's executor; the next round trip (RequestName) would deadlock otherwise.
    let ticker_conn = conn.clone();
    let ticker = spawner.spawn(async move {
        loop {
            ticker_conn.executor().tick().await;
        }
    });
    Ok(BusConnection { conn, _ticker: ticker })
}
