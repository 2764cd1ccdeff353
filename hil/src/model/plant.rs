//! A simulated household around the bus: house load, sun, and a battery
//! behind a Victron Multi in ESS mode.
//!
//! When a plant is attached to the bus ([`crate::bus::Bus::set_plant`]) the
//! Growatt produces `min(PV available, its active power rate limit)` from the
//! plant's sun curve instead of its own clear-sky day, and the SDM230 reads
//! the plant's grid power, `grid = load + battery charging − PV` (import
//! positive), instead of its own house-load waves.
//!
//! The battery is driven like ESS with a 0 W grid setpoint: it takes the PV
//! surplus and covers the deficit, within ±`battery_max_w`, with a first-order
//! lag (`battery_lag_s`), no charging at 100 % and no discharging below 10 %.
//! Export therefore only happens when the battery is full or charging at its
//! maximum, which is what dynamic generation must then prevent.
//!
//! The scripted day is accelerated: its curves are laid over `day_s` plant
//! seconds (wall seconds since the plant started), and the battery is small
//! (`battery_wh`) so its state of charge crosses the free-running threshold
//! and reaches 100 % within that time. Control loops still run in real time:
//! a 1 s lag costs what it costs in a real house, so the energy figures are
//! those of a real day's events packed tightly.
//!
//! Tallies (Wh, plant time): exported, imported, curtailed (PV available but
//! not produced), curtailed while the battery was charging below the SoC
//! threshold, and export above an allowance.

use super::SimTime;

/// The household.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlantConfig {
    /// Length of the scripted day, plant seconds.
    pub day_s: f64,
    /// Peak PV available (AC), W.
    pub pv_peak_w: f64,
    /// Battery capacity, Wh.
    pub battery_wh: f64,
    /// Battery charge and discharge limit, W.
    pub battery_max_w: f64,
    /// ESS response lag, s.
    pub battery_lag_s: f64,
    /// State of charge at the start, %.
    pub soc0: f64,
    /// Below this SoC the battery "wants" all PV (the controller's threshold), %; for the tally.
    pub soc_threshold: f64,
    /// Export tolerated by the tally of export above the allowance, W.
    pub export_allowance_w: f64,
}

impl Default for PlantConfig {
    fn default() -> Self {
        PlantConfig {
            day_s: 240.0,
            pv_peak_w: 4000.0,
            battery_wh: 150.0,
            battery_max_w: 2500.0,
            battery_lag_s: 1.0,
            soc0: 75.0,
            soc_threshold: 90.0,
            export_allowance_w: 0.0,
        }
    }
}

/// Energy tallies over the plant's run, Wh.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlantTally {
    /// Exported to the grid.
    pub exported_wh: f64,
    /// Imported from the grid.
    pub imported_wh: f64,
    /// PV available but not produced.
    pub curtailed_wh: f64,
    /// Curtailed while the battery was below the SoC threshold and could charge.
    pub curtailed_charging_wh: f64,
    /// Export above [`PlantConfig::export_allowance_w`].
    pub excess_export_wh: f64,
    /// Plant seconds simulated.
    pub elapsed_s: f64,
}

/// The plant's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlantState {
    /// House load, W.
    pub load_w: f64,
    /// PV available (AC), W.
    pub pv_available_w: f64,
    /// PV produced (the inverter's output), W.
    pub pv_w: f64,
    /// Battery power, W, charging positive.
    pub battery_w: f64,
    /// State of charge, %.
    pub soc: f64,
    /// Grid power at the meter, W, import positive.
    pub grid_w: f64,
    /// Seconds into the scripted day.
    pub day_time_s: f64,
    /// The tallies so far.
    pub tally: PlantTally,
}

/// The household model.
#[derive(Clone, Debug)]
pub struct Plant {
    config: PlantConfig,
    /// Wall time at which the day starts.
    start_wall_s: f64,
    state: PlantState,
}

/// A load step: `(from, to)` as fractions of the day and its power in W.
const LOADS: &[(f64, f64, f64)] = &[
    (0.15, 0.19, 2000.0), // kettle
    (0.30, 0.36, 1800.0), // washing machine heating
    (0.36, 0.45, 300.0),  // washing machine spinning
    (0.52, 0.62, 1500.0), // heater, off in one step
    (0.70, 0.74, 2000.0), // dishwasher
    (0.84, 0.92, 2500.0), // oven
];

impl Plant {
    /// A plant whose day starts at `t`.
    pub fn new(config: PlantConfig, t: SimTime) -> Self {
        let mut plant = Plant {
            config,
            start_wall_s: t.wall_s,
            state: PlantState {
                load_w: 0.0,
                pv_available_w: 0.0,
                pv_w: 0.0,
                battery_w: 0.0,
                soc: config.soc0.clamp(0.0, 100.0),
                grid_w: 0.0,
                day_time_s: 0.0,
                tally: PlantTally::default(),
            },
        };
        plant.state.pv_available_w = plant.pv_available_w(t);
        plant.state.load_w = plant.load_w(t);
        plant
    }

    /// The settings.
    pub fn config(&self) -> &PlantConfig {
        &self.config
    }

    /// The state now.
    pub fn state(&self) -> PlantState {
        self.state
    }

    fn day_fraction(&self, t: SimTime) -> f64 {
        ((t.wall_s - self.start_wall_s) / self.config.day_s.max(1.0)).max(0.0)
    }

    /// PV available at `t` (AC), W: a sun arc that starts and ends low (the
    /// inverter stays awake), with a cloudy spell at 40..47 % of the day.
    pub fn pv_available_w(&self, t: SimTime) -> f64 {
        let x = self.day_fraction(t).min(1.0);
        let sun = (std::f64::consts::PI * (0.1 + 0.8 * x)).sin().max(0.0).powf(1.2);
        let cloud = if (0.40..0.47).contains(&x) { 0.35 } else { 1.0 };
        self.config.pv_peak_w * sun * cloud
    }

    /// House load at `t`, W: 350 W base with a small ripple, plus the steps in [`LOADS`].
    pub fn load_w(&self, t: SimTime) -> f64 {
        let x = self.day_fraction(t);
        let ripple = 30.0 * (std::f64::consts::TAU * (t.wall_s - self.start_wall_s) / 7.0).sin();
        let steps: f64 = LOADS.iter().filter(|(a, b, _)| (*a..*b).contains(&x)).map(|(_, _, w)| w).sum();
        350.0 + ripple + steps
    }

    /// Advances by `dt_s` to `t` with the inverter producing `pv_w`; returns the grid power.
    pub fn step(&mut self, t: SimTime, dt_s: f64, pv_w: f64) -> f64 {
        let c = self.config;
        let dt = dt_s.max(0.0);
        let s = &mut self.state;
        s.day_time_s = (t.wall_s - self.start_wall_s).max(0.0);
        let load = self.load_w(t);
        let available = self.pv_available_w(t);
        let s = &mut self.state;
        s.load_w = load;
        s.pv_available_w = available;
        s.pv_w = pv_w.max(0.0);
        // ESS: drive the grid to 0 W with the battery.
        let mut target = (s.pv_w - load).clamp(-c.battery_max_w, c.battery_max_w);
        if s.soc >= 100.0 {
            target = target.min(0.0);
        }
        if s.soc <= 10.0 {
            target = target.max(0.0);
        }
        let alpha = if c.battery_lag_s > 0.0 { 1.0 - (-dt / c.battery_lag_s).exp() } else { 1.0 };
        s.battery_w += alpha * (target - s.battery_w);
        if c.battery_wh > 0.0 {
            s.soc = (s.soc + s.battery_w * dt / 3600.0 / c.battery_wh * 100.0).clamp(0.0, 100.0);
        }
        s.grid_w = load + s.battery_w - s.pv_w;
        let h = dt / 3600.0;
        let export = (-s.grid_w).max(0.0);
        let curtailed = (available - s.pv_w).max(0.0);
        let t = &mut s.tally;
        t.elapsed_s += dt;
        t.exported_wh += export * h;
        t.imported_wh += s.grid_w.max(0.0) * h;
        t.curtailed_wh += curtailed * h;
        if s.soc < c.soc_threshold {
            t.curtailed_charging_wh += curtailed * h;
        }
        t.excess_export_wh += (export - c.export_allowance_w).max(0.0) * h;
        s.grid_w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SimTime {
        SimTime { wall_s: s, device_s: s }
    }

    /// Runs the day with the inverter at `limit_w` (uncontrolled when 4200).
    fn day(limit_w: f64) -> Plant {
        let mut p = Plant::new(PlantConfig::default(), at(0.0));
        let mut t = 0.0;
        while t < p.config().day_s {
            t += 0.25;
            let pv = p.pv_available_w(at(t)).min(limit_w);
            p.step(at(t), 0.25, pv);
        }
        p
    }

    #[test]
    fn test_uncontrolled_day_fills_the_battery_and_exports() {
        let p = day(4200.0);
        let s = p.state();
        eprintln!("uncontrolled day: {:?}", s.tally);
        assert_eq!(s.soc, 100.0, "the battery gets full during the day");
        assert!(s.tally.exported_wh > 20.0, "without limiting it exports: {:?}", s.tally);
        assert_eq!(s.tally.curtailed_wh, 0.0);
        assert!((s.tally.elapsed_s - 240.0).abs() < 1e-6);
    }

    #[test]
    fn test_grid_balance_and_limits() {
        let mut p = Plant::new(PlantConfig { soc0: 100.0, ..PlantConfig::default() }, at(0.0));
        let grid = p.step(at(100.0), 0.0, 1000.0);
        let s = p.state();
        assert!((grid - (s.load_w + s.battery_w - s.pv_w)).abs() < 1e-9);
        // Full battery: surplus goes to the grid.
        for i in 1..=20 {
            p.step(at(100.0 + f64::from(i)), 1.0, 3000.0);
        }
        assert!(p.state().battery_w <= 1e-9 && p.state().grid_w < 0.0);
        let curtailed = day(200.0).state().tally.curtailed_charging_wh;
        assert!(curtailed > 0.0, "curtailing below the threshold is counted");
    }
}
