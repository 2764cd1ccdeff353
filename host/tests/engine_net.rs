//! The polling engine against the hil simulators over the network, on
//! 127.0.0.1: Modbus TCP, Modbus UDP and RTU over TCP. For each: both devices
//! identified, delivered values equal to what the simulator served, a silent
//! unit backed off while the other keeps being read; for TCP also a server
//! that goes away and comes back on the same port.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::recorder::{assert_all_served, bus_for, run, Recorder};
use dbus_modbus_client::engine::PresenceChange;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_core::value::Value;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

fn specs(method: &str, addr: SocketAddr, units: &[u8]) -> Vec<DeviceSpec> {
    units
        .iter()
        .map(|u| {
            let text = format!("{method}:{}:{}:{u}", addr.ip(), addr.port());
            DeviceSpec::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
        })
        .collect()
}

/// Both devices identified and their values equal what was served; then the
/// inverter goes silent: it is declared lost and backed off while the meter
/// keeps being read. (Finding it again is engine_sim's business.)
fn identify_serve_and_back_off(method: &str, sim: &SimHandle, addr: SocketAddr) {
    let mut bus = bus_for(specs(method, addr, &[1, 2]));
    // Over MBAP the Growatt takes ~9 s to get ready: the planner splits its
    // registers into ~10 blocks (MBAP holes of at most 10 registers) and the
    // profile spaces its commands 850 ms apart. The run ends as soon as both are.
    let mut rec = Recorder::until(Duration::from_secs(20), |r| {
        r.had(0, PresenceChange::Ready)
            && r.had(1, PresenceChange::Ready)
            && r.reads[1].len() > 12
            && !r.delivered(0, "/Ac/Power").is_empty()
    });
    run(&mut bus, &mut rec);

    assert!(rec.had(0, PresenceChange::Identified) && rec.had(0, PresenceChange::Ready), "{:?}", rec.changes);
    assert!(rec.had(1, PresenceChange::Identified) && rec.had(1, PresenceChange::Ready), "{:?}", rec.changes);
    assert_eq!(bus.devices[0].profile.map(|p| p.name), Some("growatt_min"));
    assert_eq!(bus.devices[1].profile.map(|p| p.name), Some("sdm230"));
    assert_all_served(&rec, sim, 1, 2, "/Ac/Power", "power");
    assert_all_served(&rec, sim, 1, 2, "/Ac/L1/Voltage", "voltage");
    assert_all_served(&rec, sim, 0, 1, "/Ac/Power", "ac_power");
    let serial = bus.devices[0].value_of("/Serial").and_then(Value::as_str).map(str::to_string);
    assert!(serial.as_deref().is_some_and(|s| !s.is_empty()), "growatt serial: {serial:?}");

    sim.fault("growatt", "silent on").expect("fault");
    let mut lose = Recorder::until(Duration::from_secs(6), |r| r.had(0, PresenceChange::Lost));
    run(&mut bus, &mut lose);
    assert!(lose.had(0, PresenceChange::Lost), "growatt never declared lost: {:?}", lose.changes);

    // While the inverter backs off, the meter is read on; the inverter is
    // asked far less often than the meter (no timing is asserted).
    let before = sim.stats();
    let mut silent = Recorder::until(Duration::from_secs(5), |r| r.reads[1].len() > 8);
    run(&mut bus, &mut silent);
    let after = sim.stats();
    let asked = |unit: u8| {
        let count = |s: &dmc_hil::Stats| s.unit(unit).map_or(0, |c| c.requests);
        count(&after) - count(&before)
    };
    assert!(
        silent.reads[1].len() > 8,
        "meter starved while the inverter is silent: {} reads",
        silent.reads[1].len()
    );
    assert!(asked(1) < asked(2) / 2, "inverter asked {} times, meter {} times", asked(1), asked(2));
    assert_all_served(&silent, sim, 1, 2, "/Ac/Power", "power");
}

#[test]
fn tcp_identifies_serves_and_backs_off() {
    let sim = SimHandle::spawn_tcp(SimConfig::default(), loopback()).expect("simulator");
    let addr = sim.tcp_addr().expect("tcp address");
    identify_serve_and_back_off("tcp", &sim, addr);
}

#[test]
fn udp_identifies_serves_and_backs_off() {
    let sim = SimHandle::spawn_udp(SimConfig::default(), loopback()).expect("simulator");
    let addr = sim.udp_addr().expect("udp address");
    identify_serve_and_back_off("udp", &sim, addr);
}

#[test]
fn rtu_over_tcp_identifies_serves_and_backs_off() {
    let sim = SimHandle::spawn_rtu_over_tcp(SimConfig::default(), loopback()).expect("simulator");
    let addr = sim.rtu_over_tcp_addr().expect("rtu-over-tcp address");
    identify_serve_and_back_off("rtuovertcp", &sim, addr);
}

#[test]
fn tcp_server_goes_away_and_the_engine_reconnects() {
    let config = || SimConfig::with_units(&[(2, DeviceKind::Sdm230)]);
    let sim = SimHandle::spawn_tcp(config(), loopback()).expect("simulator");
    let addr = sim.tcp_addr().expect("tcp address");
    let mut bus = bus_for(specs("tcp", addr, &[2]));
    let mut rec = Recorder::until(Duration::from_secs(6), |r| r.reads[0].len() > 3);
    run(&mut bus, &mut rec);
    assert!(rec.reads[0].len() > 3, "no reads: {:?}", rec.changes);
    assert_eq!(bus.stats().opens, 1);

    // The server closes every connection and stops listening.
    drop(sim);
    let mut gone = Recorder::new(Duration::from_millis(1500));
    run(&mut bus, &mut gone);

    let sim = SimHandle::spawn_tcp(config(), addr).expect("simulator again on the same port");
    let mut back = Recorder::until(Duration::from_secs(10), |r| {
        r.reads[0].len() > 3 && !r.delivered(0, "/Ac/Power").is_empty()
    });
    run(&mut bus, &mut back);
    assert!(bus.stats().opens >= 2, "never reconnected");
    assert!(back.reads[0].len() > 3, "no reads after the server returned: {:?}", back.changes);
    assert_all_served(&back, &sim, 0, 2, "/Ac/Power", "power");
}

#[test]
fn tcp_and_pty_serve_one_bus() {
    // One simulator, two transports: faults and the served log are shared.
    let mut sim = SimHandle::spawn_pty(SimConfig::with_units(&[(2, DeviceKind::Sdm230)])).expect("simulator");
    let addr = sim.serve_tcp(loopback(), false).expect("tcp");
    let mut bus = bus_for(specs("tcp", addr, &[2]));
    let mut rec = Recorder::until(Duration::from_secs(6), |r| r.reads[0].len() > 3);
    run(&mut bus, &mut rec);
    assert_all_served(&rec, &sim, 0, 2, "/Ac/Power", "power");
    assert!(sim.stats().unit(2).is_some_and(|c| c.responses > 3));
}

/// Stands between the engine and the simulator's UDP socket and, before each
/// reply, sends a runt datagram (an MBAP header announcing more bytes than
/// it holds), as a flaky network or device might. Returns its own address.
fn udp_proxy_with_runts(sim: SocketAddr) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let front = UdpSocket::bind(loopback()).expect("bind front");
    let back = UdpSocket::bind(loopback()).expect("bind back");
    front.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
    back.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    back.connect(sim).expect("connect");
    let addr = front.local_addr().expect("address");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = std::sync::Arc::clone(&stop);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stopped.load(Ordering::Relaxed) {
            let Ok((n, client)) = front.recv_from(&mut buf) else { continue };
            let Some(request) = buf.get(..n) else { continue };
            if back.send(request).is_err() {
                continue;
            }
            let mut reply = [0u8; 512];
            let Ok(m) = back.recv(&mut reply) else { continue };
            // Transaction id and unit of the request, length 11, then only the function.
            let runt = [buf[0], buf[1], 0, 0, 0, 11, buf[6], buf[7]];
            let _ = front.send_to(&runt, client);
            let _ = front.send_to(reply.get(..m).unwrap_or_default(), client);
        }
    });
    (addr, stop)
}

#[test]
fn udp_each_datagram_is_one_whole_frame() {
    let sim =
        SimHandle::spawn_udp(SimConfig::with_units(&[(2, DeviceKind::Sdm230)]), loopback()).expect("sim");
    let (proxy, stop) = udp_proxy_with_runts(sim.udp_addr().expect("udp address"));
    let mut bus = bus_for(specs("udp", proxy, &[2]));
    let mut rec =
        Recorder::until(Duration::from_secs(6), |r| r.had(0, PresenceChange::Ready) && r.reads[0].len() > 3);
    run(&mut bus, &mut rec);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // A runt must not swallow the start of the good reply that follows it.
    assert!(rec.had(0, PresenceChange::Ready), "{:?} {:?}", rec.changes, bus.master_counters());
    assert_all_served(&rec, &sim, 0, 2, "/Ac/Power", "power");
}
