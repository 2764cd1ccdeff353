//! The whole daemon on a private bus: simulators on a pty, the settings
//! stand-in, and outside clients (`dbus-send`, zbus) reading and writing the
//! services the way GX consumers do.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::services::{call, get_items, signature, text, wait_for};
use common::{Background, PrivateBus};
use dbus_modbus_client::daemon::{self, DaemonOptions};
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::serve::{SimConfig, SimHandle};

#[test]
fn daemon_publishes_meter_and_inverter_like_victron_drivers() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));

    let stop = Arc::new(AtomicBool::new(false));
    let devices = [1u8, 2]
        .iter()
        .map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", sim.path().display())).unwrap());
    let options = DaemonOptions { bus: bus.bus(), devices: devices.collect(), ..DaemonOptions::default() };
    let daemon = bg.spawner.spawn(daemon::run_async(options, bg.spawner.clone(), stop.clone()));

    let grid =
        wait_for(&bus, "com.victronenergy.grid.eastron_", Duration::from_secs(15)).expect("grid service");
    let pv =
        wait_for(&bus, "com.victronenergy.pvinverter.growatt_", Duration::from_secs(15)).expect("pv service");

    // Types as upstream sends them (venus-conventions 1.4).
    let items = get_items(&bg, &bus, &grid);
    assert_eq!(signature(&items, "/Ac/Power"), "d");
    assert_eq!(signature(&items, "/Ac/L1/Voltage"), "d");
    assert_eq!(signature(&items, "/DeviceInstance"), "i");
    assert_eq!(signature(&items, "/ProductId"), "i");
    assert_eq!(signature(&items, "/Connected"), "i");
    assert_eq!(signature(&items, "/ProductName"), "s");
    assert_eq!(signature(&items, "/AllowedRoles"), "av");
    assert_eq!(signature(&items, "/ErrorCode"), "ai", "invalid is an empty ai");
    assert_eq!(text(&items, "/ErrorCode"), "---");
    assert_eq!(text(&items, "/Mgmt/Connection"), format!("Modbus RTU {}:2", sim.path().display()));
    assert_eq!(text(&items, "/DeviceInstance"), "40");
    assert_eq!(text(&items, "/Role"), "grid");
    assert_eq!(text(&items, "/IsGenericEnergyMeter"), "0");
    assert!(text(&items, "/Ac/L1/Voltage").ends_with(" V"), "{}", text(&items, "/Ac/L1/Voltage"));
    let pv_items = get_items(&bg, &bus, &pv);
    assert_eq!(signature(&pv_items, "/Ac/MaxPower"), "d");
    assert_eq!(text(&pv_items, "/Ac/MaxPower"), "4200 W");
    assert_eq!(text(&pv_items, "/DeviceInstance"), "20");

    // An outside client reads a value.
    let out = call(&bus, &grid, "/Ac/L1/Voltage", "GetValue", None);
    assert!(out.contains("double 2"), "{out}");

    // SetValue: read-only 1, wrong type 1, out of range 2 (nothing written), in range 0 (written).
    let writes = |sim: &SimHandle| sim.stats().unit(1).map(|u| u.writes_applied).unwrap_or(0);
    let before = writes(&sim);
    assert!(call(&bus, &grid, "/Ac/Power", "SetValue", Some("variant:double:5")).contains("int32 1"));
    let rate = "/Growatt/ActivePowerRate";
    assert!(call(&bus, &pv, rate, "SetValue", Some("variant:string:abc")).contains("int32 1"));
    assert!(call(&bus, &pv, rate, "SetValue", Some("variant:double:150")).contains("int32 2"));
    assert_eq!(writes(&sim), before, "a refused write reached the device");
    assert!(call(&bus, &pv, rate, "SetValue", Some("variant:double:50")).contains("int32 0"));
    assert_eq!(writes(&sim), before + 1);
    assert_eq!(sim.value("growatt", "active_rate").ok(), Some(50.0));

    // The custom name persists in settings.
    assert!(
        call(&bus, &grid, "/CustomName", "SetValue", Some("variant:string:Roof meter")).contains("int32 0")
    );
    let ident = grid.rsplit('.').next().unwrap().to_string();
    let setting = format!("/Settings/Devices/{ident}/CustomName");
    let out = call(&bus, "com.victronenergy.settings", &setting, "GetValue", None);
    assert!(out.contains("Roof meter"), "{out}");

    stop.store(true, Ordering::Relaxed);
    assert_eq!(async_io::block_on(daemon), 0);
    drop(standin);
}
