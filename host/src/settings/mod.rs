//! Settings: the client of `com.victronenergy.settings` and a built-in stand-in for it.
//!
//! * [`client`]: what the daemon calls (AddSettings, GetValue/SetValue, change subscription).
//! * [`standin`]: `dbus-modbus-client settings-service --file PATH`, the localsettings D-Bus API
//!   for PCs and tests where Victron's localsettings does not run.

pub mod client;
pub mod standin;

/// The localsettings bus name.
pub const SETTINGS_SERVICE: &str = "com.victronenergy.settings";
/// The localsettings interface of group objects (AddSetting, AddSettings, ...).
pub const SETTINGS_INTERFACE: &str = "com.victronenergy.Settings";
