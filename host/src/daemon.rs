//! The daemon's main job: buses from device specs, published on D-Bus.
//!
//! One thread runs one executor: every bus loop, every D-Bus connection and
//! the settings client are tasks on it. The device list comes from
//! `-F/--force-devices`, else from the settings list
//! `/Settings/ModbusClient/<name>/Devices`, else (with `-s`) the default unit
//! of every profile on that port; devices that do not answer stay on the list
//! and are re-probed with back-off (an inverter asleep at boot is found when
//! the sun comes up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use async_io::Timer;
use dmc_core::profile;
use futures_lite::StreamExt;

use crate::dbus::{self, BusChoice, ItemValue, Spawner};
use crate::engine::{Bus, BusConfig, Clock, Command};
use crate::publish::{Publisher, PublisherConfig};
use crate::settings::client::{client_settings, SettingsClient};
use crate::spec::{DeviceSpec, Method};

/// What the daemon was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// Which D-Bus.
    pub bus: BusChoice,
    /// Explicit device list (`-F`).
    pub devices: Vec<DeviceSpec>,
    /// Serial port (`-s`): names the client and, without a device list, is scanned for known units.
    pub serial: Option<String>,
    /// Baud rates (`-r`); the first is used for default devices.
    pub rates: Vec<u32>,
    /// ASCII instead of RTU (`-m ascii`).
    pub ascii: bool,
    /// `-x`: exit 1 when a device fails.
    pub exit_on_failure: bool,
    /// `--properties-changed`.
    pub properties_changed: bool,
    /// Fastest poll class period override (milliseconds; 0 = as fast as the line allows).
    pub fastest_period_ms: Option<u64>,
    /// How long a sleeping inverter keeps its service.
    pub sleep_removal: Option<StdDuration>,
    /// Skip localsettings (publish defaults); for tests and the bench.
    pub no_settings: bool,
    /// Do not start the watchdog thread (in-process tests share the process).
    pub no_watchdog: bool,
    /// `-f`: scan units 1..247 on the serial port at every rate before starting.
    pub force_scan: bool,
    /// Units a scan (`-f`, the control service's `/Scan`) asks; `None`: 1-247.
    pub scan_units: Option<(u8, u8)>,
    /// Dynamic generation and `/Ac/PowerLimit` tunables.
    pub dyngen: crate::dyngen::DynGenOptions,
}

impl DaemonOptions {
    /// The client's name: the tty basename in serial mode, `tcp` otherwise.
    pub fn client_name(&self) -> String {
        match &self.serial {
            Some(s) => s.rsplit('/').next().unwrap_or(s).to_string(),
            None => "tcp".into(),
        }
    }

    fn default_devices(&self) -> Vec<DeviceSpec> {
        let Some(port) = &self.serial else { return Vec::new() };
        let rate = self.rates.first().copied().unwrap_or(9600);
        let method = if self.ascii { Method::Ascii } else { Method::Rtu };
        let mut units: Vec<u8> = profile::ALL.iter().map(|p| p.default_unit).collect();
        units.sort_unstable();
        units.dedup();
        let target = port.strip_prefix("/dev/").filter(|n| !n.contains('/')).unwrap_or(port).to_string();
        units
            .into_iter()
            .map(|unit| DeviceSpec {
                method,
                target: target.clone(),
                rate_or_port: rate,
                unit,
                profile: None,
            })
            .collect()
    }
}

/// A shutdown request (SIGINT/SIGTERM), polled by the loops.
pub type StopFlag = Arc<AtomicBool>;

/// How long the polling engine or the executor may show no progress before
/// the watchdog ends the process (so daemontools restarts it), as upstream's.
pub const WATCHDOG: StdDuration = StdDuration::from_secs(30);

/// Progress counters the watchdog thread checks.
#[derive(Default)]
struct Liveness {
    /// Ticks of the daemon's own loop: the executor (and with it D-Bus dispatch) runs.
    executor: AtomicU64,
    /// The daemon returned: the watchdog ends too.
    stopped: AtomicBool,
}

/// Tells the watchdog the daemon is done, whichever way it returns.
struct StopWatchdog(Arc<Liveness>);

impl Drop for StopWatchdog {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }
}

/// Runs the daemon until `stop` is set or (with `-x`) a device fails.
/// Returns the process exit code.
pub fn run(options: DaemonOptions, stop: StopFlag) -> i32 {
    let spawner: Spawner = Arc::new(async_executor::Executor::new());
    let ex = spawner.clone();
    futures_lite::future::block_on(ex.run(run_async(options, spawner, stop)))
}

/// Starts the watchdog thread: exits the process with status 1 and a line
/// naming what was stuck when a counter stands still for `limit`.
fn start_watchdog(limit: StdDuration, executor: Arc<Liveness>, config: Arc<PublisherConfig>) {
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        let mut seen = (u64::MAX, u64::MAX);
        let mut moved = (StdInstant::now(), StdInstant::now());
        loop {
            std::thread::sleep(limit.min(StdDuration::from_secs(1)));
            if executor.stopped.load(Ordering::Relaxed) {
                return;
            }
            let now = StdInstant::now();
            let current =
                (executor.executor.load(Ordering::Relaxed), config.engine_progress.load(Ordering::Relaxed));
            if current.0 != seen.0 {
                moved.0 = now;
            }
            if current.1 != seen.1 {
                moved.1 = now;
            }
            seen = current;
            // A stalled executor stops both counters; the engine's may have
            // stopped a tick earlier, so half the limit on the executor's
            // side already names it.
            let executor_stale = now - moved.0;
            let engine_stale = now - moved.1;
            let stuck = if executor_stale >= limit || (engine_stale >= limit && executor_stale >= limit / 2) {
                Some("the executor (D-Bus dispatch and every bus loop)")
            } else if engine_stale >= limit {
                Some("the polling engine")
            } else {
                None
            };
            if let Some(what) = stuck {
                log::error!("watchdog: no progress in {what} for {} s; exiting", limit.as_secs());
                std::process::exit(1);
            }
        }
    });
    if let Err(e) = spawned {
        log::warn!("watchdog not started: {e}");
    }
}

/// The watchdog limit: [`WATCHDOG`], or `DMC_WATCHDOG_SECS` (tests).
fn watchdog_limit() -> StdDuration {
    std::env::var("DMC_WATCHDOG_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(StdDuration::from_secs)
        .unwrap_or(WATCHDOG)
}

/// Debug builds only: `DMC_DEBUG_STALL_SECS=N` blocks the executor thread
/// after N seconds, so a test can see the watchdog fire.
fn debug_stall(started: StdInstant) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(after) = std::env::var("DMC_DEBUG_STALL_SECS").ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    if started.elapsed() >= StdDuration::from_secs(after) {
        log::warn!("debug: stalling the executor on purpose (DMC_DEBUG_STALL_SECS)");
        loop {
            std::thread::sleep(StdDuration::from_secs(3600));
        }
    }
}

/// The daemon as a future on `spawner` (the demo runs it beside the simulators).
pub async fn run_async(options: DaemonOptions, spawner: Spawner, stop: StopFlag) -> i32 {
    let name = options.client_name();
    let bus_lost = Arc::new(AtomicBool::new(false));
    let settings = if options.no_settings {
        None
    } else {
        match dbus::connect(&options.bus, &spawner).await {
            Ok(conn) => {
                let client = SettingsClient::new(conn.conn.clone(), spawner.clone());
                // The stream ends when the bus goes away (dbus-daemon
                // restarted): then exit non-zero so the supervisor starts us
                // on the new bus. It also keeps the connection's driver alive.
                let lost = bus_lost.clone();
                spawner
                    .spawn(async move {
                        let mut stream = zbus::MessageStream::from(&conn.conn);
                        while let Some(message) = stream.next().await {
                            if message.is_err() {
                                break;
                            }
                        }
                        lost.store(true, Ordering::Relaxed);
                        drop(conn);
                    })
                    .detach();
                if let Err(e) = client.wait_for_service().await {
                    log::error!("settings service: {e}");
                    return 1;
                }
                Some(client)
            }
            Err(e) => {
                log::error!("cannot connect to D-Bus: {e}");
                return 1;
            }
        }
    };
    let mut devices = options.devices.clone();
    if let Some(client) = &settings {
        let autoscan = i32::from(options.serial.is_some());
        match client.add_settings(&client_settings(&name, autoscan)).await {
            Ok(results) => {
                let saved = results
                    .iter()
                    .find(|r| r.path.ends_with("/Devices"))
                    .and_then(|r| match &r.value {
                        Some(ItemValue::Text(t)) => Some(t.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if devices.is_empty() {
                    // Malformed entries are skipped, as upstream does.
                    devices = saved.split(',').filter_map(|s| DeviceSpec::parse(s).ok()).collect();
                }
            }
            Err(e) => log::warn!("client settings: {e}"),
        }
    }
    if options.force_scan {
        match &options.serial {
            Some(port) => {
                let rates = if options.rates.is_empty() { vec![9600] } else { options.rates.clone() };
                for rate in rates {
                    let (first, last) = options.scan_units.unwrap_or((1, 247));
                    log::info!("scanning {port} at {rate} baud, units {first}-{last}");
                    match crate::probe::scan_units(port, rate, options.ascii, first, last, false).await {
                        Ok(found) => {
                            for spec in found {
                                if !devices
                                    .iter()
                                    .any(|d| d.bus_key() == spec.bus_key() && d.unit == spec.unit)
                                {
                                    devices.push(spec);
                                }
                            }
                        }
                        Err(e) => log::error!("scan of {port} at {rate} baud: {e}"),
                    }
                }
                if devices.is_empty() && options.exit_on_failure {
                    log::error!("scan found no device on {port}; exiting (-x)");
                    return 1;
                }
            }
            None => log::warn!("-f/--force-scan needs -s PORT (network scans are not implemented)"),
        }
    }
    if devices.is_empty() {
        devices = options.default_devices();
    }
    if devices.is_empty() {
        log::error!("no devices: give -F SPEC[,SPEC...] or -s PORT (e.g. -s /dev/ttyUSB0 -r 9600)");
        return 1;
    }
    if let Some(client) = &settings {
        let mut list: Vec<String> = devices.iter().map(|d| d.without_profile().to_string()).collect();
        list.sort();
        list.dedup();
        let path = format!("/Settings/ModbusClient/{name}/Devices");
        if let Err(e) = client.set_value(&path, &ItemValue::Text(list.join(","))).await {
            log::warn!("saving the device list: {e}");
        }
    }
    let control = crate::control_service::ControlService::new(&name, settings.clone());
    let clock = Clock::new();
    let dyngen = crate::dyngen::DynGen::new(options.dyngen.clone(), clock);
    // Cancelled when the daemon returns.
    let _dyngen_task =
        spawner.spawn(dyngen.clone().run(options.bus.clone(), spawner.clone(), settings.clone()));
    let config = Arc::new(PublisherConfig {
        control: Some(control.clone()),
        bus: options.bus.clone(),
        spawner: spawner.clone(),
        settings,
        properties_changed: options.properties_changed,
        sleep_removal: options.sleep_removal.unwrap_or(StdDuration::from_secs(24 * 3600)),
        exit_on_failure: options.exit_on_failure,
        failed: AtomicBool::new(false),
        engine_progress: AtomicU64::new(0),
        dyngen: Some(dyngen),
    });
    let liveness = Arc::new(Liveness::default());
    let _stop_watchdog = StopWatchdog(liveness.clone());
    if !options.no_watchdog {
        start_watchdog(watchdog_limit(), liveness.clone(), config.clone());
    }
    let mut by_bus: BTreeMap<String, Vec<DeviceSpec>> = BTreeMap::new();
    for d in devices {
        by_bus.entry(d.bus_key()).or_default().push(d);
    }
    let mut tasks = Vec::new();
    let mut bus_threads = BusThreads(Vec::new());
    for (key, specs) in by_bus {
        let mut bus_config = BusConfig::for_spec(&specs[0]);
        bus_config.fastest_period = options.fastest_period_ms.map(dmc_core::time::Duration::from_millis);
        log::info!("bus {key}: {}", specs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
        let mut bus = match Bus::new(bus_config, specs, clock) {
            Ok(b) => b,
            Err(e) => {
                log::error!("{e}");
                return 2;
            }
        };
        if let Some((first, last)) = options.scan_units {
            bus.shared().set_scan_units(first, last);
        }
        control.add_bus(bus.shared());
        let mut publisher =
            Publisher::new(config.clone(), bus.commands(), bus.devices.len()).with_bus_state(bus.shared());
        // Each bus loop on a thread of its own: its waits then block that
        // thread alone instead of passing every wake-up through the reactor
        // thread to the executor (see Bus::on_own_thread).
        bus.on_own_thread();
        let (done_tx, done) = async_channel::bounded::<()>(1);
        let commands = bus.commands();
        let spawned =
            std::thread::Builder::new().name(format!("bus{}", bus_threads.0.len())).spawn(move || {
                futures_lite::future::block_on(bus.run(&mut publisher));
                drop(publisher);
                let _ = done_tx.try_send(());
            });
        match spawned {
            Ok(_) => bus_threads.0.push(BusThread { commands, done }),
            Err(e) => {
                log::error!("bus {key}: cannot start its thread: {e}");
                return 2;
            }
        }
    }
    tasks.push(spawner.spawn(control.run(options.bus.clone(), spawner.clone())));
    let started = StdInstant::now();
    while !stop.load(Ordering::Relaxed) && !config.failed.load(Ordering::Relaxed) {
        if bus_lost.load(Ordering::Relaxed) {
            log::error!(
                "D-Bus connection lost (bus restarted?); exiting so the supervisor restarts the daemon"
            );
            return 1;
        }
        liveness.executor.fetch_add(1, Ordering::Relaxed);
        debug_stall(started);
        Timer::after(StdDuration::from_millis(250)).await;
    }
    // Stopped bus threads close their ports (a transaction under way ends
    // at its timeout); dropping the tasks releases the services' names.
    bus_threads.stop();
    let stopped = async {
        for t in &bus_threads.0 {
            let _ = t.done.recv().await;
        }
    };
    let waited = async {
        Timer::after(BUS_STOP_WAIT).await;
        log::warn!("a bus thread did not stop within {BUS_STOP_WAIT:?}");
    };
    futures_lite::future::or(stopped, waited).await;
    drop(tasks);
    if config.failed.load(Ordering::Relaxed) {
        1
    } else {
        log::info!("stopping");
        0
    }
}

/// How long a stopping daemon waits for its bus threads (a transaction under
/// way finishes or times out first).
const BUS_STOP_WAIT: StdDuration = StdDuration::from_secs(2);

/// One bus loop's thread, seen from the daemon.
struct BusThread {
    /// Closing it stops the loop (see `Bus::run`).
    commands: async_channel::Sender<Command>,
    /// Signalled when the loop has ended and its port is closed.
    done: async_channel::Receiver<()>,
}

/// The bus threads; dropped (the daemon's future cancelled) or stopped, they end.
struct BusThreads(Vec<BusThread>);

impl BusThreads {
    fn stop(&self) {
        for t in &self.0 {
            t.commands.close();
        }
    }
}

impl Drop for BusThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `--models` table.
pub fn models_table() -> String {
    let mut out =
        String::from("name               manufacturer / model            type        unit  identification\n");
    for p in profile::ALL.iter() {
        let ident = p
            .probe
            .iter()
            .map(|r| format!("{:?} {:#06x} x{}", r.bank, r.address, r.count))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "{:<18} {:<31} {:<11} {:>4}  {}\n",
            p.name,
            p.product_name,
            p.default_role.as_str(),
            p.default_unit,
            ident
        ));
    }
    out
}
