//! Publishing devices on D-Bus exactly as Victron's drivers do.
//!
//! [`Publisher`] is the engine's [`Observer`] for one bus. When a device is
//! ready (identified and its identity read) it gets its settings (instance,
//! role, custom name, position) from localsettings, builds every path with its
//! initial value, and only then requests `com.victronenergy.<role>.<ident>`
//! (so a monitor that calls `GetItems` on `NameOwnerChanged` always finds
//! `/DeviceInstance`). After that each completed read sets the changed paths
//! and sends one `ItemsChanged`.
//!
//! Presence (venus-conventions §6): a device that may not sleep (a meter)
//! whose answers stop is removed from the bus after [`METER_GRACE`], as
//! upstream does, and registered again when it answers. A device that may
//! sleep (the Growatt at night) keeps its service: power and current 0,
//! energy counters at their last value, voltage and frequency invalid,
//! `/StatusCode` 8 (Standby); it is removed only after
//! [`PublisherConfig::sleep_removal`] (default 24 h).
//!
//! Writes: a path the profile routes through VregLink (`/CustomName` on the
//! Victron meters) goes to the device ([`crate::vreg`]); otherwise
//! `/CustomName` and `/Position` go to settings; a writable register
//! path is encoded by the profile (range checked first) and written through
//! the bus's command queue, and the SetValue answer waits for the device.
//!
//! A device that dictates its role, phases or position (the Victron meters) is published as it
//! says, and re-created when it changes its mind ([`dictated`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use async_io::Timer;
use dmc_core::pdu::{Request, Words};
use dmc_core::profile::{Profile, Role};
use dmc_core::register::{RegisterDef, WriteFunction, WritePolicy, WriteRequest};
use dmc_core::time::Instant;
use dmc_core::value::Value;

use crate::dbus::{BusChoice, Item, ItemValue, Service, ServiceBuilder, SetRequest, Spawner, ValueKind};
use crate::engine::bus::{Command, CommandError};
use crate::engine::{Device, Observer, PresenceChange, SharedBus};
use crate::settings::client::{device_settings, SettingsClient};
use crate::setvalue::{WriteAction, POSITION_KIND, REGISTER_KIND};
use crate::vreg::{DeviceEntry, VregPort};

mod dictated;
mod migrate;
pub mod settings_watch;

use settings_watch::Registered;

/// How long a meter may be silent before its service is removed (upstream: 5 s).
pub const METER_GRACE: StdDuration = StdDuration::from_secs(5);
/// Pause before a failed registration (bus or settings trouble) is tried again.
pub const REGISTER_RETRY: StdDuration = StdDuration::from_secs(5);
/// Longest a changed value of a slower poll class waits for the device's next
/// fast-class update (which carries it in the same `ItemsChanged`) before it
/// goes out on its own.
pub const COALESCE_WAIT: StdDuration = StdDuration::from_secs(1);
/// What `/Mgmt/ProcessName` says.
pub const PROCESS_NAME: &str = "dbus-modbus-client";

/// Shared by every bus's publisher.
pub struct PublisherConfig {
    /// Which bus to register on.
    pub bus: BusChoice,
    /// The executor driving connections and tasks.
    pub spawner: Spawner,
    /// localsettings (or the stand-in); `None` publishes defaults.
    pub settings: Option<SettingsClient>,
    /// Also emit per-path `PropertiesChanged` on each update (`--properties-changed`).
    pub properties_changed: bool,
    /// How long a sleeping device keeps its service.
    pub sleep_removal: StdDuration,
    /// `-x`: a device failing ends the process (exit 1).
    pub exit_on_failure: bool,
    /// Set when `exit_on_failure` fired.
    pub failed: AtomicBool,
    /// Passes of the bus loops (the watchdog checks it moves).
    pub engine_progress: AtomicU64,
    /// The control service, told about every registered device.
    pub control: Option<Arc<crate::control_service::ControlService>>,
    /// Dynamic generation: adds `/Ac/PowerLimit` and its status paths to a limitable PV inverter.
    pub dyngen: Option<crate::dyngen::DynGen>,
}

/// What the publisher knows about one device's service.
#[derive(Default)]
struct Slot {
    service: Option<Arc<Service>>,
    /// A registration is under way.
    registering: bool,
    /// Bumped on every presence change, so stale timers do nothing.
    generation: u64,
    /// The service's values were snapshotted before registration finished:
    /// the next update publishes every path.
    needs_full_update: bool,
    /// The device is asleep (values set to the night state).
    asleep: bool,
    /// Changes of a slower class wait for the next fast update; a timer sends
    /// them after [`COALESCE_WAIT`] if none comes.
    flush_pending: bool,
    /// The device answers (VregLink calls fail at once otherwise).
    online: Arc<AtomicBool>,
    /// A settings watcher runs for this device ([`settings_watch`]).
    watching: bool,
    /// `Enabled` = 0: no service until it is enabled again.
    disabled: bool,
    /// The dictating registers the service was registered with ([`dictated`]).
    dictated: Option<dictated::Key>,
    /// What the next re-registration registers (the latest values seen).
    snapshot: Option<Snapshot>,
}

type SharedSlot = Arc<Mutex<Slot>>;

fn lock(slot: &SharedSlot) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine observer that keeps one bus's devices on D-Bus.
pub struct Publisher {
    config: Arc<PublisherConfig>,
    commands: async_channel::Sender<Command>,
    slots: Vec<SharedSlot>,
    /// The bus's shared state (enable flags), when the bus runs under the daemon.
    bus_state: Option<Arc<SharedBus>>,
}

impl Publisher {
    /// A publisher for a bus whose command queue is `commands`.
    pub fn new(
        config: Arc<PublisherConfig>,
        commands: async_channel::Sender<Command>,
        devices: usize,
    ) -> Self {
        let slots = (0..devices).map(|_| SharedSlot::default()).collect();
        Publisher { config, commands, slots, bus_state: None }
    }

    /// Lets `Enabled` settings and the control service reach the bus.
    pub fn with_bus_state(mut self, state: Arc<SharedBus>) -> Self {
        self.bus_state = Some(state);
        self
    }

    /// The service of device `i`, once registered.
    pub fn service(&self, i: usize) -> Option<Arc<Service>> {
        self.slots.get(i).and_then(|s| lock(s).service.clone())
    }

    fn slot(&mut self, i: usize) -> SharedSlot {
        while self.slots.len() <= i {
            self.slots.push(SharedSlot::default());
        }
        self.slots[i].clone()
    }

    fn start_registration(&mut self, i: usize, device: &Device) {
        let slot = self.slot(i);
        {
            let mut s = lock(&slot);
            if s.service.is_some() || s.registering || s.disabled {
                return;
            }
            s.registering = true;
        }
        // A device that dictates its configuration waits until it was read.
        let Some(mut snapshot) = Snapshot::of(device).filter(|s| dictated::ready(s.profile, &s.values))
        else {
            lock(&slot).registering = false;
            return;
        };
        let config = self.config.clone();
        let commands = self.commands.clone();
        let device_index = i;
        let generation = lock(&slot).generation;
        snapshot.bus_state = self.bus_state.clone();
        snapshot.online = lock(&slot).online.clone();
        self.config
            .spawner
            .spawn(async move {
                loop {
                    match register(&config, snapshot.clone(), commands.clone(), device_index).await {
                        Ok(outcome) => {
                            settings_watch::registered(
                                &config,
                                &slot,
                                outcome,
                                snapshot,
                                commands,
                                device_index,
                            );
                            return;
                        }
                        Err(e) => log::error!("{e}; retrying in {} s", REGISTER_RETRY.as_secs()),
                    }
                    Timer::after(REGISTER_RETRY).await;
                    // The device went away meanwhile: its return starts afresh.
                    if lock(&slot).generation != generation {
                        lock(&slot).registering = false;
                        return;
                    }
                }
            })
            .detach();
    }

    /// Removes device `i`'s service after `after` unless its presence changes meanwhile.
    fn remove_later(&mut self, i: usize, after: StdDuration, why: &'static str) {
        let slot = self.slot(i);
        let generation = lock(&slot).generation;
        self.config
            .spawner
            .spawn(async move {
                Timer::after(after).await;
                let service = {
                    let mut s = lock(&slot);
                    if s.generation != generation {
                        return;
                    }
                    s.asleep = false;
                    s.service.take()
                };
                if let Some(service) = service {
                    log::info!("{}: removed from D-Bus ({why})", service.name());
                    if let Ok(service) = Arc::try_unwrap(service) {
                        if let Err(e) = service.unregister().await {
                            log::warn!("unregistering: {e}");
                        }
                    }
                }
            })
            .detach();
    }

    /// Sends `service`'s queued changes after [`COALESCE_WAIT`] unless a fast
    /// update has sent them by then (an empty flush sends nothing).
    fn flush_later(&self, slot: &SharedSlot, service: Arc<Service>) {
        {
            let mut s = lock(slot);
            if s.flush_pending {
                return;
            }
            s.flush_pending = true;
        }
        let slot = slot.clone();
        let config = self.config.clone();
        // Weak: a service being removed meanwhile must not be kept alive by this timer.
        let service = Arc::downgrade(&service);
        self.config
            .spawner
            .spawn(async move {
                Timer::after(COALESCE_WAIT).await;
                let pending = std::mem::take(&mut lock(&slot).flush_pending);
                if let (true, Some(service)) = (pending, service.upgrade()) {
                    flush(&config, service);
                }
            })
            .detach();
    }

    /// The night state of a sleeping inverter (venus-conventions §6, devices.md 2.7).
    fn publish_asleep(&mut self, i: usize, device: &Device) {
        let slot = self.slot(i);
        let Some(service) = lock(&slot).service.clone() else { return };
        lock(&slot).asleep = true;
        if let Some(profile) = device.profile {
            for def in profile.registers {
                for path in def.paths {
                    if let Some(v) = asleep_value(path) {
                        let _ = service.set_value(path, v);
                    }
                }
            }
        }
        flush(&self.config, service);
    }
}

/// Night value of a path, or `None` to keep the last value (energy counters).
fn asleep_value(path: &str) -> Option<ItemValue> {
    let last = path.rsplit('/').next().unwrap_or_default();
    match last {
        "Power" | "Current" | "P" | "I" => Some(ItemValue::Double(0.0)),
        "Voltage" | "Frequency" | "V" => Some(ItemValue::Invalid),
        "StatusCode" => Some(ItemValue::Double(8.0)),
        _ => None,
    }
}

/// The sort key of the fastest poll class among a profile's published registers.
fn fastest_class(profile: &Profile) -> u64 {
    profile.registers.iter().filter(|d| !d.paths.is_empty()).map(|d| d.class.order_key()).min().unwrap_or(0)
}

fn flush(config: &PublisherConfig, service: Arc<Service>) {
    config
        .spawner
        .spawn(async move {
            if let Err(e) = service.flush().await {
                log::warn!("{}: ItemsChanged not sent: {e}", service.name());
            }
        })
        .detach();
}

impl Observer for Publisher {
    fn presence(&mut self, i: usize, device: &Device, change: PresenceChange, _now: Instant) {
        let slot = self.slot(i);
        lock(&slot).generation += 1;
        lock(&slot).online.store(change != PresenceChange::Lost, Ordering::Relaxed);
        let may_sleep = device.profile.is_some_and(|p| p.may_sleep);
        match change {
            PresenceChange::Identified => {}
            PresenceChange::Ready => self.start_registration(i, device),
            PresenceChange::Returned => {
                lock(&slot).asleep = false;
                if device.is_ready() {
                    self.start_registration(i, device);
                }
            }
            PresenceChange::Lost => {
                // -x: a published device that fails ends the process, as
                // upstream; an inverter going to sleep is not a failure, and
                // a device never found yet keeps being probed.
                let was_published = lock(&slot).service.is_some();
                if self.config.exit_on_failure && was_published && !may_sleep {
                    log::error!("{}: device failed; exiting (-x)", device.spec);
                    self.config.failed.store(true, Ordering::Relaxed);
                    return;
                }
                if may_sleep {
                    self.publish_asleep(i, device);
                    self.remove_later(i, self.config.sleep_removal, "asleep too long");
                } else {
                    self.remove_later(i, METER_GRACE, "not answering");
                }
            }
        }
    }

    fn values(&mut self, i: usize, device: &Device, now: Instant) {
        let slot = self.slot(i);
        let (service, full) = {
            let mut s = lock(&slot);
            let full = std::mem::take(&mut s.needs_full_update);
            (s.service.clone(), full)
        };
        let (Some(service), Some(profile)) = (service, device.profile) else {
            // Enabled again after `Enabled` = 0: its reads resumed, so register it.
            if device.is_ready() {
                self.start_registration(i, device);
            }
            return;
        };
        let mut publish = |idx: usize| {
            let (Some(def), Some(value)) = (profile.registers.get(idx), device.values.get(idx)) else {
                return;
            };
            if def.paths.is_empty() {
                return;
            }
            let item = item_value(value);
            let text = item_text(def, value);
            for path in def.paths {
                let _ = service.set(path, item.clone(), text.clone());
                crate::vreg::mirror(&service, path, &item, &text);
            }
        };
        if full {
            (0..profile.registers.len()).for_each(&mut publish);
        } else {
            device.changed.iter().copied().for_each(&mut publish);
        }
        if let Some(dyngen) = &self.config.dyngen {
            dyngen.inverter_values(service.name(), device, now);
        }
        // One ItemsChanged per update cycle (venus-conventions: vedbus sends one
        // per update): the cycle is the device's fastest class; what slower
        // blocks changed rides along with its next update.
        let fastest = fastest_class(profile);
        let lead = full
            || device
                .changed
                .iter()
                .any(|&idx| profile.registers.get(idx).is_some_and(|d| d.class.order_key() == fastest));
        if lead {
            lock(&slot).flush_pending = false;
            flush(&self.config, service);
        } else {
            self.flush_later(&slot, service);
        }
        dictated::follow(self, &slot, i, device);
    }

    fn stop_requested(&mut self) -> bool {
        self.config.failed.load(Ordering::Relaxed)
    }

    fn progress(&mut self) {
        self.config.engine_progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// A decoded value as upstream publishes it (venus-conventions §1.4).
pub fn item_value(value: &Value) -> ItemValue {
    match value {
        Value::Invalid => ItemValue::Invalid,
        Value::Float(f) if f.is_finite() => ItemValue::Double(*f),
        Value::Float(_) => ItemValue::Invalid,
        Value::Int(i) => i32::try_from(*i).map(ItemValue::Int).unwrap_or(ItemValue::Int64(*i)),
        Value::Text(t) => ItemValue::Text(t.as_str().to_string()),
    }
}

/// `GetText` of a register value: `230.1 V`, `---` for invalid.
pub fn item_text(def: &RegisterDef, value: &Value) -> String {
    let mut s = String::new();
    if def.write_text(value, &mut s).is_err() || s.is_empty() {
        return "---".into();
    }
    s
}

/// What registration needs from the device, copied out of the engine.
#[derive(Clone)]
struct Snapshot {
    spec: crate::spec::DeviceSpec,
    profile: &'static Profile,
    values: Vec<Value>,
    serial: String,
    /// The bus's shared state, for the control service's statistics.
    bus_state: Option<Arc<SharedBus>>,
    /// Whether the device answers (the slot's flag; VregLink calls fail at once otherwise).
    online: Arc<AtomicBool>,
}

impl Snapshot {
    fn of(device: &Device) -> Option<Snapshot> {
        let profile = device.profile?;
        let serial = match device.value_of("/Serial") {
            Some(Value::Text(t)) => t.as_str().to_string(),
            Some(Value::Int(i)) => i.to_string(),
            Some(Value::Float(f)) if f.is_finite() => format!("{f:.0}"),
            _ => String::new(),
        };
        Some(Snapshot {
            spec: device.spec.clone(),
            profile,
            values: device.values.clone(),
            serial,
            bus_state: None,
            online: Arc::new(AtomicBool::new(true)),
        })
    }
}

/// The device's settings as localsettings returned them.
struct DeviceSettings {
    role: Role,
    instance: i32,
    custom_name: String,
    position: i32,
    /// `Enabled` (0: identified but not published nor polled).
    enabled: bool,
}

fn default_instance(role: Role) -> i32 {
    match role {
        Role::PvInverter => 20,
        _ => 40,
    }
}

async fn load_settings(config: &PublisherConfig, ident: &str, profile: &Profile) -> DeviceSettings {
    let role = profile.default_role;
    let mut out = DeviceSettings {
        role,
        instance: default_instance(role),
        custom_name: String::new(),
        position: 0,
        enabled: true,
    };
    let Some(client) = &config.settings else { return out };
    migrate::from_python_fork(client, ident, profile).await;
    let default = format!("{}:{}", role.as_str(), out.instance);
    match client.add_settings(&device_settings(ident, &default, 1)).await {
        Ok(results) => {
            for r in results {
                let Some(value) = r.value else { continue };
                if r.path.ends_with("/ClassAndVrmInstance") {
                    if let ItemValue::Text(t) = &value {
                        if let Some((class, inst)) = t.split_once(':') {
                            if let (Some(role), Ok(inst)) = (Role::from_name(class), inst.parse()) {
                                if profile.allows_role(role) || role == profile.default_role {
                                    out.role = role;
                                }
                                out.instance = inst;
                            }
                        }
                    }
                } else if r.path.ends_with("/CustomName") {
                    if let ItemValue::Text(t) = value {
                        out.custom_name = t;
                    }
                } else if r.path.ends_with("/Enabled") {
                    out.enabled = value != ItemValue::Int(0);
                } else if r.path.ends_with("/Position") {
                    if let ItemValue::Int(p) = value {
                        out.position = p;
                    }
                }
            }
        }
        Err(e) => log::warn!("{ident}: settings not available ({e}); using defaults"),
    }
    out
}

async fn register(
    config: &Arc<PublisherConfig>,
    snap: Snapshot,
    commands: async_channel::Sender<Command>,
    device_index: usize,
) -> Result<Registered, String> {
    let profile = snap.profile;
    let ident = profile
        .service_ident(if snap.serial.is_empty() { "unknown" } else { &snap.serial })
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| format!("{}: serial too long for an ident", snap.spec))?;
    let mut settings = load_settings(config, &ident, profile).await;
    let dictated = dictated::Dictated::of(profile, &snap.values, settings.role);
    settings.role = dictated.role;
    // On the control service even when disabled, so it can be enabled there.
    if let (Some(control), Some(state)) = (&config.control, &snap.bus_state) {
        let names = (settings.custom_name.as_str(), profile.product_name);
        control.device_registered(&ident, names, &snap.serial, state.clone(), device_index);
    }
    if !settings.enabled {
        log::info!("{}: {ident} is disabled (Enabled = 0): not published", snap.spec);
        if let Some(state) = &snap.bus_state {
            state.set_enabled(device_index, false);
        }
        return Ok(Registered::Disabled { ident });
    }
    dictated::store_role(config, &ident, &dictated, settings.instance).await;
    let name = format!("com.victronenergy.{}.{ident}", settings.role.as_str());
    let mut b = ServiceBuilder::new(name.clone());
    let add = |b: &mut ServiceBuilder, path: &str, item: Item| {
        if let Err(e) = b.add(path, item) {
            log::warn!("{name}: {e}");
        }
    };
    add(&mut b, "/Mgmt/ProcessName", Item::new(PROCESS_NAME));
    add(&mut b, "/Mgmt/ProcessVersion", Item::new(env!("CARGO_PKG_VERSION")));
    add(&mut b, "/Mgmt/Connection", Item::new(snap.spec.connection_text()));
    add(&mut b, "/DeviceInstance", Item::new(settings.instance));
    add(&mut b, "/ProductId", Item::new(i32::from(profile.product_id)));
    add(&mut b, "/ProductName", Item::new(profile.product_name));
    add(&mut b, "/Model", Item::new(profile.product_name));
    add(&mut b, "/Serial", Item::new(snap.serial.clone()));
    add(&mut b, "/Connected", Item::new(1));
    add(&mut b, "/CustomName", Item::new(settings.custom_name.clone()).writable().with_kind(ValueKind::Text));
    let role = Item::new(settings.role.as_str());
    add(&mut b, "/Role", if dictated.role_fixed { role } else { role.writable().with_kind(ValueKind::Text) });
    let roles: Vec<String> = profile.allowed_roles.iter().map(|r| r.as_str().to_string()).collect();
    if !roles.is_empty() {
        add(&mut b, "/AllowedRoles", Item::new(ItemValue::StrList(roles)));
    }
    dictated.add_items(&mut b);
    let positioned =
        matches!(settings.role, Role::PvInverter | Role::AcLoad | Role::EvCharger | Role::HeatPump);
    if positioned && !dictated.position_fixed {
        add(&mut b, "/Position", Item::new(settings.position).writable().with_kind(POSITION_KIND));
    }
    let meter = profile.allows_role(Role::Grid);
    if meter {
        add(&mut b, "/IsGenericEnergyMeter", Item::new(i32::from(settings.role != Role::Grid)));
    }
    if profile.register_for_path("/NrOfPhases").is_none() && dictated.phases.is_none() {
        add(&mut b, "/NrOfPhases", Item::new(1));
    }
    for path in ["/FirmwareVersion", "/HardwareVersion", "/ErrorCode"] {
        if profile.register_for_path(path).is_none() {
            add(&mut b, path, Item::new(ItemValue::Invalid));
        }
    }
    for (def, value) in profile.registers.iter().zip(&snap.values) {
        for path in def.paths {
            if *path == "/Serial" || !dictated.publishes(profile, path) {
                continue;
            }
            let mut item = Item::new(item_value(value)).with_text(item_text(def, value));
            if let WritePolicy::Writable { .. } = def.write {
                item = item.writable().with_kind(REGISTER_KIND);
            }
            add(&mut b, path, crate::vreg::routed_item(profile, path, item));
        }
    }
    let vreg =
        profile.vreglink.map(|v| VregPort::new(v, device_index, commands.clone(), snap.online.clone()));
    if let Some(port) = &vreg {
        let entry = DeviceEntry { instance: settings.instance, service_name: &name, profile };
        crate::vreg::add_device_entry(&mut b, &entry, port.clone());
    }
    let limited = config.dyngen.as_ref().is_some_and(|d| d.add_items(&mut b, profile, &snap.values));
    let (owner_tx, owner_rx) = async_channel::bounded::<SetRequest>(8);
    b.owner(owner_tx).properties_changed_on_flush(config.properties_changed);
    let service = b.register(&config.bus, &config.spawner).await.map_err(|e| format!("{name}: {e}"))?;
    log::info!("{}: registered {name} (instance {})", snap.spec, settings.instance);
    let service = Arc::new(service);
    if let Some(dyngen) = config.dyngen.as_ref().filter(|_| limited) {
        dyngen.attach(service.clone(), profile, commands.clone(), device_index);
    }
    let owner = Owner { config: config.clone(), profile, ident, commands, device_index, vreg };
    config.spawner.spawn(owner.serve(owner_rx)).detach();
    Ok(Registered::Service(service))
}

/// Answers remote SetValue calls of one service.
struct Owner {
    config: Arc<PublisherConfig>,
    profile: &'static Profile,
    ident: String,
    commands: async_channel::Sender<Command>,
    device_index: usize,
    /// Paths the profile writes through VregLink go here.
    vreg: Option<VregPort>,
}

impl Owner {
    async fn serve(self, requests: async_channel::Receiver<SetRequest>) {
        while let Ok(req) = requests.recv().await {
            let ok = self.decide(&req.path, &req.value).await;
            req.respond(ok);
        }
    }

    async fn decide(&self, path: &str, value: &ItemValue) -> bool {
        if let Some(port) = &self.vreg {
            if let Some(accepted) = port.set_path(path, value).await {
                return accepted;
            }
        }
        if path == crate::dyngen::inverter::POWER_LIMIT {
            return self.config.dyngen.as_ref().is_some_and(|d| d.set_power_limit(value));
        }
        match crate::setvalue::check_write(self.profile, path, value) {
            Ok(WriteAction::Setting { name, value }) => self.save_setting(name, &value).await,
            Ok(WriteAction::Role(role)) => {
                let value = ItemValue::Text(role.as_str().to_string());
                settings_watch::request_role(&self.config, self.profile, &self.ident, &value).await
            }
            Ok(WriteAction::Register { write, number }) => self.write_register(path, write, number).await,
            Err(refusal) => {
                log::info!("{}: SetValue {path} refused: {refusal}", self.ident);
                false
            }
        }
    }

    async fn save_setting(&self, name: &str, value: &ItemValue) -> bool {
        let Some(client) = &self.config.settings else { return true };
        let path = format!("/Settings/Devices/{}/{name}", self.ident);
        matches!(client.set_value(&path, value).await, Ok(0))
    }

    async fn write_register(&self, path: &str, write: WriteRequest, number: f64) -> bool {
        match send_write(&self.commands, self.device_index, &write).await {
            Ok(()) => {
                log::info!("{}: wrote {path} = {number}", self.ident);
                true
            }
            Err(WriteError::Refused(e)) => {
                log::info!("{}: write {path} = {number} refused: {e}", self.ident);
                false
            }
            Err(WriteError::Device(CommandError::Unavailable)) | Err(WriteError::Gone) => false,
            Err(e) => {
                log::warn!("{}: write {path} failed: {e}", self.ident);
                false
            }
        }
    }
}

/// Why [`write_register`] did not write.
#[derive(Debug)]
pub enum WriteError {
    /// The value does not fit the register (range, policy).
    Refused(String),
    /// The device answered with an error or did not answer.
    Device(CommandError),
    /// The bus loop is gone.
    Gone,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Refused(e) => write!(f, "value refused: {e}"),
            WriteError::Device(e) => write!(f, "device: {e:?}"),
            WriteError::Gone => f.write_str("the bus loop is not running"),
        }
    }
}

/// Encodes `number` for `def` and writes it to device `device` through the
/// bus's command queue; returns once the device answered.
pub async fn write_register(
    commands: &async_channel::Sender<Command>,
    device: usize,
    def: &RegisterDef,
    number: f64,
) -> Result<(), WriteError> {
    let write = def.encode_write(number).map_err(|e| WriteError::Refused(format!("{e:?}")))?;
    send_write(commands, device, &write).await
}

/// Sends an encoded register write to device `device` through the bus's command queue.
pub async fn send_write(
    commands: &async_channel::Sender<Command>,
    device: usize,
    write: &WriteRequest,
) -> Result<(), WriteError> {
    let request = match write.function {
        WriteFunction::Single => match write.words.first() {
            Some(&v) => Request::WriteSingleRegister { address: write.address, value: v },
            None => return Err(WriteError::Refused("no register word".into())),
        },
        WriteFunction::Multiple => Request::WriteMultipleRegisters {
            address: write.address,
            values: Words::from_slice(&write.words),
        },
    };
    send_request(commands, device, &request).await.map(drop)
}

/// Sends one request to device `device` through the bus's command queue and
/// returns the response PDU once the device answered.
pub async fn send_request(
    commands: &async_channel::Sender<Command>,
    device: usize,
    request: &Request<'_>,
) -> Result<Vec<u8>, WriteError> {
    let mut pdu = [0u8; 260];
    let len = request.emit(&mut pdu).map_err(|e| WriteError::Refused(format!("{e:?}")))?;
    let (reply_tx, reply_rx) = async_channel::bounded(1);
    let cmd = Command { device, pdu: pdu[..len].to_vec(), reply: reply_tx };
    commands.send(cmd).await.map_err(|_| WriteError::Gone)?;
    match reply_rx.recv().await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(WriteError::Device(e)),
        Err(_) => Err(WriteError::Gone),
    }
}
