//! `com.victronenergy.modbusclient.<name>`: its paths and types, `Enabled` = 0 stopping a device
//! (service gone, no more requests on the wire) and = 1 bringing it back, and `/Scan`.
//! Private dbus-daemon, simulators on a pty, the built-in settings stand-in.

mod common;

use std::time::Duration;

use common::services::{call, get_items, names, signature, text, wait_for, wait_until, DaemonRun};
use common::{Background, PrivateBus};
use dbus_modbus_client::daemon::DaemonOptions;
use dbus_modbus_client::settings::standin::SettingsStandin;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

const WITHIN: Duration = Duration::from_secs(20);
const CONTROL: &str = "com.victronenergy.modbusclient.tcp";

fn requests(sim: &SimHandle, unit: u8) -> u64 {
    sim.stats().unit(unit).map(|u| u.requests).unwrap_or(0)
}

/// A private bus, an executor, an SDM230 at unit 2 on a pty, and the settings stand-in.
fn meter_setup() -> Option<(PrivateBus, Background, SimHandle, tempfile::TempDir, SettingsStandin)> {
    let bus = PrivateBus::start()?;
    let bg = Background::start();
    let sim = SimHandle::spawn_pty(SimConfig::with_units(&[(2, DeviceKind::Sdm230)])).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));
    Some((bus, bg, sim, dir, standin))
}

#[test]
fn control_service_paths_enabled_and_scan() {
    let Some((bus, bg, sim, _dir, _standin)) = meter_setup() else { return };
    // Unit 5 does not exist: a scan retries it.
    let devices = [2u8, 5]
        .iter()
        .map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", sim.path().display())).expect("spec"))
        .collect();
    // A scan also asks the free units of this range (3 and 4, silent here).
    let scan_units = Some((2, 5));
    let _daemon = DaemonRun::start(
        &bg,
        DaemonOptions { bus: bus.bus(), devices, scan_units, ..DaemonOptions::default() },
    );

    let grid = wait_for(&bus, "com.victronenergy.grid.eastron_", WITHIN).expect("grid service");
    let ident = grid.rsplit('.').next().unwrap_or_default().to_string();
    assert_eq!(wait_for(&bus, CONTROL, WITHIN).as_deref(), Some(CONTROL));
    let base = format!("/Devices/{ident}");
    let items = wait_until(WITHIN, || {
        let items = get_items(&bg, &bus, CONTROL);
        let requests = format!("{base}/Stats/Requests");
        (items.contains_key(&requests) && text(&items, &requests) != "0").then_some(items)
    })
    .expect("device statistics on the control service");
    assert!(!items.contains_key("/DeviceInstance"), "monitors must ignore this service");
    assert_eq!(signature(&items, "/Scan"), "b");
    assert_eq!(signature(&items, "/ScanProgress"), "ai", "invalid when idle");
    assert_eq!(signature(&items, &format!("{base}/Enabled")), "i");
    assert_eq!(text(&items, &format!("{base}/Enabled")), "1");
    assert_eq!(signature(&items, &format!("{base}/Serial")), "s");
    assert_eq!(text(&items, &format!("{base}/Serial")), "22000123");
    assert_eq!(text(&items, &format!("{base}/Name")), "Eastron SDM230");
    for stat in ["Requests", "Timeouts", "CrcErrors", "Exceptions"] {
        assert_eq!(signature(&items, &format!("{base}/Stats/{stat}")), "i", "{stat}");
    }
    assert_eq!(signature(&items, &format!("{base}/Stats/LatencyMs")), "d");
    assert!(text(&items, &format!("{base}/Stats/LatencyMs")).ends_with(" ms"));
    let out = call(&bus, CONTROL, &format!("{base}/Stats/Requests"), "GetValue", None);
    assert!(out.contains("int32 "), "{out}");

    // Enabled = 0: stored in settings, service removed, the meter no longer polled.
    let enabled = format!("{base}/Enabled");
    assert!(call(&bus, CONTROL, &enabled, "SetValue", Some("variant:int32:2")).contains("int32 2"));
    assert!(call(&bus, CONTROL, &enabled, "SetValue", Some("variant:int32:0")).contains("int32 0"));
    let setting = format!("/Settings/Devices/{ident}/Enabled");
    let out = call(&bus, "com.victronenergy.settings", &setting, "GetValue", None);
    assert!(out.contains("int32 0"), "{out}");
    assert!(wait_until(WITHIN, || (!names(&bus).contains(&grid)).then_some(())).is_some(), "service removed");
    // Once a read in flight has finished, the count stands still.
    let settled = wait_until(WITHIN, || {
        let before = requests(&sim, 2);
        std::thread::sleep(Duration::from_millis(1500));
        (requests(&sim, 2) == before).then_some(before)
    });
    assert!(settled.is_some(), "a disabled meter is still polled");

    // Enabled = 1: polled and published again.
    assert!(call(&bus, CONTROL, &enabled, "SetValue", Some("variant:int32:1")).contains("int32 0"));
    assert_eq!(wait_for(&bus, &grid, WITHIN).as_deref(), Some(grid.as_str()));
    let floor = settled.unwrap_or(0);
    assert!(wait_until(WITHIN, || (requests(&sim, 2) > floor).then_some(())).is_some(), "polled again");

    // /Scan: accepted, retries unit 5, asks units 3 and 4, and ends by itself.
    assert!(call(&bus, CONTROL, "/Scan", "SetValue", Some("variant:boolean:true")).contains("int32 0"));
    let done = wait_until(WITHIN, || {
        let items = get_items(&bg, &bus, CONTROL);
        (text(&items, "/Scan") == "False").then_some(items)
    })
    .expect("scan ends");
    assert_eq!(signature(&done, "/ScanProgress"), "ai", "idle again");
}

#[test]
fn a_device_disabled_in_settings_is_not_published_until_enabled() {
    let Some((bus, bg, sim, _dir, _standin)) = meter_setup() else { return };
    // The user disabled the meter earlier (as the GUI would leave it in settings).
    let (ok, out, err) = bus.run(
        "gdbus",
        &[
            "call",
            "--session",
            "--dest",
            "com.victronenergy.settings",
            "--object-path",
            "/",
            "--method",
            "com.victronenergy.Settings.AddSettings",
            "[{'path': <'/Settings/Devices/eastron_22000123/Enabled'>, 'default': <0>, 'min': <0>, 'max': <1>}]",
        ],
    );
    assert!(ok && out.contains("'error': <0>"), "{out}{err}");
    let spec = DeviceSpec::parse(&format!("rtu:{}:9600:2", sim.path().display())).expect("spec");
    let _daemon = DaemonRun::start(
        &bg,
        DaemonOptions { bus: bus.bus(), devices: vec![spec], ..DaemonOptions::default() },
    );

    let enabled = "/Devices/eastron_22000123/Enabled";
    let shown = wait_until(WITHIN, || {
        names(&bus)
            .iter()
            .any(|n| n == CONTROL)
            .then(|| get_items(&bg, &bus, CONTROL))
            .filter(|i| i.contains_key(enabled))
    })
    .expect("the disabled meter listed on the control service");
    assert_eq!(text(&shown, enabled), "0");
    assert!(
        !names(&bus).iter().any(|n| n.starts_with("com.victronenergy.grid.")),
        "a disabled meter is published"
    );

    assert!(call(&bus, CONTROL, enabled, "SetValue", Some("variant:int32:1")).contains("int32 0"));
    let grid = "com.victronenergy.grid.eastron_22000123";
    assert_eq!(wait_for(&bus, grid, WITHIN).as_deref(), Some(grid));
}
