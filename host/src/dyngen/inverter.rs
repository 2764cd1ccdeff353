//! The PV inverter side: the paths dynamic generation adds to the inverter's
//! service, and the arbiter that decides what is written to the inverter.
//!
//! Paths (on `com.victronenergy.pvinverter.*`, venus-conventions §4.3):
//! `/Ac/PowerLimit` (W, writable; every write, even of the same value,
//! re-arms the watchdog), `/DynamicGeneration/Status` (text),
//! `/DynamicGeneration/Power` (W, what the site can absorb),
//! `/DynamicGeneration/Limit` (W, the limit in force). The fork's lower-case
//! `/dynamicGenerationStatus`, `/dynamicGenerationPower` and
//! `/dynamicGenerationPowerMax` (percent in holding 3) are read-only aliases
//! kept for one release. `/Ac/MaxPower` is the profile's (holding 6-7).
//!
//! Who limits: with dynamic generation enabled, core's controller takes the
//! external `/Ac/PowerLimit` as an input and the lower limit wins (its status
//! says "External limit" when that one is in force). With it disabled, the
//! external limit alone is applied (converted to percent of the rated
//! power); when the external limit expires or is lifted, the inverter is
//! released to 100 % once. Nothing is written while neither is active.

use dmc_core::control::{Command as LawCommand, Status, Step};
use dmc_core::profile::{Profile, Role};
use dmc_core::register::{RegisterDef, WritePolicy};
use dmc_core::time::{Duration, Instant};

use crate::dbus::{Item, ItemValue, ServiceBuilder, ValueKind};

/// `/Ac/PowerLimit`.
pub const POWER_LIMIT: &str = "/Ac/PowerLimit";
/// `/Ac/MaxPower`.
pub const MAX_POWER: &str = "/Ac/MaxPower";
/// `/DynamicGeneration/Status`.
pub const STATUS: &str = "/DynamicGeneration/Status";
/// `/DynamicGeneration/Power`.
pub const POWER: &str = "/DynamicGeneration/Power";
/// `/DynamicGeneration/Limit`.
pub const LIMIT: &str = "/DynamicGeneration/Limit";
/// The fork's alias of [`STATUS`].
pub const FORK_STATUS: &str = "/dynamicGenerationStatus";
/// The fork's alias of [`POWER`].
pub const FORK_POWER: &str = "/dynamicGenerationPower";
/// The fork's percent in force (holding 3).
pub const FORK_POWER_MAX: &str = "/dynamicGenerationPowerMax";

/// Minimum time between writes of the external-only path (the controller has its own).
const EXTERNAL_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The register that limits the output in percent of rated power (Growatt
/// holding 3), if the profile has a writable one and is a PV inverter.
pub fn rate_register(profile: &'static Profile) -> Option<&'static RegisterDef> {
    if profile.default_role != Role::PvInverter {
        return None;
    }
    profile
        .registers
        .iter()
        .find(|d| d.name == "active_power_rate" && matches!(d.write, WritePolicy::Writable { .. }))
}

/// Adds the dynamic generation paths with their initial values.
pub fn add_items(b: &mut ServiceBuilder, max_power_w: Option<f64>) {
    let items = [
        (
            POWER_LIMIT,
            Item::new(ItemValue::from(max_power_w)).refresh_on_write().with_kind(ValueKind::Double),
        ),
        (STATUS, Item::new("Starting")),
        (POWER, Item::new(ItemValue::Invalid)),
        (LIMIT, Item::new(ItemValue::Invalid)),
        (FORK_STATUS, Item::new("Starting")),
        (FORK_POWER, Item::new(ItemValue::Invalid)),
        (FORK_POWER_MAX, Item::new(ItemValue::Invalid)),
    ];
    for (path, item) in items {
        if let Err(e) = b.add(path, item) {
            log::warn!("dynamic generation: {e}");
        }
    }
}

/// What to do with the inverter this tick, and what to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Percent to write to the rate register, if any.
    pub write: Option<u16>,
    /// `/DynamicGeneration/Status`.
    pub status: String,
    /// `/DynamicGeneration/Limit`, W (the limit wanted in force).
    pub limit_w: Option<f64>,
    /// `/DynamicGeneration/Power`, W.
    pub demand_w: Option<f64>,
}

/// Chooses between the controller and the external limit, and remembers what
/// reached the inverter.
#[derive(Clone, Debug, Default)]
pub struct Arbiter {
    /// The last percent written successfully, and when.
    written: Option<(u16, Instant)>,
    /// A limit below 100 % may be in force (released by writing 100 %).
    limiting: bool,
    /// Writes failed in a row.
    failed: u32,
    /// The last status published (logged when it changes).
    status: String,
}

impl Arbiter {
    /// Decides at `now`. `step` is the controller's answer (its command is
    /// used only when `enabled`); `external_w` a fresh external limit.
    pub fn decide(
        &self,
        now: Instant,
        enabled: bool,
        step: &Step,
        external_w: Option<f64>,
        max_power_w: Option<f64>,
    ) -> Decision {
        if enabled {
            let write = match step.command {
                LawCommand::Write(l) => Some(l.register_percent()),
                LawCommand::NoChange => None,
            };
            let limit_w = (step.limit.watts > 0.0).then_some(f64::from(step.limit.watts));
            return Decision {
                write,
                status: step.status.name().to_string(),
                limit_w,
                demand_w: Some(f64::from(step.demand_w)),
            };
        }
        let p_max = max_power_w.filter(|p| p.is_finite() && *p > 0.0);
        match (external_w, p_max) {
            (Some(x), Some(p)) => {
                let percent = (x / p * 100.0).clamp(0.0, 100.0).round() as u16;
                let due = match self.written {
                    None => true,
                    Some((w, at)) => w != percent && now.saturating_since(at) >= EXTERNAL_WRITE_INTERVAL,
                };
                Decision {
                    write: due.then_some(percent),
                    status: Status::ExternalLimit.name().to_string(),
                    limit_w: Some(f64::from(percent) / 100.0 * p),
                    demand_w: None,
                }
            }
            (Some(_), None) => Decision {
                write: None,
                status: "External limit (rated power unknown)".to_string(),
                limit_w: None,
                demand_w: None,
            },
            (None, _) => Decision {
                write: self.limiting.then_some(100),
                status: Status::Disabled.name().to_string(),
                limit_w: p_max,
                demand_w: None,
            },
        }
    }

    /// `percent` reached the inverter at `now`.
    pub fn wrote(&mut self, percent: u16, now: Instant) {
        self.written = Some((percent, now));
        self.limiting = percent < 100;
        self.failed = 0;
    }

    /// A write failed: the next decision writes again.
    pub fn write_failed(&mut self) {
        self.written = None;
        self.limiting = true;
        self.failed = self.failed.saturating_add(1);
    }

    /// The last status remembered by [`Arbiter::status_changed`].
    pub fn status(&self) -> &str {
        &self.status
    }

    /// Remembers `status`; true when it differs from the previous one.
    pub fn status_changed(&mut self, status: &str) -> bool {
        if self.status == status {
            return false;
        }
        self.status = status.to_string();
        true
    }

    /// Writes failed in a row since the last success.
    pub fn failed_writes(&self) -> u32 {
        self.failed
    }

    /// The last percent written, if any.
    pub fn written_percent(&self) -> Option<u16> {
        self.written.map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::control::{Config, Controller, Inputs, Sample};

    fn t(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    fn disabled_step() -> Step {
        let mut c = Controller::new(Config { enabled: false, ..Config::DEFAULT });
        c.step(t(0), &Inputs::default())
    }

    #[test]
    fn test_disabled_writes_nothing_until_an_external_limit() {
        let mut a = Arbiter::default();
        let d = a.decide(t(0), false, &disabled_step(), None, Some(4200.0));
        assert_eq!((d.write, d.status.as_str()), (None, "Disabled"));
        let d = a.decide(t(0), false, &disabled_step(), Some(2100.0), Some(4200.0));
        assert_eq!((d.write, d.status.as_str()), (Some(50), "External limit"));
        a.wrote(50, t(0));
        // Same limit again: nothing to write; a new one within a second waits.
        assert_eq!(a.decide(t(500), false, &disabled_step(), Some(2100.0), Some(4200.0)).write, None);
        assert_eq!(a.decide(t(500), false, &disabled_step(), Some(1000.0), Some(4200.0)).write, None);
        assert_eq!(a.decide(t(1000), false, &disabled_step(), Some(1000.0), Some(4200.0)).write, Some(24));
        a.wrote(24, t(1000));
        // Expired or lifted: released to 100 % once.
        let d = a.decide(t(2000), false, &disabled_step(), None, Some(4200.0));
        assert_eq!((d.write, d.limit_w), (Some(100), Some(4200.0)));
        a.wrote(100, t(2000));
        assert_eq!(a.decide(t(3000), false, &disabled_step(), None, Some(4200.0)).write, None);
    }

    #[test]
    fn test_enabled_follows_the_controller_and_lower_limit_wins() {
        let mut c = Controller::new(Config { enabled: true, ..Config::DEFAULT });
        let now = t(10_000);
        let inputs = Inputs {
            grid_power_w: Some(Sample::new(500.0, now)),
            pv_power_w: Some(Sample::new(1000.0, now)),
            external_limit_w: Some(Sample::new(420.0, now)),
            max_power_w: Some(4200.0),
            ..Inputs::default()
        };
        let step = c.step(now, &inputs);
        let a = Arbiter::default();
        let d = a.decide(now, true, &step, Some(420.0), Some(4200.0));
        assert_eq!(d.status, "External limit");
        assert_eq!(d.write, Some(10));
        assert_eq!(d.demand_w, Some(1500.0));
    }

    #[test]
    fn test_unknown_rated_power_and_failed_writes() {
        let mut a = Arbiter::default();
        let d = a.decide(t(0), false, &disabled_step(), Some(100.0), None);
        assert_eq!(d.write, None);
        assert!(d.status.contains("unknown"));
        a.write_failed();
        assert_eq!(a.failed_writes(), 1);
        assert_eq!(a.decide(t(0), false, &disabled_step(), None, Some(4200.0)).write, Some(100));
        a.wrote(100, t(0));
        assert_eq!(a.failed_writes(), 0);
        assert!(a.status_changed("Tracking"));
        assert!(!a.status_changed("Tracking"));
        assert!(a.status_changed("Disabled"));
    }
}
