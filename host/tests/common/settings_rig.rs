//! A private bus with the settings stand-in, a simulator on a pty and a settings client: the
//! setup of the tests that watch the daemon follow localsettings.

use dbus_modbus_client::dbus::{BusConnection, ItemValue};
use dbus_modbus_client::settings::client::SettingsClient;
use dbus_modbus_client::settings::standin::SettingsStandin;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

use super::{Background, PrivateBus};

/// Bus, executor, simulator and stand-in for one test.
pub struct SettingsRig {
    pub bus: PrivateBus,
    pub bg: Background,
    pub sim: SimHandle,
    pub settings: SettingsClient,
    _settings_conn: BusConnection,
    _dir: tempfile::TempDir,
    _standin: SettingsStandin,
}

impl SettingsRig {
    /// `None` when no dbus-daemon is available (the test is skipped).
    pub fn new(units: &[(u8, DeviceKind)]) -> Option<SettingsRig> {
        let bus = PrivateBus::start()?;
        let bg = Background::start();
        let sim = SimHandle::spawn_pty(SimConfig::with_units(units)).expect("simulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let standin = super::start_standin(&bus, &bg, dir.path().join("settings.txt"));
        let (choice, spawner) = (bus.bus(), bg.spawner.clone());
        let conn = bg.block_on(async move { dbus_modbus_client::dbus::connect(&choice, &spawner).await });
        let conn = conn.expect("settings client connection");
        let settings = SettingsClient::new(conn.conn.clone(), bg.spawner.clone());
        Some(SettingsRig { bus, bg, sim, settings, _settings_conn: conn, _dir: dir, _standin: standin })
    }

    /// `SetValue` on a setting; its status.
    pub fn set_setting(&self, path: &str, value: ItemValue) -> i32 {
        let client = self.settings.clone();
        let path = path.to_string();
        self.bg.block_on(async move { client.set_value(&path, &value).await.expect("SetValue") })
    }

    /// `GetValue` of a setting.
    pub fn get_setting(&self, path: &str) -> ItemValue {
        let client = self.settings.clone();
        let path = path.to_string();
        self.bg.block_on(async move { client.get_value(&path).await.expect("GetValue") })
    }
}
