//! Shared integration-test helpers: a private `dbus-daemon` and a background executor.
//!
//! Each test starts its own bus (`dbus-daemon --session --nofork --print-address=1`), so tests
//! run in parallel without touching the developer's session or the system bus, and outside
//! tools (`dbus-send`, `gdbus`, `busctl --user`, python) reach it through
//! [`PrivateBus::command`], which sets `DBUS_SESSION_BUS_ADDRESS`.
#![allow(dead_code)] // each test file uses a different subset

pub mod daemon;
pub mod recorder;
pub mod services;
pub mod settings_rig;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use dbus_modbus_client::dbus::{BusChoice, Spawner};

/// A private bus daemon, killed on drop.
pub struct PrivateBus {
    child: Child,
    address: String,
}

impl PrivateBus {
    /// Starts a daemon; `None` (with a message) when `dbus-daemon` is not installed.
    pub fn start() -> Option<PrivateBus> {
        let spawned = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: dbus-daemon is not installed (apt-get install dbus)");
                return None;
            }
            Err(e) => panic!("starting dbus-daemon failed: {e}"),
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading the bus address");
        let address = line.trim().to_owned();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        Some(PrivateBus { child, address })
    }

    /// Stops the daemon now (a bus restart, as far as clients can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The bus address (`unix:path=...,guid=...`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The bus choice that connects to this daemon.
    pub fn bus(&self) -> BusChoice {
        BusChoice::Address(self.address.clone())
    }

    /// A command whose session bus is this daemon.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.address);
        cmd
    }

    /// `gdbus call` of a BusItem method without arguments; returns (success, stdout, stderr).
    pub fn gdbus_call(&self, dest: &str, path: &str, method: &str) -> (bool, String, String) {
        let method = format!("com.victronenergy.BusItem.{method}");
        self.run("gdbus", &["call", "--session", "--dest", dest, "--object-path", path, "--method", &method])
    }

    /// Runs a command to completion; returns (success, stdout, stderr).
    pub fn run(&self, program: &str, args: &[&str]) -> (bool, String, String) {
        let out = self.command(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An executor running on a background thread, so the test thread may block (run outside
/// tools, sleep) while services keep answering.
pub struct Background {
    pub spawner: Spawner,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn start() -> Background {
        let spawner: Spawner = Arc::new(async_executor::Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let ex = spawner.clone();
        let thread = std::thread::spawn(move || {
            let _ = async_io::block_on(ex.run(stopped.recv()));
        });
        Background { spawner, stop: Some(stop), thread: Some(thread) }
    }

    /// Runs a future on the background executor and waits for it.
    pub fn block_on<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        async_io::block_on(self.spawner.spawn(fut))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the built-in settings stand-in on `bus`, persisting to `file`.
pub fn start_standin(
    bus: &PrivateBus,
    bg: &Background,
    file: std::path::PathBuf,
) -> dbus_modbus_client::settings::standin::SettingsStandin {
    let choice = bus.bus();
    let spawner = bg.spawner.clone();
    bg.block_on(async move {
        dbus_modbus_client::settings::standin::SettingsStandin::start(file, &choice, &spawner).await
    })
    .expect("settings stand-in")
}

/// Skips the test (returns) when no dbus-daemon is available.
#[macro_export]
macro_rules! bus_or_skip {
    () => {
        match common::PrivateBus::start() {
            Some(bus) => bus,
            None => return,
        }
    };
}
