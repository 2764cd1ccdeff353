//! Dynamic generation settings in localsettings, and the fork's old ones.
//!
//! Ours live under `/Settings/DynamicGeneration/`: `Enabled` (0/1, default
//! 0), `ExportLimit` (W, default 0), `SocThreshold` (%, default 90) and
//! `MaxPower` (W, default 0 = the inverter's nominal power from holding 6-7).
//!
//! The Python fork used `/Settings/DynamicGeneration/derateGeneration` (0/1)
//! and `energyDifference` (kWh). They are read when present, never created:
//! * `derateGeneration` seeds `Enabled` when `Enabled` does not exist yet
//!   (the first start after the fork), so an installation that limited keeps
//!   limiting; afterwards `Enabled` alone decides.
//! * `energyDifference` keeps the fork's gate: tracking is active only while
//!   the grid meter's lifetime import minus export (kWh) is below it. Absent
//!   (or the meter's counters unknown) means "always track".

use crate::dbus::ItemValue;
use crate::settings::client::SettingSpec;
use dmc_core::control::Config;

/// The group all settings live in.
pub const BASE: &str = "/Settings/DynamicGeneration";
/// `Enabled` (0/1).
pub const ENABLED: &str = "/Settings/DynamicGeneration/Enabled";
/// `ExportLimit` (W).
pub const EXPORT_LIMIT: &str = "/Settings/DynamicGeneration/ExportLimit";
/// `SocThreshold` (%).
pub const SOC_THRESHOLD: &str = "/Settings/DynamicGeneration/SocThreshold";
/// `MaxPower` (W, 0 = from the inverter).
pub const MAX_POWER: &str = "/Settings/DynamicGeneration/MaxPower";
/// The fork's switch (read only when present).
pub const FORK_DERATE: &str = "/Settings/DynamicGeneration/derateGeneration";
/// The fork's net-energy gate in kWh (read only when present).
pub const FORK_ENERGY_DIFFERENCE: &str = "/Settings/DynamicGeneration/energyDifference";

/// The settings as the controller needs them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynGenSettings {
    /// Master switch.
    pub enabled: bool,
    /// Allowed export, W.
    pub export_limit_w: f32,
    /// Free running below this state of charge, %.
    pub soc_threshold_percent: f32,
    /// Rated power override, W (0 = the inverter's).
    pub max_power_w: f32,
    /// The fork's `energyDifference`, kWh, when present.
    pub energy_difference_kwh: Option<f32>,
}

impl Default for DynGenSettings {
    fn default() -> Self {
        DynGenSettings {
            enabled: false,
            export_limit_w: 0.0,
            soc_threshold_percent: Config::DEFAULT.soc_threshold_percent,
            max_power_w: 0.0,
            energy_difference_kwh: None,
        }
    }
}

impl DynGenSettings {
    /// The core controller configuration (everything else at core's defaults).
    pub fn controller_config(&self) -> Config {
        Config {
            enabled: self.enabled,
            export_limit_w: self.export_limit_w,
            soc_threshold_percent: self.soc_threshold_percent,
            max_power_w: self.max_power_w,
            ..Config::DEFAULT
        }
    }

    /// Applies one setting value (from AddSettings or PropertiesChanged).
    /// Returns false for a path that is not ours or a value of the wrong shape.
    pub fn apply(&mut self, path: &str, value: &ItemValue) -> bool {
        let number = number_of(value);
        match (path, number) {
            (ENABLED, Some(n)) => self.enabled = n != 0.0,
            (EXPORT_LIMIT, Some(n)) => self.export_limit_w = n.max(0.0) as f32,
            (SOC_THRESHOLD, Some(n)) => self.soc_threshold_percent = n.clamp(0.0, 100.0) as f32,
            (MAX_POWER, Some(n)) => self.max_power_w = n.max(0.0) as f32,
            (FORK_ENERGY_DIFFERENCE, n) => self.energy_difference_kwh = n.map(|n| n as f32),
            _ => return false,
        }
        true
    }

    /// Whether the fork's energy gate lets the controller track, given the
    /// grid meter's lifetime import and export (kWh). Without the setting or
    /// the counters the gate is open.
    pub fn gate_open(&self, import_kwh: Option<f64>, export_kwh: Option<f64>) -> bool {
        match (self.energy_difference_kwh, import_kwh, export_kwh) {
            (Some(limit), Some(import), Some(export)) => import - export < f64::from(limit),
            _ => true,
        }
    }
}

/// A finite number inside an item value (invalid, text and lists are not numbers).
pub fn number_of(value: &ItemValue) -> Option<f64> {
    match value {
        ItemValue::Double(d) if d.is_finite() => Some(*d),
        ItemValue::Int(i) => Some(f64::from(*i)),
        ItemValue::Int64(i) => Some(*i as f64),
        ItemValue::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The settings to create. `enabled_default` comes from the fork's
/// `derateGeneration` when our `Enabled` does not exist yet.
pub fn specs(enabled_default: i32) -> Vec<SettingSpec> {
    vec![
        SettingSpec::int(ENABLED, enabled_default.clamp(0, 1), 0, 1),
        SettingSpec::float(EXPORT_LIMIT, 0.0, 0.0, 100_000.0),
        SettingSpec::float(SOC_THRESHOLD, f64::from(Config::DEFAULT.soc_threshold_percent), 0.0, 100.0),
        SettingSpec::float(MAX_POWER, 0.0, 0.0, 100_000.0),
    ]
}

/// Every path whose changes the daemon follows.
pub fn watched_paths() -> Vec<String> {
    [ENABLED, EXPORT_LIMIT, SOC_THRESHOLD, MAX_POWER, FORK_DERATE, FORK_ENERGY_DIFFERENCE]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_apply_maps_values_and_refuses_strangers() {
        let mut s = DynGenSettings::default();
        assert!(s.apply(ENABLED, &ItemValue::Int(1)));
        assert!(s.enabled);
        assert!(s.apply(EXPORT_LIMIT, &ItemValue::Double(-5.0)));
        assert_eq!(s.export_limit_w, 0.0);
        assert!(s.apply(SOC_THRESHOLD, &ItemValue::Double(150.0)));
        assert_eq!(s.soc_threshold_percent, 100.0);
        assert!(!s.apply(ENABLED, &ItemValue::Text("yes".into())));
        assert!(!s.apply("/Settings/Other", &ItemValue::Int(1)));
        assert!(s.enabled, "a refused value leaves the setting alone");
        let c = s.controller_config();
        assert!(c.enabled && c.soc_threshold_percent == 100.0);
    }

    #[test]
    fn test_energy_gate_like_the_fork() {
        let mut s = DynGenSettings::default();
        assert!(s.gate_open(Some(10.0), Some(50.0)), "no setting: always track");
        s.apply(FORK_ENERGY_DIFFERENCE, &ItemValue::Double(5.0));
        assert!(s.gate_open(Some(10.0), Some(8.0)), "net import 2 kWh < 5: track");
        assert!(!s.gate_open(Some(20.0), Some(8.0)), "net import 12 kWh: let PV run");
        assert!(s.gate_open(None, Some(8.0)), "unknown counters: track");
        s.apply(FORK_ENERGY_DIFFERENCE, &ItemValue::Invalid);
        assert_eq!(s.energy_difference_kwh, None);
    }

    #[test]
    fn test_specs_clamp_the_seeded_default() {
        assert_eq!(specs(7)[0].default, ItemValue::Int(1));
        assert_eq!(specs(0)[0].default, ItemValue::Int(0));
    }
}
