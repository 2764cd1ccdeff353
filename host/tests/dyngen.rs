//! Dynamic generation end to end: a private dbus-daemon, the settings
//! stand-in, the simulated Growatt and SDM230 on a pty, fake battery and
//! vebus services published by the test, and the daemon closing the loop over
//! D-Bus and Modbus.
//!
//! No timed assertions: every wait is for an event with a generous bound.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Background, PrivateBus};
use dbus_modbus_client::daemon::{self, DaemonOptions};
use dbus_modbus_client::dbus::{Item, ItemValue, Service, ServiceBuilder};
use dbus_modbus_client::dyngen::DynGenOptions;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::model::plant::{PlantConfig, PlantState};
use dmc_hil::serve::{SimConfig, SimHandle};
use zbus::zvariant::OwnedValue;

const BATTERY: &str = "com.victronenergy.battery.sim_0";
const VEBUS: &str = "com.victronenergy.vebus.sim_0";

/// Writes a settings stand-in file with `lines` (path, type, value, default).
fn seed_settings(file: &Path, lines: &[(&str, &str, &str)]) {
    let mut text = String::from("# dbus-modbus-client settings v1\n");
    for (path, kind, value) in lines {
        text.push_str(&format!("{path}\t{kind}\t{value}\t{value}\n"));
    }
    std::fs::write(file, text).expect("settings file");
}

/// One zbus connection for the test's own calls.
struct Client {
    conn: zbus::Connection,
}

impl Client {
    fn new(bg: &Background, bus: &PrivateBus) -> Client {
        let address = bus.address().to_string();
        let conn = bg.block_on(async move {
            zbus::connection::Builder::address(address.as_str())
                .expect("address")
                .build()
                .await
                .expect("connect")
        });
        Client { conn }
    }

    fn names(&self, bg: &Background) -> Vec<String> {
        let conn = self.conn.clone();
        bg.block_on(async move {
            let reply = conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "ListNames",
                    &(),
                )
                .await
                .expect("ListNames");
            reply.body().deserialize::<Vec<String>>().expect("as")
        })
    }

    fn get(&self, bg: &Background, service: &str, path: &str) -> Option<ItemValue> {
        let (conn, service, path) = (self.conn.clone(), service.to_string(), path.to_string());
        bg.block_on(async move {
            let reply = conn
                .call_method(
                    Some(service.as_str()),
                    path.as_str(),
                    Some("com.victronenergy.BusItem"),
                    "GetValue",
                    &(),
                )
                .await
                .ok()?;
            let v: OwnedValue = reply.body().deserialize().ok()?;
            ItemValue::from_dbus(&v)
        })
    }

    fn set(&self, bg: &Background, service: &str, path: &str, value: ItemValue) -> i32 {
        let (conn, service, path) = (self.conn.clone(), service.to_string(), path.to_string());
        bg.block_on(async move {
            let reply = conn
                .call_method(
                    Some(service.as_str()),
                    path.as_str(),
                    Some("com.victronenergy.BusItem"),
                    "SetValue",
                    &value.to_dbus(),
                )
                .await
                .expect("SetValue");
            reply.body().deserialize::<i32>().expect("i")
        })
    }

    fn text(&self, bg: &Background, service: &str, path: &str) -> String {
        match self.get(bg, service, path) {
            Some(ItemValue::Text(t)) => t,
            other => format!("{other:?}"),
        }
    }

    /// The bus daemon's (active connections, match rules) from its Debug.Stats interface.
    fn bus_stats(&self, bg: &Background) -> (u32, u32) {
        let conn = self.conn.clone();
        bg.block_on(async move {
            let reply = conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus.Debug.Stats"),
                    "GetStats",
                    &(),
                )
                .await
                .expect("GetStats");
            let stats: HashMap<String, OwnedValue> = reply.body().deserialize().expect("a{sv}");
            let count = |key: &str| stats.get(key).and_then(|v| u32::try_from(v).ok()).expect(key);
            (count("ActiveConnections"), count("MatchRules"))
        })
    }

    fn number(&self, bg: &Background, service: &str, path: &str) -> Option<f64> {
        match self.get(bg, service, path)? {
            ItemValue::Double(d) => Some(d),
            ItemValue::Int(i) => Some(f64::from(i)),
            _ => None,
        }
    }
}

/// Waits for `cond`, checking every 100 ms, at most `within`; false on time-out.
fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// The fake battery and inverter/charger, as a BMS and a Multi publish them.
struct FakeSite {
    battery: Arc<Service>,
    vebus: Arc<Service>,
}

impl FakeSite {
    fn start(bg: &Background, bus: &PrivateBus, soc: f64) -> FakeSite {
        let build = |name: &str, items: Vec<(&str, ItemValue)>| {
            let mut b = ServiceBuilder::new(name);
            for (path, value) in items {
                b.add(path, Item::new(value)).expect("path");
            }
            let (choice, spawner) = (bus.bus(), bg.spawner.clone());
            Arc::new(bg.block_on(async move { b.register(&choice, &spawner).await.expect("register") }))
        };
        let battery = build(
            BATTERY,
            vec![
                ("/Dc/0/Power", ItemValue::Double(0.0)),
                ("/Dc/0/Voltage", ItemValue::Double(52.0)),
                ("/Soc", ItemValue::Double(soc)),
                ("/Connected", ItemValue::Int(1)),
            ],
        );
        let vebus = build(
            VEBUS,
            vec![
                ("/State", ItemValue::Int(3)),
                ("/Ac/ActiveIn/P", ItemValue::Double(0.0)),
                ("/Connected", ItemValue::Int(1)),
            ],
        );
        FakeSite { battery, vebus }
    }

    /// Publishes the plant's battery and grid (one ItemsChanged per service).
    fn update(&self, bg: &Background, p: &PlantState) {
        let _ = self.battery.set_value("/Dc/0/Power", p.battery_w);
        let _ = self.battery.set_value("/Soc", (p.soc * 10.0).round() / 10.0);
        // Bulk while charging below 100 %, inverting while discharging, float when full.
        let state = if p.battery_w < -50.0 {
            9
        } else if p.soc >= 99.9 {
            5
        } else {
            3
        };
        let _ = self.vebus.set_value("/State", state);
        let _ = self.vebus.set_value("/Ac/ActiveIn/P", p.grid_w);
        let (b, v) = (self.battery.clone(), self.vebus.clone());
        bg.block_on(async move {
            let _ = b.flush().await;
            let _ = v.flush().await;
        });
    }
}

/// The daemon on `bus` against `sim`, with dynamic generation tunables.
fn start_daemon(
    bg: &Background,
    bus: &PrivateBus,
    sim: &SimHandle,
    units: &[u8],
    dyngen: DynGenOptions,
) -> (Arc<AtomicBool>, async_executor::Task<i32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let devices = units
        .iter()
        .map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", sim.path().display())).expect("spec"))
        .collect();
    let options =
        DaemonOptions { bus: bus.bus(), devices, dyngen, no_watchdog: true, ..DaemonOptions::default() };
    let task = bg.spawner.spawn(daemon::run_async(options, bg.spawner.clone(), stop.clone()));
    (stop, task)
}

fn find(client: &Client, bg: &Background, prefix: &str) -> Option<String> {
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = client.names(bg).into_iter().find(|n| n.starts_with(prefix));
        found.is_some()
    });
    found
}

/// Waits (generously) for `/DynamicGeneration/Status` to read `want`.
fn expect_status(client: &Client, bg: &Background, pv: &str, want: &str) {
    let status = || client.text(bg, pv, "/DynamicGeneration/Status");
    assert!(
        wait_until(Duration::from_secs(60), || status() == want),
        "status {:?}, wanted {want:?}",
        status()
    );
}

fn near(value: Result<f64, String>, expected: f64) -> bool {
    value.is_ok_and(|v| (v - expected).abs() < 0.05)
}

fn rate(sim: &SimHandle) -> f64 {
    sim.value("growatt", "active_rate").unwrap_or(f64::NAN)
}

#[test]
fn power_limit_watchdog_lower_limit_wins_and_settings_follow() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("settings.txt");
    // An installation coming from the fork: its switch seeds ours.
    seed_settings(&file, &[("/Settings/DynamicGeneration/derateGeneration", "i", "1")]);
    let standin = common::start_standin(&bus, &bg, file);
    // Above the SoC threshold: the controller tracks the house load.
    let site = FakeSite::start(&bg, &bus, 95.0);
    let timeout = Duration::from_secs(4);
    let (stop, daemon) = start_daemon(
        &bg,
        &bus,
        &sim,
        &[1, 2],
        DynGenOptions { power_limit_timeout: timeout, ..DynGenOptions::default() },
    );
    let client = Client::new(&bg, &bus);
    let pv = find(&client, &bg, "com.victronenergy.pvinverter.growatt_").expect("pv service");
    let status = |c: &Client| c.text(&bg, &pv, "/DynamicGeneration/Status");

    // The fork's switch became ours; the controller tracks (SoC 95 %, grid meter and inverter present).
    expect_status(&client, &bg, &pv, "Tracking");
    assert_eq!(
        client.get(&bg, "com.victronenergy.settings", "/Settings/DynamicGeneration/Enabled"),
        Some(ItemValue::Int(1))
    );
    assert!(
        wait_until(Duration::from_secs(30), || rate(&sim) < 90.0),
        "the controller limits: {}",
        rate(&sim)
    );
    assert_eq!(client.number(&bg, &pv, "/Ac/PowerLimit"), Some(4200.0), "initially the rated power");
    assert_eq!(client.text(&bg, &pv, "/dynamicGenerationStatus"), status(&client), "the fork's alias");
    assert_eq!(client.set(&bg, &pv, "/dynamicGenerationStatus", "x".into()), 1, "aliases are read-only");
    assert!(client.number(&bg, &pv, "/DynamicGeneration/Power").is_some());

    // An external limit below the controller's wins and says so.
    assert_eq!(client.set(&bg, &pv, "/Ac/PowerLimit", ItemValue::Double(168.0)), 0);
    expect_status(&client, &bg, &pv, "External limit");
    assert!(
        wait_until(Duration::from_secs(30), || rate(&sim) == 4.0),
        "168 W of 4200 W = 4 %: {}",
        rate(&sim)
    );
    assert_eq!(client.number(&bg, &pv, "/DynamicGeneration/Limit"), Some(168.0));

    // Re-writing the same value keeps it alive well past the watchdog time.
    for _ in 0..6 {
        std::thread::sleep(timeout / 3);
        assert_eq!(client.set(&bg, &pv, "/Ac/PowerLimit", ItemValue::Double(168.0)), 0);
        assert_eq!(status(&client), "External limit", "refreshed limit expired");
    }
    // Not refreshed: reverts to full power, /Ac/PowerLimit republished as /Ac/MaxPower.
    assert!(
        wait_until(Duration::from_secs(60), || client.number(&bg, &pv, "/Ac/PowerLimit") == Some(4200.0)),
        "watchdog did not revert"
    );
    expect_status(&client, &bg, &pv, "Tracking");

    // A higher external limit does not win over the controller.
    assert_eq!(client.set(&bg, &pv, "/Ac/PowerLimit", ItemValue::Double(4000.0)), 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status(&client), "Tracking");
    assert_eq!(client.set(&bg, &pv, "/Ac/PowerLimit", ItemValue::Text("x".into())), 1, "not a number");

    // The inverter's own export limiter is never touched unless the user opts in.
    assert_eq!(sim.value("growatt", "export_limit_enable").ok(), Some(0.0));
    let g100 = "/Settings/DynamicGeneration/G100ExportLimit";
    assert_eq!(client.set(&bg, "com.victronenergy.settings", g100, ItemValue::Double(87.6)), 0);
    assert!(
        wait_until(Duration::from_secs(30), || near(sim.value("growatt", "export_limit_failed_rate"), 87.6)),
        "G100 set-up not written"
    );
    assert_eq!(sim.value("growatt", "export_limit_enable").ok(), Some(1.0));
    assert!(near(sim.value("growatt", "export_limit_rate"), 87.6));

    // Disabled in the settings (PropertiesChanged): the external limit alone, then released.
    assert_eq!(
        client.set(
            &bg,
            "com.victronenergy.settings",
            "/Settings/DynamicGeneration/Enabled",
            ItemValue::Int(0)
        ),
        0
    );
    assert_eq!(client.set(&bg, &pv, "/Ac/PowerLimit", ItemValue::Double(2100.0)), 0);
    assert!(wait_until(Duration::from_secs(30), || rate(&sim) == 50.0), "external alone: {}", rate(&sim));
    assert_eq!(status(&client), "External limit");
    expect_status(&client, &bg, &pv, "Disabled");
    assert!(wait_until(Duration::from_secs(30), || rate(&sim) == 100.0), "released: {}", rate(&sim));

    drop(site);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(async_io::block_on(daemon), 0);
    drop(standin);
}

/// A grid meter published by the test (another driver's service, as on a GX with a Victron meter).
fn fake_grid(bg: &Background, bus: &PrivateBus, power: f64) -> Arc<Service> {
    let mut b = ServiceBuilder::new("com.victronenergy.grid.sim_meter");
    b.add("/Ac/Power", Item::new(power)).expect("path");
    b.add("/Connected", Item::new(1)).expect("path");
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    Arc::new(bg.block_on(async move { b.register(&choice, &spawner).await.expect("register") }))
}

/// Sets the fake meter's power and sends ItemsChanged.
fn publish(bg: &Background, grid: &Arc<Service>, power: ItemValue) {
    let _ = grid.set_value("/Ac/Power", power);
    let g = grid.clone();
    bg.block_on(async move {
        let _ = g.flush().await;
    });
}

/// Feeds moving readings until the controller tracks.
fn feed_until_tracking(client: &Client, bg: &Background, pv: &str, grid: &Arc<Service>, reading: &mut f64) {
    let status = || client.text(bg, pv, "/DynamicGeneration/Status");
    let tracking = wait_until(Duration::from_secs(60), || {
        *reading += 1.0;
        publish(bg, grid, ItemValue::Double(*reading));
        status() == "Tracking"
    });
    assert!(tracking, "status {:?}", status());
}

#[test]
fn watcher_follows_services_coming_going_and_invalid_values() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    // Only the Growatt on the Modbus bus: the grid meter is someone else's service.
    let sim =
        SimHandle::spawn_pty(SimConfig::with_units(&[(1, dmc_hil::DeviceKind::GrowattMin)])).expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("settings.txt");
    seed_settings(&file, &[("/Settings/DynamicGeneration/Enabled", "i", "1")]);
    let standin = common::start_standin(&bus, &bg, file);
    let site = FakeSite::start(&bg, &bus, 95.0);
    let (stop, daemon) = start_daemon(&bg, &bus, &sim, &[1], DynGenOptions::default());
    let client = Client::new(&bg, &bus);
    let pv = find(&client, &bg, "com.victronenergy.pvinverter.growatt_").expect("pv service");
    // No grid meter anywhere: after the start-up grace, the fail-safe (export target 0 W → floor 2 %).
    expect_status(&client, &bg, &pv, "Fail-safe: grid meter");
    assert!(wait_until(Duration::from_secs(30), || rate(&sim) == 2.0), "safe limit: {}", rate(&sim));

    // A meter appears (read once with GetItems, then followed by ItemsChanged): tracking.
    let grid = fake_grid(&bg, &bus, 400.0);
    // A live meter's reading moves; an unchanged value would not be signalled again.
    let mut reading = 400.0;
    feed_until_tracking(&client, &bg, &pv, &grid, &mut reading);
    // An invalid value (empty array) is "no reading": fail-safe again once it is the last word.
    publish(&bg, &grid, ItemValue::Invalid);
    expect_status(&client, &bg, &pv, "Fail-safe: grid meter");
    // Valid again, then the meter leaves the bus (NameOwnerChanged): fail-safe.
    feed_until_tracking(&client, &bg, &pv, &grid, &mut reading);
    drop(grid);
    expect_status(&client, &bg, &pv, "Fail-safe: grid meter");

    drop(site);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(async_io::block_on(daemon), 0);
    drop(standin);
}

#[test]
fn the_bus_is_watched_only_while_dynamic_generation_is_on() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let sim =
        SimHandle::spawn_pty(SimConfig::with_units(&[(1, dmc_hil::DeviceKind::GrowattMin)])).expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("settings.txt");
    seed_settings(&file, &[("/Settings/DynamicGeneration/Enabled", "i", "0")]);
    let standin = common::start_standin(&bus, &bg, file);
    let site = FakeSite::start(&bg, &bus, 95.0);
    let grid = fake_grid(&bg, &bus, 400.0);
    let (stop, daemon) = start_daemon(&bg, &bus, &sim, &[1], DynGenOptions::default());
    let client = Client::new(&bg, &bus);
    let pv = find(&client, &bg, "com.victronenergy.pvinverter.growatt_").expect("pv service");
    let enable = |on: i32| {
        let path = "/Settings/DynamicGeneration/Enabled";
        assert_eq!(client.set(&bg, "com.victronenergy.settings", path, ItemValue::Int(on)), 0);
    };
    // Off: no connection and no match rule of the watcher. The counts are
    // taken once they hold still (the services above finish starting).
    expect_status(&client, &bg, &pv, "Disabled");
    let mut off = client.bus_stats(&bg);
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::thread::sleep(Duration::from_millis(500));
            let now = client.bus_stats(&bg);
            std::mem::replace(&mut off, now) == now
        }),
        "bus counts never settled"
    );

    let mut reading = 400.0;
    for round in 0..2 {
        // On: the watcher connects, subscribes and reads the meter; the controller tracks.
        enable(1);
        feed_until_tracking(&client, &bg, &pv, &grid, &mut reading);
        let on = client.bus_stats(&bg);
        assert_eq!(on.0, off.0 + 1, "round {round}: one more connection while on");
        assert!(
            on.1 >= off.1 + 2,
            "round {round}: NameOwnerChanged and per-service rules: {on:?} vs {off:?}"
        );
        // Off again: its connection closes and its match rules go with it.
        enable(0);
        expect_status(&client, &bg, &pv, "Disabled");
        assert!(
            wait_until(Duration::from_secs(30), || client.bus_stats(&bg) == off),
            "round {round}: {:?} after switching off, {off:?} before",
            client.bus_stats(&bg)
        );
    }

    drop(grid);
    drop(site);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(async_io::block_on(daemon), 0);
    drop(standin);
}

/// Figures of one closed-loop day.
#[derive(Debug)]
struct DayFigures {
    exported_wh: f64,
    excess_export_wh: f64,
    curtailed_wh: f64,
    curtailed_charging_wh: f64,
    imported_wh: f64,
    writes: u64,
    final_soc: f64,
}

impl DayFigures {
    fn line(&self) -> String {
        format!(
            "exported {:.1} Wh (above the limit {:.1} Wh), curtailed {:.1} Wh (while charging below the \
             threshold {:.2} Wh), imported {:.1} Wh, inverter writes {}, SoC at the end {:.1} %",
            self.exported_wh,
            self.excess_export_wh,
            self.curtailed_wh,
            self.curtailed_charging_wh,
            self.imported_wh,
            self.writes,
            self.final_soc
        )
    }
}

/// Runs the scripted day with the daemon in the loop and returns its figures.
fn run_day(export_limit_w: f64, fork_law: bool) -> Option<DayFigures> {
    let bus = PrivateBus::start()?;
    let bg = Background::start();
    let plant = PlantConfig { export_allowance_w: export_limit_w, ..PlantConfig::default() };
    let sim =
        SimHandle::spawn_pty(SimConfig { plant: Some(plant), ..SimConfig::default() }).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("settings.txt");
    let export = format!("{export_limit_w}");
    seed_settings(
        &file,
        &[
            ("/Settings/DynamicGeneration/Enabled", "i", "1"),
            ("/Settings/DynamicGeneration/ExportLimit", "f", export.as_str()),
        ],
    );
    let standin = common::start_standin(&bus, &bg, file);
    let start = sim.plant().expect("plant");
    let site = FakeSite::start(&bg, &bus, start.soc);
    let (stop, daemon) =
        start_daemon(&bg, &bus, &sim, &[1, 2], DynGenOptions { fork_law, ..DynGenOptions::default() });
    let writes_before = sim.stats().unit(1).map(|u| u.writes_applied).unwrap_or(0);
    let mut last = start;
    let mut trace: HashMap<u64, String> = HashMap::new();
    while last.day_time_s < plant.day_s {
        std::thread::sleep(Duration::from_millis(200));
        last = sim.plant().expect("plant");
        site.update(&bg, &last);
        let second = last.day_time_s as u64;
        trace.entry(second).or_insert_with(|| {
            format!(
                "t={second:3} load={:5.0} avail={:5.0} pv={:5.0} batt={:6.0} soc={:5.1} grid={:6.0} rate={}",
                last.load_w,
                last.pv_available_w,
                last.pv_w,
                last.battery_w,
                last.soc,
                last.grid_w,
                rate(&sim)
            )
        });
    }
    let writes = sim.stats().unit(1).map(|u| u.writes_applied).unwrap_or(0) - writes_before;
    if std::env::var_os("DYNGEN_TRACE").is_some() {
        let mut keys: Vec<_> = trace.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            eprintln!("{}", trace[&k]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(async_io::block_on(daemon), 0);
    drop(site);
    drop(standin);
    let t = last.tally;
    Some(DayFigures {
        exported_wh: t.exported_wh,
        excess_export_wh: t.excess_export_wh,
        curtailed_wh: t.curtailed_wh,
        curtailed_charging_wh: t.curtailed_charging_wh,
        imported_wh: t.imported_wh,
        writes,
        final_soc: last.soc,
    })
}

#[test]
fn closed_loop_day_keeps_export_within_the_limit_and_lets_pv_charge() {
    let Some(day) = run_day(100.0, false) else { return };
    eprintln!("closed-loop day, controller: {}", day.line());
    // Uncontrolled, this day exports about 77 Wh (hil plant test); the allowance is
    // 100 W over 240 s = 6.7 Wh, and load drops with a full battery cost a little more.
    let allowance_wh = 100.0 * PlantConfig::default().day_s / 3600.0;
    assert!(day.exported_wh < allowance_wh + 10.0, "exported: {day:?}");
    assert!(day.excess_export_wh < 10.0, "export above the limit: {day:?}");
    assert!(day.curtailed_charging_wh < 2.0, "PV curtailed while the battery charged below 90 %: {day:?}");
    assert!(day.writes > 0, "the inverter was never written");
}

/// Figures for the closing note: this controller and the fork's rule on the
/// same day with no export allowance (the fork has none).
#[test]
#[ignore = "figures only (8 minutes): cargo test --test dyngen -- --ignored --nocapture"]
fn closed_loop_day_figures_controller_and_fork_rule() {
    let Some(ours) = run_day(0.0, false) else { return };
    let Some(fork) = run_day(0.0, true) else { return };
    eprintln!("closed-loop day, export limit 0 W, controller: {}", ours.line());
    eprintln!("closed-loop day, export limit 0 W, fork rule:  {}", fork.line());
}
