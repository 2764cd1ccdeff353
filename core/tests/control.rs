//! Dynamic generation control law: scenarios and properties (proptest).

use dmc_core::control::{
    ChargerState, Command, Config, Controller, FailedInput, Inputs, Limit, SafeLimit, Sample, Stamped, Status,
};
use dmc_core::time::{Duration, Instant};
use proptest::prelude::*;

const P: f32 = 4200.0;

fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

fn cfg() -> Config {
    Config::with_max_power(P)
}

/// Fresh grid and PV readings at `now`, battery unknown.
fn io(now: Instant, grid: f32, pv: f32) -> Inputs {
    Inputs {
        grid_power_w: Some(Sample::new(grid, now)),
        pv_power_w: Some(Sample::new(pv, now)),
        ..Inputs::default()
    }
}

fn with_battery(mut i: Inputs, now: Instant, battery: f32, soc: f32) -> Inputs {
    i.battery_power_w = Some(Sample::new(battery, now));
    i.soc_percent = Some(Sample::new(soc, now));
    i
}

fn written(c: Command) -> Option<Limit> {
    match c {
        Command::Write(l) => Some(l),
        Command::NoChange => None,
    }
}

#[test]
fn first_step_writes_feed_forward() {
    let mut c = Controller::new(cfg());
    // 300 W import with 1000 W PV: the site absorbs 1300 W.
    let s = c.step(secs(0), &io(secs(0), 300.0, 1000.0));
    assert_eq!(s.status, Status::Tracking);
    let l = written(s.command).expect("first step writes");
    assert!((l.watts - 1300.0).abs() < 1e-3, "{l:?}");
    assert!((l.percent - 1300.0 / P * 100.0).abs() < 1e-3);
    assert_eq!(l.register_percent(), 31);
    assert!((s.demand_w - 1300.0).abs() < 1e-3);
}

#[test]
fn export_target_raises_the_limit() {
    let mut c = Controller::new(Config { export_limit_w: 500.0, ..cfg() });
    let s = c.step(secs(0), &io(secs(0), 0.0, 1000.0));
    assert!((s.limit.watts - 1500.0).abs() < 1e-3);
}

#[test]
fn clamps_to_floor_and_full_power() {
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &io(secs(0), -5000.0, 100.0));
    assert_eq!(s.status, Status::Limited);
    assert!((s.limit.percent - 2.0).abs() < 1e-4);
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &io(secs(0), 9000.0, 100.0));
    assert_eq!(s.limit.percent, 100.0);
}

#[test]
fn falls_at_once_rises_smoothly() {
    let mut c = Controller::new(cfg());
    let _ = c.step(secs(0), &io(secs(0), 0.0, 2000.0));
    // Load drops: 800 W export. Immediate fall to 1200 W (less the trim's
    // clamped 126 W × 1 s / 30 s).
    let s = c.step(secs(1), &io(secs(1), -800.0, 2000.0));
    assert!((s.limit.watts - (1200.0 - 4.2)).abs() < 0.1, "{s:?}");
    let u = s.limit.watts;
    // Load rises: 800 W import. With tau 2 s and dt 1 s the limit moves a
    // third of the way (the trim is back to 0).
    let s = c.step(secs(2), &io(secs(2), 800.0, u));
    assert!((s.limit.watts - (u + (u + 800.0 - u) / 3.0)).abs() < 0.5, "{s:?}");
    assert!(c.trim_w().abs() < 1e-3);
}

#[test]
fn grid_meter_silent_goes_fail_safe_at_export_target() {
    let mut c = Controller::new(cfg());
    let _ = c.step(secs(0), &io(secs(0), 0.0, 2000.0));
    // Grid last updated at t=0; at t=5 it is still fresh, at t=6 stale.
    let mut i = io(secs(0), 0.0, 2000.0);
    i.pv_power_w = Some(Sample::new(2000.0, secs(6)));
    let s = c.step(secs(5), &i);
    assert_eq!(s.status, Status::Tracking);
    let s = c.step(secs(6), &i);
    assert_eq!(s.status, Status::FailSafe(FailedInput::GridMeter));
    let l = written(s.command).expect("fail-safe is written");
    assert!((l.percent - 2.0).abs() < 1e-4, "E = 0 → floor: {l:?}");

    let mut c = Controller::new(Config { export_limit_w: 420.0, ..cfg() });
    let s = c.step(secs(0), &Inputs { pv_power_w: Some(Sample::new(1.0, secs(0))), ..Inputs::default() });
    assert!((s.limit.percent - 10.0).abs() < 1e-4);
    assert_eq!(s.status.name(), "Fail-safe: grid meter");
}

#[test]
fn fixed_safe_limit_and_pv_inverter_failure() {
    let mut c = Controller::new(Config { safe_limit: SafeLimit::Percent(50.0), ..cfg() });
    let i = Inputs { grid_power_w: Some(Sample::new(0.0, secs(0))), ..Inputs::default() };
    let s = c.step(secs(0), &i);
    assert_eq!(s.status, Status::FailSafe(FailedInput::PvInverter));
    assert!((s.limit.percent - 50.0).abs() < 1e-4);
}

#[test]
fn rated_power_from_inverter_or_fail_safe() {
    let mut c = Controller::new(Config::default());
    let s = c.step(secs(0), &io(secs(0), 0.0, 1000.0));
    assert_eq!(s.status, Status::FailSafe(FailedInput::MaxPower));
    assert!((s.limit.percent - 2.0).abs() < 1e-4);
    let mut i = io(secs(1), 0.0, 1000.0);
    i.max_power_w = Some(5000.0);
    let s = c.step(secs(1), &i);
    assert_eq!(s.status, Status::Tracking);
    assert!((s.limit.percent - 20.0).abs() < 1e-3, "{s:?}");
}

#[test]
fn nan_and_infinite_readings_count_as_missing() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut c = Controller::new(cfg());
        let s = c.step(secs(0), &io(secs(0), bad, 1000.0));
        assert_eq!(s.status, Status::FailSafe(FailedInput::GridMeter));
        let s = c.step(secs(1), &io(secs(1), 0.0, bad));
        assert_eq!(s.status, Status::FailSafe(FailedInput::PvInverter));
    }
}

#[test]
fn free_runs_below_soc_threshold_unless_charger_cannot_charge() {
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &with_battery(io(secs(0), 0.0, 1000.0), secs(0), 800.0, 50.0));
    assert_eq!(s.status, Status::FreeRunning);
    assert_eq!(s.limit.percent, 100.0);
    // Above the threshold: cover house load plus charging.
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &with_battery(io(secs(0), 0.0, 1000.0), secs(0), 800.0, 95.0));
    assert_eq!(s.status, Status::Tracking);
    assert!((s.limit.watts - 1000.0).abs() < 1e-3);
    // Charger off: the battery cannot absorb, no free run.
    let mut c = Controller::new(cfg());
    let mut i = with_battery(io(secs(0), 0.0, 1000.0), secs(0), 0.0, 50.0);
    i.charger_state = Some(Stamped::new(ChargerState::Off, secs(0)));
    let s = c.step(secs(0), &i);
    assert_eq!(s.status, Status::Tracking);
}

#[test]
fn battery_discharge_above_threshold_is_replaced() {
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &with_battery(io(secs(0), 0.0, 1000.0), secs(0), -500.0, 95.0));
    assert!((s.limit.watts - 1500.0).abs() < 1e-3, "{s:?}");
    let mut c = Controller::new(cfg());
    let s = c.step(secs(0), &with_battery(io(secs(0), 0.0, 1000.0), secs(0), -80.0, 95.0));
    assert!((s.limit.watts - 1000.0).abs() < 1e-3, "the last 100 W are the Multi's: {s:?}");
}

#[test]
fn external_limit_lower_wins_and_expires() {
    let mut c = Controller::new(cfg());
    let mut i = io(secs(0), 0.0, 2000.0);
    i.external_limit_w = Some(Sample::new(1050.0, secs(0)));
    let s = c.step(secs(0), &i);
    assert_eq!(s.status, Status::ExternalLimit);
    assert!((s.limit.percent - 25.0).abs() < 1e-3);
    // Higher external limit: the controller's is in force.
    i.external_limit_w = Some(Sample::new(4000.0, secs(0)));
    let s = c.step(secs(1), &Inputs { grid_power_w: Some(Sample::new(0.0, secs(1))), ..i });
    assert_eq!(s.status, Status::Tracking);
    // Not refreshed for more than 60 s: reverts to no external limit.
    let mut c = Controller::new(cfg());
    let mut i = io(secs(61), 0.0, 2000.0);
    i.external_limit_w = Some(Sample::new(500.0, secs(0)));
    let s = c.step(secs(61), &i);
    assert_eq!(s.status, Status::Tracking);
    assert!((s.limit.watts - 2000.0).abs() < 1e-3);
}

#[test]
fn external_limit_also_caps_the_safe_limit() {
    let mut c = Controller::new(Config { safe_limit: SafeLimit::Percent(80.0), ..cfg() });
    let i = Inputs { external_limit_w: Some(Sample::new(420.0, secs(0))), ..Inputs::default() };
    let s = c.step(secs(0), &i);
    assert!((s.limit.percent - 10.0).abs() < 1e-3);
}

#[test]
fn writes_are_rate_limited_and_need_a_real_change() {
    let mut c = Controller::new(cfg());
    let ms = Instant::from_millis;
    assert!(written(c.step(ms(0), &io(ms(0), 0.0, 2000.0)).command).is_some());
    // 0.5 s later a big fall: not yet (one write per second).
    assert!(written(c.step(ms(500), &io(ms(500), -1000.0, 2000.0)).command).is_none());
    // At 1 s it goes out.
    let l = written(c.step(ms(1000), &io(ms(1000), -1000.0, 2000.0)).command).expect("write");
    assert!((l.watts - 1000.0).abs() < 5.0, "{l:?}");
    // Zero-mean ±0.5 % meter noise stays inside the 1 % hysteresis.
    for k in 2..60 {
        let t = ms(k * 1000);
        let noise = if k % 2 == 0 { 21.0 } else { -21.0 };
        let s = c.step(t, &io(t, noise, 1000.0));
        assert_eq!(s.command, Command::NoChange, "t = {k} s: {s:?}");
    }
    // Refresh after 60 s even without a change.
    let t = ms(61_000);
    assert!(written(c.step(t, &io(t, 0.0, 1000.0)).command).is_some());
}

#[test]
fn reaching_full_power_is_written_despite_hysteresis() {
    let mut c = Controller::new(Config { rise_time_constant: Duration::ZERO, ..cfg() });
    let _ = c.step(secs(0), &io(secs(0), 0.0, 4180.0));
    let s = c.step(secs(1), &io(secs(1), 300.0, 4180.0));
    assert_eq!(written(s.command).map(|l| l.percent), Some(100.0));
}

#[test]
fn write_failed_rewrites_next_step() {
    let mut c = Controller::new(cfg());
    let _ = c.step(secs(0), &io(secs(0), 0.0, 2000.0));
    assert_eq!(c.step(secs(1), &io(secs(1), 0.0, 2000.0)).command, Command::NoChange);
    c.write_failed();
    assert!(written(c.step(secs(2), &io(secs(2), 0.0, 2000.0)).command).is_some());
}

#[test]
fn disabled_releases_once() {
    let mut c = Controller::new(Config { enabled: false, ..cfg() });
    let s = c.step(secs(0), &io(secs(0), -3000.0, 3000.0));
    assert_eq!(s.status, Status::Disabled);
    assert_eq!(written(s.command).map(|l| l.percent), Some(100.0));
    for k in 1..200 {
        assert_eq!(c.step(secs(k), &io(secs(k), -3000.0, 3000.0)).command, Command::NoChange);
    }
}

#[test]
fn ac_in_stands_in_for_a_silent_meter_when_configured() {
    let mut i = io(secs(0), 0.0, 1000.0);
    i.grid_power_w = None;
    i.ac_in_power_w = Some(Sample::new(200.0, secs(0)));
    let s = Controller::new(cfg()).step(secs(0), &i);
    assert_eq!(s.status, Status::FailSafe(FailedInput::GridMeter));
    let s = Controller::new(Config { ac_in_is_grid: true, ..cfg() }).step(secs(0), &i);
    assert_eq!(s.status, Status::Tracking);
    assert!((s.limit.watts - 1200.0).abs() < 1e-3);
}

#[test]
fn free_run_guard_trips_on_sustained_export_and_releases_after_hold() {
    let mut c = Controller::new(cfg());
    let i = |t: u64, grid: f32| with_battery(io(secs(t), grid, 4000.0), secs(t), 2500.0, 50.0);
    // Battery saturated at 2500 W, 1000 W going out.
    for t in 0..5 {
        assert_eq!(c.step(secs(t), &i(t, -1000.0)).status, Status::FreeRunning, "t = {t}");
    }
    let s = c.step(secs(5), &i(5, -1000.0));
    assert_eq!(s.status, Status::Tracking, "tripped after 5 s");
    assert!((s.limit.watts - 3000.0).abs() < 1.0, "{s:?}");
    // Held for 60 s while the grid sits at 0.
    for t in 6..65 {
        assert_eq!(c.step(secs(t), &i(t, 0.0)).status, Status::Tracking, "t = {t}");
    }
    assert_eq!(c.step(secs(65), &i(65, 0.0)).status, Status::FreeRunning);
}

#[test]
fn free_run_guard_releases_when_battery_has_headroom() {
    let mut c = Controller::new(cfg());
    let i = |t: u64, grid: f32, batt: f32| with_battery(io(secs(t), grid, 3000.0), secs(t), batt, 50.0);
    for t in 0..6 {
        let _ = c.step(secs(t), &i(t, -500.0, 2500.0));
    }
    assert_eq!(c.status(), Status::Tracking);
    // A load came on: the Multi charges less; the battery can take more again.
    let s = c.step(secs(7), &i(7, 0.0, 2000.0));
    assert_eq!(s.status, Status::FreeRunning);
}

#[test]
fn trim_removes_a_meter_mismatch() {
    // Closed loop: house 1500 W, plenty of sun, inverter reading 3 % high,
    // inverter follows the written limit exactly, readings 1 s old.
    let mut c = Controller::new(cfg());
    let (mut limit, mut pv) = (P, 0.0f32);
    let mut exports = Vec::new();
    for t in 0..600u64 {
        let grid = 1500.0 - pv;
        let s = c.step(secs(t), &io(secs(t), grid, pv * 1.03));
        if let Command::Write(l) = s.command {
            limit = l.register_percent() as f32 / 100.0 * P;
        }
        pv = limit.min(3500.0);
        exports.push(-grid);
    }
    let tail = &exports[500..];
    let worst = tail.iter().copied().fold(f32::MIN, f32::max);
    assert!(worst < 45.0, "steady export {worst} W (one register step is 42 W)");
    assert!(c.trim_w() < -20.0, "trim {}", c.trim_w());
}

#[test]
fn status_names_and_codes_are_distinct() {
    let all = [
        Status::Disabled,
        Status::FreeRunning,
        Status::Tracking,
        Status::Limited,
        Status::FailSafe(FailedInput::GridMeter),
        Status::FailSafe(FailedInput::PvInverter),
        Status::FailSafe(FailedInput::MaxPower),
        Status::ExternalLimit,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a.name(), b.name());
            assert_ne!(a.code(), b.code());
        }
    }
    assert_eq!(Status::Tracking.to_string(), "Tracking");
}

#[test]
fn charger_state_codes_round_trip() {
    for code in 0..=u16::MAX {
        assert_eq!(ChargerState::from_code(code).code(), code);
    }
    assert_eq!(ChargerState::from_code(252), ChargerState::ExternalControl);
    assert!(!ChargerState::Passthru.moves_battery_power());
    assert!(ChargerState::Bulk.moves_battery_power());
}

#[test]
fn register_percent_rounds_to_nearest() {
    let l = |percent| Limit { percent, watts: 0.0 };
    assert_eq!(l(2.0).register_percent(), 2);
    assert_eq!(l(31.49).register_percent(), 31);
    assert_eq!(l(31.5).register_percent(), 32);
    assert_eq!(l(100.0).register_percent(), 100);
    assert_eq!(l(f32::NAN).register_percent(), 0);
}

// ---------------------------------------------------------------- properties

/// Any f32, with NaN, infinities and plausible powers well represented.
fn any_w() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -6000.0f32..6000.0,
        1 => any::<f32>(),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
    ]
}

/// A reading that may be missing, and up to 10 s old.
fn any_sample(now_s: u64) -> impl Strategy<Value = Option<Sample>> {
    prop::option::weighted(0.85, (any_w(), 0u64..10_000)).prop_map(move |o| {
        o.map(|(v, age_ms)| Sample::new(v, Instant::from_millis((now_s * 1000).saturating_sub(age_ms))))
    })
}

fn any_inputs(now_s: u64) -> impl Strategy<Value = Inputs> {
    (
        any_sample(now_s),
        any_sample(now_s),
        any_sample(now_s),
        any_sample(now_s),
        any_sample(now_s),
        prop::option::of((any::<u16>(), 0u64..400)),
        any_sample(now_s),
        any_sample(now_s),
        prop::option::of(any_w()),
    )
        .prop_map(move |(g, pv, b, soc, v, st, ac, ext, pmax)| Inputs {
            grid_power_w: g,
            pv_power_w: pv,
            battery_power_w: b,
            soc_percent: soc,
            battery_voltage_v: v,
            charger_state: st
                .map(|(c, age)| Stamped::new(ChargerState::from_code(c), secs(now_s.saturating_sub(age)))),
            ac_in_power_w: ac,
            external_limit_w: ext,
            max_power_w: pmax,
        })
}

/// A sane configuration (floors and thresholds in range).
fn any_config() -> impl Strategy<Value = Config> {
    (0.0f32..20.0, 0.0f32..2000.0, 0.0f32..100.0, any::<bool>(), prop::option::of(0.0f32..=100.0), 0u64..3)
        .prop_map(|(floor, export, soc, ac_in, safe, tau)| Config {
            floor_percent: floor,
            export_limit_w: export,
            soc_threshold_percent: soc,
            ac_in_is_grid: ac_in,
            safe_limit: safe.map_or(SafeLimit::ExportTarget, SafeLimit::Percent),
            rise_time_constant: Duration::from_secs(tau),
            ..cfg()
        })
}

/// A controller driven through a random history of 0..8 one-second steps.
fn any_controller() -> impl Strategy<Value = (Controller, u64)> {
    (any_config(), prop::collection::vec(any_inputs(0), 0..8)).prop_map(|(config, history)| {
        let mut c = Controller::new(config);
        let mut t = 0;
        for (k, mut i) in history.into_iter().enumerate() {
            t = k as u64;
            // History readings are stamped relative to 0; move them to t.
            let stamps = [&mut i.grid_power_w, &mut i.pv_power_w, &mut i.battery_power_w, &mut i.soc_percent];
            for s in stamps.into_iter().flatten() {
                s.at += Duration::from_secs(t);
            }
            let _ = c.step(secs(t), &i);
        }
        (c, t + 1)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn limit_is_always_within_floor_and_full_power(
        (mut c, t) in any_controller(),
        steps in prop::collection::vec(any_inputs(20), 1..6),
    ) {
        let floor = c.config().floor_percent;
        for (k, i) in steps.iter().enumerate() {
            let now = secs(t + 20 + k as u64);
            let s = c.step(now, i);
            prop_assert!(s.limit.percent.is_finite() && s.limit.watts.is_finite() && s.demand_w.is_finite());
            prop_assert!(s.limit.percent >= floor - 1e-4 && s.limit.percent <= 100.0, "{:?}", s);
            prop_assert!(s.limit.watts >= 0.0);
            if let Command::Write(l) = s.command {
                prop_assert_eq!(l, s.limit);
            }
        }
    }

    #[test]
    fn no_valid_inputs_goes_to_the_safe_limit(
        (mut c, t) in any_controller(),
        bad in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
        stale in any::<bool>(),
    ) {
        let now = secs(t + 100);
        let at = if stale { secs(t) } else { now };
        let r = Some(Sample::new(bad, at));
        let inputs = Inputs {
            grid_power_w: r, pv_power_w: r, battery_power_w: r, soc_percent: r,
            battery_voltage_v: r, ac_in_power_w: r, external_limit_w: r,
            ..Inputs::default()
        };
        let cfg = *c.config();
        let s = c.step(now, &inputs);
        prop_assert!(matches!(s.status, Status::FailSafe(_)), "{:?}", s);
        let safe = match cfg.safe_limit {
            SafeLimit::ExportTarget => cfg.export_limit_w / P * 100.0,
            SafeLimit::Percent(p) => p,
        }
        .clamp(cfg.floor_percent, 100.0);
        prop_assert!((s.limit.percent - safe).abs() < 1e-3, "{:?} vs {}", s, safe);
        // And with nothing at all.
        let s = c.step(now + Duration::from_secs(1), &Inputs::default());
        prop_assert!(matches!(s.status, Status::FailSafe(_)));
        prop_assert!((s.limit.percent - safe).abs() < 1e-3);
    }

    #[test]
    fn more_export_never_raises_the_limit(
        (c, t) in any_controller(),
        inputs in any_inputs(50),
        g1 in -6000.0f32..6000.0,
        more_export in 0.0f32..6000.0,
    ) {
        let now = secs(50).max(secs(t));
        let mut a = c.clone();
        let mut b = c;
        let stamp = |g| Some(Sample::new(g, now));
        let sa = a.step(now, &Inputs { grid_power_w: stamp(g1 - more_export), ..inputs });
        let sb = b.step(now, &Inputs { grid_power_w: stamp(g1), ..inputs });
        prop_assert!(
            sa.limit.percent <= sb.limit.percent + 1e-3,
            "export {} → {:?}; export {} → {:?}", -(g1 - more_export), sa, -g1, sb
        );
    }

    #[test]
    fn wild_inputs_and_configs_never_panic(
        floor in any_w(), export in any_w(), soc in any_w(), pmax in any_w(), min_change in any_w(),
        safe in any_w(), taus in prop::collection::vec(any::<u64>(), 4),
        steps in prop::collection::vec((any_inputs(1000), 0u64..3_000_000), 1..12),
    ) {
        let config = Config {
            floor_percent: floor, export_limit_w: export, soc_threshold_percent: soc,
            max_power_w: pmax, min_change_percent: min_change, safe_limit: SafeLimit::Percent(safe),
            rise_time_constant: Duration::from_micros(taus[0]),
            fall_time_constant: Duration::from_micros(taus[1]),
            trim_time_constant: Duration::from_micros(taus[2]),
            stale_after: Duration::from_micros(taus[3]),
            ..Config::default()
        };
        let mut c = Controller::new(config);
        let mut now = secs(1000);
        for (i, gap) in steps {
            now += Duration::from_micros(gap);
            let s = c.step(now, &i);
            prop_assert!(s.limit.percent.is_finite() && s.limit.percent <= 100.0 && s.limit.percent >= 0.0);
            prop_assert!(s.limit.watts.is_finite());
        }
        // Time going backwards is tolerated too.
        let _ = c.step(Instant::ZERO, &Inputs::default());
    }
}
