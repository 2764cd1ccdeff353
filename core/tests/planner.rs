//! Planner properties (proptest) and scheduler behaviour under a simulated clock.

use dmc_core::plan::{Barrier, Plan, ReadLimits, Transport};
use dmc_core::register::{PollClass, RegisterBank, RegisterDef, RegisterType, WordOrder};
use dmc_core::schedule::{Next, Scheduler};
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;
use proptest::prelude::*;

const KINDS: [RegisterType; 4] = [
    RegisterType::U16,
    RegisterType::F32(WordOrder::HighFirst),
    RegisterType::U64(WordOrder::LowFirst),
    RegisterType::Text { words: 5, bytes: dmc_core::register::ByteOrder::HighFirst },
];
const CLASSES: [PollClass; 4] = [
    PollClass::Every(Duration::ZERO),
    PollClass::Every(Duration::from_millis(250)),
    PollClass::Every(Duration::from_secs(5)),
    PollClass::Once,
];

fn arb_register() -> impl Strategy<Value = RegisterDef> {
    (0u16..400, 0usize..4, 0usize..4, any::<bool>(), prop::bool::weighted(0.1)).prop_map(
        |(addr, kind, class, holding, alone)| {
            let bank = if holding { RegisterBank::Holding } else { RegisterBank::Input };
            let mut r = RegisterDef::new("p", bank, addr, KINDS[kind]);
            r.class = CLASSES[class];
            r.alone = alone;
            r
        },
    )
}

/// Barriers are leaked so they can be `&'static` like a profile's.
fn arb_limits() -> impl Strategy<Value = ReadLimits> {
    (
        prop::sample::select(vec![(125u16, 1u16), (80, 2), (60, 2), (20, 1), (16, 4)]),
        proptest::collection::vec((0u16..420, 0u16..6, any::<bool>()), 0..3),
    )
        .prop_map(|((max, align), bars)| {
            let barriers: Vec<Barrier> = bars
                .into_iter()
                .map(|(start, len, holding)| Barrier {
                    bank: if holding { RegisterBank::Holding } else { RegisterBank::Input },
                    start,
                    end: start + len,
                })
                .collect();
            ReadLimits {
                max_registers: max,
                alignment: align,
                barriers: Box::leak(barriers.into_boxed_slice()),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_plan_invariants(
        regs in proptest::collection::vec(arb_register(), 0..60),
        limits in arb_limits(),
        max_hole in 0u16..20,
    ) {
        let plan = match Plan::<128>::new(&regs, &limits, max_hole) {
            Ok(p) => p,
            Err(dmc_core::plan::PlanError::RegisterInBarrier { index }) => {
                // Only legitimate when that register really touches a barrier.
                let r = &regs[index];
                let a = u32::from(limits.alignment);
                let (s, e) = if r.alone { (u32::from(r.address), r.end()) }
                    else { (u32::from(r.address) / a * a, r.end().div_ceil(a) * a) };
                prop_assert!(limits.barriers.iter().any(|b| b.blocks(r.bank, s, e)));
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let blocks = plan.blocks();
        for b in blocks {
            // No block over the limit, none across a barrier.
            prop_assert!(b.count >= 1 && b.count <= limits.max_registers);
            prop_assert!(!limits.barriers.iter().any(|x| x.blocks(b.bank, u32::from(b.start), b.end())));
        }
        for (i, r) in regs.iter().enumerate() {
            // Covered exactly once: one assigned block, holding the register,
            // of the same bank and class (fast never merged into slow).
            let bi = plan.block_of(i);
            prop_assert!(bi.is_some());
            let b = blocks[bi.unwrap()];
            prop_assert_eq!(b.bank, r.bank);
            prop_assert_eq!(b.class, r.class);
            prop_assert!(u32::from(b.start) <= u32::from(r.address) && r.end() <= b.end());
            prop_assert_eq!(plan.registers_of(bi.unwrap()).filter(|&j| j == i).count(), 1);
            if r.alone {
                prop_assert_eq!((b.start, u32::from(b.count)), (r.address, r.end() - u32::from(r.address)));
            }
        }
        for (bi, b) in blocks.iter().enumerate() {
            let members: Vec<&RegisterDef> = plan.registers_of(bi).map(|i| &regs[i]).collect();
            prop_assert!(!members.is_empty());
            let alone_block = members.iter().all(|r| r.alone);
            // Alignment, unless the block reads one register alone.
            if !alone_block {
                prop_assert_eq!(b.start % limits.alignment, 0);
                prop_assert_eq!(b.count % limits.alignment, 0);
            }
            // Holes between consecutive registers never exceed the break-even.
            // Alignment reads whole aligned units, so a hole inside one unit is
            // forced (splitting would read that unit twice): holes are measured
            // between the aligned spans of the members.
            let a = if alone_block { 1 } else { u32::from(limits.alignment.max(1)) };
            let mut spans: Vec<(u32, u32)> = members
                .iter()
                .map(|r| (u32::from(r.address) / a * a, r.end().div_ceil(a) * a))
                .collect();
            spans.sort();
            let mut reach = spans[0].1;
            for (s, e) in spans.iter().skip(1) {
                prop_assert!(s.saturating_sub(reach) <= u32::from(max_hole), "hole {}..{}", reach, s);
                reach = reach.max(*e);
            }
        }
    }

    /// The hole limit is exactly the byte break-even of the transport.
    #[test]
    fn prop_max_hole_is_break_even(baud in prop::sample::select(vec![1200u32, 2400, 4800, 9600, 19200, 38400, 115200]),
                                   extra_us in 0u64..50_000) {
        let line = LineConfig::new_8n1(baud);
        let extra = Duration::from_micros(extra_us);
        let h = u32::from(Transport::Rtu(line).max_hole(extra));
        let second = line.chars_time(13) + line.t35() + line.t35() + extra;
        prop_assert!(h == 125 || line.chars_time(2 * (h + 1)) >= second);
        prop_assert!(line.chars_time(2 * h) < second);
    }
}

/// Simulated bus: runs the scheduler for `secs`, each read taking its cost.
/// Returns the read start times per device and block.
fn run(
    devices: &[Vec<(PollClass, Duration)>],
    secs: u64,
    setup: impl Fn(&mut Scheduler<4, 32>, Instant),
) -> Vec<Vec<Vec<Instant>>> {
    let mut s: Scheduler<4, 32> = Scheduler::new();
    for d in devices {
        s.add_device(d.iter().copied()).unwrap();
    }
    let mut reads: Vec<Vec<Vec<Instant>>> = devices.iter().map(|d| vec![Vec::new(); d.len()]).collect();
    let mut now = Instant::ZERO;
    let end = Instant::from_millis(secs * 1000);
    while now < end {
        setup(&mut s, now);
        match s.next(now) {
            Next::Read { device, block } => {
                s.mark_read(device, block, now).unwrap();
                reads[usize::from(device.0)][block].push(now);
                now += devices[usize::from(device.0)][block].1;
            }
            Next::Wait { until } => {
                assert!(until > now, "wait must move time forward");
                now = until;
            }
            Next::Idle => break,
        }
    }
    reads
}

fn intervals(r: &[Instant]) -> Vec<u64> {
    r.windows(2).map(|w| (w[1] - w[0]).as_micros()).collect()
}

fn every(ms: u64) -> PollClass {
    PollClass::Every(Duration::from_millis(ms))
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn test_classes_refreshed_within_period_when_line_has_capacity() {
    // Meter-like and inverter-like devices, about 45 % line load.
    let meter =
        vec![(every(250), MS(60)), (every(5000), MS(60)), (every(5000), MS(50)), (PollClass::Once, MS(28))];
    let inverter = vec![(every(1000), MS(40)), (every(10_000), MS(35)), (PollClass::Once, MS(120))];
    let longest = MS(120).as_micros();
    let reads = run(&[meter.clone(), inverter.clone()], 120, |_, _| {});
    for (d, dev) in [meter, inverter].iter().enumerate() {
        for (b, (class, _)) in dev.iter().enumerate() {
            let r = &reads[d][b];
            match class {
                PollClass::Once => assert_eq!(r.len(), 1, "once blocks read exactly once"),
                PollClass::Every(p) => {
                    // After the start-up round, where every never-read block (identity
                    // included) is read once before anything repeats.
                    let steady: Vec<Instant> =
                        r.iter().copied().filter(|t| *t >= Instant::from_millis(1000)).collect();
                    let iv = intervals(&steady);
                    let max = *iv.iter().max().unwrap();
                    // Not preemptible: at most one longest transaction late.
                    assert!(max <= p.as_micros() + longest, "dev {d} block {b}: {max} us");
                    let mean = iv.iter().sum::<u64>() as f64 / iv.len() as f64;
                    assert!(mean <= p.as_micros() as f64 * 1.01, "dev {d} block {b}: mean {mean}");
                }
            }
        }
    }
}

#[test]
fn test_overload_stretches_every_class_proportionally() {
    // Demand: 3 x 100/100 + 2 x 100/400 + 100/1000 = 3.6 lines' worth.
    let a = vec![(every(100), MS(100)), (every(400), MS(100))];
    let b = vec![(every(100), MS(100)), (every(400), MS(100)), (every(1000), MS(100))];
    let c = vec![(every(100), MS(100))];
    let reads = run(&[a.clone(), b.clone(), c.clone()], 600, |_, _| {});
    let mut stretch = Vec::new();
    for (d, dev) in [a, b, c].iter().enumerate() {
        for (k, (class, _)) in dev.iter().enumerate() {
            let r = &reads[d][k];
            assert!(r.len() > 10, "device {d} block {k} starved: {} reads", r.len());
            let r = &r[r.len() / 2..];
            let mean = (r[r.len() - 1] - r[0]).as_micros() as f64 / (r.len() - 1) as f64;
            let PollClass::Every(p) = class else { unreachable!() };
            stretch.push(mean / p.as_micros() as f64);
        }
    }
    let lo = stretch.iter().cloned().fold(f64::MAX, f64::min);
    let hi = stretch.iter().cloned().fold(0.0, f64::max);
    assert!(lo > 1.5, "overloaded, so every class is stretched: {stretch:?}");
    assert!(hi / lo < 1.25, "stretch not proportional: {stretch:?}");
}

#[test]
fn test_zero_period_takes_the_spare_line_without_starving_others() {
    let fast = vec![(PollClass::Every(Duration::ZERO), MS(50))];
    let other = vec![(every(1000), MS(100)), (every(5000), MS(100))];
    let reads = run(&[fast, other], 60, |_, _| {});
    // The 1 s and 5 s blocks keep their periods (plus one blocking read).
    for (k, p) in [(0, 1000u64), (1, 5000)] {
        let iv = intervals(&reads[1][k]);
        assert!(*iv.iter().max().unwrap() <= (p + 50) * 1000, "block {k}: {iv:?}");
    }
    // The zero-period block gets the rest: ~ (60 s - 6.0 s - 1.2 s) / 50 ms.
    let n = reads[0][0].len();
    assert!(n > 1000, "{n}");
}

#[test]
fn test_asleep_device_is_not_polled_and_others_keep_their_period() {
    let meter = vec![(every(250), MS(60))];
    let inverter = vec![(every(1000), MS(250))];
    // The inverter sleeps from 10 s to 40 s (host sets not-before on timeouts).
    let reads = run(&[meter, inverter], 60, |s, now| {
        let d = dmc_core::schedule::DeviceId(1);
        if now >= Instant::from_millis(10_000) && now < Instant::from_millis(40_000) {
            s.set_not_before(d, Instant::from_millis(40_000)).unwrap();
        }
    });
    let asleep = reads[1][0]
        .iter()
        .filter(|t| **t > Instant::from_millis(10_300) && **t < Instant::from_millis(40_000))
        .count();
    assert_eq!(asleep, 0);
    assert!(reads[1][0].iter().any(|t| *t >= Instant::from_millis(40_000)), "woke up again");
    let meter_iv = intervals(&reads[0][0]);
    assert!(*meter_iv.iter().max().unwrap() <= (250 + 250) * 1000);
}

#[test]
fn test_round_robin_between_devices_on_ties() {
    let dev = vec![(every(100), MS(10))];
    let reads = run(&[dev.clone(), dev.clone(), dev], 1, |_, _| {});
    // Identical devices alternate: each gets a third of the reads.
    let counts: Vec<usize> = reads.iter().map(|d| d[0].len()).collect();
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(hi - lo <= 1, "{counts:?}");
    assert!(reads[0][0][0] < reads[1][0][0] && reads[1][0][0] < reads[2][0][0]);
}

/// Over a network a hole costs bytes, not time: with a device turnaround or
/// command spacing, holes are always read (the Growatt behind a Modbus TCP
/// gateway keeps its one big live read); without, the 21-byte break-even.
#[test]
fn mbap_hole_limit_counts_the_transaction_cost() {
    assert_eq!(Transport::Mbap.max_hole(Duration::ZERO), 10);
    assert_eq!(Transport::Mbap.max_hole(Duration::from_millis(15)), 125);
    let plan: Plan<{ dmc_core::profile::MAX_BLOCKS }> =
        dmc_core::profile::growatt_min::GROWATT_MIN.plan(&Transport::Mbap).unwrap();
    let live: Vec<_> = plan.blocks().iter().filter(|b| b.bank == RegisterBank::Input).collect();
    assert_eq!(live.len(), 1, "{live:?}");
}
