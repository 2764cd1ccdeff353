//! The daemon binary as a child process on a private bus, and a zbus client to talk to it.
//!
//! The robustness suites run the real binary (not the library in-process), so a panic or an
//! abort shows as a dead child instead of taking the test down with it; its log goes to a file
//! (a pipe nobody reads would fill and stall it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use zbus::zvariant::{OwnedValue, Value};

use super::{Background, PrivateBus};

/// `GetItems` answer: path → {"Value", "Text"}.
pub type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// The daemon binary, killed on drop.
pub struct DaemonProcess {
    child: Child,
    log: PathBuf,
}

impl DaemonProcess {
    /// Starts `dbus-modbus-client -F <spec>` on `bus`, logging to `log`.
    pub fn start(bus: &PrivateBus, spec: &str, log: &Path) -> DaemonProcess {
        let file = std::fs::File::create(log).expect("daemon log file");
        let child = bus
            .command(env!("CARGO_BIN_EXE_dbus-modbus-client"))
            .args(["-F", spec])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("daemon starts");
        DaemonProcess { child, log: log.to_path_buf() }
    }

    /// Panics with the log when the daemon has exited.
    pub fn assert_running(&mut self, context: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("daemon exited ({status}) {context}; log:\n{}", self.log_text());
        }
    }

    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A zbus client connection on the private bus.
pub fn client(bg: &Background, bus: &PrivateBus) -> zbus::Connection {
    let address = bus.address().to_string();
    bg.block_on(async move {
        zbus::connection::Builder::address(address.as_str()).expect("address").build().await.expect("connect")
    })
}

/// The names on the bus.
pub fn names(bg: &Background, conn: &zbus::Connection) -> Vec<String> {
    let conn = conn.clone();
    bg.block_on(async move {
        let proxy = zbus::fdo::DBusProxy::new(&conn).await.expect("DBus proxy");
        let names = proxy.list_names().await.expect("ListNames");
        names.into_iter().map(|n| n.to_string()).collect()
    })
}

/// The first name starting with `prefix`, waiting up to `within`.
pub fn wait_for_name(
    bg: &Background,
    conn: &zbus::Connection,
    prefix: &str,
    within: Duration,
) -> Option<String> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(n) = names(bg, conn).into_iter().find(|n| n.starts_with(prefix)) {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Calls a BusItem method; `Err` carries the D-Bus error text.
pub fn busitem_call<B>(
    bg: &Background,
    conn: &zbus::Connection,
    service: &str,
    path: &str,
    method: &'static str,
    body: B,
) -> Result<zbus::Message, String>
where
    B: serde::Serialize + zbus::zvariant::DynamicType + Send + Sync + 'static,
{
    let conn = conn.clone();
    let (service, path) = (service.to_string(), path.to_string());
    bg.block_on(async move {
        conn.call_method(
            Some(service.as_str()),
            path.as_str(),
            Some("com.victronenergy.BusItem"),
            method,
            &body,
        )
        .await
        .map_err(|e| e.to_string())
    })
}

/// `SetValue(v)`: the answer code, or the D-Bus error text.
pub fn set_value(
    bg: &Background,
    conn: &zbus::Connection,
    service: &str,
    path: &str,
    value: Value<'static>,
) -> Result<i32, String> {
    let reply = busitem_call(bg, conn, service, path, "SetValue", value)?;
    reply.body().deserialize::<i32>().map_err(|e| format!("SetValue answer is not an i: {e}"))
}

/// `GetItems` on `/`.
pub fn get_items(bg: &Background, conn: &zbus::Connection, service: &str) -> Result<Items, String> {
    let reply = busitem_call(bg, conn, service, "/", "GetItems", ())?;
    reply.body().deserialize::<Items>().map_err(|e| format!("GetItems answer: {e}"))
}

/// The `Value` of `path` in `items` as a number (`None`: missing, invalid or not numeric).
pub fn number(items: &Items, path: &str) -> Option<f64> {
    let v = items.get(path)?.get("Value")?;
    match &**v {
        Value::F64(f) => Some(*f),
        Value::I32(i) => Some(f64::from(*i)),
        Value::I64(i) => Some(*i as f64),
        _ => None,
    }
}
