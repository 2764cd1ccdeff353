//! The dbus-modbus-client daemon as a library, so integration tests and the
//! demo drive exactly the code the GX runs.
//!
//! * [`spec`], [`link`]: device specs and the byte links to serial ports and sockets.
//! * [`engine`]: the polling engine (buses, devices, presence, timeouts).
//! * [`dbus`]: Victron BusItem services (one connection per service, low-level dispatcher).
//! * [`settings`]: the `com.victronenergy.settings` client and the built-in stand-in service.
//! * [`control_service`]: `com.victronenergy.modbusclient.<name>` (scan, per-device statistics, Enabled).
//! * [`dyngen`]: dynamic generation (export limiting) and the standard `/Ac/PowerLimit`.
//! * [`logging`]: the one-line stderr logger for multilog.
//! * [`vreg`]: VregLink (`GetVreg` / `SetVreg` on `/Devices/0/VregLink`) over the command queue.
//! * [`setvalue`]: the pure checks of a remote `SetValue` (fuzzed).

pub mod control_service;
pub mod daemon;
pub mod dbus;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dyngen;
pub mod engine;
pub mod link;
pub mod logging;
pub mod probe;
pub mod publish;
pub mod settings;
pub mod setvalue;
pub mod spec;
pub mod vreg;
