//! Watching the other services on the bus: grid meters, batteries, the
//! inverter/charger and `com.victronenergy.system`.
//!
//! Signals only, never a GetValue poll loop: `NameOwnerChanged` for services
//! coming and going, and for each watched service a match rule on its unique
//! name for the BusItem signals, `ItemsChanged` (on `/`) and
//! `PropertiesChanged` (on leaves), so the daemon is not woken by the rest of
//! a busy GX bus. When a service of interest appears (or is found by the one
//! `ListNames` at start) it is subscribed to first and then read once with
//! `GetItems` on `/`; after that its signals keep [`Site`] current. When it
//! leaves, its subscription is dropped and everything it said forgotten.
//!
//! Ages: D-Bus does not repeat a value that did not change, so a fast value
//! (grid and battery power) is stamped with the last time its service
//! signalled anything (a live meter always changes something), and a slow
//! value (state of charge, charger state, energy counters) is stamped "now"
//! while its service is on the bus, as core's control law expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_executor::Task;
use dmc_core::control::{ChargerState, Sample, Stamped};
use dmc_core::time::Instant;
use futures_lite::StreamExt;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, MessageStream};

use super::settings::number_of;
use crate::dbus::{ItemValue, Spawner, BUSITEM};
use crate::engine::Clock;

/// The kinds of service the controller listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `com.victronenergy.grid.*`
    Grid,
    /// `com.victronenergy.battery.*`
    Battery,
    /// `com.victronenergy.vebus.*`
    Vebus,
    /// `com.victronenergy.system`
    System,
}

impl Kind {
    /// The kind of a bus name, if it is one we watch.
    pub fn of(name: &str) -> Option<Kind> {
        if name == "com.victronenergy.system" {
            return Some(Kind::System);
        }
        let rest = name.strip_prefix("com.victronenergy.")?;
        let (class, ident) = rest.split_once('.')?;
        if ident.is_empty() {
            return None;
        }
        match class {
            "grid" => Some(Kind::Grid),
            "battery" => Some(Kind::Battery),
            "vebus" => Some(Kind::Vebus),
            _ => None,
        }
    }

    /// The paths kept for this kind.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Kind::Grid => &[GRID_POWER, GRID_IMPORT, GRID_EXPORT],
            Kind::Battery => &[BATTERY_POWER, SOC, BATTERY_VOLTAGE],
            Kind::Vebus => &[VEBUS_STATE, VEBUS_AC_IN, SOC, BATTERY_POWER],
            Kind::System => &[SYSTEM_BATTERY_POWER, SYSTEM_SOC, SYSTEM_BATTERY_VOLTAGE],
        }
    }
}

const GRID_POWER: &str = "/Ac/Power";
const GRID_IMPORT: &str = "/Ac/Energy/Forward";
const GRID_EXPORT: &str = "/Ac/Energy/Reverse";
const BATTERY_POWER: &str = "/Dc/0/Power";
const BATTERY_VOLTAGE: &str = "/Dc/0/Voltage";
const SOC: &str = "/Soc";
const VEBUS_STATE: &str = "/State";
const VEBUS_AC_IN: &str = "/Ac/ActiveIn/P";
const SYSTEM_BATTERY_POWER: &str = "/Dc/Battery/Power";
const SYSTEM_SOC: &str = "/Dc/Battery/Soc";
const SYSTEM_BATTERY_VOLTAGE: &str = "/Dc/Battery/Voltage";

/// What one watched service last said.
#[derive(Clone, Debug)]
struct Watched {
    kind: Kind,
    /// Watched path → value (`None` = invalid).
    values: HashMap<&'static str, Option<f64>>,
    /// Last time the service signalled anything (or was read).
    heard: Instant,
}

/// The site as the watched services describe it (sans-IO: fed by [`Site::update`]).
#[derive(Debug, Default)]
pub struct Site {
    services: BTreeMap<String, Watched>,
}

/// The readings the control law takes from other services.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SiteReadings {
    /// Grid power, W, import positive.
    pub grid_power_w: Option<Sample>,
    /// Battery power, W, charging positive.
    pub battery_power_w: Option<Sample>,
    /// State of charge, %.
    pub soc_percent: Option<Sample>,
    /// Battery voltage, V.
    pub battery_voltage_v: Option<Sample>,
    /// Inverter/charger state.
    pub charger_state: Option<Stamped<ChargerState>>,
    /// Inverter/charger AC-in power, W.
    pub ac_in_power_w: Option<Sample>,
    /// Grid meter lifetime import, kWh.
    pub grid_import_kwh: Option<f64>,
    /// Grid meter lifetime export, kWh.
    pub grid_export_kwh: Option<f64>,
}

impl Site {
    /// A service appeared (or was found at start).
    pub fn appeared(&mut self, name: &str, now: Instant) -> bool {
        let Some(kind) = Kind::of(name) else { return false };
        self.services.entry(name.to_string()).or_insert(Watched { kind, values: HashMap::new(), heard: now });
        true
    }

    /// A service left the bus: forget everything it said.
    pub fn vanished(&mut self, name: &str) {
        self.services.remove(name);
    }

    /// Whether `name` is watched.
    pub fn watches(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// New values from `name` (GetItems, ItemsChanged or PropertiesChanged).
    /// Returns true when its grid power was among them.
    pub fn update<'a>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = (&'a str, ItemValue)>,
        now: Instant,
    ) -> bool {
        let Some(w) = self.services.get_mut(name) else { return false };
        w.heard = now;
        let mut grid = false;
        for (path, value) in values {
            let Some(known) = w.kind.paths().iter().find(|p| **p == path) else { continue };
            w.values.insert(known, number_of(&value));
            grid |= w.kind == Kind::Grid && *known == GRID_POWER;
        }
        grid
    }

    /// The first valid value of `path` among services of `kind` (name order).
    fn first(&self, kind: Kind, path: &str) -> Option<(f64, Instant)> {
        self.services
            .values()
            .filter(|w| w.kind == kind)
            .find_map(|w| w.values.get(path).copied().flatten().map(|v| (v, w.heard)))
    }

    /// The readings at `now` (see the module documentation for the stamps).
    pub fn readings(&self, now: Instant) -> SiteReadings {
        let fast = |x: Option<(f64, Instant)>| x.map(|(v, at)| Sample::new(v as f32, at));
        let slow = |x: Option<(f64, Instant)>| x.map(|(v, _)| Sample::new(v as f32, now));
        let or = |a: Option<(f64, Instant)>, b| a.or(b);
        SiteReadings {
            grid_power_w: fast(self.first(Kind::Grid, GRID_POWER)),
            battery_power_w: fast(or(
                self.first(Kind::Battery, BATTERY_POWER),
                or(self.first(Kind::System, SYSTEM_BATTERY_POWER), self.first(Kind::Vebus, BATTERY_POWER)),
            )),
            soc_percent: slow(or(
                self.first(Kind::Battery, SOC),
                or(self.first(Kind::System, SYSTEM_SOC), self.first(Kind::Vebus, SOC)),
            )),
            battery_voltage_v: slow(or(
                self.first(Kind::Battery, BATTERY_VOLTAGE),
                self.first(Kind::System, SYSTEM_BATTERY_VOLTAGE),
            )),
            charger_state: self.first(Kind::Vebus, VEBUS_STATE).and_then(|(v, _)| {
                (0.0..=f64::from(u16::MAX))
                    .contains(&v)
                    .then(|| Stamped::new(ChargerState::from_code(v as u16), now))
            }),
            ac_in_power_w: fast(self.first(Kind::Vebus, VEBUS_AC_IN)),
            grid_import_kwh: self.first(Kind::Grid, GRID_IMPORT).map(|(v, _)| v),
            grid_export_kwh: self.first(Kind::Grid, GRID_EXPORT).map(|(v, _)| v),
        }
    }
}

/// The watcher: a [`Site`] kept current by tasks on its own connection.
#[derive(Clone)]
pub struct Watcher {
    site: Arc<Mutex<Site>>,
    clock: Clock,
    conn: Connection,
    spawner: Spawner,
    grid_update: async_channel::Sender<()>,
    /// One signal follower per watched service; dropping it cancels the
    /// task and its stream, which removes the match rule.
    followers: Arc<Mutex<Followers>>,
    /// The `NameOwnerChanged` follower (cancelled by [`Watcher::stop`]).
    owners: Arc<Mutex<Option<Task<()>>>>,
    /// Set by [`Watcher::stop`]: a watch still starting then subscribes nothing.
    stopped: Arc<AtomicBool>,
}

/// Bus name → (its owner's unique name, the task following its signals).
type Followers = HashMap<String, (String, Task<()>)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Items = HashMap<String, HashMap<String, OwnedValue>>;

/// The unique name owning `name` (an error when nobody does).
async fn name_owner(conn: &Connection, name: &str) -> zbus::Result<String> {
    conn.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "GetNameOwner",
        &(name,),
    )
    .await?
    .body()
    .deserialize()
}

/// The `Value`s of an `a{sa{sv}}` (GetItems, ItemsChanged); undecodable entries are skipped.
fn values_of(items: &Items) -> Vec<(&str, ItemValue)> {
    items
        .iter()
        .filter_map(|(p, e)| e.get("Value").and_then(|v| ItemValue::from_dbus(v)).map(|v| (p.as_str(), v)))
        .collect()
}

impl Watcher {
    /// Follows `NameOwnerChanged` on `conn`, finds the services already
    /// there, and watches each on `spawner`. `grid_update` is poked on every
    /// new grid power.
    pub async fn start(
        conn: Connection,
        spawner: Spawner,
        clock: Clock,
        grid_update: async_channel::Sender<()>,
    ) -> Result<Watcher, zbus::Error> {
        // Subscribe first, so a service arriving during ListNames is not missed.
        let owner_changes = MessageStream::for_match_rule(
            MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender("org.freedesktop.DBus")?
                .interface("org.freedesktop.DBus")?
                .member("NameOwnerChanged")?
                .build(),
            &conn,
            Some(64),
        )
        .await?;
        let watcher = Watcher {
            site: Arc::default(),
            clock,
            conn: conn.clone(),
            spawner: spawner.clone(),
            grid_update,
            followers: Arc::default(),
            owners: Arc::default(),
            stopped: Arc::default(),
        };
        let owners = spawner.spawn(watcher.clone().follow_owners(owner_changes));
        *lock(&watcher.owners) = Some(owners);
        let names: Vec<String> = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "ListNames",
                &(),
            )
            .await?
            .body()
            .deserialize()?;
        for name in names.into_iter().filter(|n| Kind::of(n).is_some()) {
            let owner = name_owner(&conn, &name).await;
            match owner {
                Ok(unique) => spawner.spawn(watcher.clone().watch_service(name, unique)).detach(),
                Err(e) => log::debug!("dynamic generation: {name} left before it was read: {e}"),
            }
        }
        Ok(watcher)
    }

    /// Stops watching: every follower task is cancelled (their streams and
    /// match rules go with them, and with the last clone the connection), and
    /// everything heard is forgotten.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let owners = lock(&self.owners).take();
        drop(owners);
        let followers = std::mem::take(&mut *lock(&self.followers));
        drop(followers);
        *lock(&self.site) = Site::default();
    }

    /// The current readings.
    pub fn readings(&self) -> SiteReadings {
        lock(&self.site).readings(self.clock.now())
    }

    /// Subscribes to the BusItem signals of `unique` (the owner of `name`),
    /// then reads the service once with `GetItems` on `/`.
    async fn watch_service(self, name: String, unique: String) {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(unique.as_str())
            .and_then(|b| b.interface(BUSITEM))
            .map(|b| b.build());
        let stream = match rule {
            Ok(rule) => MessageStream::for_match_rule(rule, &self.conn, Some(64)).await,
            Err(e) => Err(e),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("dynamic generation: cannot follow {name}: {e}");
                return;
            }
        };
        if self.stopped.load(Ordering::Relaxed) || !lock(&self.site).appeared(&name, self.clock.now()) {
            return;
        }
        let follower = self.spawner.spawn(self.clone().follow_service(name.clone(), stream));
        lock(&self.followers).insert(name.clone(), (unique.clone(), follower));
        let reply = self.conn.call_method(Some(unique.as_str()), "/", Some(BUSITEM), "GetItems", &()).await;
        match reply.and_then(|r| r.body().deserialize::<Items>()) {
            Ok(items) => {
                lock(&self.site).update(&name, values_of(&items), self.clock.now());
                log::info!("dynamic generation: watching {name}");
            }
            Err(e) => log::warn!("dynamic generation: GetItems of {name} failed: {e}"),
        }
        // It may have left while being read (its NameOwnerChanged handled before
        // `appeared`): then nothing it said may stay. A new owner has its own watch.
        if name_owner(&self.conn, &name).await.is_err() {
            let mut followers = lock(&self.followers);
            if followers.get(&name).is_some_and(|(u, _)| *u == unique) {
                followers.remove(&name);
                lock(&self.site).vanished(&name);
            }
        }
    }

    async fn follow_owners(self, mut changes: MessageStream) {
        while let Some(msg) = changes.next().await {
            let Ok(msg) = msg else { continue };
            let Ok((name, old, new)) = msg.body().deserialize::<(String, String, String)>() else { continue };
            if Kind::of(&name).is_none() {
                continue;
            }
            if !old.is_empty() {
                lock(&self.site).vanished(&name);
                lock(&self.followers).remove(&name);
                log::info!("dynamic generation: {name} left");
            }
            if !new.is_empty() {
                self.spawner.spawn(self.clone().watch_service(name, new)).detach();
            }
        }
    }

    /// Applies one service's `ItemsChanged` (on `/`) and `PropertiesChanged` (on leaves).
    async fn follow_service(self, name: String, mut signals: MessageStream) {
        while let Some(msg) = signals.next().await {
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            let member = header.member().map(|m| m.as_str().to_owned()).unwrap_or_default();
            let path = header.path().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let now = self.clock.now();
            let grid = match member.as_str() {
                "ItemsChanged" if path == "/" => {
                    let Ok(items) = msg.body().deserialize::<Items>() else { continue };
                    lock(&self.site).update(&name, values_of(&items), now)
                }
                "PropertiesChanged" => {
                    let Ok(props) = msg.body().deserialize::<HashMap<String, OwnedValue>>() else { continue };
                    let Some(value) = props.get("Value").and_then(|v| ItemValue::from_dbus(v)) else {
                        continue;
                    };
                    lock(&self.site).update(&name, [(path.as_str(), value)], now)
                }
                _ => continue,
            };
            if grid {
                let _ = self.grid_update.try_send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> Instant {
        Instant::from_micros(s * 1_000_000)
    }

    #[test]
    fn test_kinds_of_names() {
        assert_eq!(Kind::of("com.victronenergy.grid.eastron_1"), Some(Kind::Grid));
        assert_eq!(Kind::of("com.victronenergy.battery.socketcan_can0"), Some(Kind::Battery));
        assert_eq!(Kind::of("com.victronenergy.vebus.ttyS4"), Some(Kind::Vebus));
        assert_eq!(Kind::of("com.victronenergy.system"), Some(Kind::System));
        assert_eq!(Kind::of("com.victronenergy.grid"), None);
        assert_eq!(Kind::of("com.victronenergy.grid."), None);
        assert_eq!(Kind::of("com.victronenergy.pvinverter.x"), None);
        assert_eq!(Kind::of("com.victronenergy.settings"), None);
    }

    #[test]
    fn test_readings_stamps_and_fallbacks() {
        let mut site = Site::default();
        assert!(site.appeared("com.victronenergy.grid.a", t(0)));
        assert!(!site.appeared("org.example", t(0)));
        assert!(site.update("com.victronenergy.grid.a", [("/Ac/Power", ItemValue::Double(-250.0))], t(1)));
        assert!(!site.update(
            "com.victronenergy.grid.a",
            [("/Ac/L1/Voltage", ItemValue::Double(230.0))],
            t(3)
        ));
        site.appeared("com.victronenergy.system", t(0));
        site.update("com.victronenergy.system", [("/Dc/Battery/Soc", ItemValue::Int(80))], t(2));
        site.appeared("com.victronenergy.battery.b", t(0));
        site.update(
            "com.victronenergy.battery.b",
            [("/Dc/0/Power", ItemValue::Double(1200.0)), ("/Soc", ItemValue::Invalid)],
            t(2),
        );
        let r = site.readings(t(10));
        // Any signal from the meter refreshes its power's age.
        assert_eq!(r.grid_power_w, Some(Sample::new(-250.0, t(3))));
        assert_eq!(r.battery_power_w, Some(Sample::new(1200.0, t(2))));
        // Invalid battery SoC: the system's is used, stamped now (slow value).
        assert_eq!(r.soc_percent, Some(Sample::new(80.0, t(10))));
        assert_eq!(r.charger_state, None);
        site.vanished("com.victronenergy.grid.a");
        assert_eq!(site.readings(t(10)).grid_power_w, None);
    }

    #[test]
    fn test_charger_state_decoding() {
        let mut site = Site::default();
        site.appeared("com.victronenergy.vebus.x", t(0));
        site.update("com.victronenergy.vebus.x", [("/State", ItemValue::Int(3))], t(0));
        assert_eq!(site.readings(t(1)).charger_state.map(|s| s.value), Some(ChargerState::Bulk));
        site.update("com.victronenergy.vebus.x", [("/State", ItemValue::Int(-4))], t(0));
        assert_eq!(site.readings(t(1)).charger_state, None, "a negative state is not a code");
    }
}
