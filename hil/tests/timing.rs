//! The simulator keeps real-line timing on a pty (which itself moves bytes instantly):
//! a round trip is never faster than the wire and the device turnaround allow.
//! Only a generous lower bound and a loose upper bound are checked.

use std::time::Duration;

use dmc_core::profile::sdm230::SDM230;
use dmc_core::timing::LineConfig;
use dmc_hil::bench::{self, BenchOptions};
use dmc_hil::{DeviceKind, SimConfig, SimHandle};

#[test]
fn round_trip_respects_wire_time_and_turnaround_at_9600() {
    let line = LineConfig::new_8n1(9600);
    let sim = SimHandle::spawn_pty(SimConfig { line, ..SimConfig::with_units(&[(2, DeviceKind::Sdm230)]) })
        .expect("pty");
    let opts = BenchOptions {
        port: sim.path().display().to_string(),
        line,
        devices: vec![(2, &SDM230)],
        record: None,
        write_test: false,
        reads: 5,
        timeout: Duration::from_millis(300),
        missing_unit: Some(9),
    };
    let report = bench::run(&opts).expect("bench runs");
    assert_eq!(report.verdict(), Ok(()));
    let device = &report.devices[0];
    // Latency reads are the profile's first block, active power (2 registers):
    // 8 + 9 bytes on the wire and 6 + 2 × 0.6 ms of turnaround.
    let vip = line.wire_time(8 + 9).as_micros() + 7_200;
    let fastest = device.latency(0.0).expect("latencies").as_micros() as u64;
    assert!(fastest >= vip * 9 / 10, "{fastest} us beats the line ({vip} us)");
    let p50 = device.latency(0.5).expect("latencies").as_micros() as u64;
    assert!(p50 < vip * 3, "p50 {p50} us vs line {vip} us");
}
