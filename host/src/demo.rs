//! `dbus-modbus-client demo`: the whole product on a laptop, nothing to set up.
//!
//! Starts a private `dbus-daemon`, the built-in settings stand-in, the
//! simulated SDM230 (unit 2) and Growatt MIN (unit 1) on a pseudo-terminal at
//! 9600 baud, and the daemon itself against them; then shows the live values
//! read back from D-Bus (`GetItems`, as GX consumers read them) until Ctrl-C
//! or `--duration` ends, and cleans everything up.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Timer;
use dmc_hil::serve::{SimConfig, SimHandle};
use zbus::zvariant::OwnedValue;

use crate::daemon::{self, DaemonOptions, StopFlag};
use crate::dbus::{self, BusChoice, Spawner};
use crate::settings::standin::SettingsStandin;
use crate::spec::DeviceSpec;

/// A private bus for the demo, stopped on drop.
struct PrivateBus {
    child: Child,
    address: String,
}

impl PrivateBus {
    fn start(dir: &std::path::Path) -> Result<PrivateBus, String> {
        let socket = dir.join("bus");
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    "dbus-daemon not found: install the Debian package 'dbus' (sudo apt-get install dbus)"
                        .to_string()
                } else {
                    format!("cannot start dbus-daemon: {e}")
                }
            })?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("dbus-daemon has no stdout")?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("dbus-daemon: {e}"))?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            return Err("dbus-daemon printed no address".into());
        }
        Ok(PrivateBus { child, address })
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo; returns the exit code.
pub fn run(duration: Option<u64>, stop: StopFlag) -> i32 {
    match run_inner(duration, stop) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dbus-modbus-client demo: {e}");
            1
        }
    }
}

fn run_inner(duration: Option<u64>, stop: StopFlag) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("dmc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = TempDir(dir);
    let private = PrivateBus::start(&dir.0)?;
    let sim = SimHandle::spawn_pty(SimConfig::default()).map_err(|e| format!("simulator: {e}"))?;
    println!("demo: private D-Bus at {}", private.address);
    println!(
        "demo: simulated Growatt MIN (unit 1) and SDM230 (unit 2) on {} at 9600 baud",
        sim.path().display()
    );
    println!(
        "demo: try  DBUS_SESSION_BUS_ADDRESS={} dbus-send --session --print-reply --dest=<service> /Ac/Power com.victronenergy.BusItem.GetValue",
        private.address
    );
    let bus = BusChoice::Address(private.address.clone());
    let devices = [1u8, 2]
        .iter()
        .map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", sim.path().display())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let options = DaemonOptions {
        bus: bus.clone(),
        devices,
        serial: Some(sim.path().display().to_string()),
        rates: vec![9600],
        ..DaemonOptions::default()
    };
    let spawner: Spawner = Arc::new(async_executor::Executor::new());
    let ex = spawner.clone();
    let settings_file = dir.0.join("settings.txt");
    let result = async_io::block_on(ex.run(async {
        let standin =
            SettingsStandin::start(settings_file, &bus, &spawner).await.map_err(|e| e.to_string())?;
        let daemon_stop = stop.clone();
        let daemon = spawner.spawn(daemon::run_async(options, spawner.clone(), daemon_stop));
        let shown = show(&bus, &spawner, duration, &stop).await;
        stop.store(true, Ordering::Relaxed);
        let code = daemon.await;
        drop(standin);
        shown?;
        if code != 0 {
            return Err(format!("the daemon stopped with code {code}"));
        }
        Ok(())
    }));
    drop(sim);
    drop(private);
    result
}

type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// What the demo shows per service class: (path, label).
const GRID_PATHS: &[(&str, &str)] = &[
    ("/Ac/Power", "power"),
    ("/Ac/L1/Voltage", "voltage"),
    ("/Ac/L1/Current", "current"),
    ("/Ac/Frequency", "frequency"),
    ("/Ac/Energy/Forward", "imported"),
    ("/Ac/Energy/Reverse", "exported"),
];
const PV_PATHS: &[(&str, &str)] = &[
    ("/Ac/Power", "power"),
    ("/StatusCode", "status"),
    ("/Ac/L1/Voltage", "voltage"),
    ("/Pv/0/V", "string 1"),
    ("/Ac/Energy/Forward", "produced"),
    ("/Ac/MaxPower", "rated"),
];

async fn show(
    bus: &BusChoice,
    spawner: &Spawner,
    duration: Option<u64>,
    stop: &StopFlag,
) -> Result<(), String> {
    let conn = dbus::connect(bus, spawner).await.map_err(|e| format!("D-Bus: {e}"))?;
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let end = duration.map(|s| started + Duration::from_secs(s));
    let mut last_line = Instant::now() - Duration::from_secs(60);
    loop {
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() >= e) {
            return Ok(());
        }
        let services = list_services(&conn.conn).await;
        let mut rows = Vec::new();
        for name in &services {
            let paths = if name.contains(".pvinverter.") { PV_PATHS } else { GRID_PATHS };
            let items = get_items(&conn.conn, name).await.unwrap_or_default();
            let instance = text_of(&items, "/DeviceInstance");
            let values: Vec<String> =
                paths.iter().map(|(p, label)| format!("{label} {}", text_of(&items, p))).collect();
            rows.push(format!("{name} [{instance}]: {}", values.join(", ")));
        }
        if tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b[H\x1b[2J");
            let _ = writeln!(
                out,
                "dbus-modbus-client demo: {:.0} s, Ctrl-C to stop\n",
                started.elapsed().as_secs_f64()
            );
            if rows.is_empty() {
                let _ = writeln!(out, "(waiting for the devices to be identified...)");
            }
            for r in &rows {
                let _ = writeln!(out, "{r}");
            }
            let _ = out.flush();
        } else if last_line.elapsed() >= Duration::from_secs(2) {
            last_line = Instant::now();
            let mut out = std::io::stdout().lock();
            for r in &rows {
                // A reader that went away (`demo | head`) ends the demo, not a panic.
                if writeln!(out, "{:6.1} s {r}", started.elapsed().as_secs_f64()).is_err() {
                    return Ok(());
                }
            }
            let _ = out.flush();
        }
        Timer::after(Duration::from_millis(500)).await;
    }
}

async fn list_services(conn: &zbus::Connection) -> Vec<String> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "ListNames",
            &(),
        )
        .await;
    let Ok(reply) = reply else { return Vec::new() };
    let names: Vec<String> = reply.body().deserialize().unwrap_or_default();
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| {
            n.starts_with("com.victronenergy.")
                && !n.starts_with("com.victronenergy.settings")
                && !n.starts_with("com.victronenergy.modbusclient")
        })
        .collect();
    out.sort();
    out
}

async fn get_items(conn: &zbus::Connection, name: &str) -> Option<Items> {
    let reply =
        conn.call_method(Some(name), "/", Some("com.victronenergy.BusItem"), "GetItems", &()).await.ok()?;
    reply.body().deserialize::<Items>().ok()
}

fn text_of(items: &Items, path: &str) -> String {
    items
        .get(path)
        .and_then(|e| e.get("Text"))
        .and_then(|t| String::try_from(t.clone()).ok())
        .unwrap_or_else(|| "---".into())
}
