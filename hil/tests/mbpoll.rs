//! The simulator against an outside master: `mbpoll` (libmodbus) over a pty.
//!
//! Skips with a message when `mbpoll` is not installed (`apt-get install mbpoll`).

use std::process::Command;

use dmc_hil::{SimConfig, SimHandle};

fn have_mbpoll() -> bool {
    let found = Command::new("mbpoll").arg("-h").output().is_ok();
    if !found {
        eprintln!("SKIP: mbpoll not installed (apt-get install mbpoll)");
    }
    found
}

/// Runs mbpoll once and returns `(reference, value text)` pairs, or its error output.
fn mbpoll(sim: &SimHandle, args: &[&str]) -> Result<Vec<(u32, String)>, String> {
    mbpoll_write(sim, args, &[])
}

/// Like [`mbpoll`]; `values` (after the device path) make it a write.
fn mbpoll_write(sim: &SimHandle, args: &[&str], values: &[&str]) -> Result<Vec<(u32, String)>, String> {
    let out = Command::new("mbpoll")
        .args(["-m", "rtu", "-b", "9600", "-P", "none", "-0", "-1", "-o", "0.5"])
        .args(args)
        .arg(sim.path())
        .args(values)
        .output()
        .map_err(|e| format!("cannot run mbpoll: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("mbpoll failed: {text} {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let (r, v) = l.trim().strip_prefix('[')?.split_once("]:")?;
            Some((r.parse().ok()?, v.trim().to_string()))
        })
        .collect())
}

fn number(values: &[(u32, String)], reference: u32) -> f64 {
    values
        .iter()
        .find(|(r, _)| *r == reference)
        // mbpoll prints large 16-bit values as `42000 (-23536)`.
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no value for reference {reference} in {values:?}"))
}

#[test]
fn mbpoll_reads_sdm230_floats() {
    if !have_mbpoll() {
        return;
    }
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    let v = mbpoll(&sim, &["-a", "2", "-t", "3:float", "-B", "-r", "0", "-c", "1"]).expect("voltage");
    let volts = number(&v, 0);
    assert!((180.0..260.0).contains(&volts), "voltage {volts}");
    // What mbpoll printed is what the simulator says it served.
    let served = sim.last_served(2, "voltage").expect("served voltage");
    assert!((served - volts).abs() < 0.01, "{served} vs {volts}");
    let f = mbpoll(&sim, &["-a", "2", "-t", "3:float", "-B", "-r", "70", "-c", "3"]).expect("freq");
    let hz = number(&f, 70);
    assert!((45.0..65.0).contains(&hz), "frequency {hz}");
    assert!(number(&f, 72) > 0.0, "import energy");
    sim.set("sdm230", "power", "-1500").expect("set");
    let p = mbpoll(&sim, &["-a", "2", "-t", "3:float", "-B", "-r", "12", "-c", "1"]).expect("power");
    assert_eq!(number(&p, 12), -1500.0);
    // Odd count is refused by an SDM230: mbpoll reports an error.
    assert!(mbpoll(&sim, &["-a", "2", "-t", "3", "-r", "0", "-c", "3"]).is_err());
    let c = sim.stats().unit(2).expect("unit 2");
    assert_eq!((c.requests, c.responses, c.exceptions), (4, 4, 1));
}

#[test]
fn mbpoll_reads_and_writes_growatt() {
    if !have_mbpoll() {
        return;
    }
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    let id = mbpoll(&sim, &["-a", "1", "-t", "4", "-r", "43", "-c", "2"]).expect("identity");
    assert_eq!(number(&id, 43), 5100.0);
    assert_eq!(number(&id, 44), f64::from(0x0201));
    let pmax = mbpoll(&sim, &["-a", "1", "-t", "4", "-r", "6", "-c", "2"]).expect("pmax");
    assert_eq!((number(&pmax, 6), number(&pmax, 7)), (0.0, 42_000.0));
    sim.set("growatt", "pv", "4600").expect("set pv");
    // Write the active power rate with FC06 and see it reflected in the output.
    mbpoll_write(&sim, &["-a", "1", "-t", "4", "-r", "3"], &["40"]).expect("write holding 3");
    let rate = mbpoll(&sim, &["-a", "1", "-t", "4", "-r", "3", "-c", "1"]).expect("read holding 3");
    assert_eq!(number(&rate, 3), 40.0);
    let pac = mbpoll(&sim, &["-a", "1", "-t", "3", "-r", "35", "-c", "2"]).expect("pac");
    let watts = (number(&pac, 35) * 65536.0 + number(&pac, 36)) * 0.1;
    assert!((watts - 1680.0).abs() < 0.5, "Pac {watts} W, expected 40 % of 4200 W");
    // Out-of-range rate: exception, counted as refused.
    assert!(mbpoll_write(&sim, &["-a", "1", "-t", "4", "-r", "3"], &["150"]).is_err());
    let c = sim.stats().unit(1).expect("unit 1");
    assert_eq!((c.writes_applied, c.writes_refused), (1, 1));
}

#[test]
fn mbpoll_times_out_on_silent_unit() {
    if !have_mbpoll() {
        return;
    }
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    sim.fault("growatt", "silent on").expect("fault");
    assert!(mbpoll(&sim, &["-a", "1", "-t", "3", "-r", "0", "-c", "1"]).is_err());
    // An address nobody simulates is ignored, like on a real bus.
    assert!(mbpoll(&sim, &["-a", "9", "-t", "3", "-r", "0", "-c", "1"]).is_err());
    let s = sim.stats();
    assert_eq!(s.unit(1).map(|c| (c.requests, c.unanswered)), Some((1, 1)));
    assert_eq!(s.bus.other_unit, 1);
}

#[test]
fn clients_can_open_the_pty_one_after_another() {
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    for round in 0..3 {
        let port = serialport::new(sim.path().to_string_lossy(), 9600)
            .timeout(std::time::Duration::from_millis(100))
            .open_native();
        assert!(port.is_ok(), "round {round}: {:?}", port.err());
    }
}
