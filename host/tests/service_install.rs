//! `service/install.sh` and `uninstall.sh` against a temporary root: the files,
//! links and rc.local hook they produce, and that running them twice changes
//! nothing the second time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn run(script: &str, root: &Path) -> String {
    let out = Command::new("sh")
        .arg(root.join("data/dbus-modbus-client/service").join(script))
        .env("ROOT", root)
        .output()
        .expect("sh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed: {text}");
    text
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[test]
fn install_twice_then_uninstall_twice() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let dir = root.join("data/dbus-modbus-client");
    copy_dir(&repo().join("service"), &dir.join("service"));
    fs::write(dir.join("dbus-modbus-client"), "#!/bin/sh\n").unwrap();
    // A stand-in for serial-starter's stop-tty.sh that records its argument.
    let ss = root.join("opt/victronenergy/serial-starter");
    fs::create_dir_all(&ss).unwrap();
    let log = root.join("stop-tty.log");
    fs::write(ss.join("stop-tty.sh"), format!("#!/bin/sh\necho \"$1\" >> {}\n", log.display())).unwrap();
    fs::set_permissions(ss.join("stop-tty.sh"), fs::Permissions::from_mode(0o755)).unwrap();

    let first = run("install.sh", root);
    assert!(first.contains("linked /service/dbus-modbus-client"), "{first}");
    let rc_after_first = fs::read_to_string(root.join("data/rc.local")).unwrap();
    let second = run("install.sh", root);
    assert!(!second.contains("linked"), "second run relinked: {second}");
    assert!(!second.contains("hooked"), "second run re-hooked: {second}");

    let link = root.join("service/dbus-modbus-client");
    assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("/data/dbus-modbus-client/service"));
    let rc = fs::read_to_string(root.join("data/rc.local")).unwrap();
    assert_eq!(rc, rc_after_first, "rc.local changed on the second run");
    assert!(rc.starts_with("#!/bin/sh\n"));
    assert_eq!(rc.matches("# BEGIN dbus-modbus-client").count(), 1);
    assert!(rc.contains("sh /data/dbus-modbus-client/service/boot.sh"));
    assert!(is_executable(&root.join("data/rc.local")));
    for f in ["dbus-modbus-client", "service/run", "service/log/run", "service/boot.sh"] {
        assert!(is_executable(&dir.join(f)), "{f} not executable");
    }
    assert_eq!(fs::read_to_string(&log).unwrap(), "ttyUSB0\nttyUSB0\n");

    // An existing rc.local keeps its own lines.
    fs::write(root.join("data/rc.local"), format!("{rc}echo mine\n")).unwrap();
    run("uninstall.sh", root);
    run("uninstall.sh", root);
    assert!(fs::symlink_metadata(&link).is_err(), "service link left behind");
    let rc = fs::read_to_string(root.join("data/rc.local")).unwrap();
    assert_eq!(rc, "#!/bin/sh\necho mine\n");
}

#[test]
fn run_script_passes_config_to_the_daemon() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("dmc");
    copy_dir(&repo().join("service"), &dir.join("service"));
    // A fake daemon that prints its arguments.
    fs::write(dir.join("dbus-modbus-client"), "#!/bin/sh\necho \"ARGS: $*\"\n").unwrap();
    fs::set_permissions(dir.join("dbus-modbus-client"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        dir.join("service/config"),
        "SERIAL=/dev/serial/by-id/usb-x\nRATE=19200\nDEVICES=\"rtu:ttyUSB0:19200:1\"\nARGS=\"--debug\"\n",
    )
    .unwrap();
    let out = Command::new("sh").arg(dir.join("service/run")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ARGS: -x -s /dev/serial/by-id/usb-x -r 19200 -F rtu:ttyUSB0:19200:1 --debug"),
        "{text}"
    );
}
