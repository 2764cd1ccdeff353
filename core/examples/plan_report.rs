//! Prints the poll plans of the built-in profiles and their line cost at
//! 9600 baud 8N1: per full refresh (every polled register once) for the
//! plan, for one transaction per register and for one big block per bank,
//! and the fastest refresh the plan allows with both devices on one line.
//!
//! `cargo run -p dmc-core --example plan_report`

use dmc_core::plan::{Block, Plan, Transport};
use dmc_core::profile::{self, Profile, MAX_BLOCKS};
use dmc_core::register::{PollClass, RegisterBank};
use dmc_core::schedule::{Next, Scheduler};
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;

/// Transactions, wire bytes, wire time (bytes only), line time (with turnaround and gaps).
#[derive(Default, Clone, Copy)]
struct Cost {
    transactions: u32,
    bytes: u32,
    wire: Duration,
    line: Duration,
}

impl Cost {
    fn add(&mut self, p: &Profile, t: &Transport, line: &LineConfig, count: u16) {
        let (q, r) = t.read_bytes(count);
        self.transactions += 1;
        self.bytes += q + r;
        self.wire = self.wire + line.wire_time((q + r) as usize);
        self.line = self.line + p.read_time(t, count);
    }
}

fn periodic(class: PollClass) -> bool {
    matches!(class, PollClass::Every(_))
}

fn class_name(c: PollClass) -> String {
    match c {
        PollClass::Every(d) => format!("{} ms", d.as_millis()),
        PollClass::Once => "once".into(),
    }
}

fn costs(p: &Profile, t: &Transport, line: &LineConfig) -> (Cost, Cost, Cost, String) {
    let plan: Plan<MAX_BLOCKS> = p.plan(t).expect("profile plans");
    let mut planned = Cost::default();
    for b in plan.blocks().iter().filter(|b| periodic(b.class)) {
        planned.add(p, t, line, b.count);
    }
    let mut per_register = Cost::default();
    for r in p.registers.iter().filter(|r| periodic(r.class)) {
        let align = p.limits.alignment.max(1);
        let count = r.word_count().div_ceil(align) * align;
        per_register.add(p, t, line, count);
    }
    let mut big = Cost::default();
    let mut note = String::new();
    for bank in [RegisterBank::Input, RegisterBank::Holding] {
        let regs = p.registers.iter().filter(|r| periodic(r.class) && r.bank == bank);
        let (lo, hi) = regs.fold((u32::MAX, 0u32), |(lo, hi), r| (lo.min(r.address.into()), hi.max(r.end())));
        if lo < hi {
            let count = (hi - lo) as u16;
            if count > p.limits.max_registers || p.limits.barriers.iter().any(|b| b.blocks(bank, lo, hi)) {
                note.push_str(&format!(" {bank:?} {count} regs not allowed;"));
            }
            big.add(p, t, line, count);
        }
    }
    (planned, per_register, big, note)
}

/// Runs the scheduler over `secs` simulated seconds and returns, per device
/// and block, the average interval between reads.
fn simulate(devices: &[Vec<(PollClass, Duration)>], min_interval: &[Duration], secs: u64) -> Vec<Vec<f64>> {
    let mut s: Scheduler<4, 64> = Scheduler::new();
    let ids: Vec<_> = devices.iter().map(|d| s.add_device(d.iter().copied()).unwrap()).collect();
    for (id, gap) in ids.iter().zip(min_interval) {
        s.set_min_interval(*id, *gap).unwrap();
    }
    let mut reads: Vec<Vec<Vec<Instant>>> = devices.iter().map(|d| vec![Vec::new(); d.len()]).collect();
    let mut now = Instant::ZERO;
    let end = Instant::from_millis(secs * 1000);
    while now < end {
        match s.next(now) {
            Next::Read { device, block } => {
                s.mark_read(device, block, now).unwrap();
                reads[usize::from(device.0)][block].push(now);
                now += devices[usize::from(device.0)][block].1;
            }
            Next::Wait { until } => now = until,
            Next::Idle => break,
        }
    }
    reads
        .iter()
        .map(|dev| {
            dev.iter()
                .map(|r| {
                    // Skip the start-up transient: average over the second half.
                    let r = &r[r.len() / 2..];
                    if r.len() < 2 {
                        f64::INFINITY
                    } else {
                        (r[r.len() - 1] - r[0]).as_micros() as f64 / 1000.0 / (r.len() - 1) as f64
                    }
                })
                .collect()
        })
        .collect()
}

fn blocks_with_cost(p: &Profile, t: &Transport, fastest_to_zero: bool) -> Vec<(PollClass, Duration)> {
    let plan: Plan<MAX_BLOCKS> = p.plan(t).unwrap();
    let fastest = plan.blocks().iter().map(|b| b.class.order_key()).min().unwrap_or(u64::MAX);
    plan.blocks()
        .iter()
        .map(|b: &Block| {
            let class = if fastest_to_zero && b.class.order_key() == fastest {
                PollClass::Every(Duration::ZERO)
            } else {
                b.class
            };
            (class, p.read_time(t, b.count))
        })
        .collect()
}

fn main() {
    let line = LineConfig::new_8n1(9600);
    let t = Transport::Rtu(line);
    println!(
        "Line: 9600 baud 8N1, t3.5 = {}; hole limit = framing + 2 x t3.5 + per-device overhead\n",
        line.t35()
    );

    for p in profile::ALL {
        let plan: Plan<MAX_BLOCKS> = p.plan(&t).unwrap();
        println!(
            "{} ({}): max {} regs, alignment {}, hole limit {} regs, turnaround {} + {}/reg",
            p.product_name,
            p.name,
            p.limits.max_registers,
            p.limits.alignment,
            plan.max_hole(),
            p.turnaround.fixed,
            p.turnaround.per_register
        );
        for b in plan.blocks() {
            println!(
                "  FC{:02} {:>5} (0x{:04X}) x{:<3} {:>8}  {}",
                b.bank.read_function(),
                b.start,
                b.start,
                b.count,
                class_name(b.class),
                p.read_time(&t, b.count)
            );
        }
        println!();
    }

    println!("Full refresh (every polled register once), 9600 8N1:");
    println!(
        "| profile | strategy | transactions | wire bytes | wire time | line time (incl. turnaround, t3.5) |"
    );
    println!("|---|---|---|---|---|---|");
    for p in profile::ALL {
        let (planned, per_reg, big, note) = costs(p, &t, &line);
        for (name, c) in [("plan", planned), ("one per register", per_reg), ("one block per bank", big)] {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                p.name, name, c.transactions, c.bytes, c.wire, c.line
            );
        }
        if !note.is_empty() {
            println!("|  | (one block per bank:{}) | | | | |", note.trim_end_matches(';'));
        }
    }

    // Fastest class of each profile, both devices on one line: the
    // fastest class at period 0 (as fast as the line allows), everything
    // else at its nominal period, the Growatt's 850 ms spacing enforced.
    println!("\nFastest class, both devices on one 9600-baud line (simulated 600 s with the scheduler):");
    println!("| profile | fastest class | nominal period | block line time | achievable period | rate |");
    println!("|---|---|---|---|---|---|");
    // The customer's bus: the SDM230 and the Growatt (the other profiles
    // live on their own buses, e.g. a Victron meter over UDP).
    let all = [&profile::sdm230::SDM230, &profile::growatt_min::GROWATT_MIN];
    for (i, p) in all.iter().enumerate() {
        let devices: Vec<_> = all.iter().enumerate().map(|(j, q)| blocks_with_cost(q, &t, i == j)).collect();
        let gaps: Vec<_> = all.iter().map(|q| q.min_command_interval).collect();
        let periods = simulate(&devices, &gaps, 600);
        let plan: Plan<MAX_BLOCKS> = p.plan(&t).unwrap();
        let fastest = plan.blocks().iter().map(|b| b.class.order_key()).min().unwrap();
        for (k, b) in plan.blocks().iter().enumerate().filter(|(_, b)| b.class.order_key() == fastest) {
            let ms = periods[i][k];
            println!(
                "| {} | FC{:02} {} x{} | {} | {} | {:.1} ms | {:.2} Hz |",
                p.name,
                b.bank.read_function(),
                b.start,
                b.count,
                class_name(b.class),
                p.read_time(&t, b.count),
                ms,
                1000.0 / ms
            );
        }
    }

    // And the nominal schedule: every class at its period, check achieved periods.
    println!("\nNominal periods, both devices, simulated 600 s (achieved mean interval per block):");
    let devices: Vec<_> = all.iter().map(|q| blocks_with_cost(q, &t, false)).collect();
    let gaps: Vec<_> = all.iter().map(|q| q.min_command_interval).collect();
    let periods = simulate(&devices, &gaps, 600);
    let mut busy = 0.0;
    for (i, p) in all.iter().enumerate() {
        let plan: Plan<MAX_BLOCKS> = p.plan(&t).unwrap();
        for (k, b) in plan.blocks().iter().enumerate() {
            if let PollClass::Every(d) = b.class {
                let cost = p.read_time(&t, b.count);
                busy += cost.as_micros() as f64 / 1000.0 / periods[i][k];
                println!(
                    "  {:<12} FC{:02} {:>5} x{:<3} nominal {:>6} achieved {:>8.1} ms",
                    p.name,
                    b.bank.read_function(),
                    b.start,
                    b.count,
                    format!("{} ms", d.as_millis()),
                    periods[i][k]
                );
            }
        }
    }
    println!("  line busy (incl. turnaround and gaps): {:.1} %", busy * 100.0);
}
