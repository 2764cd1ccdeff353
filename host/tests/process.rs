//! The daemon process under supervision: SIGTERM stops it cleanly (services
//! released, exit 0), the watchdog ends a stalled process with status 1, and
//! losing the D-Bus daemon ends it with a non-zero status so daemontools
//! restarts it on the new bus.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Background, PrivateBus};
use dbus_modbus_client::settings::standin::SettingsStandin;
use dmc_hil::serve::{SimConfig, SimHandle};

struct Setup {
    bus: PrivateBus,
    bg: Background,
    sim: SimHandle,
    _standin: SettingsStandin,
    _dir: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    let bus = PrivateBus::start()?;
    let bg = Background::start();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let standin = common::start_standin(&bus, &bg, dir.path().join("settings.txt"));
    Some(Setup { bus, bg, sim, _standin: standin, _dir: dir })
}

fn daemon(s: &Setup, env: &[(&str, &str)]) -> Child {
    let spec = format!("rtu:{p}:9600:1,rtu:{p}:9600:2", p = s.sim.path().display());
    let mut cmd = s.bus.command(env!("CARGO_BIN_EXE_dbus-modbus-client"));
    cmd.args(["-F", &spec]).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("daemon starts")
}

fn has_name(s: &Setup, prefix: &str) -> bool {
    common::services::names(&s.bus).iter().any(|n| n.contains(prefix))
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut text);
    }
    text
}

#[test]
fn sigterm_stops_cleanly_and_releases_the_services() {
    let Some(s) = setup() else { return };
    let mut child = daemon(&s, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || has_name(&s, "com.victronenergy.grid.")),
        "meter never published"
    );
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    // The target is 1 s; the bound here only catches a hang on a loaded machine.
    let status =
        wait_exit(&mut child, Duration::from_secs(10)).expect("the daemon did not stop after SIGTERM");
    let log = stderr_of(&mut child);
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("stopping"), "{log}");
    assert!(!has_name(&s, "com.victronenergy.grid."), "service still on the bus after exit");
    drop(s.bg);
}

#[test]
fn watchdog_ends_a_stalled_daemon() {
    let Some(s) = setup() else { return };
    let mut child = daemon(&s, &[("DMC_WATCHDOG_SECS", "2"), ("DMC_DEBUG_STALL_SECS", "1")]);
    let status = wait_exit(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("a stalled daemon was not ended by the watchdog")
    });
    let log = stderr_of(&mut child);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("watchdog: no progress in the executor"), "{log}");
}

#[test]
fn losing_the_bus_ends_the_daemon_with_an_error() {
    let Some(mut s) = setup() else { return };
    let mut child = daemon(&s, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || has_name(&s, "com.victronenergy.grid.")),
        "meter never published"
    );
    s.bus.kill();
    let status = wait_exit(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the daemon kept running without its bus")
    });
    let log = stderr_of(&mut child);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("D-Bus connection lost"), "{log}");
}
