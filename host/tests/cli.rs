//! The binary as a user runs it: usage errors, `--models`, and the demo.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dbus-modbus-client"))
}

#[test]
fn malformed_spec_is_a_usage_error_with_an_example() {
    let out = bin().args(["-F", "rtu:ttyUSB0:fast:2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'fast' is not a baud rate") && err.contains("e.g. rtu:ttyUSB0:9600:2"), "{err}");
    let out = bin().args(["-F", "rtu:ttyUSB0:9600:300"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in 1..247"));
    let out = bin().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn models_lists_every_profile() {
    let out = bin().arg("--models").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["sdm230", "growatt_min", "victron_vm3p75ct", "Eastron SDM230", "Growatt MIN TL-X"] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn version_names_the_program() {
    let out = bin().args(["--version"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dbus-modbus-client "));
}

#[test]
fn demo_shows_values_from_both_devices_and_stops_cleanly_on_ctrl_c() {
    if Command::new("dbus-daemon").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dbus-daemon is not installed (apt-get install dbus)");
        return;
    }
    let mut child = bin()
        .args(["demo", "--duration", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut grid, mut pv) = (None, None);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while (grid.is_none() || pv.is_none()) && std::time::Instant::now() < end {
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) else { continue };
        if line.contains("com.victronenergy.grid.eastron_") && !line.contains("power ---") {
            grid = Some(line);
        } else if line.contains("com.victronenergy.pvinverter.growatt_") && !line.contains("power ---") {
            pv = Some(line);
        }
    }
    // Ctrl-C: the demo stops its bus, simulator and settings and exits 0.
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let log = log.join().unwrap_or_default();
    let grid = grid.unwrap_or_else(|| panic!("no meter line with values within 30 s; log:\n{log}"));
    let pv = pv.unwrap_or_else(|| panic!("no inverter line with values within 30 s; log:\n{log}"));
    assert!(grid.contains(" V,") && grid.contains(" W,"), "{grid}");
    assert!(pv.contains("rated 4200 W") && pv.contains("status "), "{pv}");
    assert!(status.success(), "demo exit after SIGINT: {status:?}");
}

#[test]
fn probe_prints_identity_and_every_register() {
    let sim = dmc_hil::SimHandle::spawn_pty(dmc_hil::SimConfig::default()).expect("simulator");
    let spec = format!("rtu:{}:9600:2", sim.path().display());
    let out = bin().args(["-P", &spec]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Eastron SDM230 (sdm230), serial "), "{stdout}");
    for path in ["/Ac/L1/Voltage", "/Ac/Power", "/Ac/Energy/Forward", "/Ac/Frequency"] {
        let line =
            stdout.lines().find(|l| l.trim_start().starts_with(path)).unwrap_or_else(|| panic!("{path}"));
        assert!(!line.contains("---"), "{line}");
    }
    // A silent unit is reported and fails the probe.
    let silent = format!("rtu:{}:9600:9", sim.path().display());
    let out = bin().args(["-P", &silent]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(":9: no answer"));
}

#[test]
fn scan_lists_what_answers_and_fails_when_nothing_does() {
    let sim = dmc_hil::SimHandle::spawn_pty(dmc_hil::SimConfig::default()).expect("simulator");
    let port = sim.path().display().to_string();
    let out = bin().args(["scan", "--serial", &port, "--rate", "9600", "--units", "1-4"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(":1: Growatt MIN TL-X"), "{stdout}");
    assert!(stdout.contains(":2: Eastron SDM230"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let out = bin().args(["scan", "--serial", &port, "--units", "5-6"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no device answered"));
    let out = bin().args(["scan", "--serial", "/dev/ttyDOESNOTEXIST", "--units", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/ttyDOESNOTEXIST: no such device"), "{err}");
    let out = bin().args(["scan", "--serial", &port, "--units", "0-300"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
