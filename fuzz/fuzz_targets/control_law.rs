//! The dynamic-generation control law (`Controller::step`) under arbitrary
//! configurations and arbitrary sequences of inputs: NaN, infinities,
//! missing readings, stale and future timestamps, time going backwards.
//!
//! Checks, at every step:
//! - nothing panics;
//! - the output limit is finite: percent within [floor, 100] (floor being the
//!   configured `floor_percent` as the controller sanitises it: clamped to
//!   0..=100, the default when not finite), watts finite and non-negative,
//!   the demand finite;
//! - a written command carries exactly the step's limit;
//! - with the controller disabled the limit is 100 % and status `Disabled`.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::control::{ChargerState, Command, Config, Controller, Inputs, SafeLimit, Stamped, Status};
use dmc_core::time::{Duration, Instant};
use libfuzzer_sys::fuzz_target;

/// A reading: value and age in ms relative to `now` (negative: from the future).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Reading {
    value: f32,
    age_ms: i32,
}

#[derive(Arbitrary, Debug)]
struct ArbInputs {
    grid: Option<Reading>,
    pv: Option<Reading>,
    battery: Option<Reading>,
    soc: Option<Reading>,
    voltage: Option<Reading>,
    charger: Option<(u16, i32)>,
    ac_in: Option<Reading>,
    external: Option<Reading>,
    max_power: Option<f32>,
}

#[derive(Arbitrary, Debug)]
struct Tick {
    /// Time step in ms; negative goes backwards.
    dt_ms: i32,
    inputs: ArbInputs,
    /// Report the last write as failed.
    write_failed: bool,
}

#[derive(Arbitrary, Debug)]
struct ArbConfig {
    enabled: bool,
    export_limit_w: f32,
    max_power_w: f32,
    soc_threshold_percent: f32,
    floor_percent: f32,
    discharge_threshold_w: f32,
    stale_after_ms: u32,
    external_limit_timeout_ms: u32,
    write_interval_ms: u32,
    refresh_interval_ms: u32,
    min_change_percent: f32,
    safe_limit: Option<f32>,
    rise_ms: u32,
    fall_ms: u32,
    trim_ms: u32,
    trim_max_percent: f32,
    trim_deadband_w: f32,
    follow_tolerance_percent: f32,
    free_run_guard_w: f32,
    free_run_guard_delay_ms: u32,
    free_run_hold_ms: u32,
    free_run_release_w: f32,
    ac_in_is_grid: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Use the fully arbitrary configuration (else: defaults, rated power set).
    arbitrary_config: bool,
    config: ArbConfig,
    start_s: u32,
    ticks: Vec<Tick>,
}

fn ms(v: u32) -> Duration {
    Duration::from_millis(u64::from(v))
}

fn config(c: &ArbConfig) -> Config {
    Config {
        enabled: c.enabled,
        export_limit_w: c.export_limit_w,
        max_power_w: c.max_power_w,
        soc_threshold_percent: c.soc_threshold_percent,
        floor_percent: c.floor_percent,
        discharge_threshold_w: c.discharge_threshold_w,
        stale_after: ms(c.stale_after_ms),
        slow_stale_after: ms(c.stale_after_ms).saturating_mul(60),
        external_limit_timeout: ms(c.external_limit_timeout_ms),
        write_interval: ms(c.write_interval_ms),
        refresh_interval: ms(c.refresh_interval_ms),
        min_change_percent: c.min_change_percent,
        safe_limit: c.safe_limit.map_or(SafeLimit::ExportTarget, SafeLimit::Percent),
        rise_time_constant: ms(c.rise_ms),
        fall_time_constant: ms(c.fall_ms),
        trim_time_constant: ms(c.trim_ms),
        trim_max_percent: c.trim_max_percent,
        trim_deadband_w: c.trim_deadband_w,
        follow_tolerance_percent: c.follow_tolerance_percent,
        free_run_guard_w: c.free_run_guard_w,
        free_run_guard_delay: ms(c.free_run_guard_delay_ms),
        free_run_hold: ms(c.free_run_hold_ms),
        free_run_release_w: c.free_run_release_w,
        ac_in_is_grid: c.ac_in_is_grid,
    }
}

/// `now` shifted by `-age_ms`, saturating at both ends.
fn stamp(now: Instant, age_ms: i64) -> Instant {
    let t = i128::from(now.as_micros()) - i128::from(age_ms) * 1000;
    Instant::from_micros(u64::try_from(t.clamp(0, i128::from(u64::MAX))).unwrap_or(0))
}

fn inputs(now: Instant, a: &ArbInputs) -> Inputs {
    let sample = |r: Option<Reading>| r.map(|r| Stamped::new(r.value, stamp(now, r.age_ms.into())));
    Inputs {
        grid_power_w: sample(a.grid),
        pv_power_w: sample(a.pv),
        battery_power_w: sample(a.battery),
        soc_percent: sample(a.soc),
        battery_voltage_v: sample(a.voltage),
        charger_state: a
            .charger
            .map(|(code, age)| Stamped::new(ChargerState::from_code(code), stamp(now, age.into()))),
        ac_in_power_w: sample(a.ac_in),
        external_limit_w: sample(a.external),
        max_power_w: a.max_power,
    }
}

fuzz_target!(|input: Input| {
    let cfg = if input.arbitrary_config { config(&input.config) } else { Config::with_max_power(4200.0) };
    // The floor as the controller sanitises it.
    let floor = if cfg.floor_percent.is_finite() { cfg.floor_percent.clamp(0.0, 100.0) } else { 2.0 };
    let mut controller = Controller::new(cfg);
    let mut now = Instant::from_micros(u64::from(input.start_s) * 1_000_000);
    for tick in &input.ticks {
        now = stamp(now, -i64::from(tick.dt_ms));
        let step = controller.step(now, &inputs(now, &tick.inputs));
        let l = step.limit;
        assert!(l.percent.is_finite() && l.watts.is_finite() && step.demand_w.is_finite(), "{step:?}");
        assert!(l.percent >= floor - 1e-4 && l.percent <= 100.0, "floor {floor}: {step:?}");
        assert!(l.watts >= 0.0, "{step:?}");
        assert!(l.register_percent() <= 100);
        if let Command::Write(w) = step.command {
            assert_eq!(w, l);
            assert_eq!(controller.written_percent(), Some(l.percent));
        }
        if !cfg.enabled {
            assert_eq!((step.status, l.percent), (Status::Disabled, 100.0));
        }
        assert_eq!(controller.status(), step.status);
        if tick.write_failed {
            controller.write_failed();
        }
    }
});
