//! dbus-modbus-client library: the parts the daemon binary and the integration tests share.
//!
//! * [`dbus`]: Victron BusItem services (one connection per service, low-level dispatcher).
//! * [`settings`]: the `com.victronenergy.settings` client and the built-in stand-in service.

pub mod dbus;
pub mod settings;
