//! Upgrade from the Python fork: its settings move to the new ident on first start.
//!
//! The ieb fork of dbus-modbus-client named these devices `cg_<serial>` (the SDM230 meter) and
//! `pv_<serial>` (the Growatt). When `/Settings/Devices/<ident>` does not exist yet but the
//! fork's group does, its `ClassAndVrmInstance`, `CustomName` and `Position` become the defaults
//! of the new settings, so VRM keeps the instance and the GUI the names. The fork's
//! `ClassAndVrmInstance` is removed first: localsettings hands each `class:instance` to one
//! setting only, and would otherwise give the new ident the next free instance.

use dmc_core::profile::{Profile, Role};

use super::settings_watch::setting_path;
use crate::dbus::ItemValue;
use crate::settings::client::{device_settings, SettingsClient};

/// The fork's ident for the device that now has `ident` (`eastron_123` → `cg_123`), if different.
pub fn fork_ident(ident: &str, profile: &Profile) -> Option<String> {
    let serial = ident.strip_prefix(profile.vendor_ident)?.strip_prefix('_')?;
    let prefix = if profile.default_role == Role::PvInverter { "pv" } else { "cg" };
    let old = format!("{prefix}_{serial}");
    (old != ident).then_some(old)
}

/// Copies the fork's settings to `ident` when `ident` has none yet. Errors are logged: a failed
/// migration leaves the defaults, as a fresh install would have.
pub async fn from_python_fork(client: &SettingsClient, ident: &str, profile: &Profile) {
    let Some(old) = fork_ident(ident, profile) else { return };
    if client.get_value(&setting_path(ident, "ClassAndVrmInstance")).await.is_ok() {
        return; // not the first start
    }
    let old_class = setting_path(&old, "ClassAndVrmInstance");
    let Ok(ItemValue::Text(class_and_instance)) = client.get_value(&old_class).await else { return };
    let mut specs = device_settings(ident, &class_and_instance, 1);
    for spec in specs.iter_mut() {
        let name = spec.path.rsplit('/').next().unwrap_or_default();
        if matches!(name, "CustomName" | "Position") {
            if let Ok(value) = client.get_value(&setting_path(&old, name)).await {
                if value.kind() == spec.default.kind() {
                    spec.default = value;
                }
            }
        }
    }
    if let Err(e) = client.remove_settings(&[old_class]).await {
        log::warn!("{ident}: removing the fork's ClassAndVrmInstance: {e}");
    }
    match client.add_settings(&specs).await {
        Ok(_) => log::info!("{ident}: settings taken over from {old} ({class_and_instance})"),
        Err(e) => log::warn!("{ident}: migrating the settings of {old}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::profile::growatt_min::GROWATT_MIN;
    use dmc_core::profile::sdm230::SDM230;

    #[test]
    fn fork_idents() {
        assert_eq!(fork_ident("eastron_1900123456", &SDM230).as_deref(), Some("cg_1900123456"));
        assert_eq!(fork_ident("growatt_ABC123", &GROWATT_MIN).as_deref(), Some("pv_ABC123"));
        assert_eq!(fork_ident("cg_1", &SDM230), None);
        assert_eq!(fork_ident("eastron", &SDM230), None);
    }
}
