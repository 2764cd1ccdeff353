//! A simulator's pty belongs to the simulator alone: processes the host spawns do not inherit
//! it, so stopping the simulator really makes the port vanish for a client (its writes fail),
//! which is what the daemon's "port vanished and returned" handling is tested against.

use std::io::Write;
use std::process::Command;

use dmc_hil::{SimConfig, SimHandle};

/// The tests here run one at a time: `TTYPort::pair` opens the pty without close-on-exec and
/// the simulator closes that gap right after, so a process spawned by a parallel test in that
/// instant could inherit another test's pty master and keep it alive.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn spawned_processes_do_not_inherit_the_pty() {
    let _one = serial();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    let out = Command::new("sh").args(["-c", "ls -l /proc/$$/fd"]).output().expect("sh runs");
    let fds = String::from_utf8_lossy(&out.stdout);
    let pts = sim.path().display().to_string();
    assert!(!fds.contains("/dev/ptmx"), "the child holds a pty master:\n{fds}");
    assert!(!fds.contains(&pts), "the child holds the pty {pts}:\n{fds}");
}

#[test]
fn a_stopped_simulator_leaves_its_client_a_dead_port() {
    let _one = serial();
    let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
    let mut client =
        std::fs::OpenOptions::new().read(true).write(true).open(sim.path()).expect("open the client side");
    sim.stop();
    let written = client.write_all(&[0x02, 0x04, 0x00, 0x00, 0x00, 0x02, 0x71, 0xF8]);
    assert!(written.is_err(), "writing to a vanished pty succeeded");
}
