//! Looking at the daemon's services from outside: bus names, BusItem calls with `dbus-send`,
//! `GetItems` with zbus, and a daemon run that can be stopped and started again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbus_modbus_client::daemon::{self, DaemonOptions};
use zbus::zvariant::OwnedValue;

use super::{Background, PrivateBus};

/// `GetItems`: absolute path → `{Value, Text}`.
pub type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// The names on the bus (`ListNames` through `dbus-send`).
pub fn names(bus: &PrivateBus) -> Vec<String> {
    let (_, out, _) = bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListNames",
        ],
    );
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("string \"").and_then(|s| s.strip_suffix('"')))
        .map(str::to_string)
        .collect()
}

/// Polls until `pick` finds something in the name list (or `within` passes).
pub fn wait_until<T>(within: Duration, mut pick: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(found) = pick() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The first name starting with `prefix`, waiting up to `within` for it.
pub fn wait_for(bus: &PrivateBus, prefix: &str, within: Duration) -> Option<String> {
    wait_until(within, || names(bus).into_iter().find(|n| n.starts_with(prefix)))
}

/// A BusItem method called with `dbus-send --print-reply`; its output.
pub fn call(bus: &PrivateBus, dest: &str, path: &str, method: &str, arg: Option<&str>) -> String {
    let dest = format!("--dest={dest}");
    let member = format!("com.victronenergy.BusItem.{method}");
    let mut args = vec!["--session", "--print-reply", dest.as_str(), path, member.as_str()];
    if let Some(a) = arg {
        args.push(a);
    }
    let (ok, out, err) = bus.run("dbus-send", &args);
    assert!(ok, "dbus-send {path} {method}: {err}");
    out
}

/// `GetItems` on `/` of `service`.
pub fn get_items(bg: &Background, bus: &PrivateBus, service: &str) -> Items {
    try_get_items(bg, bus, service).unwrap_or_else(|e| panic!("GetItems on {service}: {e}"))
}

/// `GetItems`, or the error (the service may be between two registrations).
pub fn try_get_items(bg: &Background, bus: &PrivateBus, service: &str) -> Result<Items, zbus::Error> {
    let address = bus.address().to_string();
    let service = service.to_string();
    bg.block_on(async move {
        let conn = zbus::connection::Builder::address(address.as_str())?.build().await?;
        let reply = conn
            .call_method(Some(service.as_str()), "/", Some("com.victronenergy.BusItem"), "GetItems", &())
            .await?;
        reply.body().deserialize::<Items>()
    })
}

/// The D-Bus signature of the value at `path`.
pub fn signature(items: &Items, path: &str) -> String {
    let v = items.get(path).and_then(|e| e.get("Value")).unwrap_or_else(|| panic!("{path} missing"));
    v.value_signature().to_string()
}

/// The text at `path` (empty when absent).
pub fn text(items: &Items, path: &str) -> String {
    items
        .get(path)
        .and_then(|e| e.get("Text"))
        .and_then(|t| String::try_from(t.clone()).ok())
        .unwrap_or_default()
}

/// The daemon running on the background executor until [`DaemonRun::stop`].
pub struct DaemonRun {
    stop: Arc<AtomicBool>,
    task: Option<async_executor::Task<i32>>,
}

impl DaemonRun {
    /// Starts the daemon with `options` on `bg`.
    pub fn start(bg: &Background, options: DaemonOptions) -> DaemonRun {
        let stop = Arc::new(AtomicBool::new(false));
        let task = bg.spawner.spawn(daemon::run_async(options, bg.spawner.clone(), stop.clone()));
        DaemonRun { stop, task: Some(task) }
    }

    /// Asks it to stop and returns its exit code.
    pub fn stop(mut self) -> i32 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.take().map_or(0, async_io::block_on)
    }
}

impl Drop for DaemonRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.task.take() {
            let _ = async_io::block_on(task);
        }
    }
}
