//! A simulated household day: the dynamic generation controller against the
//! fork's rule, on the same plant and the same scripted loads and sun.
//!
//! Plant (1 s steps):
//! - PV inverter rated 4200 W, follows its limit with a 2 s first-order lag,
//!   a written limit takes effect the next second; asleep (silent, no writes)
//!   when the sun gives under 5 W, wakes at 100 %.
//! - Sun: a clear-sky arc 06:00–20:00 peaking at 4000 W, with cloud dips
//!   10:00–11:00 and 15:00–16:00.
//! - House: 250 W base ± 40 W noise, a fridge, a kettle, a washing machine,
//!   a dishwasher, an oven, and a 1500 W heater that switches off at 14:30:00.
//! - Battery 10 kWh, starting at 55 %, charged and discharged by a Multi in
//!   ESS mode that drives the grid to 0 W with a 1 s lag, ±2500 W, 10–100 %.
//! - Readings reach the controllers one second old.
//!
//! Controllers: (a) `dmc_core::control::Controller` with default settings;
//! (b) the fork's rule as described in its README: SoC < 90 % → 100 %;
//! otherwise limit = grid + PV (house demand + battery charging), plus the
//! battery discharge when above 100 W; percent rounded up, clamped 2..100,
//! written every second while PV ≥ 50 W.
//!
//! `cargo run -p dmc-core --example control_day`

use dmc_core::control::{ChargerState, Command, Config, Controller, Inputs, Sample, Stamped, Status};
use dmc_core::time::Instant;

const P_MAX: f32 = 4200.0;
const DAY: u32 = 86_400;

/// A tiny deterministic generator (no dependencies): uniform in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

struct Scenario {
    sun: Vec<f32>,
    load: Vec<f32>,
    soc0: f32,
    /// The PV inverter's own power reading relative to the truth.
    pv_reading_gain: f32,
    /// Battery charge and discharge power limit, W (0: no battery).
    battery_w: f32,
}

fn at(h: u32, m: u32) -> usize {
    (h * 3600 + m * 60) as usize
}

fn day_scenario(pv_reading_gain: f32) -> Scenario {
    let mut rng = Lcg(0x5eed);
    let n = DAY as usize;
    let mut sun = vec![0.0f32; n];
    let mut cloud = 1.0f32;
    let mut cloud_left = 0u32;
    for (t, s) in sun.iter_mut().enumerate() {
        let h = t as f32 / 3600.0;
        if (6.0..20.0).contains(&h) {
            let x = ((h - 6.0) / 14.0 * std::f32::consts::PI).sin();
            *s = 4000.0 * x.powf(1.3);
        }
        let cloudy = (10.0..11.0).contains(&h) || (15.0..16.0).contains(&h);
        if cloud_left == 0 {
            cloud_left = 30 + (rng.next() * 150.0) as u32;
            cloud = if cloudy && rng.next() < 0.5 { 0.25 + 0.3 * rng.next() } else { 1.0 };
        }
        cloud_left -= 1;
        *s *= cloud;
    }
    let mut load = vec![0.0f32; n];
    for (t, l) in load.iter_mut().enumerate() {
        *l = 250.0 + 80.0 * (rng.next() - 0.5);
        if t % 2700 < 900 {
            *l += 100.0; // fridge
        }
    }
    let mut add = |from: usize, to: usize, w: f32| {
        for l in &mut load[from..to] {
            *l += w;
        }
    };
    add(at(7, 30), at(7, 33), 2000.0); // kettle
    for k in 0..5 {
        // washing machine: heating then spinning
        let s = at(10, 0) + k * 900;
        add(s, s + 420, 1800.0);
        add(s + 420, s + 900, 300.0);
    }
    add(at(13, 0), at(13, 20), 2000.0); // dishwasher
    add(at(14, 0), at(14, 30), 1500.0); // heater, off at 14:30:00
    add(at(17, 30), at(18, 15), 2500.0); // oven
    add(at(19, 0), at(22, 0), 150.0); // evening lights and TV
    Scenario { sun, load, soc0: 55.0, pv_reading_gain, battery_w: 2500.0 }
}

/// Constant sun, no battery, a 2000 W load that drops by 1500 W at t = 120 s.
fn step_scenario() -> Scenario {
    let n = 300;
    let sun = vec![3500.0; n];
    let load = (0..n).map(|t| if t < 120 { 2000.0 } else { 500.0 }).collect();
    Scenario { sun, load, soc0: 100.0, pv_reading_gain: 1.0, battery_w: 0.0 }
}

enum Law {
    Ours(Box<Controller>),
    Fork,
}

#[derive(Default, Debug)]
struct Tally {
    exported_wh: f64,
    imported_wh: f64,
    curtailed_wh: f64,
    writes: u32,
    battery_wh: f64,
    end_soc: f32,
    max_export_w: f32,
    max_export_at: usize,
    statuses: std::collections::BTreeMap<&'static str, u32>,
}

struct Trace {
    export: Vec<f32>,
    limit: Vec<f32>,
    pv: Vec<f32>,
}

fn fork_percent(grid: f32, pv: f32, battery: f32, soc: f32) -> f32 {
    if soc < 90.0 {
        return 100.0;
    }
    let mut limit = grid + pv;
    if battery < -100.0 {
        limit -= battery;
    }
    (100.0 * limit / P_MAX).ceil().clamp(2.0, 100.0)
}

fn run(s: &Scenario, mut law: Law) -> (Tally, Trace) {
    let n = s.sun.len();
    let mut tally = Tally::default();
    let mut trace =
        Trace { export: Vec::with_capacity(n), limit: Vec::with_capacity(n), pv: Vec::with_capacity(n) };
    let beta = 1.0 - (-1.0f32 / 2.0).exp(); // inverter lag, tau = 2 s
    let (mut pv, mut batt, mut soc) = (0.0f32, 0.0f32, s.soc0);
    let mut applied = 100.0f32; // percent in force in the inverter
    let mut awake = false;
    let mut last = (0.0f32, 0.0f32, 0.0f32, 0.0f32); // readings of the previous second
    for t in 0..n {
        let now = Instant::from_micros(t as u64 * 1_000_000);
        let was_awake = awake;
        awake = s.sun[t] >= 5.0;
        if awake && !was_awake {
            applied = 100.0;
            if let Law::Ours(c) = &mut law {
                c.write_failed();
            }
        }
        // Controller decides on the previous second's readings.
        let (g_m, pv_m, b_m, soc_m) = last;
        let stamp = Instant::from_micros((t as u64).saturating_sub(1) * 1_000_000);
        match &mut law {
            Law::Ours(c) => {
                let charger = if soc_m < 95.0 { ChargerState::Bulk } else { ChargerState::Absorption };
                let inputs = Inputs {
                    grid_power_w: Some(Sample::new(g_m, stamp)),
                    pv_power_w: awake.then(|| Sample::new(pv_m, stamp)),
                    battery_power_w: Some(Sample::new(b_m, stamp)),
                    soc_percent: Some(Sample::new(soc_m, stamp)),
                    battery_voltage_v: Some(Sample::new(52.0, stamp)),
                    charger_state: Some(Stamped::new(charger, stamp)),
                    ac_in_power_w: None,
                    external_limit_w: None,
                    max_power_w: Some(P_MAX),
                };
                let step = c.step(now, &inputs);
                *tally.statuses.entry(status_key(step.status)).or_default() += 1;
                if let Command::Write(l) = step.command {
                    if awake {
                        applied = l.register_percent() as f32;
                        tally.writes += 1;
                    }
                }
            }
            Law::Fork => {
                if awake && pv_m >= 50.0 {
                    applied = fork_percent(g_m, pv_m, b_m, soc_m);
                    tally.writes += 1;
                }
            }
        }
        // Plant.
        let cap = (applied / 100.0 * P_MAX).min(s.sun[t]);
        pv += beta * (cap - pv);
        if !awake {
            pv = 0.0;
        }
        let load = s.load[t];
        let mut target = pv - load;
        if soc >= 100.0 {
            target = target.min(0.0);
        }
        if soc <= 10.0 {
            target = target.max(0.0);
        }
        batt += 0.5 * (target.clamp(-s.battery_w, s.battery_w) - batt);
        soc = (soc + batt / 3600.0 / 10_000.0 * 100.0).clamp(0.0, 100.0);
        let grid = load + batt - pv;
        let export = (-grid).max(0.0);
        tally.battery_wh += batt as f64 / 3600.0;
        tally.end_soc = soc;
        tally.exported_wh += export as f64 / 3600.0;
        tally.imported_wh += grid.max(0.0) as f64 / 3600.0;
        tally.curtailed_wh += (s.sun[t] - pv).max(0.0) as f64 / 3600.0;
        if export > tally.max_export_w {
            tally.max_export_w = export;
            tally.max_export_at = t;
        }
        trace.export.push(export);
        trace.limit.push(applied);
        trace.pv.push(pv);
        last = (grid, pv * s.pv_reading_gain, batt, soc);
    }
    (tally, trace)
}

fn hms(t: usize) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

fn status_key(s: Status) -> &'static str {
    s.name()
}

fn ours() -> Law {
    Law::Ours(Box::new(Controller::new(Config::DEFAULT)))
}

fn print_day(title: &str, s: &Scenario) {
    let (a, _) = run(s, ours());
    let (b, _) = run(s, Law::Fork);
    println!("\n{title}");
    println!("{:<24} {:>12} {:>12}", "", "controller", "fork rule");
    println!("{:<24} {:>12.0} {:>12.0}", "exported Wh", a.exported_wh, b.exported_wh);
    println!("{:<24} {:>12.0} {:>12.0}", "curtailed Wh", a.curtailed_wh, b.curtailed_wh);
    println!("{:<24} {:>12.0} {:>12.0}", "imported Wh", a.imported_wh, b.imported_wh);
    println!("{:<24} {:>12.0} {:>12.0}", "battery net charge Wh", a.battery_wh, b.battery_wh);
    println!("{:<24} {:>12.1} {:>12.1}", "SoC at midnight %", a.end_soc, b.end_soc);
    println!("{:<24} {:>12} {:>12}", "inverter writes", a.writes, b.writes);
    println!("{:<24} {:>12.0} {:>12.0}", "max export W", a.max_export_w, b.max_export_w);
    println!("{:<24} {:>12} {:>12}", "  at", hms(a.max_export_at), hms(b.max_export_at));
    let statuses: Vec<String> = a.statuses.iter().map(|(k, v)| format!("{k}: {v} s")).collect();
    println!("controller status time: {}", statuses.join(", "));
}

/// Export excursion after the step at `t0`: peak W, energy Wh, settling time
/// (last second export exceeds 50 W, counted from the step).
fn excursion(trace: &Trace, t0: usize) -> (f32, f64, usize) {
    let after = &trace.export[t0..];
    let peak = after.iter().copied().fold(0.0, f32::max);
    let wh = after.iter().map(|&e| e as f64 / 3600.0).sum();
    let settle = after.iter().rposition(|&e| e > 50.0).map_or(0, |i| i + 1);
    (peak, wh, settle)
}

fn main() {
    println!("Dynamic generation: controller (defaults) vs the fork's rule, 1 s steps, 4200 W inverter.");
    print_day("Scripted day, ideal readings", &day_scenario(1.0));
    print_day("Scripted day, Growatt power reading 2 % high (meter mismatch)", &day_scenario(1.02));
    let small = Scenario { battery_w: 1500.0, soc0: 30.0, ..day_scenario(1.0) };
    print_day("Scripted day, ideal readings, 1500 W charger, battery from 30 %", &small);

    let s = step_scenario();
    let (_, ta) = run(&s, ours());
    let (_, tb) = run(&s, Law::Fork);
    println!("\nStep response: sun 3500 W, no battery, load 2000 W → 500 W at t = 120 s");
    println!(
        "{:>5} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10}",
        "t", "limit %", "PV W", "export W", "limit %", "PV W", "export W"
    );
    for t in (116..140).chain([150, 180, 240, 299]) {
        println!(
            "{:>5} {:>10.0} {:>10.0} {:>10.0} | {:>10.0} {:>10.0} {:>10.0}",
            t, ta.limit[t], ta.pv[t], ta.export[t], tb.limit[t], tb.pv[t], tb.export[t]
        );
    }
    for (name, tr) in [("controller", &ta), ("fork rule", &tb)] {
        let (peak, wh, settle) = excursion(tr, 120);
        println!(
            "{name:<11} peak export {peak:.0} W, excursion {wh:.2} Wh, settled (≤ 50 W) after {settle} s"
        );
    }
    let (_, td) = run(&day_scenario(1.0), ours());
    let (_, tf) = run(&day_scenario(1.0), Law::Fork);
    let t0 = at(14, 30);
    println!("\nIn the day run, heater off at 14:30:00 (−1500 W):");
    for (name, tr) in [("controller", &td), ("fork rule", &tf)] {
        let (peak, wh, settle) =
            excursion(&Trace { export: tr.export[t0..t0 + 120].to_vec(), limit: vec![], pv: vec![] }, 0);
        println!(
            "{name:<11} peak export {peak:.0} W, excursion {wh:.2} Wh, settled (≤ 50 W) after {settle} s"
        );
    }
}
