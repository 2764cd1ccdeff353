//! Settings changes made by others (the GUI, VRM) applied to a live service.
//!
//! localsettings announces a change only with `PropertiesChanged` on the setting's path
//! (venus-conventions §3). Per device this module watches
//! `/Settings/Devices/<ident>/{ClassAndVrmInstance,CustomName,Enabled}` and applies them as
//! upstream does (§6): a new class (role) or instance removes the service and registers it again
//! under `com.victronenergy.<role>.<ident>` (the instance is cached by every consumer at scan time,
//! so re-registering is the only way all of them see it); a new custom name updates `/CustomName`;
//! `Enabled` = 0 removes the service (and the engine stops polling the device).
//!
//! A remote `SetValue` on `/Role` is answered here too: it only writes `<role>:<instance>` to the
//! setting; the resulting `PropertiesChanged` drives the re-registration like a GUI edit would.

use std::sync::{Arc, Weak};
use std::time::Duration as StdDuration;

use async_io::Timer;
use dmc_core::profile::{Profile, Role};

use super::{lock, register, SharedSlot, Slot, Snapshot, REGISTER_RETRY};
use crate::dbus::ItemValue;
use crate::engine::bus::Command;
use crate::publish::PublisherConfig;

/// Pause between a role/instance change and the re-registration (upstream's `sched_reinit`):
/// lets the SetValue answer and in-flight signals of the old service go out first.
const REINIT_DELAY: StdDuration = StdDuration::from_millis(250);

/// `/Settings/Devices/<ident>/<name>`.
pub fn setting_path(ident: &str, name: &str) -> String {
    format!("/Settings/Devices/{ident}/{name}")
}

/// Parses a `ClassAndVrmInstance` value (`grid:40`): exactly one `:` and an integer instance.
pub fn parse_class_and_instance(value: &str) -> Option<(&str, i32)> {
    let (class, instance) = value.split_once(':')?;
    if instance.contains(':') {
        return None;
    }
    Some((class, instance.trim().parse().ok()?))
}

/// What a changed setting means for the live service.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingChange {
    /// Nothing to do (same value, or a value this device cannot take).
    None,
    /// Remove the service and register it again (role or instance changed).
    Reregister,
    /// Set `/CustomName`.
    CustomName(String),
    /// The device was enabled (`true`) or disabled.
    Enabled(bool),
}

/// What the service currently shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// `/Role`.
    pub role: String,
    /// `/DeviceInstance`.
    pub instance: i32,
    /// `/CustomName`.
    pub custom_name: String,
}

/// Decides what the change of setting `name` to `value` means for a service showing `current`.
pub fn classify(profile: &Profile, name: &str, value: &ItemValue, current: &Published) -> SettingChange {
    match (name, value) {
        ("ClassAndVrmInstance", ItemValue::Text(t)) => {
            let Some((class, instance)) = parse_class_and_instance(t) else {
                log::warn!("ignoring malformed ClassAndVrmInstance {t:?}");
                return SettingChange::None;
            };
            let Some(role) = Role::from_name(class) else { return SettingChange::None };
            if profile.device_settings.role.is_some() {
                // The device dictates its role (the class follows it): only the instance is the user's.
                return if instance == current.instance {
                    SettingChange::None
                } else {
                    SettingChange::Reregister
                };
            }
            if !profile.allows_role(role) && role != profile.default_role {
                log::warn!("{}: role {class} not allowed; ignored", profile.name);
                return SettingChange::None;
            }
            if class == current.role && instance == current.instance {
                SettingChange::None
            } else {
                SettingChange::Reregister
            }
        }
        ("CustomName", ItemValue::Text(t)) if *t != current.custom_name => {
            SettingChange::CustomName(t.clone())
        }
        ("Enabled", ItemValue::Int(v)) => SettingChange::Enabled(*v != 0),
        _ => SettingChange::None,
    }
}

/// What a registration ended with.
pub(super) enum Registered {
    /// On the bus.
    Service(Arc<crate::dbus::Service>),
    /// `Enabled` = 0: identified, neither polled nor published.
    Disabled {
        /// The device's ident.
        ident: String,
    },
}

/// The ident of a device service name (`com.victronenergy.grid.eastron_1` → `eastron_1`).
pub(super) fn ident_of(service_name: &str) -> String {
    service_name.rsplit('.').next().unwrap_or_default().to_string()
}

/// Stores a registration's outcome in the device's slot and starts the device's settings
/// watcher the first time.
pub(super) fn registered(
    config: &Arc<PublisherConfig>,
    slot: &SharedSlot,
    outcome: Registered,
    snapshot: Snapshot,
    commands: async_channel::Sender<Command>,
    device_index: usize,
) {
    let mut s = lock(slot);
    s.registering = false;
    s.dictated = super::dictated::key(snapshot.profile, &snapshot.values);
    s.snapshot = Some(snapshot.clone());
    let ident = match outcome {
        // Disabled while it was registering: dropping the service closes its connection.
        Registered::Service(service) if s.disabled => {
            log::info!("{}: disabled meanwhile; not published", service.name());
            ident_of(service.name())
        }
        Registered::Service(service) => {
            let ident = ident_of(service.name());
            s.service = Some(service);
            s.needs_full_update = true;
            ident
        }
        Registered::Disabled { ident } => {
            s.disabled = true;
            ident
        }
    };
    if !std::mem::replace(&mut s.watching, true) {
        let slot = Arc::downgrade(slot);
        let watch = Watch { config: config.clone(), slot, snapshot, commands, device_index, ident };
        config.spawner.spawn(watch.run()).detach();
    }
}

/// Everything needed to register one device's service again.
pub(super) struct Watch {
    pub config: Arc<PublisherConfig>,
    /// Weak: the publisher owns the slot, and the service in it must go when the daemon stops.
    pub slot: Weak<std::sync::Mutex<Slot>>,
    pub snapshot: Snapshot,
    pub commands: async_channel::Sender<Command>,
    pub device_index: usize,
    pub ident: String,
}

impl Watch {
    /// Runs for the life of the daemon: one subscription per device, surviving re-registrations.
    pub async fn run(self) {
        let Some(client) = self.config.settings.clone() else { return };
        let names = ["ClassAndVrmInstance", "CustomName", "Enabled"];
        let paths: Vec<String> = names.iter().map(|n| setting_path(&self.ident, n)).collect();
        let changes = match client.subscribe(paths.clone()).await {
            Ok(rx) => rx,
            Err(e) => {
                log::warn!("{}: settings changes will not be followed: {e}", self.ident);
                return;
            }
        };
        // A change between AddSettings and the subscription would be lost: compare once now.
        for path in &paths {
            if let Ok(value) = client.get_value(path).await {
                self.apply(path, &value).await;
            }
        }
        while let Ok((path, value)) = changes.recv().await {
            if self.slot.strong_count() == 0 {
                return;
            }
            self.apply(&path, &value).await;
        }
    }

    async fn apply(&self, path: &str, value: &ItemValue) {
        let Some(slot) = self.slot.upgrade() else { return };
        let Some(service) = lock(&slot).service.clone() else {
            // Not on the bus (lost, disabled, being registered): the next registration
            // reads the settings afresh, except Enabled, which decides whether there is one.
            if path.ends_with("/Enabled") {
                self.set_enabled(&slot, matches!(value, ItemValue::Int(v) if *v != 0));
            }
            return;
        };
        let text = |p: &str| match service.value(p) {
            Some(ItemValue::Text(t)) => t,
            _ => String::new(),
        };
        // The role from the bus name: a remote SetValue on /Role stores the new role in the
        // old service before the settings change arrives.
        let registered_role =
            service.name().strip_prefix("com.victronenergy.").and_then(|r| r.split('.').next());
        let current = Published {
            role: registered_role.unwrap_or_default().to_string(),
            instance: match service.value("/DeviceInstance") {
                Some(ItemValue::Int(i)) => i,
                _ => -1,
            },
            custom_name: text("/CustomName"),
        };
        let name = path.rsplit('/').next().unwrap_or_default();
        match classify(self.snapshot.profile, name, value, &current) {
            SettingChange::None => {}
            SettingChange::CustomName(new) => {
                if let (Some(control), Some(state)) = (&self.config.control, &self.snapshot.bus_state) {
                    let names = (new.as_str(), self.snapshot.profile.product_name);
                    control.device_registered(
                        &self.ident,
                        names,
                        &self.snapshot.serial,
                        state.clone(),
                        self.device_index,
                    );
                }
                if service.set_value("/CustomName", new).unwrap_or(false) {
                    super::flush(&self.config, service);
                }
            }
            SettingChange::Reregister => {
                drop(service);
                log::info!("{}: {name} changed to {}; registering again", self.ident, value.default_text());
                self.reregister(&slot).await;
            }
            SettingChange::Enabled(enabled) => {
                drop(service);
                self.set_enabled(&slot, enabled);
                if !enabled {
                    self.take_down(&slot, "disabled", false).await;
                }
            }
        }
    }

    /// Tells the bus whether to talk to the device; once enabled again, the publisher
    /// registers the service at the next completed read.
    fn set_enabled(&self, slot: &SharedSlot, enabled: bool) {
        lock(slot).disabled = !enabled;
        if let Some(state) = &self.snapshot.bus_state {
            state.set_enabled(self.device_index, enabled);
        }
    }

    /// Releases the service's name and drops it (the connection closes when the last
    /// in-flight task holding it ends).
    /// `then_register`: mark the slot as registering in the same step, so the publisher does
    /// not start a second registration while the name is being released.
    async fn take_down(&self, slot: &SharedSlot, why: &str, then_register: bool) -> bool {
        Timer::after(REINIT_DELAY).await;
        let old = {
            let mut s = lock(slot);
            if s.registering || s.service.is_none() {
                return false;
            }
            s.generation += 1;
            s.registering = then_register;
            s.service.take()
        };
        let Some(old) = old else { return false };
        log::info!("{}: removed from D-Bus ({why})", old.name());
        if let Err(e) = old.connection().release_name(old.name()).await {
            log::warn!("{}: releasing the name: {e}", old.name());
        }
        drop(old);
        true
    }

    pub(super) async fn reregister(&self, slot: &SharedSlot) {
        if !self.take_down(slot, "settings changed", true).await {
            return;
        }
        loop {
            let snapshot = lock(slot).snapshot.clone().unwrap_or_else(|| self.snapshot.clone());
            match register(&self.config, snapshot.clone(), self.commands.clone(), self.device_index).await {
                Ok(outcome) => {
                    let commands = self.commands.clone();
                    registered(&self.config, slot, outcome, snapshot, commands, self.device_index);
                    return;
                }
                Err(e) => log::error!("{e}; retrying in {} s", REGISTER_RETRY.as_secs()),
            }
            Timer::after(REGISTER_RETRY).await;
        }
    }
}

/// Answers a remote `SetValue` on `/Role`: validated against the profile's allowed roles, then
/// stored as `<role>:<instance>` (the instance kept); the settings change re-registers the service.
pub(super) async fn request_role(
    config: &PublisherConfig,
    profile: &Profile,
    ident: &str,
    value: &ItemValue,
) -> bool {
    let ItemValue::Text(name) = value else { return false };
    let Some(role) = Role::from_name(name).filter(|r| profile.allows_role(*r)) else {
        log::info!("{ident}: role {name:?} refused (not in /AllowedRoles)");
        return false;
    };
    let Some(client) = &config.settings else {
        log::warn!("{ident}: role change needs the settings service");
        return false;
    };
    let path = setting_path(ident, "ClassAndVrmInstance");
    let current = match client.get_value(&path).await {
        Ok(ItemValue::Text(t)) => t,
        Ok(_) => String::new(),
        Err(e) => {
            log::warn!("{ident}: reading {path}: {e}");
            return false;
        }
    };
    let instance = parse_class_and_instance(&current).map_or(super::default_instance(role), |(_, i)| i);
    let wanted = format!("{}:{instance}", role.as_str());
    matches!(client.set_value(&path, &ItemValue::Text(wanted)).await, Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::profile::growatt_min::GROWATT_MIN;
    use dmc_core::profile::sdm230::SDM230;

    fn published(role: &str, instance: i32) -> Published {
        Published { role: role.into(), instance, custom_name: "Roof".into() }
    }

    fn text(s: &str) -> ItemValue {
        ItemValue::Text(s.into())
    }

    #[test]
    fn class_and_instance_changes_reregister_only_when_different() {
        let p = &SDM230;
        let now = published("grid", 40);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:40"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("acload:40"), &now), SettingChange::Reregister);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:41"), &now), SettingChange::Reregister);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:4:1"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("tank:40"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &ItemValue::Int(3), &now), SettingChange::None);
    }

    #[test]
    fn a_role_the_profile_does_not_allow_is_ignored() {
        let p = &GROWATT_MIN;
        let now = published("pvinverter", 20);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:20"), &now), SettingChange::None);
        assert_eq!(
            classify(p, "ClassAndVrmInstance", &text("pvinverter:21"), &now),
            SettingChange::Reregister
        );
    }

    #[test]
    fn a_dictated_role_leaves_only_the_instance_to_settings() {
        let p = &dmc_core::profile::victron_em::VM_3P75CT;
        let now = published("pvinverter", 40);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("pvinverter:40"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:40"), &now), SettingChange::None);
        assert_eq!(classify(p, "ClassAndVrmInstance", &text("grid:41"), &now), SettingChange::Reregister);
    }

    #[test]
    fn custom_name_and_enabled() {
        let p = &SDM230;
        let now = published("grid", 40);
        assert_eq!(classify(p, "CustomName", &text("Roof"), &now), SettingChange::None);
        assert_eq!(classify(p, "CustomName", &text("Shed"), &now), SettingChange::CustomName("Shed".into()));
        assert_eq!(classify(p, "Enabled", &ItemValue::Int(0), &now), SettingChange::Enabled(false));
        assert_eq!(classify(p, "Enabled", &ItemValue::Int(1), &now), SettingChange::Enabled(true));
    }

    #[test]
    fn setting_paths() {
        assert_eq!(setting_path("eastron_1", "CustomName"), "/Settings/Devices/eastron_1/CustomName");
        assert_eq!(parse_class_and_instance("acload: 41"), Some(("acload", 41)));
    }
}
