//! Poll planning (`Plan::new`) over arbitrary register sets, read limits,
//! barriers and hole limits: the invariants of `core/tests/planner.rs`.
//!
//! Checks:
//! - nothing panics;
//! - an error is legitimate: `BadLimits` only for unusable limits,
//!   `TooManyRegisters` only above `MAX_PLAN_REGISTERS`, `RegisterTooLong` /
//!   `RegisterInBarrier` only for a register whose (aligned) span really is
//!   too long / touches a barrier, and no earlier register has a problem;
//! - a plan covers every register exactly once, with a block of its bank and
//!   class that holds it; no block is empty, longer than the limit, past
//!   0xFFFF or touching a barrier; blocks are aligned unless they read one
//!   `alone` register with exactly its own words; holes, measured between
//!   the aligned spans of a block's members, never exceed `max_hole`;
//! - a plan with room for fewer blocks gives the same blocks or
//!   `TooManyBlocks`, never something else.
//!
//! Barriers must be `&'static` like a profile's; rather than leak per input,
//! they are windows into one table built (and kept reachable) once.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use dmc_core::plan::{Barrier, Plan, PlanError, ReadLimits, MAX_PLAN_REGISTERS, MODBUS_MAX_READ};
use dmc_core::register::{ByteOrder, PollClass, RegisterBank, RegisterDef, RegisterType, WordOrder};
use dmc_core::time::Duration;
use libfuzzer_sys::fuzz_target;

const CLASSES: [PollClass; 4] = [
    PollClass::Every(Duration::ZERO),
    PollClass::Every(Duration::from_millis(250)),
    PollClass::Every(Duration::from_secs(5)),
    PollClass::Once,
];

#[derive(Arbitrary, Debug)]
struct ArbRegister {
    address: u16,
    /// 0: U16, 1: F32, 2: U64, 3..: text of `kind - 2` words (up to 32).
    kind: u8,
    class: u8,
    holding: bool,
    alone: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    registers: Vec<ArbRegister>,
    /// Keep addresses below 512 (dense, interacting) unless set.
    wide: bool,
    max_registers: u8,
    alignment: u8,
    /// Window into the barrier table: start and length (0..=3).
    barrier_at: u16,
    barrier_count: u8,
    max_hole: u8,
}

const BARRIER_TABLE_LEN: usize = 4096;

/// A fixed table of barriers (a deterministic pseudo-random mix of ranges,
/// empty ranges and points, mostly below 512 where the registers are dense).
fn barrier_table() -> &'static [Barrier] {
    static TABLE: OnceLock<Vec<Barrier>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..BARRIER_TABLE_LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let start = (x % 520) as u16;
                let len = ((x >> 16) % 8) as u16;
                let end = if (x >> 24).is_multiple_of(8) { start.saturating_sub(len) } else { start + len };
                let bank =
                    if (x >> 32).is_multiple_of(2) { RegisterBank::Holding } else { RegisterBank::Input };
                Barrier { bank, start, end }
            })
            .collect()
    })
}

fn kind(k: u8) -> RegisterType {
    match k {
        0 => RegisterType::U16,
        1 => RegisterType::F32(WordOrder::HighFirst),
        2 => RegisterType::U64(WordOrder::LowFirst),
        k => RegisterType::Text { words: (k - 2) % 32 + 1, bytes: ByteOrder::HighFirst },
    }
}

/// The span a register is read with: its own words when alone, else aligned.
fn span(r: &RegisterDef, align: u32) -> (u32, u32) {
    if r.alone {
        (u32::from(r.address), r.end())
    } else {
        (u32::from(r.address) / align * align, r.end().div_ceil(align) * align)
    }
}

fn too_long(r: &RegisterDef, limits: &ReadLimits) -> bool {
    let (s, e) = span(r, u32::from(limits.alignment));
    e - s > u32::from(limits.max_registers) || e > 0x1_0000
}

fn in_barrier(r: &RegisterDef, limits: &ReadLimits) -> bool {
    let (s, e) = span(r, u32::from(limits.alignment));
    limits.barriers.iter().any(|b| b.blocks(r.bank, s, e))
}

fn check_plan(regs: &[RegisterDef], limits: &ReadLimits, max_hole: u16, plan: &Plan<128>) {
    let blocks = plan.blocks();
    for b in blocks {
        assert!(b.count >= 1 && b.count <= limits.max_registers, "block {b:?} over the limit");
        assert!(b.end() <= 0x1_0000, "block {b:?} past 0xFFFF");
        assert!(
            !limits.barriers.iter().any(|x| x.blocks(b.bank, u32::from(b.start), b.end())),
            "block {b:?} touches a barrier"
        );
    }
    for (i, r) in regs.iter().enumerate() {
        let bi = plan.block_of(i).unwrap_or_else(|| panic!("register {i} not planned"));
        let b = blocks[bi];
        assert_eq!((b.bank, b.class), (r.bank, r.class), "register {i} in a block of another bank/class");
        assert!(u32::from(b.start) <= u32::from(r.address) && r.end() <= b.end(), "block {bi} misses {i}");
        assert_eq!(plan.registers_of(bi).filter(|&j| j == i).count(), 1);
        if r.alone {
            assert_eq!((b.start, u32::from(b.count)), (r.address, r.end() - u32::from(r.address)));
        }
    }
    assert_eq!(plan.block_of(regs.len()), None);
    for (bi, b) in blocks.iter().enumerate() {
        let members: Vec<&RegisterDef> = plan.registers_of(bi).map(|i| &regs[i]).collect();
        assert!(!members.is_empty(), "block {bi} reads nothing anybody asked for");
        let alone_block = members.iter().all(|r| r.alone);
        if !alone_block {
            assert_eq!(b.start % limits.alignment, 0, "block {b:?} start not aligned");
            assert_eq!(b.count % limits.alignment, 0, "block {b:?} count not aligned");
        }
        let a = if alone_block { 1 } else { u32::from(limits.alignment) };
        let mut spans: Vec<(u32, u32)> = members.iter().map(|r| span(r, a)).collect();
        spans.sort_unstable();
        let mut reach = spans[0].1;
        for &(s, e) in &spans[1..] {
            assert!(s.saturating_sub(reach) <= u32::from(max_hole), "block {b:?}: hole {reach}..{s}");
            reach = reach.max(e);
        }
    }
}

fuzz_target!(|input: Input| {
    let regs: Vec<RegisterDef> = input
        .registers
        .iter()
        .take(MAX_PLAN_REGISTERS + 2)
        .map(|a| {
            let bank = if a.holding { RegisterBank::Holding } else { RegisterBank::Input };
            let address = if input.wide { a.address } else { a.address % 512 };
            let mut r = RegisterDef::new("f", bank, address, kind(a.kind));
            r.class = CLASSES[usize::from(a.class) % CLASSES.len()];
            r.alone = a.alone;
            r
        })
        .collect();
    let table = barrier_table();
    let at = usize::from(input.barrier_at) % BARRIER_TABLE_LEN;
    let count = usize::from(input.barrier_count % 4).min(BARRIER_TABLE_LEN - at);
    let limits = ReadLimits {
        max_registers: u16::from(input.max_registers % 128),
        alignment: u16::from(input.alignment % 9),
        barriers: &table[at..at + count],
    };
    let max_hole = u16::from(input.max_hole % 32);

    let bad_limits = limits.max_registers == 0
        || limits.max_registers > MODBUS_MAX_READ
        || limits.alignment == 0
        || !limits.max_registers.is_multiple_of(limits.alignment);
    let result = Plan::<128>::new(&regs, &limits, max_hole);
    match &result {
        Err(PlanError::BadLimits) => assert!(bad_limits, "good limits {limits:?} refused"),
        _ if bad_limits => panic!("bad limits {limits:?} accepted: {result:?}"),
        Err(PlanError::TooManyRegisters) => assert!(regs.len() > MAX_PLAN_REGISTERS),
        Err(PlanError::TooManyBlocks) => panic!("128 blocks cannot run out for {} registers", regs.len()),
        Err(PlanError::RegisterTooLong { index }) => {
            assert!(too_long(&regs[*index], &limits), "register {index} is not too long");
            assert!(regs[..*index].iter().all(|r| !too_long(r, &limits) && !in_barrier(r, &limits)));
        }
        Err(PlanError::RegisterInBarrier { index }) => {
            assert!(in_barrier(&regs[*index], &limits), "register {index} touches no barrier");
            assert!(!too_long(&regs[*index], &limits));
            assert!(regs[..*index].iter().all(|r| !too_long(r, &limits) && !in_barrier(r, &limits)));
        }
        Ok(plan) => {
            assert!(regs.len() <= MAX_PLAN_REGISTERS);
            assert!(regs.iter().all(|r| !too_long(r, &limits) && !in_barrier(r, &limits)));
            check_plan(&regs, &limits, max_hole, plan);
        }
    }

    // Less room for blocks: the same plan, or out of room.
    match (Plan::<4>::new(&regs, &limits, max_hole), &result) {
        (Ok(small), Ok(big)) => assert_eq!(small.blocks(), big.blocks()),
        (Err(PlanError::TooManyBlocks), Ok(big)) => assert!(big.blocks().len() > 4),
        (Err(a), Err(b)) => assert_eq!(&a, b),
        (small, big) => panic!("Plan<4> gave {small:?}, Plan<128> {big:?}"),
    }
});
