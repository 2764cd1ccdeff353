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
fn demo_shows_values_from_both_devices() {
    if Command::new("dbus-daemon").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dbus-daemon is not installed (apt-get install dbus)");
        return;
    }
    let out = bin().args(["demo", "--duration", "8"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let grid = stdout.lines().rfind(|l| l.contains("com.victronenergy.grid.eastron_"));
    let pv = stdout.lines().rfind(|l| l.contains("com.victronenergy.pvinverter.growatt_"));
    let grid = grid.unwrap_or_else(|| panic!("no meter line in:\n{stdout}\n{stderr}"));
    let pv = pv.unwrap_or_else(|| panic!("no inverter line in:\n{stdout}\n{stderr}"));
    assert!(grid.contains(" V,") && grid.contains(" W,") && !grid.contains("power ---"), "{grid}");
    assert!(pv.contains("rated 4200 W") && pv.contains("status "), "{pv}");
}
