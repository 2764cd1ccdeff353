//! Modbus ASCII end to end: the polling engine on an `ascii:` spec against
//! the hil simulator speaking ASCII on a real pseudo-terminal. Both devices
//! are identified and every delivered value is one the simulator served, also
//! while answers arrive with a wrong LRC.

mod common;

use std::time::Duration;

use common::recorder::{assert_all_served, assert_none_wrong, bus_for, run, Recorder};
use dbus_modbus_client::engine::PresenceChange;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::serve::{SimConfig, SimHandle};

#[test]
fn ascii_over_a_pty_identifies_both_devices_and_delivers_served_values() {
    let sim = SimHandle::spawn_pty(SimConfig { ascii: true, ..SimConfig::default() }).expect("simulator");
    let specs: Vec<DeviceSpec> = [1, 2]
        .iter()
        .map(|u| DeviceSpec::parse(&format!("ascii:{}:9600:{u}", sim.path().display())).expect("spec"))
        .collect();
    let mut bus = bus_for(specs);
    let mut rec = Recorder::until(Duration::from_secs(15), |r: &Recorder| {
        r.had(0, PresenceChange::Ready)
            && r.had(1, PresenceChange::Ready)
            && r.reads[1].len() > 8
            && !r.delivered(0, "/Ac/Power").is_empty()
    });
    run(&mut bus, &mut rec);
    assert!(rec.had(0, PresenceChange::Ready) && rec.had(1, PresenceChange::Ready), "{:?}", rec.changes);
    assert_eq!(bus.devices[0].profile.map(|p| p.name), Some("growatt_min"));
    assert_eq!(bus.devices[1].profile.map(|p| p.name), Some("sdm230"));
    assert_all_served(&rec, &sim, 1, 2, "/Ac/Power", "power");
    assert_all_served(&rec, &sim, 0, 1, "/Ac/Power", "ac_power");

    // Every fifth meter answer with a broken LRC: dropped, never delivered.
    sim.fault("sdm230", "crc 0.2").expect("fault");
    let mut faulty = Recorder::until(Duration::from_secs(10), |r: &Recorder| r.reads[1].len() > 10);
    run(&mut bus, &mut faulty);
    assert!(faulty.reads[1].len() > 10, "meter reads under LRC faults: {}", faulty.reads[1].len());
    assert_none_wrong(&faulty, &sim, 1, 2, "/Ac/Power", "power");
    assert!(bus.master_counters().checksum_errors > 0, "{:?}", bus.master_counters());
}
