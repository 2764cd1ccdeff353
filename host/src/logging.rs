//! A one-line-per-event logger on stderr for daemontools' multilog.
//!
//! multilog stamps each line itself, so lines carry only the level, the
//! subsystem and the message; on an interactive terminal a local monotonic
//! time is prefixed instead so a person reading a `demo` or `--debug` run can
//! follow the timing. `-d/--debug` raises the level to include the
//! frame-level hex trace (target `dmc::frame`).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger {
    level: LevelFilter,
    started: Instant,
    stamp: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
            // Dependencies (zbus, polling) stay quiet unless they warn.
            && (metadata.target().starts_with("dbus_modbus_client")
                || metadata.target().starts_with("dmc")
                || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = record.target().strip_prefix("dbus_modbus_client::").unwrap_or(record.target());
        let mut err = std::io::stderr().lock();
        let _ = if self.stamp {
            let t = self.started.elapsed();
            writeln!(
                err,
                "{:>4}.{:03} {:<5} {}: {}",
                t.as_secs(),
                t.subsec_millis(),
                record.level(),
                target,
                record.args()
            )
        } else {
            writeln!(err, "{:<5} {}: {}", record.level(), target, record.args())
        };
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Installs the logger once; later calls only change nothing.
pub fn init(debug: bool) {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let logger = LOGGER.get_or_init(|| StderrLogger {
        level,
        started: Instant::now(),
        stamp: std::io::stderr().is_terminal(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
