//! `/Scan` on the control service walks the serial bus: with only the meter (unit 2) configured,
//! a scan of units 1-20 finds the Growatt (1) and the VM-3P75CT (3), publishes them, adds them to
//! `/Settings/ModbusClient/<name>/Devices`, and the meter keeps being read throughout.
//! Private dbus-daemon, the simulators on one pty, the built-in settings stand-in.

mod common;

use std::time::Duration;

use common::services::{call, get_items, names, text, wait_for, wait_until, DaemonRun};
use common::{Background, PrivateBus};
use dbus_modbus_client::daemon::DaemonOptions;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

const WITHIN: Duration = Duration::from_secs(30);
const CONTROL: &str = "com.victronenergy.modbusclient.tcp";
const METER: &str = "com.victronenergy.grid.eastron_";
const INVERTER: &str = "com.victronenergy.pvinverter.growatt_";
const VM: &str = "com.victronenergy.grid.ve_";
const DEVICES_SETTING: &str = "/Settings/ModbusClient/tcp/Devices";

fn requests(sim: &SimHandle, unit: u8) -> u64 {
    sim.stats().unit(unit).map(|u| u.requests).unwrap_or(0)
}

#[test]
fn scan_finds_publishes_and_saves_new_devices_while_the_meter_is_polled() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let units = [(1, DeviceKind::GrowattMin), (2, DeviceKind::Sdm230), (3, DeviceKind::Vm3p75ct)];
    let sim = SimHandle::spawn_pty(SimConfig::with_units(&units)).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let _standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));
    let meter_spec = format!("rtu:{}:9600:2", sim.path().display());
    let devices = vec![DeviceSpec::parse(&meter_spec).expect("spec")];
    let _daemon = DaemonRun::start(
        &bg,
        DaemonOptions { bus: bus.bus(), devices, scan_units: Some((1, 20)), ..DaemonOptions::default() },
    );

    let meter = wait_for(&bus, METER, WITHIN).expect("meter service");
    assert_eq!(wait_for(&bus, CONTROL, WITHIN).as_deref(), Some(CONTROL));
    let saved = call(&bus, "com.victronenergy.settings", DEVICES_SETTING, "GetValue", None);
    assert!(saved.contains(&format!("\"{meter_spec}\"")), "only the meter before the scan: {saved}");
    let listed = names(&bus);
    assert!(!listed.iter().any(|n| n.starts_with(INVERTER) || n.starts_with(VM)), "{listed:?}");
    assert_eq!(requests(&sim, 1) + requests(&sim, 3), 0, "nobody asked units 1 and 3 yet");

    let meter_before = requests(&sim, 2);
    let started = std::time::Instant::now();
    assert!(call(&bus, CONTROL, "/Scan", "SetValue", Some("variant:boolean:true")).contains("int32 0"));
    // Watch the scan: progress values seen, the meter's service never gone.
    let mut progress_seen = Vec::new();
    let done = wait_until(Duration::from_secs(60), || {
        let items = get_items(&bg, &bus, CONTROL);
        assert!(names(&bus).contains(&meter), "the meter's service went away during the scan");
        let progress = text(&items, "/ScanProgress");
        if let Some(percent) = progress.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
            progress_seen.push(percent);
        }
        std::thread::sleep(Duration::from_millis(200));
        (text(&items, "/Scan") == "False").then_some(items)
    })
    .expect("the scan ends");
    assert_eq!(common::services::signature(&done, "/ScanProgress"), "ai", "idle again");
    assert!(
        progress_seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "progress moved through the scan: {progress_seen:?}"
    );
    assert!(progress_seen.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {progress_seen:?}");
    let meter_during = requests(&sim, 2) - meter_before;
    // A figure for the report, not an assertion.
    eprintln!(
        "scan of units 1-20 at 9600 baud: {:.1} s, meter requests meanwhile {meter_during}, progress seen {progress_seen:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(meter_during >= 5, "the meter kept being read during the scan ({meter_during} requests)");
    assert!(requests(&sim, 1) > 0 && requests(&sim, 3) > 0, "units 1 and 3 were asked");

    let inverter = wait_for(&bus, INVERTER, WITHIN).expect("the Growatt found by the scan is published");
    let vm = wait_for(&bus, VM, WITHIN).expect("the VM-3P75CT found by the scan is published");
    let items = get_items(&bg, &bus, &inverter);
    assert!(text(&items, "/Mgmt/Connection").ends_with(":1"), "{}", text(&items, "/Mgmt/Connection"));
    let items = get_items(&bg, &bus, &vm);
    assert!(text(&items, "/Mgmt/Connection").ends_with(":3"), "{}", text(&items, "/Mgmt/Connection"));
    // Found devices are polled like configured ones.
    let inverter_requests = requests(&sim, 1);
    assert!(
        wait_until(WITHIN, || (requests(&sim, 1) > inverter_requests + 3).then_some(())).is_some(),
        "the inverter is polled after the scan"
    );

    let path = sim.path().display().to_string();
    let expected = format!("rtu:{path}:9600:1,rtu:{path}:9600:2,rtu:{path}:9600:3");
    let saved = wait_until(WITHIN, || {
        let saved = call(&bus, "com.victronenergy.settings", DEVICES_SETTING, "GetValue", None);
        saved.contains(&format!("\"{expected}\"")).then_some(saved)
    });
    assert!(saved.is_some(), "the settings' device list holds the devices found");

    // The control service shows them too.
    let ident = inverter.rsplit('.').next().unwrap_or_default();
    let shown = wait_until(WITHIN, || {
        let items = get_items(&bg, &bus, CONTROL);
        items.contains_key(&format!("/Devices/{ident}/Enabled")).then_some(())
    });
    assert!(shown.is_some(), "/Devices/{ident} on the control service");
}

#[test]
fn scan_set_to_false_stops_the_unit_walk() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    // The inverter sits at the end of the range: a stopped scan never gets there.
    let units = [(2, DeviceKind::Sdm230), (40, DeviceKind::GrowattMin)];
    let sim = SimHandle::spawn_pty(SimConfig::with_units(&units)).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let _standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));
    let devices = vec![DeviceSpec::parse(&format!("rtu:{}:9600:2", sim.path().display())).expect("spec")];
    let _daemon = DaemonRun::start(
        &bg,
        DaemonOptions { bus: bus.bus(), devices, scan_units: Some((1, 40)), ..DaemonOptions::default() },
    );
    wait_for(&bus, METER, WITHIN).expect("meter service");
    wait_for(&bus, CONTROL, WITHIN).expect("control service");

    assert!(call(&bus, CONTROL, "/Scan", "SetValue", Some("variant:boolean:true")).contains("int32 0"));
    let running = wait_until(WITHIN, || {
        let items = get_items(&bg, &bus, CONTROL);
        (text(&items, "/Scan") == "True" && text(&items, "/ScanProgress").ends_with('%')).then_some(())
    });
    assert!(running.is_some(), "the scan runs and shows its progress");
    assert!(call(&bus, CONTROL, "/Scan", "SetValue", Some("variant:boolean:false")).contains("int32 0"));
    // The written false shows at once; the progress goes invalid at the next refresh.
    let stopped = wait_until(WITHIN, || {
        let items = get_items(&bg, &bus, CONTROL);
        let idle = common::services::signature(&items, "/ScanProgress") == "ai";
        (text(&items, "/Scan") == "False" && idle).then_some(())
    });
    assert!(stopped.is_some(), "/Scan false and /ScanProgress invalid after the stop");
    // Probes of absent units show in the simulator as frames for another unit: none after the
    // stop, while the bus goes on reading the meter.
    let probes = sim.stats().bus.other_unit;
    assert!(probes > 0, "the scan asked absent units");
    let meter = requests(&sim, 2);
    assert!(wait_until(WITHIN, || (requests(&sim, 2) > meter + 20).then_some(())).is_some(), "meter polled");
    assert_eq!(sim.stats().bus.other_unit, probes, "absent units still asked after the stop");
    assert_eq!(requests(&sim, 40), 0, "the stopped scan went on to unit 40");
    assert!(!names(&bus).iter().any(|n| n.starts_with(INVERTER)));
}
