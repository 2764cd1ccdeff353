//! The bench against the simulator over a pty: clean, with faults, with a silent unit, with nothing attached,
//! and a recorded capture that replays cleanly.
//!
//! Runs at 115200 baud so the suite stays short; timing is never asserted precisely.

use std::time::{Duration, Instant};

use dmc_core::profile::{growatt_min::GROWATT_MIN, sdm230::SDM230};
use dmc_core::timing::LineConfig;
use dmc_hil::bench::capture::{replay, Capture};
use dmc_hil::bench::{self, BenchOptions};
use dmc_hil::{SimConfig, SimHandle};
use serialport::SerialPort;

const BAUD: u32 = 115_200;

fn sim() -> SimHandle {
    let config = SimConfig { line: LineConfig::new_8n1(BAUD), ..SimConfig::default() };
    SimHandle::spawn_pty(config).expect("pty")
}

fn options(port: &std::path::Path) -> BenchOptions {
    BenchOptions {
        port: port.display().to_string(),
        line: LineConfig::new_8n1(BAUD),
        devices: vec![(2, &SDM230), (1, &GROWATT_MIN)],
        record: None,
        write_test: false,
        reads: 5,
        timeout: Duration::from_millis(150),
        missing_unit: None,
    }
}

#[test]
fn bench_passes_and_capture_replays() {
    let sim = sim();
    let capture = std::env::temp_dir().join(format!("dmc-hil-bench-{}.cap", std::process::id()));
    // A clean run must report no errors, so its timeout is generous: on a loaded
    // machine the simulator thread can be late by more than the fault tests' 150 ms.
    let opts = BenchOptions {
        record: Some(capture.clone()),
        write_test: true,
        timeout: Duration::from_secs(1),
        ..options(sim.path())
    };
    let report = bench::run(&opts).expect("bench runs");
    println!("{}", report.table());
    assert_eq!(report.verdict(), Ok(()));
    let clean = report.devices.iter().all(|d| d.identified && d.counts.errors() == 0);
    assert!(clean, "errors on a clean line:\n{}", report.table());
    assert!(report.devices.iter().all(|d| d.latencies.len() >= opts.reads));
    let stats = sim.stats();
    // The write test wrote holding 3 twice (new value, then the original back).
    assert_eq!(stats.unit(1).map(|c| (c.writes_applied, c.writes_refused)), Some((2, 0)));
    assert_eq!(sim.value("growatt", "active_rate"), Ok(255.0));
    // The absent unit reached the wire and was ignored.
    assert_eq!(stats.bus.other_unit, 1);
    // Every voltage the bench decoded is one the simulator served.
    let served = sim.served(2, "voltage");
    let shown = report.devices[0].values.iter().find(|(n, _)| *n == "voltage").map(|(_, t)| t.clone());
    let shown: f64 = shown.and_then(|t| t.split_whitespace().next()?.parse().ok()).expect("voltage shown");
    assert!(served.iter().any(|v| (v - shown).abs() < 0.051), "{shown} not in {served:?}");

    let loaded = Capture::load(&capture).expect("capture loads");
    let _ = std::fs::remove_file(&capture);
    assert_eq!(Some(loaded.transactions.len()), report.recorded);
    let (count, mismatches) = replay(&loaded);
    assert!(count > 20);
    assert_eq!(mismatches, vec![]);
}

#[test]
fn bench_reports_faults_without_crashing() {
    let sim = sim();
    sim.command("fault all crc 0.15").expect("fault");
    sim.command("fault all garbage 0.3").expect("fault");
    sim.command("fault sdm230 wrong-unit 0.1").expect("fault");
    sim.command("fault growatt truncate 0.1").expect("fault");
    let report = bench::run(&options(sim.path())).expect("bench runs");
    println!("{}", report.table());
    let errors: u32 = report.devices.iter().map(|d| d.counts.errors()).sum();
    assert!(errors > 0, "faults injected but none reported");
    let stats = sim.stats();
    let injected: u64 =
        stats.units.iter().map(|(_, _, c)| c.crc_corrupted + c.truncated + c.wrong_unit).sum();
    assert!(injected > 0);
    // Every damaged reply the simulator sent shows up as a failed attempt on the bench side.
    assert!(u64::from(errors) >= injected, "bench saw {errors} errors, simulator injected {injected}");
}

#[test]
fn bench_fails_cleanly_on_silent_unit() {
    let sim = sim();
    sim.fault("growatt", "silent on").expect("fault");
    let started = Instant::now();
    let report = bench::run(&options(sim.path())).expect("bench runs");
    let verdict = report.verdict();
    assert!(
        verdict.as_ref().is_err_and(|e| e.contains("unit 1 (growatt_min)") && e.contains("timeout")),
        "{verdict:?}"
    );
    assert!(report.devices[0].identified, "the meter is still fine");
    // Bounded: 3 attempts × (150 ms + line time), not a hang.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(sim.stats().unit(1).map(|c| c.unanswered), Some(3));
}

#[test]
fn bench_ends_with_a_report_when_nothing_is_attached() {
    // A pty whose other side nobody serves.
    let (_master, slave) = serialport::TTYPort::pair().expect("pty");
    let path = slave.name().expect("pty name");
    let opts =
        BenchOptions { timeout: Duration::from_millis(50), reads: 1, ..options(std::path::Path::new(&path)) };
    let report = bench::run(&opts).expect("bench runs");
    let verdict = report.verdict();
    assert!(verdict.as_ref().is_err_and(|e| e.contains("no usable answer")), "{verdict:?}");
    assert!(report.devices.iter().all(|d| !d.identified));
}

#[test]
fn bench_reports_a_missing_port_in_one_line() {
    let opts = options(std::path::Path::new("/dev/does-not-exist-dmc-hil"));
    let err = bench::run(&opts).expect_err("must fail");
    assert!(err.starts_with("cannot open /dev/does-not-exist-dmc-hil") && !err.contains('\n'), "{err}");
}

#[test]
fn bench_survives_late_replies() {
    let sim = sim();
    // Replies come 250 ms late, after the bench's 150 ms timeout: they land in later transactions.
    sim.fault("sdm230", "delay 250").expect("fault");
    let opts = BenchOptions { devices: vec![(2, &SDM230)], reads: 1, ..options(sim.path()) };
    let started = Instant::now();
    let report = bench::run(&opts).expect("bench runs");
    println!("{}", report.table());
    assert!(report.verdict().is_err(), "a device slower than the timeout must fail the bench");
    assert!(report.devices[0].counts.errors() > 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(sim.stats().unit(2).is_some_and(|c| c.delayed > 0));
}
