//! Dynamic generation (export limiting) and the standard `/Ac/PowerLimit`.
//!
//! The control law is core's [`dmc_core::control::Controller`]; this module is
//! its host: it feeds it readings, applies its answers, and publishes what it
//! does.
//!
//! * [`settings`]: `/Settings/DynamicGeneration/*` and the fork's old settings.
//! * [`watch`]: grid meters, batteries, the inverter/charger and the system
//!   service, followed through signals.
//! * [`g100`]: the inverter's own export limiter set-up, only when the user opts in.
//! * [`inverter`]: the paths on the PV inverter's service and the arbiter
//!   between the controller and an external `/Ac/PowerLimit` writer.
//!
//! Hooks: the publisher calls [`DynGen::add_items`] while building a PV
//! inverter's service, [`DynGen::attach`] once it is registered,
//! [`DynGen::inverter_values`] after each read of it and
//! [`DynGen::set_power_limit`] for remote writes of `/Ac/PowerLimit`. The
//! loop ([`DynGen::run`]) steps the controller once a second and on every new
//! grid reading, and writes the rate register through the bus's command
//! queue, so writes take turns with the polling like any D-Bus write.

pub mod g100;
pub mod inverter;
pub mod settings;
pub mod watch;

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration as StdDuration;

use async_io::Timer;
use dmc_core::control::{Config, Controller, Inputs, Sample, Status};
use dmc_core::profile::Profile;
use dmc_core::register::RegisterDef;
use dmc_core::time::{Duration, Instant};
use dmc_core::value::Value;

use crate::dbus::{BusChoice, ItemValue, Service, ServiceBuilder, Spawner};
use crate::engine::{Clock, Command, Device};
use crate::settings::client::SettingsClient;
use inverter::{Arbiter, Decision};
use settings::DynGenSettings;
use watch::{SiteReadings, Watcher};

/// Tunables of the host side.
#[derive(Clone, Debug)]
pub struct DynGenOptions {
    /// The `/Ac/PowerLimit` watchdog (venus-conventions §4.3: 60 s).
    pub power_limit_timeout: StdDuration,
    /// Controller step period when no grid reading arrives.
    pub tick: StdDuration,
    /// Apply the Python fork's rule instead of core's controller, for
    /// comparison figures only ([`fork_percent`]); never on a real site.
    pub fork_law: bool,
}

impl Default for DynGenOptions {
    fn default() -> Self {
        DynGenOptions {
            power_limit_timeout: StdDuration::from_secs(60),
            tick: StdDuration::from_secs(1),
            fork_law: false,
        }
    }
}

/// The fork's rule (its README, "Dynamic Generation limit setup"): below 90 %
/// SoC full power; otherwise grid + PV, plus battery discharge above 100 W,
/// rounded up to a percent of `max_power_w` and clamped to 2..100. The fork
/// writes it every second while PV gives at least 50 W.
pub fn fork_percent(grid_w: f32, pv_w: f32, battery_w: f32, soc: f32, max_power_w: f32) -> u16 {
    if soc < 90.0 || max_power_w <= 0.0 {
        return 100;
    }
    let mut limit = grid_w + pv_w;
    if battery_w < -100.0 {
        limit -= battery_w;
    }
    let percent = (100.0 * limit / max_power_w).ceil();
    if percent.is_finite() {
        percent.clamp(2.0, 100.0) as u16
    } else {
        100
    }
}

/// The inverter being limited.
struct Inverter {
    /// Its bus name.
    name: String,
    /// Weak: the publisher owns the service and removes it (a sleeping
    /// inverter after a day); a strong reference here would keep it on the bus.
    service: Weak<Service>,
    commands: async_channel::Sender<Command>,
    device: usize,
    rate: &'static RegisterDef,
}

#[derive(Default)]
struct State {
    inverter: Option<Inverter>,
    pv: Option<Sample>,
    max_power_w: Option<f64>,
    /// The external limit (W) and the time of its last write.
    external: Option<Sample>,
    settings: DynGenSettings,
    /// `G100ExportLimit` (percent, 0 = off) and the (service, percent) last applied.
    g100_percent: f64,
    g100_applied: Option<(String, u64)>,
    /// When the inverter was attached (start of the start-up grace).
    attached_at: Option<Instant>,
}

/// After start-up, how long the controller waits for the first grid and PV
/// readings before a missing one counts as a failure (the daemon's own meter
/// may still be being identified; the fail-safe limit would only curtail
/// needlessly).
const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// How often a watcher that could not start is tried again.
const WATCH_RETRY: Duration = Duration::from_secs(10);

/// The watcher of the other services and the connection it runs on (closed
/// with [`crate::dbus::BusConnection::close`] once [`Watcher::stop`] has
/// cancelled the watcher's tasks).
struct Watching {
    watcher: Watcher,
    _connection: crate::dbus::BusConnection,
}

struct Shared {
    options: DynGenOptions,
    clock: Clock,
    state: Mutex<State>,
    wake: async_channel::Sender<()>,
    woken: async_channel::Receiver<()>,
}

/// Dynamic generation for one daemon (one limitable inverter).
#[derive(Clone)]
pub struct DynGen {
    shared: Arc<Shared>,
}

impl DynGen {
    /// A handle using the engine's `clock` (readings from the engine carry its time).
    pub fn new(options: DynGenOptions, clock: Clock) -> DynGen {
        let (wake, woken) = async_channel::bounded(1);
        let shared = Shared { options, clock, state: Mutex::default(), wake, woken };
        DynGen { shared: Arc::new(shared) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the paths to a service being built for `profile`; false (nothing
    /// added) when the profile cannot be limited or an inverter is already attached.
    pub fn add_items(&self, b: &mut ServiceBuilder, profile: &'static Profile, values: &[Value]) -> bool {
        if inverter::rate_register(profile).is_none() {
            return false;
        }
        let max = profile
            .register_for_path(inverter::MAX_POWER)
            .and_then(|(i, _)| values.get(i))
            .and_then(value_number);
        inverter::add_items(b, max);
        true
    }

    /// The inverter's service is registered: limit through `commands` (device `device`).
    pub fn attach(
        &self,
        service: Arc<Service>,
        profile: &'static Profile,
        commands: async_channel::Sender<Command>,
        device: usize,
    ) {
        let Some(rate) = inverter::rate_register(profile) else { return };
        let mut s = self.state();
        if let Some(old) = &s.inverter {
            if old.name != service.name() && old.service.strong_count() > 0 {
                log::warn!(
                    "dynamic generation: {} already limited; {} is not (one inverter only)",
                    old.name,
                    service.name()
                );
                return;
            }
        }
        log::info!("dynamic generation: limiting {}", service.name());
        let name = service.name().to_string();
        s.inverter = Some(Inverter { name, service: Arc::downgrade(&service), commands, device, rate });
        s.attached_at = Some(self.shared.clock.now());
    }

    /// After a read of a device: takes the inverter's power and rated power.
    pub fn inverter_values(&self, service: &str, device: &Device, now: Instant) {
        let mut s = self.state();
        if s.inverter.as_ref().is_none_or(|i| i.name != service) {
            return;
        }
        if let Some(p) = device.value_of("/Ac/Power").and_then(value_number) {
            s.pv = Some(Sample::new(p as f32, now));
        }
        if let Some(m) = device.value_of(inverter::MAX_POWER).and_then(value_number) {
            s.max_power_w = Some(m);
        }
    }

    /// A remote write of `/Ac/PowerLimit` (W). Every write re-arms the
    /// watchdog, an unchanged value too. Refused (SetValue 2) when not a
    /// finite number.
    pub fn set_power_limit(&self, value: &ItemValue) -> bool {
        let Some(w) = settings::number_of(value) else { return false };
        let now = self.shared.clock.now();
        self.state().external = Some(Sample::new(w.max(0.0) as f32, now));
        let _ = self.shared.wake.try_send(());
        true
    }

    /// Runs forever: settings, watcher, and the control loop.
    pub async fn run(self, bus: BusChoice, spawner: Spawner, settings: Option<SettingsClient>) {
        if let Some(client) = &settings {
            self.load_settings(client, &spawner).await;
        }
        let mut watching: Option<Watching> = None;
        let mut next_attempt: Option<Instant> = None;
        let mut controller = Controller::new(Config::DEFAULT);
        let mut arbiter = Arbiter::default();
        let mut fork_written: Option<Instant> = None;
        loop {
            let tick = self.shared.options.tick;
            futures_lite::future::or(
                async {
                    let _ = self.shared.woken.recv().await;
                },
                async {
                    Timer::after(tick).await;
                },
            )
            .await;
            // The other services are watched only while dynamic generation is
            // on: every grid meter update (ours included, several a second)
            // would otherwise wake this daemon twice for nothing.
            let wanted = self.state().settings.enabled || self.shared.options.fork_law;
            let now = self.shared.clock.now();
            if wanted && watching.is_none() && next_attempt.is_none_or(|t| now >= t) {
                watching = self.start_watching(&bus, &spawner).await;
                next_attempt = watching.is_none().then(|| now + WATCH_RETRY);
            } else if !wanted {
                if let Some(Watching { watcher, _connection }) = watching.take() {
                    watcher.stop();
                    drop(watcher);
                    spawner.spawn(_connection.close()).detach();
                    log::info!("dynamic generation: off; no longer watching the other services");
                }
                next_attempt = None;
            }
            let site = watching.as_ref().map(|w| w.watcher.readings()).unwrap_or_default();
            if self.shared.options.fork_law {
                self.fork_step(&mut fork_written, &site).await;
            } else {
                self.step(&mut controller, &mut arbiter, &site).await;
            }
        }
    }

    /// Connects and starts the watcher (`None` after logging why not).
    async fn start_watching(&self, bus: &BusChoice, spawner: &Spawner) -> Option<Watching> {
        let conn = match crate::dbus::connect(bus, spawner).await {
            Ok(conn) => conn,
            Err(e) => {
                log::error!("dynamic generation: cannot connect to D-Bus: {e}");
                return None;
            }
        };
        let grid_update = self.shared.wake.clone();
        match Watcher::start(conn.conn.clone(), spawner.clone(), self.shared.clock, grid_update).await {
            Ok(watcher) => Some(Watching { watcher, _connection: conn }),
            Err(e) => {
                log::error!("dynamic generation: watching the bus failed: {e}");
                None
            }
        }
    }

    async fn load_settings(&self, client: &SettingsClient, spawner: &Spawner) {
        // The fork's switch seeds ours only when ours does not exist yet.
        let ours_exists = client.get_value(settings::ENABLED).await.is_ok();
        let fork_enabled = client.get_value(settings::FORK_DERATE).await.ok();
        let seed = match (&fork_enabled, ours_exists) {
            (Some(v), false) => settings::number_of(v).map_or(0, |n| i32::from(n != 0.0)),
            _ => 0,
        };
        if seed == 1 {
            log::info!("dynamic generation: enabled from the fork's derateGeneration setting");
        }
        let mut specs = settings::specs(seed);
        specs.push(crate::settings::client::SettingSpec::float(g100::SETTING, 0.0, 0.0, 100.0));
        match client.add_settings(&specs).await {
            Ok(results) => {
                let mut s = self.state();
                for r in results {
                    match r.value {
                        Some(v) if r.error == 0 => {
                            s.apply_setting(&r.path, &v);
                        }
                        _ => log::warn!("dynamic generation: setting {} not created ({})", r.path, r.error),
                    }
                }
            }
            Err(e) => log::warn!("dynamic generation: settings not available ({e}); defaults used"),
        }
        if let Ok(v) = client.get_value(settings::FORK_ENERGY_DIFFERENCE).await {
            log::info!("dynamic generation: using the fork's energyDifference ({})", v.default_text());
            self.state().settings.apply(settings::FORK_ENERGY_DIFFERENCE, &v);
        }
        let mut paths = settings::watched_paths();
        paths.push(g100::SETTING.to_string());
        match client.subscribe(paths).await {
            Ok(changes) => {
                let me = self.clone();
                let task = async move {
                    while let Ok((path, value)) = changes.recv().await {
                        if me.state().apply_setting(&path, &value) {
                            log::info!("dynamic generation: {path} = {}", value.default_text());
                            let _ = me.shared.wake.try_send(());
                        }
                    }
                };
                // Detached: it ends with the settings connection.
                spawner.spawn(task).detach();
            }
            Err(e) => log::warn!("dynamic generation: setting changes not followed: {e}"),
        }
    }

    /// One controller step and its consequences.
    async fn step(&self, controller: &mut Controller, arbiter: &mut Arbiter, site: &SiteReadings) {
        let now = self.shared.clock.now();
        let timeout = Duration::from_micros(
            u64::try_from(self.shared.options.power_limit_timeout.as_micros()).unwrap_or(u64::MAX),
        );
        let (service, commands, device, rate, inputs, settings, expired) = {
            let mut s = self.state();
            let Some(inv) = &s.inverter else { return };
            let (service, commands, device, rate) =
                (inv.service.clone(), inv.commands.clone(), inv.device, inv.rate);
            let starting = s.attached_at.is_some_and(|t| now.saturating_since(t) < STARTUP_GRACE);
            // Only the controller needs the readings; off, it has nothing to wait for.
            if s.settings.enabled && starting && (site.grid_power_w.is_none() || s.pv.is_none()) {
                if let Some(service) = service.upgrade() {
                    let _ = service.set_value(inverter::STATUS, "Waiting for readings");
                }
                return;
            }
            let expired = s.external.is_some_and(|x| now.saturating_since(x.at) > timeout);
            if expired {
                s.external = None;
            }
            let inputs = Inputs {
                grid_power_w: site.grid_power_w,
                pv_power_w: s.pv,
                battery_power_w: site.battery_power_w,
                soc_percent: site.soc_percent,
                battery_voltage_v: site.battery_voltage_v,
                charger_state: site.charger_state,
                ac_in_power_w: site.ac_in_power_w,
                external_limit_w: s.external,
                max_power_w: s.max_power_w.map(|m| m as f32),
            };
            (service, commands, device, rate, inputs, s.settings, expired)
        };
        if expired {
            // §4.3: on expiry the limit reverts to full power and is republished as /Ac/MaxPower.
            log::info!("dynamic generation: /Ac/PowerLimit not refreshed; reverting to full power");
            let max = inputs.max_power_w.map(f64::from);
            if let Some(service) = service.upgrade() {
                let _ = service.set_value(inverter::POWER_LIMIT, ItemValue::from(max));
            }
        }
        let enabled = settings.enabled && settings.gate_open(site.grid_import_kwh, site.grid_export_kwh);
        let mut config = settings.controller_config();
        config.enabled = enabled;
        config.external_limit_timeout = timeout;
        controller.set_config(config);
        let step = controller.step(now, &inputs);
        let external = inputs.external_limit_w.map(|x| f64::from(x.value));
        let decision = arbiter.decide(now, enabled, &step, external, inputs.max_power_w.map(f64::from));
        if let Some(percent) = decision.write {
            match crate::publish::write_register(&commands, device, rate, f64::from(percent)).await {
                Ok(()) => {
                    log::debug!("dynamic generation: rate {percent} % ({})", decision.status);
                    if arbiter.failed_writes() > 0 {
                        log::info!("dynamic generation: writing works again ({percent} %)");
                    }
                    arbiter.wrote(percent, now);
                }
                Err(e) => {
                    // Once per failure spell: an inverter asleep all night is not news every second.
                    if arbiter.failed_writes() == 0 {
                        log::warn!("dynamic generation: writing rate {percent} %: {e}");
                    }
                    controller.write_failed();
                    arbiter.write_failed();
                }
            }
        }
        let before = arbiter.status().to_string();
        if arbiter.status_changed(&decision.status) {
            // Tracking and the floor alternate with the load; everything else is news.
            let routine = [Status::Tracking.name(), Status::Limited.name()];
            if routine.contains(&before.as_str()) && routine.contains(&decision.status.as_str()) {
                log::debug!("dynamic generation: {}", decision.status);
            } else {
                log::info!("dynamic generation: {}", decision.status);
            }
        }
        let Some(service) = service.upgrade() else { return };
        publish_values(&service, &decision, arbiter.written_percent());
        // Held only for the flush: see Inverter::service.
        if let Err(e) = service.flush().await {
            log::warn!("{}: ItemsChanged not sent: {e}", service.name());
        }
        let name = service.name().to_string();
        drop(service);
        self.g100_step(&name, &commands, device).await;
    }

    /// The opt-in G100 set-up ([`g100`]): once per value and inverter service.
    async fn g100_step(&self, service: &str, commands: &async_channel::Sender<Command>, device: usize) {
        let (percent, due) = {
            let s = self.state();
            let key = (service.to_string(), s.g100_percent.to_bits());
            (s.g100_percent, s.g100_applied.as_ref() != Some(&key))
        };
        let Some(writes) = g100::writes(percent).filter(|_| due) else { return };
        for (address, value) in writes {
            if let Err(e) =
                crate::publish::send_request(commands, device, &g100::request(address, value)).await
            {
                log::warn!("dynamic generation: G100 set-up, holding {address} = {value}: {e}");
                return;
            }
            log::info!("dynamic generation: G100 set-up (opted in): holding {address} = {value}");
        }
        self.state().g100_applied = Some((service.to_string(), percent.to_bits()));
    }
}

impl State {
    /// Applies a setting of ours; false for other paths.
    fn apply_setting(&mut self, path: &str, value: &ItemValue) -> bool {
        if path == g100::SETTING {
            self.g100_percent = settings::number_of(value).unwrap_or(0.0);
            return true;
        }
        self.settings.apply(path, value)
    }
}

impl DynGen {
    /// The fork's rule, once a second, for comparison runs ([`DynGenOptions::fork_law`]).
    async fn fork_step(&self, last: &mut Option<Instant>, site: &SiteReadings) {
        let now = self.shared.clock.now();
        if last.is_some_and(|t| now.saturating_since(t) < Duration::from_secs(1)) {
            return;
        }
        let (commands, device, rate, pv, max) = {
            let s = self.state();
            let Some(inv) = &s.inverter else { return };
            (inv.commands.clone(), inv.device, inv.rate, s.pv, s.max_power_w)
        };
        let (Some(pv), Some(grid), Some(max)) = (pv, site.grid_power_w, max) else { return };
        if pv.value < 50.0 {
            return;
        }
        *last = Some(now);
        let battery = site.battery_power_w.map_or(0.0, |b| b.value);
        let soc = site.soc_percent.map_or(0.0, |s| s.value);
        let percent = fork_percent(grid.value, pv.value, battery, soc, max as f32);
        if let Err(e) = crate::publish::write_register(&commands, device, rate, f64::from(percent)).await {
            log::warn!("dynamic generation (fork rule): writing rate {percent} %: {e}");
        }
    }
}

fn publish_values(service: &Service, decision: &Decision, percent: Option<u16>) {
    let text = ItemValue::Text(decision.status.clone());
    let demand = ItemValue::from(decision.demand_w.map(|w| w.round()));
    for (path, value) in [
        (inverter::STATUS, text.clone()),
        (inverter::FORK_STATUS, text),
        (inverter::POWER, demand.clone()),
        (inverter::FORK_POWER, demand),
        (inverter::LIMIT, ItemValue::from(decision.limit_w.map(|w| w.round()))),
        (inverter::FORK_POWER_MAX, ItemValue::from(percent.map(i32::from))),
    ] {
        let _ = service.set_value(path, value);
    }
}

/// A number from a decoded register value.
fn value_number(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) if f.is_finite() => Some(*f),
        Value::Int(i) => Some(*i as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fork_rule_as_its_readme_says() {
        assert_eq!(fork_percent(0.0, 1000.0, 2000.0, 80.0, 4200.0), 100, "battery below 90 %: free");
        assert_eq!(fork_percent(0.0, 1000.0, 500.0, 95.0, 4200.0), 24, "grid + PV, rounded up");
        assert_eq!(fork_percent(0.0, 1000.0, -500.0, 95.0, 4200.0), 36, "plus the discharge");
        assert_eq!(fork_percent(-3000.0, 1000.0, 0.0, 95.0, 4200.0), 2, "floor");
        assert_eq!(fork_percent(f32::NAN, 1000.0, 0.0, 95.0, 4200.0), 100);
    }
}
