//! D-Bus bad input against the whole daemon: the binary, the simulators on a pty, a private
//! dbus-daemon and the settings stand-in.
//!
//! Every wrong `SetValue` gets the documented non-zero answer (venus-conventions §1.2: 1 = not
//! writable or wrong type, 2 = rejected; a path that is not an item is a D-Bus error), the
//! simulator's write counters prove no Modbus write left the daemon, and the daemon keeps
//! serving. One good write at the end proves the counters would have seen one.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::daemon::{self, DaemonProcess};
use common::{Background, PrivateBus};
use dmc_hil::serve::{SimConfig, SimHandle};
use zbus::zvariant::{ObjectPath, Value};

const GROWATT: u8 = 1;
const SDM230: u8 = 2;
const RATE: &str = "/Growatt/ActivePowerRate";

/// What a case must get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// This `SetValue` answer.
    Code(i32),
    /// A D-Bus error (no such item, no SetValue there, bad signature).
    Error,
}

/// Writes the simulated devices saw (applied or refused).
fn writes(sim: &SimHandle) -> u64 {
    let stats = sim.stats();
    [GROWATT, SDM230].iter().filter_map(|u| stats.unit(*u)).map(|c| c.writes_applied + c.writes_refused).sum()
}

fn wrong_types() -> Vec<(&'static str, Value<'static>)> {
    let dict: HashMap<String, f64> = [("value".to_string(), 50.0)].into_iter().collect();
    vec![
        ("string", Value::from("50")),
        ("empty string", Value::from("")),
        ("bool", Value::Bool(true)),
        ("byte", Value::U8(50)),
        ("array of int", Value::from(vec![50i32, 60])),
        ("array of string", Value::from(vec!["50"])),
        ("array of double", Value::from(vec![50.0f64])),
        ("empty array (invalid)", Value::from(Vec::<i32>::new())),
        ("struct", Value::from((50.0f64, 1i32))),
        ("dict", Value::from(dict)),
        ("nested variant", Value::Value(Box::new(Value::F64(50.0)))),
        ("doubly nested variant", Value::Value(Box::new(Value::Value(Box::new(Value::I32(50)))))),
        ("object path", Value::ObjectPath(ObjectPath::try_from("/Ac/Power").expect("path"))),
        ("1 MB string", Value::from("5".repeat(1 << 20))),
    ]
}

#[test]
fn bad_setvalue_gets_documented_answers_and_never_reaches_the_device() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let _standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));
    let spec = format!("rtu:{p}:9600:{GROWATT},rtu:{p}:9600:{SDM230}", p = sim.path().display());
    let mut process = DaemonProcess::start(&bus, &spec, &dir.path().join("daemon.log"));
    let conn = daemon::client(&bg, &bus);
    let within = Duration::from_secs(30);
    let grid = daemon::wait_for_name(&bg, &conn, "com.victronenergy.grid.", within)
        .unwrap_or_else(|| panic!("no grid service; log:\n{}", process.log_text()));
    let pv = daemon::wait_for_name(&bg, &conn, "com.victronenergy.pvinverter.", within)
        .unwrap_or_else(|| panic!("no pvinverter service; log:\n{}", process.log_text()));

    let mut cases: Vec<(String, &str, &str, Value<'static>, Expect)> = Vec::new();
    // Wrong types on the numeric writable paths: a register and a setting.
    for path in [RATE, "/Position"] {
        for (what, value) in wrong_types() {
            cases.push((format!("{path} <- {what}"), pv.as_str(), path, value, Expect::Code(1)));
        }
    }
    // Out of range (2: the profile's range check refuses before encoding).
    for (what, value) in [
        ("150 %", Value::F64(150.0)),
        ("-1 %", Value::F64(-1.0)),
        ("100.5 %", Value::F64(100.5)),
        ("NaN", Value::F64(f64::NAN)),
        ("+inf", Value::F64(f64::INFINITY)),
        ("-inf", Value::F64(f64::NEG_INFINITY)),
        ("i32::MAX", Value::I32(i32::MAX)),
        ("i64::MIN", Value::I64(i64::MIN)),
        ("u32::MAX", Value::U32(u32::MAX)),
        ("1e300", Value::F64(1e300)),
    ] {
        cases.push((format!("{RATE} <- {what}"), pv.as_str(), RATE, value, Expect::Code(2)));
    }
    // u64 beyond i64 does not convert at all (1).
    cases.push((format!("{RATE} <- u64::MAX"), pv.as_str(), RATE, Value::U64(u64::MAX), Expect::Code(1)));
    for (what, value) in [("3", Value::I32(3)), ("-1", Value::I32(-1)), ("i64::MAX", Value::I64(i64::MAX))] {
        let expect = if what == "i64::MAX" { Expect::Code(1) } else { Expect::Code(2) };
        cases.push((format!("/Position <- {what}"), pv.as_str(), "/Position", value, expect));
    }
    // Read-only paths (1), whatever the value.
    for (service, path) in [
        (grid.as_str(), "/Ac/Power"),
        (grid.as_str(), "/Ac/L1/Voltage"),
        (grid.as_str(), "/ProductName"),
        (grid.as_str(), "/DeviceInstance"),
        (grid.as_str(), "/Serial"),
        (pv.as_str(), "/Ac/MaxPower"),
        (pv.as_str(), "/Mgmt/ProcessName"),
    ] {
        cases.push((format!("read-only {path}"), service, path, Value::F64(1.0), Expect::Code(1)));
        cases.push((format!("read-only {path} <- string"), service, path, Value::from("x"), Expect::Code(1)));
    }
    // A role outside /AllowedRoles is refused (2); a valid one would re-register the service.
    cases.push(("/Role <- tank".into(), grid.as_str(), "/Role", Value::from("tank"), Expect::Code(2)));
    cases.push(("/Role <- 1".into(), grid.as_str(), "/Role", Value::I32(1), Expect::Code(1)));
    // Custom names: wrong types (1), a megabyte (2: longer than any name).
    for (what, value, expect) in [
        ("double", Value::F64(1.0), Expect::Code(1)),
        ("bool", Value::Bool(false), Expect::Code(1)),
        ("array of string", Value::from(vec!["a", "b"]), Expect::Code(1)),
        ("struct", Value::from(("a", 1i32)), Expect::Code(1)),
        ("1 MB string", Value::from("n".repeat(1 << 20)), Expect::Code(2)),
        ("1 MB multibyte string", Value::from("é".repeat(1 << 19)), Expect::Code(2)),
    ] {
        cases.push((format!("/CustomName <- {what}"), grid.as_str(), "/CustomName", value, expect));
    }
    // Unknown paths, tree nodes (no SetValue there) and the root: D-Bus errors.
    for (service, path) in [
        (grid.as_str(), "/No/Such/Path"),
        (grid.as_str(), "/Ac/L9/Power"),
        (pv.as_str(), "/Growatt"),
        (grid.as_str(), "/Ac"),
        (grid.as_str(), "/"),
    ] {
        cases.push((format!("unknown {path}"), service, path, Value::F64(1.0), Expect::Error));
    }

    let before = writes(&sim);
    let mut failures = Vec::new();
    for (label, service, path, value, expect) in cases {
        let got = daemon::set_value(&bg, &conn, service, path, value);
        let ok = match (expect, &got) {
            (Expect::Code(c), Ok(g)) => *g == c,
            (Expect::Error, Err(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("{label}: expected {expect:?}, got {got:?}"));
        }
        process.assert_running(&format!("after {label}"));
    }
    // A SetValue whose body is not one variant is an InvalidArgs error, not a crash.
    let wrong_body = daemon::busitem_call(&bg, &conn, &pv, RATE, "SetValue", ("50".to_string(), 1i32));
    if wrong_body.is_ok() {
        failures.push("SetValue(si) was answered as if valid".into());
    }
    assert!(failures.is_empty(), "{} wrong answers:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(writes(&sim), before, "a refused SetValue reached the device");

    // Still serving: the meter's power on D-Bus moves on to values served after the bad input,
    // the megabyte name was not stored, and a good write goes out.
    let served_before: HashSet<u64> = sim.served(SDM230, "power").iter().map(|v| v.to_bits()).collect();
    let end = Instant::now() + Duration::from_secs(60);
    let items = loop {
        let items = daemon::get_items(&bg, &conn, &grid).expect("GetItems after the bad input");
        let power = daemon::number(&items, "/Ac/Power").map(f64::to_bits);
        if power.is_some_and(|p| {
            !served_before.contains(&p) && sim.served(SDM230, "power").iter().any(|v| v.to_bits() == p)
        }) {
            break items;
        }
        process.assert_running("while waiting for fresh values");
        assert!(Instant::now() < end, "no fresh /Ac/Power after the bad input; log:\n{}", process.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    let name = items.get("/CustomName").and_then(|e| e.get("Value")).map(|v| format!("{v:?}"));
    assert!(name.is_some_and(|n| n.len() < 1000), "the huge name was stored");
    assert_eq!(daemon::set_value(&bg, &conn, &pv, RATE, Value::F64(50.0)), Ok(0));
    assert_eq!(writes(&sim), before + 1, "the good write did not reach the device");
    assert_eq!(daemon::set_value(&bg, &conn, &grid, "/CustomName", Value::from("Roof")), Ok(0));
    process.assert_running("at the end");
}
