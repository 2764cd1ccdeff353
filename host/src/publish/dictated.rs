//! Configuration a device dictates (the Victron meters' role, phases and position,
//! [`dmc_core::profile::DeviceSettings`]) applied to its service.
//!
//! At registration the role register overrides the class from settings (the settings keep
//! `<role>:<instance>`, so the VRM instance survives), `/Role` is read-only, `/NrOfPhases` is the
//! phase count and only the `/Ac/L<n>/...` paths of the phases present exist, `/Position` comes
//! from the position register (none for grid and genset) with `/PositionIsAdjustable` 0, and
//! `/RefreshTime` is the profile's. A registration waits until those registers were read.
//!
//! Later, a change of the role or phase register seen in the polled values removes the service
//! and registers it again (upstream's `sched_reinit`), through the settings watcher's
//! take-down/re-register machinery; a change of the position register alone updates `/Position`.

use std::sync::Arc;

use dmc_core::profile::{DeviceSettings, Phases, Profile, Role};
use dmc_core::register::RegisterBank;
use dmc_core::value::Value;

use super::settings_watch::{ident_of, parse_class_and_instance, setting_path, Watch};
use super::{lock, Publisher, SharedSlot, Snapshot};
use crate::dbus::{Item, ItemValue, ServiceBuilder};
use crate::engine::Device;
use crate::publish::PublisherConfig;

/// The raw values of the registers whose change re-creates the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Role register, if the profile has one.
    pub role: Option<u16>,
    /// Phase register, if the profile has one.
    pub phases: Option<u16>,
}

/// What a device dictates, resolved against the role settings would give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dictated {
    /// The role the service runs as.
    pub role: Role,
    /// The device chose the role (`/Role` read-only, settings follow it).
    pub role_fixed: bool,
    /// Phases measured (`None`: the profile does not say; publish every path).
    pub phases: Option<Phases>,
    /// The profile has a position register: `/Position` is the device's, not the settings'.
    pub position_fixed: bool,
    /// `/Position` in that role (`None`: no `/Position`).
    pub position: Option<i32>,
    /// `/RefreshTime`.
    pub refresh_time: Option<i32>,
}

/// A register's raw u16 from a decoded value (the dictating registers are plain u16s).
fn raw_of(value: &Value) -> Option<u16> {
    match value {
        Value::Int(i) => u16::try_from(*i).ok(),
        Value::Float(f) if f.fract() == 0.0 && (0.0..=f64::from(u16::MAX)).contains(f) => Some(*f as u16),
        _ => None,
    }
}

/// The raw value of holding register `address` among `values` (parallel to the profile's table).
fn raw(profile: &Profile, values: &[Value], address: u16) -> Option<u16> {
    let (idx, _) = profile.register_at(RegisterBank::Holding, address)?;
    values.get(idx).and_then(raw_of)
}

fn dictates(settings: &DeviceSettings) -> bool {
    settings.role.is_some() || settings.phases.is_some() || settings.position.is_some()
}

/// The re-creating registers' values; `None` when the profile dictates nothing.
pub fn key(profile: &Profile, values: &[Value]) -> Option<Key> {
    let s = &profile.device_settings;
    if !dictates(s) {
        return None;
    }
    Some(Key {
        role: s.role.and_then(|r| raw(profile, values, r.address)),
        phases: s.phases.and_then(|p| raw(profile, values, p.address)),
    })
}

/// Whether every dictating register has been read (registration waits for them).
pub fn ready(profile: &Profile, values: &[Value]) -> bool {
    let s = &profile.device_settings;
    let read = |address: Option<u16>| address.is_none_or(|a| raw(profile, values, a).is_some());
    read(s.role.map(|r| r.address))
        && read(s.phases.map(|p| p.address))
        && read(s.position.map(|p| p.address))
}

impl Dictated {
    /// What `profile`'s device dictates given its `values`; `configured` is the role from settings.
    pub fn of(profile: &Profile, values: &[Value], configured: Role) -> Dictated {
        let s = &profile.device_settings;
        let dictated_role = s.role.and_then(|r| raw(profile, values, r.address).and_then(|v| r.role(v)));
        let role = dictated_role.unwrap_or(configured);
        let phases = s.phases.map(|p| raw(profile, values, p.address).map_or(Phases::ALL, p.phases));
        let position =
            s.position.and_then(|p| raw(profile, values, p.address).and_then(|v| (p.position)(role, v)));
        Dictated {
            role,
            role_fixed: s.role.is_some(),
            phases,
            position_fixed: s.position.is_some(),
            position,
            refresh_time: s.refresh_time,
        }
    }

    /// Whether the service has `path` (per-phase paths only for the phases present).
    pub fn publishes(&self, profile: &Profile, path: &str) -> bool {
        self.phases.is_none_or(|phases| profile.publishes_path(path, phases))
    }

    /// Adds `/NrOfPhases`, `/Position` + `/PositionIsAdjustable` and `/RefreshTime` as dictated.
    pub fn add_items(&self, b: &mut ServiceBuilder) {
        let mut add = |path: &str, item: Item| {
            if let Err(e) = b.add(path, item) {
                log::warn!("{path}: {e}");
            }
        };
        if let Some(phases) = self.phases {
            add("/NrOfPhases", Item::new(i32::from(phases.count())));
        }
        if self.position_fixed {
            if let Some(position) = self.position {
                add("/Position", Item::new(position));
            }
            add("/PositionIsAdjustable", Item::new(0));
        }
        if let Some(ms) = self.refresh_time {
            add("/RefreshTime", Item::new(ms));
        }
    }
}

/// The `ClassAndVrmInstance` that records a dictated `role` next to the stored `current` value
/// (its instance kept; `default_instance` when it has none); `None` when nothing changes.
pub fn class_and_instance_for(role: Role, current: &str, default_instance: i32) -> Option<String> {
    let parsed = parse_class_and_instance(current);
    if parsed.is_some_and(|(class, _)| class == role.as_str()) {
        return None;
    }
    let instance = parsed.map_or(default_instance, |(_, i)| i);
    Some(format!("{}:{instance}", role.as_str()))
}

/// Records a dictated role in the device's `ClassAndVrmInstance` (so the GUI and VRM see the
/// class the service runs as, with its instance unchanged).
pub(super) async fn store_role(config: &PublisherConfig, ident: &str, dictated: &Dictated, instance: i32) {
    let Some(client) = config.settings.as_ref().filter(|_| dictated.role_fixed) else { return };
    let path = setting_path(ident, "ClassAndVrmInstance");
    let current = match client.get_value(&path).await {
        Ok(ItemValue::Text(t)) => t,
        _ => String::new(),
    };
    let Some(wanted) = class_and_instance_for(dictated.role, &current, instance) else { return };
    match client.set_value(&path, &ItemValue::Text(wanted.clone())).await {
        Ok(0) => log::info!("{ident}: the device runs as {}; {path} = {wanted}", dictated.role.as_str()),
        Ok(status) => log::warn!("{ident}: storing {path} = {wanted} refused ({status})"),
        Err(e) => log::warn!("{ident}: storing {path}: {e}"),
    }
}

/// Called after each completed read of a published device: a changed role or phase register
/// re-creates the service; a changed position register updates `/Position`.
pub(super) fn follow(publisher: &Publisher, slot: &SharedSlot, device_index: usize, device: &Device) {
    let Some(profile) = device.profile else { return };
    let Some(now) = key(profile, &device.values) else { return };
    if now.role.is_none() && now.phases.is_none() {
        return;
    }
    let service = {
        let mut s = lock(slot);
        let Some(service) = s.service.clone() else { return };
        if s.registering || s.dictated == Some(now) {
            drop(s);
            update_position(publisher, &service, profile, &device.values);
            return;
        }
        s.dictated = Some(now);
        service
    };
    let Some(mut snapshot) = Snapshot::of(device) else { return };
    snapshot.bus_state = publisher.bus_state.clone();
    snapshot.online = lock(slot).online.clone();
    // The next re-registration (this one, and any later settings edit) uses these values.
    lock(slot).snapshot = Some(snapshot.clone());
    let ident = ident_of(service.name());
    log::info!("{}: the device changed its role or phases ({now:?}); registering again", service.name());
    drop(service);
    let watch = Watch {
        config: publisher.config.clone(),
        slot: Arc::downgrade(slot),
        snapshot,
        commands: publisher.commands.clone(),
        device_index,
        ident,
    };
    let slot = slot.clone();
    publisher.config.spawner.spawn(async move { watch.reregister(&slot).await }).detach();
}

/// A position register change alone needs no new service: `/Position` follows it.
fn update_position(
    publisher: &Publisher,
    service: &Arc<crate::dbus::Service>,
    profile: &Profile,
    values: &[Value],
) {
    let Some(register) = profile.device_settings.position else { return };
    let Some(role) = service.name().strip_prefix("com.victronenergy.").and_then(|r| r.split('.').next())
    else {
        return;
    };
    let (Some(role), Some(raw)) = (Role::from_name(role), raw(profile, values, register.address)) else {
        return;
    };
    let Some(position) = (register.position)(role, raw) else { return };
    if service.set_value("/Position", position).unwrap_or(false) {
        super::flush(&publisher.config, service.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::profile::sdm230::SDM230;
    use dmc_core::profile::victron_em::{
        PHASE_CONFIG_REGISTER, POSITION_REGISTER, REFRESH_TIME, ROLE_REGISTER, VM_3P75CT,
    };

    /// The VM-3P75CT's values with the three dictating registers set (the rest invalid).
    fn vm_values(phase_config: u16, role: u16, position: u16) -> Vec<Value> {
        let p = &VM_3P75CT;
        let mut values = vec![Value::Invalid; p.registers.len()];
        for (address, raw) in
            [(PHASE_CONFIG_REGISTER, phase_config), (ROLE_REGISTER, role), (POSITION_REGISTER, position)]
        {
            let (idx, _) = p.register_at(RegisterBank::Holding, address).unwrap();
            values[idx] = Value::Float(f64::from(raw));
        }
        values
    }

    #[test]
    fn raw_values_come_from_ints_and_whole_floats_only() {
        assert_eq!(raw_of(&Value::Float(2.0)), Some(2));
        assert_eq!(raw_of(&Value::Int(7)), Some(7));
        for v in [
            Value::Float(2.5),
            Value::Float(-1.0),
            Value::Float(70000.0),
            Value::Float(f64::NAN),
            Value::Invalid,
        ] {
            assert_eq!(raw_of(&v), None, "{v:?}");
        }
    }

    #[test]
    fn default_meter_is_a_three_phase_grid_meter() {
        let d = Dictated::of(&VM_3P75CT, &vm_values(3, 0, 0), Role::Grid);
        assert_eq!(d.role, Role::Grid);
        assert!(d.role_fixed && d.position_fixed);
        assert_eq!(d.phases, Some(Phases::ALL));
        assert_eq!((d.position, d.refresh_time), (None, Some(REFRESH_TIME)));
        assert!(d.publishes(&VM_3P75CT, "/Ac/L3/Power"));
    }

    #[test]
    fn single_phase_on_l2_keeps_only_l2_paths() {
        let d = Dictated::of(&VM_3P75CT, &vm_values(1, 0, 0), Role::Grid);
        assert_eq!(d.phases.map(Phases::count), Some(1));
        assert!(d.publishes(&VM_3P75CT, "/Ac/L2/Current"));
        assert!(!d.publishes(&VM_3P75CT, "/Ac/L1/Current"));
        assert!(!d.publishes(&VM_3P75CT, "/Ac/L3/Energy/Forward"));
        assert!(d.publishes(&VM_3P75CT, "/Ac/Power"));
    }

    #[test]
    fn role_register_overrides_settings_and_sets_position() {
        let pv = Dictated::of(&VM_3P75CT, &vm_values(3, 1, 2), Role::Grid);
        assert_eq!((pv.role, pv.position), (Role::PvInverter, Some(2)));
        let load = Dictated::of(&VM_3P75CT, &vm_values(3, 3, 0), Role::Grid);
        assert_eq!((load.role, load.position), (Role::AcLoad, Some(1)));
        // Past the end of the role table: the configured role stays.
        let odd = Dictated::of(&VM_3P75CT, &vm_values(3, 99, 0), Role::Grid);
        assert_eq!((odd.role, odd.position), (Role::Grid, None));
    }

    #[test]
    fn profiles_that_dictate_nothing_are_untouched() {
        let values = vec![Value::Invalid; SDM230.registers.len()];
        let d = Dictated::of(&SDM230, &values, Role::AcLoad);
        assert_eq!(d.role, Role::AcLoad);
        assert!(!d.role_fixed && !d.position_fixed);
        assert_eq!((d.phases, d.refresh_time), (None, None));
        assert!(d.publishes(&SDM230, "/Ac/L2/Power"));
        assert_eq!(key(&SDM230, &values), None);
        assert!(ready(&SDM230, &values));
    }

    #[test]
    fn key_and_readiness_follow_the_registers() {
        let unread = vec![Value::Invalid; VM_3P75CT.registers.len()];
        assert!(!ready(&VM_3P75CT, &unread));
        assert_eq!(key(&VM_3P75CT, &unread), Some(Key { role: None, phases: None }));
        let values = vm_values(1, 1, 0);
        assert!(ready(&VM_3P75CT, &values));
        assert_eq!(key(&VM_3P75CT, &values), Some(Key { role: Some(1), phases: Some(1) }));
        assert_ne!(key(&VM_3P75CT, &values), key(&VM_3P75CT, &vm_values(0, 1, 0)));
        // Position alone is not part of the key.
        assert_eq!(key(&VM_3P75CT, &values), key(&VM_3P75CT, &vm_values(1, 1, 2)));
    }

    #[test]
    fn class_and_instance_keeps_the_instance() {
        assert_eq!(class_and_instance_for(Role::PvInverter, "grid:41", 40), Some("pvinverter:41".into()));
        assert_eq!(class_and_instance_for(Role::Grid, "grid:41", 40), None);
        assert_eq!(class_and_instance_for(Role::Grid, "", 40), Some("grid:40".into()));
        assert_eq!(class_and_instance_for(Role::AcLoad, "junk", 40), Some("acload:40".into()));
    }
}
