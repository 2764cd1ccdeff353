//! The client's own service, `com.victronenergy.modbusclient.<name>` (venus-conventions §5.3).
//!
//! It has no `/DeviceInstance`, so DbusMonitor-based consumers ignore it. Paths:
//!
//! * `/Scan` (`b`, writable): `true` re-probes every configured device that has not been found
//!   (without waiting for its back-off) and, on a serial bus, asks every unit of the scan range
//!   (`--scan-units`, default 1-247) that no device uses with every profile's identification,
//!   between the reads of the running devices. A device found joins the running bus, is published
//!   like any other and is added to `/Settings/ModbusClient/<name>/Devices`. `/Scan` returns to
//!   `false` when all of that is done; `false` ends the scan early. Network buses are not
//!   scanned for new hosts (upstream's subnet scan is not implemented).
//! * `/ScanProgress` (`d` 0..100, text `N%`, invalid when idle): units asked plus configured
//!   devices tried, of all there are to ask.
//! * per published device `/Devices/<ident>/{Enabled,Serial,Name}`: `Enabled` (`i`, writable 0..1)
//!   is stored in `/Settings/Devices/<ident>/Enabled`, whose change the device's settings watcher
//!   applies (0: service removed, device no longer polled); without a settings service the bus
//!   is told directly.
//! * per published device `/Devices/<ident>/Stats/{Requests,Timeouts,CrcErrors,Exceptions}` (`i`)
//!   and `LatencyMs` (`d`, the filtered turnaround), copied from the polling engine once a second.
//!
//! Upstream registers this service only for the network client (`tcp`); ours exists for serial
//! clients too (named after the tty), since the statistics and `Enabled` are useful there.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use async_io::Timer;

use crate::dbus::{BusChoice, Item, ItemValue, Service, ServiceBuilder, SetRequest, Spawner, ValueKind};
use crate::engine::{DeviceStats, SharedBus};
use crate::settings::client::SettingsClient;

/// How often statistics and scan progress are refreshed.
pub const REFRESH: StdDuration = StdDuration::from_secs(1);
/// Pause before a failed registration is tried again.
const RETRY: StdDuration = StdDuration::from_secs(5);

/// The bus name for client `name`: `[A-Za-z0-9_]` kept, anything else `_`, and no leading digit
/// (`/dev/pts/3` → `pts3` is not what upstream does, but `3` is not a valid element).
pub fn service_name(client_name: &str) -> String {
    let mut element: String =
        client_name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if element.is_empty() || element.starts_with(|c: char| c.is_ascii_digit()) {
        element.insert(0, '_');
    }
    format!("com.victronenergy.modbusclient.{element}")
}

/// A published device as the control service knows it.
struct DeviceEntry {
    name: String,
    serial: String,
    bus: Arc<SharedBus>,
    index: usize,
    /// Its paths exist on the service.
    shown: bool,
}

/// A scan under way: for each device not identified when it began, its probe count then, and
/// the buses walking their unit range.
struct Scan {
    pending: Vec<(Arc<SharedBus>, usize, u64)>,
    buses: Vec<Arc<SharedBus>>,
}

impl Scan {
    /// Percent of the devices tried (or found) and units asked since the scan began, and
    /// whether everything is done.
    fn progress(&self) -> (f64, bool) {
        let (mut done, mut total) = (self.tried(), self.pending.len());
        let mut busy = done < total;
        for bus in &self.buses {
            busy |= bus.scan_busy();
            if bus.scan_requested.load(Ordering::Relaxed) {
                // Not taken up by the bus yet: its size is unknown.
                total += 1;
            } else {
                let units = bus.scan_total.load(Ordering::Relaxed) as usize;
                total += units;
                done += (bus.scan_asked.load(Ordering::Relaxed) as usize).min(units);
            }
        }
        if !busy {
            return (100.0, true);
        }
        // 100 % only once done: a stopped unit scan leaves units unasked.
        (if total == 0 { 0.0 } else { (100.0 * done as f64 / total as f64).min(99.0) }, false)
    }

    /// Pending devices tried (or found) since the scan began.
    fn tried(&self) -> usize {
        self.pending
            .iter()
            .filter(|(bus, i, probes)| {
                bus.devices.get(*i).is_none_or(|d| {
                    d.identified.load(Ordering::Relaxed) || d.probes.load(Ordering::Relaxed) > *probes
                })
            })
            .count()
    }
}

#[derive(Default)]
struct State {
    buses: Vec<Arc<SharedBus>>,
    devices: BTreeMap<String, DeviceEntry>,
    scan: Option<Scan>,
}

/// The control service and what it shows.
pub struct ControlService {
    name: String,
    /// `/Settings/ModbusClient/<name>/Devices`, where devices found by a scan are added.
    devices_setting: String,
    settings: Option<SettingsClient>,
    state: Mutex<State>,
}

impl ControlService {
    /// The service for client `client_name` (`tcp`, `ttyUSB0`).
    pub fn new(client_name: &str, settings: Option<SettingsClient>) -> Arc<ControlService> {
        Arc::new(ControlService {
            name: service_name(client_name),
            devices_setting: format!("/Settings/ModbusClient/{client_name}/Devices"),
            settings,
            state: Mutex::default(),
        })
    }

    /// The bus name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A bus whose devices a scan retries.
    pub fn add_bus(&self, bus: Arc<SharedBus>) {
        self.lock().buses.push(bus);
    }

    /// A device service was registered (again) or renamed: show it under `/Devices/<ident>`,
    /// named by its custom name (`names.0`), else its product name (`names.1`).
    pub fn device_registered(
        &self,
        ident: &str,
        names: (&str, &str),
        serial: &str,
        bus: Arc<SharedBus>,
        index: usize,
    ) {
        let name = if names.0.is_empty() { names.1 } else { names.0 };
        let entry = DeviceEntry { name: name.into(), serial: serial.into(), bus, index, shown: false };
        let mut state = self.lock();
        match state.devices.get_mut(ident) {
            Some(existing) => {
                existing.name = entry.name;
                existing.serial = entry.serial;
            }
            None => {
                state.devices.insert(ident.into(), entry);
            }
        }
    }

    /// Registers the service (retrying) and keeps it up to date until the task is dropped.
    pub async fn run(self: Arc<Self>, bus: BusChoice, spawner: Spawner) {
        let (service, owner_rx) = loop {
            match self.register(&bus, &spawner).await {
                Ok(registered) => break registered,
                // E.g. the previous instance's name not released yet: try again, as for devices.
                Err(e) => {
                    log::error!("{}: not registered ({e}); retrying in {} s", self.name, RETRY.as_secs())
                }
            }
            Timer::after(RETRY).await;
        };
        log::info!("registered {}", self.name);
        spawner.spawn(self.clone().serve(owner_rx)).detach();
        loop {
            self.refresh(&service);
            self.save_found().await;
            if let Err(e) = service.flush().await {
                log::warn!("{}: ItemsChanged not sent: {e}", self.name);
            }
            Timer::after(REFRESH).await;
        }
    }

    async fn register(
        &self,
        bus: &BusChoice,
        spawner: &Spawner,
    ) -> Result<(Arc<Service>, async_channel::Receiver<SetRequest>), crate::dbus::Error> {
        let mut builder = ServiceBuilder::new(self.name.clone());
        let (owner_tx, owner_rx) = async_channel::bounded::<SetRequest>(8);
        builder
            .add("/Scan", Item::new(false).writable().with_kind(ValueKind::Bool))?
            .add("/ScanProgress", Item::new(ItemValue::Invalid))?
            .owner(owner_tx);
        // Devices registered before are shown again from the next refresh.
        self.lock().devices.values_mut().for_each(|d| d.shown = false);
        let service = builder.register(bus, spawner).await?;
        Ok((Arc::new(service), owner_rx))
    }

    /// Adds paths of new devices, copies statistics, advances the scan.
    fn refresh(&self, service: &Service) {
        let mut state = self.lock();
        for (ident, d) in state.devices.iter_mut() {
            let base = format!("/Devices/{ident}");
            let enabled = i32::from(d.bus.is_enabled(d.index));
            let stats = d.bus.devices.get(d.index).map(|s| s.stats()).unwrap_or_default();
            if !d.shown {
                let items = [
                    ("Enabled", Item::new(enabled).writable().with_kind(ValueKind::Int)),
                    ("Serial", Item::new(d.serial.clone())),
                    ("Name", Item::new(d.name.clone())),
                ];
                for (leaf, item) in items {
                    if let Err(e) = service.add_item(&format!("{base}/{leaf}"), item) {
                        log::warn!("{}: {e}", self.name);
                    }
                }
                for (leaf, value, text) in stat_items(&stats) {
                    let _ =
                        service.add_item(&format!("{base}/Stats/{leaf}"), Item::new(value).with_text(text));
                }
                d.shown = true;
                continue;
            }
            let _ = service.set_value(&format!("{base}/Enabled"), enabled);
            let _ = service.set_value(&format!("{base}/Name"), d.name.clone());
            for (leaf, value, text) in stat_items(&stats) {
                let _ = service.set(&format!("{base}/Stats/{leaf}"), value, text);
            }
        }
        if let Some(scan) = &state.scan {
            let (progress, done) = scan.progress();
            let _ = service.set("/ScanProgress", progress, format!("{progress:.0}%"));
            if done {
                state.scan = None;
                log::info!("{}: scan done", self.name);
            }
        }
        if state.scan.is_none() {
            let _ = service.set_value("/Scan", false);
            let _ = service.set_value("/ScanProgress", ItemValue::Invalid);
        }
    }

    async fn serve(self: Arc<Self>, requests: async_channel::Receiver<SetRequest>) {
        while let Ok(req) = requests.recv().await {
            let ok = self.decide(&req.path, &req.value).await;
            req.respond(ok);
        }
    }

    async fn decide(&self, path: &str, value: &ItemValue) -> bool {
        if path == "/Scan" {
            match value {
                ItemValue::Bool(true) => self.start_scan(),
                _ => {
                    let mut state = self.lock();
                    for b in &state.buses {
                        // A request not taken up yet must not start a scan after this.
                        b.scan_requested.store(false, Ordering::Relaxed);
                        b.scan_cancel.store(true, Ordering::Relaxed);
                    }
                    state.scan = None;
                }
            }
            return true;
        }
        let Some(ident) = path.strip_prefix("/Devices/").and_then(|p| p.strip_suffix("/Enabled")) else {
            return false;
        };
        let ItemValue::Int(enabled @ 0..=1) = *value else { return false };
        if let Some(client) = &self.settings {
            // The device's settings watcher applies it (and sees GUI edits the same way).
            let path = format!("/Settings/Devices/{ident}/Enabled");
            return matches!(client.set_value(&path, &ItemValue::Int(enabled)).await, Ok(0));
        }
        let state = self.lock();
        let Some(d) = state.devices.get(ident) else { return false };
        d.bus.set_enabled(d.index, enabled == 1);
        true
    }

    fn start_scan(&self) {
        let mut state = self.lock();
        let mut pending = Vec::new();
        for bus in &state.buses {
            for (i, d) in bus.devices.iter().enumerate().take(bus.live()) {
                if d.is_enabled() && !d.identified.load(Ordering::Relaxed) {
                    pending.push((bus.clone(), i, d.probes.load(Ordering::Relaxed)));
                }
            }
            bus.scan_requested.store(true, Ordering::Relaxed);
        }
        log::info!("{}: scan of {} device(s) not found yet and of free units", self.name, pending.len());
        let buses = state.buses.clone();
        state.scan = Some(Scan { pending, buses });
    }

    /// Adds the devices scans found to the settings' device list, so they are used after a
    /// restart as well.
    async fn save_found(&self) {
        let found: Vec<String> = {
            let state = self.lock();
            state.buses.iter().flat_map(|b| b.take_found()).map(|s| s.without_profile().to_string()).collect()
        };
        if found.is_empty() {
            return;
        }
        let Some(client) = &self.settings else {
            log::info!("{}: found {} (no settings service to save them in)", self.name, found.join(","));
            return;
        };
        let saved = match client.get_value(&self.devices_setting).await {
            Ok(ItemValue::Text(t)) => t,
            Ok(_) => String::new(),
            Err(e) => {
                log::warn!("{}: reading {}: {e}; found devices not saved", self.name, self.devices_setting);
                return;
            }
        };
        let list = merged_device_list(&saved, &found);
        match client.set_value(&self.devices_setting, &ItemValue::Text(list.clone())).await {
            Ok(0) => log::info!("{}: device list now {list}", self.name),
            Ok(code) => log::warn!("{}: saving the device list refused ({code})", self.name),
            Err(e) => log::warn!("{}: saving the device list: {e}", self.name),
        }
    }
}

/// The comma-separated device list `saved` with `found` added: sorted, each entry once.
fn merged_device_list(saved: &str, found: &[String]) -> String {
    let mut list: Vec<&str> = saved
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .chain(found.iter().map(String::as_str))
        .collect();
    list.sort_unstable();
    list.dedup();
    list.join(",")
}

/// `/Devices/<ident>/Stats/*`: counts as `i` (`x` beyond 32 bits), latency as `d` in ms.
fn stat_items(stats: &DeviceStats) -> [(&'static str, ItemValue, String); 5] {
    let count = |n: u64| {
        let value = i32::try_from(n).map_or(ItemValue::Int64(n.min(i64::MAX as u64) as i64), ItemValue::Int);
        (value, n.to_string())
    };
    let (requests, requests_text) = count(stats.requests);
    let (timeouts, timeouts_text) = count(stats.timeouts);
    let (crc, crc_text) = count(stats.crc_errors);
    let (exceptions, exceptions_text) = count(stats.exceptions);
    let latency = stats.latency_filtered.as_micros() as f64 / 1000.0;
    [
        ("Requests", requests, requests_text),
        ("Timeouts", timeouts, timeouts_text),
        ("CrcErrors", crc, crc_text),
        ("Exceptions", exceptions, exceptions_text),
        ("LatencyMs", ItemValue::Double(latency), format!("{latency:.1} ms")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_valid_bus_names() {
        assert_eq!(service_name("tcp"), "com.victronenergy.modbusclient.tcp");
        assert_eq!(service_name("ttyUSB0"), "com.victronenergy.modbusclient.ttyUSB0");
        assert_eq!(service_name("3"), "com.victronenergy.modbusclient._3");
        assert_eq!(service_name("tty-S.1"), "com.victronenergy.modbusclient.tty_S_1");
    }

    #[test]
    fn scan_progress_counts_devices_tried_since_it_began() {
        let bus = SharedBus::new(3);
        let scan = Scan { pending: vec![(bus.clone(), 0, 0), (bus.clone(), 1, 4)], buses: Vec::new() };
        assert_eq!(scan.progress(), (0.0, false));
        bus.devices[0].probes.store(1, Ordering::Relaxed);
        assert_eq!(scan.progress(), (50.0, false));
        bus.devices[1].identified.store(true, Ordering::Relaxed);
        assert_eq!(scan.progress(), (100.0, true));
        assert_eq!(Scan { pending: Vec::new(), buses: Vec::new() }.progress(), (100.0, true));
    }

    #[test]
    fn scan_progress_counts_units_asked() {
        let bus = SharedBus::new(1);
        bus.scan_requested.store(true, Ordering::Relaxed);
        let scan = Scan { pending: Vec::new(), buses: vec![bus.clone()] };
        assert_eq!(scan.progress(), (0.0, false), "not taken up yet");
        bus.scan_total.store(4, Ordering::Relaxed);
        bus.scan_running.store(true, Ordering::Relaxed);
        bus.scan_requested.store(false, Ordering::Relaxed);
        bus.scan_asked.store(1, Ordering::Relaxed);
        assert_eq!(scan.progress(), (25.0, false));
        bus.scan_asked.store(4, Ordering::Relaxed);
        assert_eq!(scan.progress(), (99.0, false), "100 % only once the bus says it is done");
        bus.scan_running.store(false, Ordering::Relaxed);
        assert_eq!(scan.progress(), (100.0, true));
    }

    #[test]
    fn found_devices_join_the_saved_list_once() {
        let found = vec!["rtu:ttyUSB0:9600:1".to_string(), "rtu:ttyUSB0:9600:2".to_string()];
        assert_eq!(merged_device_list("rtu:ttyUSB0:9600:2", &found), "rtu:ttyUSB0:9600:1,rtu:ttyUSB0:9600:2");
        assert_eq!(merged_device_list("", &found[..1]), "rtu:ttyUSB0:9600:1");
    }

    #[test]
    fn statistics_types() {
        let stats = DeviceStats {
            requests: 5,
            timeouts: u64::from(u32::MAX),
            latency_filtered: dmc_core::time::Duration::from_micros(12_345),
            ..DeviceStats::default()
        };
        let items = stat_items(&stats);
        assert_eq!(items[0].1, ItemValue::Int(5));
        assert_eq!(items[1].1, ItemValue::Int64(i64::from(u32::MAX)));
        assert_eq!(items[4].1, ItemValue::Double(12.345));
        assert_eq!(items[4].2, "12.3 ms");
    }
}
