//! The polling engine against the hil simulators on real pseudo-terminals:
//! identification, decoded values equal to what the simulator served, a
//! sleeping inverter that costs the meter nothing, faults that never yield a
//! wrong value, and a port that vanishes and returns.

mod common;

use std::path::Path;
use std::time::Duration;

use common::recorder::{assert_all_served, assert_none_wrong, bus_for, run, Recorder};
use dbus_modbus_client::engine::{Bus, PresenceChange};
use dbus_modbus_client::spec::DeviceSpec;
use dmc_core::value::Value;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

fn specs(path: &Path, units: &[u8]) -> Vec<DeviceSpec> {
    units.iter().map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", path.display())).unwrap()).collect()
}

#[test]
fn identifies_both_devices_and_delivers_served_values() {
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let mut bus = bus_for(specs(sim.path(), &[1, 2]));
    let mut rec = Recorder::new(Duration::from_secs(8));
    rec.stop_when = Some(Box::new(|r: &Recorder| {
        r.had(0, PresenceChange::Ready)
            && r.had(1, PresenceChange::Ready)
            && r.reads[1].len() > 12
            && !r.delivered(0, "/Ac/Power").is_empty()
    }));
    run(&mut bus, &mut rec);

    assert!(rec.had(0, PresenceChange::Identified) && rec.had(0, PresenceChange::Ready), "{:?}", rec.changes);
    assert!(rec.had(1, PresenceChange::Identified) && rec.had(1, PresenceChange::Ready), "{:?}", rec.changes);
    assert_eq!(bus.devices[0].profile.map(|p| p.name), Some("growatt_min"));
    assert_eq!(bus.devices[1].profile.map(|p| p.name), Some("sdm230"));

    let volts = rec.delivered(1, "/Ac/L1/Voltage");
    assert!(volts.iter().all(|v| (200.0..260.0).contains(v)), "{volts:?}");
    assert_all_served(&rec, &sim, 1, 2, "/Ac/Power", "power");
    assert_all_served(&rec, &sim, 1, 2, "/Ac/L1/Voltage", "voltage");
    assert_all_served(&rec, &sim, 0, 1, "/Ac/Power", "ac_power");
    // Identity registers were read and decoded.
    let serial = bus.devices[0].value_of("/Serial").and_then(Value::as_str).map(str::to_string);
    assert!(serial.as_deref().is_some_and(|s| !s.is_empty()), "growatt serial: {serial:?}");
    let max_power = bus.devices[0].value_of("/Ac/MaxPower").and_then(Value::as_f64);
    assert_eq!(max_power, Some(4200.0));
}

#[test]
fn silent_inverter_costs_the_meter_little_and_is_found_again() {
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let mut bus = bus_for(specs(sim.path(), &[1, 2]));
    // Warm up until both are ready and the meter has a rhythm.
    let mut warm = Recorder::new(Duration::from_secs(8));
    warm.stop_when =
        Some(Box::new(|r: &Recorder| r.had(0, PresenceChange::Ready) && r.had(1, PresenceChange::Ready)));
    run(&mut bus, &mut warm);
    assert!(warm.had(0, PresenceChange::Ready) && warm.had(1, PresenceChange::Ready));

    // Meter fast-block rate with both awake, then with the inverter asleep.
    let meter_rate = |bus: &mut Bus, secs: u64| {
        let before = bus.devices[1].stats.responses;
        let mut r = Recorder::new(Duration::from_secs(secs));
        run(bus, &mut r);
        (bus.devices[1].stats.responses - before) as f64 / secs as f64
    };
    let awake = meter_rate(&mut bus, 3);
    sim.fault("growatt", "silent on").unwrap();
    let mut lose = Recorder::new(Duration::from_secs(6));
    lose.stop_when = Some(Box::new(|r: &Recorder| r.had(0, PresenceChange::Lost)));
    run(&mut bus, &mut lose);
    assert!(lose.had(0, PresenceChange::Lost), "growatt never declared lost: {:?}", lose.changes);
    let asleep = meter_rate(&mut bus, 3);
    // The bench measures the real figure; this bound only catches starvation.
    assert!(asleep >= 0.75 * awake, "meter reads/s awake {awake:.1}, inverter asleep {asleep:.1}");

    // Wake up: found again within one back-off period (the back-off is at
    // most a few seconds this early).
    sim.fault("growatt", "silent off").unwrap();
    let mut back = Recorder::new(Duration::from_secs(12));
    back.stop_when =
        Some(Box::new(|r: &Recorder| r.had(0, PresenceChange::Returned) && !r.reads[0].is_empty()));
    run(&mut bus, &mut back);
    assert!(back.had(0, PresenceChange::Returned), "growatt not found again: {:?}", back.changes);
}

#[test]
fn inverter_silent_at_start_is_found_when_it_wakes() {
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    sim.fault("growatt", "silent on").unwrap();
    let mut bus = bus_for(specs(sim.path(), &[1, 2]));
    let mut rec = Recorder::new(Duration::from_secs(6));
    rec.stop_when = Some(Box::new(|r: &Recorder| r.had(1, PresenceChange::Ready) && r.reads[1].len() > 5));
    run(&mut bus, &mut rec);
    let ready = rec.changes.iter().find(|(d, c, _)| *d == 1 && *c == PresenceChange::Ready).map(|x| x.2);
    assert!(ready.is_some(), "meter not served while the inverter sleeps: {:?}", rec.changes);
    assert!(!rec.had(0, PresenceChange::Identified));

    sim.fault("growatt", "silent off").unwrap();
    let mut rec = Recorder::new(Duration::from_secs(15));
    rec.stop_when = Some(Box::new(|r: &Recorder| r.had(0, PresenceChange::Ready)));
    run(&mut bus, &mut rec);
    assert!(rec.had(0, PresenceChange::Ready), "inverter never found: {:?}", rec.changes);
}

#[test]
fn faults_never_deliver_a_wrong_value() {
    let sim = SimHandle::spawn_pty(SimConfig::with_units(&[(2, DeviceKind::Sdm230)])).expect("simulator");
    let mut bus = bus_for(specs(sim.path(), &[2]));
    for fault in ["crc 0.2", "garbage 0.3", "truncate 0.2", "wrong-unit 0.2"] {
        sim.fault("sdm230", fault).unwrap();
    }
    // Until every checked path was delivered at least once (a slow block
    // whose read hit a fault is only tried again a period later).
    let mut rec = Recorder::new(Duration::from_secs(20));
    rec.stop_when = Some(Box::new(|r: &Recorder| {
        r.reads[0].len() > 25
            && ["/Ac/Power", "/Ac/L1/Voltage", "/Ac/Energy/Forward"]
                .iter()
                .all(|p| !r.delivered(0, p).is_empty())
    }));
    run(&mut bus, &mut rec);
    assert!(rec.had(0, PresenceChange::Ready), "{:?}", rec.changes);
    assert_all_served(&rec, &sim, 0, 2, "/Ac/Power", "power");
    assert_all_served(&rec, &sim, 0, 2, "/Ac/L1/Voltage", "voltage");
    assert_all_served(&rec, &sim, 0, 2, "/Ac/Energy/Forward", "import_energy");
    let c = bus.master_counters();
    assert!(c.checksum_errors + c.wrong_unit + c.length_errors + c.timeouts > 0, "faults not seen: {c:?}");
    // A damaged answer is waited out, not polled for: a handful of reads per
    // transaction (one used to spin on reads until its deadline).
    let stats = bus.stats();
    assert!(
        stats.reads < 12 * stats.transactions,
        "{} reads for {} transactions",
        stats.reads,
        stats.transactions
    );
}

#[test]
fn late_replies_from_a_previous_request_are_not_taken() {
    let sim = SimHandle::spawn_pty(SimConfig::with_units(&[(2, DeviceKind::Sdm230)])).expect("simulator");
    let mut bus = bus_for(specs(sim.path(), &[2]));
    let mut rec = Recorder::new(Duration::from_secs(8));
    rec.stop_when = Some(Box::new(|r: &Recorder| r.had(0, PresenceChange::Ready)));
    run(&mut bus, &mut rec);
    // Replies now arrive after the engine gave up on them, while it already
    // waits for the next answer.
    sim.fault("sdm230", "delay 250").unwrap();
    let mut rec = Recorder::new(Duration::from_secs(4));
    run(&mut bus, &mut rec);
    sim.fault("sdm230", "delay 0").unwrap();
    // Up to one back-off period (the device may have been declared lost).
    let mut rec2 = Recorder::new(Duration::from_secs(12));
    rec2.stop_when = Some(Box::new(|r: &Recorder| r.reads[0].len() > 10));
    run(&mut bus, &mut rec2);
    // While replies come late nothing may be taken for the wrong request;
    // whether a value gets through depends on the adaptive timeout.
    assert_none_wrong(&rec, &sim, 0, 2, "/Ac/Power", "power");
    assert_all_served(&rec2, &sim, 0, 2, "/Ac/Power", "power");
}

#[test]
fn port_vanishes_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttySIM");
    let config = || SimConfig::with_units(&[(2, DeviceKind::Sdm230)]);
    let sim = SimHandle::spawn_pty_at(config(), &link).expect("simulator");
    let mut bus = bus_for(specs(&link, &[2]));
    let mut rec = Recorder::new(Duration::from_secs(6));
    rec.stop_when = Some(Box::new(|r: &Recorder| r.reads[0].len() > 3));
    run(&mut bus, &mut rec);
    let opens = bus.stats().opens;
    assert_eq!(opens, 1);

    drop(sim); // the pty and the link disappear
    let mut gone = Recorder::new(Duration::from_secs(2));
    run(&mut bus, &mut gone);

    let sim = SimHandle::spawn_pty_at(config(), &link).expect("simulator again");
    let mut back = Recorder::new(Duration::from_secs(10));
    back.stop_when = Some(Box::new(|r: &Recorder| r.reads[0].len() > 3));
    run(&mut bus, &mut back);
    assert!(bus.stats().opens >= 2, "never reopened");
    assert!(back.reads[0].len() > 3, "no reads after the port returned: {:?}", back.changes);
    assert_all_served(&back, &sim, 0, 2, "/Ac/Power", "power");
}
