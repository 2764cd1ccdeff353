//! The D-Bus side of the daemon: Victron BusItem services as velib `vedbus.py` exports them.
//!
//! * [`item`]: item values and their D-Bus encoding (invalid = empty `ai`).
//! * [`bus`]: bus choice (session if `DBUS_SESSION_BUS_ADDRESS` is set, else system) and
//!   connections driven by one shared executor.
//! * [`service`]: one service = one connection = one item tree, with a low-level dispatcher
//!   (no zbus ObjectServer: it costs ~2.7 KB per path and has no subtree handler),
//!   batched `ItemsChanged` and non-blocking `SetValue` routed to the owner.
//! * [`introspect`]: the introspection XML.

pub mod bus;
pub mod introspect;
pub mod item;
pub mod service;

pub use bus::{connect, BusChoice, BusConnection, Spawner};
pub use item::{ItemValue, ValueKind};
pub use service::{CallHook, CallTarget, DeferredReply, Item, ItemTree, Service, ServiceBuilder, SetRequest};

/// The BusItem interface name.
pub const BUSITEM: &str = "com.victronenergy.BusItem";

/// Errors of the D-Bus layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The bus connection or a call on it failed.
    Bus(zbus::Error),
    /// `RequestName` (DO_NOT_QUEUE) found the name owned by someone else.
    NameTaken(String),
    /// A path is not a valid object path (`/A/B_1`, no empty or odd elements).
    InvalidPath(String),
    /// The path is not an item of this service.
    UnknownPath(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bus(e) => write!(f, "D-Bus: {e}"),
            Error::NameTaken(name) => write!(f, "bus name {name} is already owned by another process"),
            Error::InvalidPath(path) => write!(f, "invalid object path {path:?}"),
            Error::UnknownPath(path) => write!(f, "no item at {path}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bus(e) => Some(e),
            _ => None,
        }
    }
}

impl From<zbus::Error> for Error {
    fn from(e: zbus::Error) -> Self {
        Error::Bus(e)
    }
}

/// Checks an item path: starts with `/`, elements non-empty and made of `[A-Za-z0-9_]`.
pub fn check_path(path: &str) -> Result<(), Error> {
    let valid = path.len() > 1
        && path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidPath(path.to_owned()))
    }
}
