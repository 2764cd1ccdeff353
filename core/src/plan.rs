//! Poll planning: packing a device's registers into read blocks.
//!
//! Rules, each checked by the property tests in `core/tests/planner.rs`:
//! - one bank (read function) and one poll class per block: a fast register
//!   is never dragged into a slow block, nor a slow one into a fast block;
//! - no block longer than the device's limit ([`ReadLimits::max_registers`]);
//! - start and count are multiples of [`ReadLimits::alignment`] (the SDM230
//!   needs both even), except registers marked [`RegisterDef::alone`], which
//!   are read with exactly their own words;
//! - no block touches a [`Barrier`];
//! - a hole (registers nobody asked for) is read only when it costs fewer
//!   wire bytes than a second transaction: [`Transport::max_hole`];
//! - every register is assigned to exactly one block, and that block holds it.
//!
//! Packing is greedy over registers sorted by (class, bank, address), which
//! is optimal for the hole rule on a line: merging two neighbours never makes
//! a later merge impossible except through the length limit.
//! Capacity is fixed ([`Plan<N>`] holds at most `N` blocks; a device at most
//! [`MAX_PLAN_REGISTERS`] definitions); exceeding it is an error, not a truncation.

use core::fmt;
use heapless::Vec;

use crate::register::{PollClass, RegisterBank, RegisterDef};
use crate::time::Duration;
use crate::timing::LineConfig;

/// Most register definitions one device profile may have.
pub const MAX_PLAN_REGISTERS: usize = 128;

/// Largest read the Modbus spec allows (FC03/FC04, 125 registers).
pub const MODBUS_MAX_READ: u16 = 125;

/// How requests reach the device; decides the per-transaction overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Transport {
    /// RTU on a serial line: 8-byte read request, 5 bytes of response
    /// framing, t3.5 silence after each frame.
    Rtu(LineConfig),
    /// Modbus TCP or UDP: 12-byte read request, 9-byte response header.
    Mbap,
}

/// RTU read request: unit, function, start, count, CRC.
const RTU_READ_REQUEST: u32 = 8;
/// RTU read response framing: unit, function, byte count, CRC.
const RTU_READ_RESPONSE_OVERHEAD: u32 = 5;
/// MBAP read request: 7-byte header + function, start, count.
const MBAP_READ_REQUEST: u32 = 12;
/// MBAP read response framing: 7-byte header + function + byte count.
const MBAP_READ_RESPONSE_OVERHEAD: u32 = 9;

impl Transport {
    /// Request and response bytes of a read of `count` registers.
    pub const fn read_bytes(&self, count: u16) -> (u32, u32) {
        let data = 2 * count as u32;
        match self {
            Transport::Rtu(_) => (RTU_READ_REQUEST, RTU_READ_RESPONSE_OVERHEAD + data),
            Transport::Mbap => (MBAP_READ_REQUEST, MBAP_READ_RESPONSE_OVERHEAD + data),
        }
    }

    /// Line time of one read transaction: request, turnaround, response and
    /// the t3.5 gap before the next request (zero byte time on a network).
    pub fn read_time(&self, count: u16, turnaround: Duration) -> Duration {
        let (req, resp) = self.read_bytes(count);
        match self {
            Transport::Rtu(line) => line.transaction_time(req as usize, resp as usize, turnaround),
            Transport::Mbap => turnaround,
        }
    }

    /// The largest hole (in registers) worth reading inside a block rather
    /// than starting a second transaction.
    ///
    /// RTU: reading `h` extra registers costs `2h` characters; a second
    /// transaction costs its 13 framing characters, two t3.5 silences (the
    /// one that ends the request, which the slave must wait for, and the one
    /// before the next request) and `extra_per_transaction` (the device's
    /// fixed turnaround, and any minimum spacing between its commands). The
    /// hole is read when strictly cheaper. MBAP: any hole when a transaction
    /// has a cost in time, else 21 framing bytes against `2h` data bytes.
    pub fn max_hole(&self, extra_per_transaction: Duration) -> u16 {
        match self {
            Transport::Rtu(line) => {
                let second = line.chars_time(RTU_READ_REQUEST + RTU_READ_RESPONSE_OVERHEAD)
                    + line.t35()
                    + line.t35()
                    + extra_per_transaction;
                // Largest h with chars_time(2h) < second; chars_time is monotonic.
                let mut lo = 0u32;
                let mut hi = u32::from(MODBUS_MAX_READ);
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if line.chars_time(2 * mid) < second {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                lo as u16
            }
            // On a network the bytes of a hole cost next to nothing in time,
            // while a second transaction costs the device's turnaround and
            // spacing: with any such cost, holes are always worth reading.
            Transport::Mbap if extra_per_transaction > Duration::ZERO => MODBUS_MAX_READ,
            Transport::Mbap => ((MBAP_READ_REQUEST + MBAP_READ_RESPONSE_OVERHEAD - 1) / 2) as u16,
        }
    }
}

/// A register range a device refuses, or a split point.
///
/// `start < end`: no block may include any of `start..end`.
/// `start == end`: no block may include both `start - 1` and `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Barrier {
    /// Bank the barrier applies to.
    pub bank: RegisterBank,
    /// First refused register (or the split point).
    pub start: u16,
    /// One past the last refused register (equal to `start` for a split).
    pub end: u16,
}

impl Barrier {
    /// Whether a block `start..end` of `bank` violates this barrier.
    pub fn blocks(&self, bank: RegisterBank, start: u32, end: u32) -> bool {
        let (bs, be) = (u32::from(self.start), u32::from(self.end));
        self.bank == bank && if bs < be { start < be && bs < end } else { start < bs && bs < end }
    }
}

/// A device's read constraints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadLimits {
    /// Most registers per read (1..=125).
    pub max_registers: u16,
    /// Start and count must be multiples of this (1 = none, 2 = even).
    pub alignment: u16,
    /// Ranges never read.
    pub barriers: &'static [Barrier],
}

impl ReadLimits {
    /// The spec's limits: 125 registers, no alignment, no barriers.
    pub const MODBUS: ReadLimits = ReadLimits { max_registers: MODBUS_MAX_READ, alignment: 1, barriers: &[] };
}

/// One read transaction of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Block {
    /// Bank, hence read function.
    pub bank: RegisterBank,
    /// First register.
    pub start: u16,
    /// Registers read.
    pub count: u16,
    /// Poll class of every register in the block.
    pub class: PollClass,
}

impl Block {
    /// One past the last register.
    pub const fn end(&self) -> u32 {
        self.start as u32 + self.count as u32
    }
}

/// Why a plan could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PlanError {
    /// More blocks than the plan's capacity `N`.
    TooManyBlocks,
    /// More register definitions than [`MAX_PLAN_REGISTERS`].
    TooManyRegisters,
    /// Limits unusable: max 0 or over 125, alignment 0 or not dividing the max.
    BadLimits,
    /// Register `index` cannot be read within the limits (too long after alignment).
    RegisterTooLong {
        /// Index in the register table.
        index: usize,
    },
    /// Register `index` (with its alignment padding) touches a barrier.
    RegisterInBarrier {
        /// Index in the register table.
        index: usize,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::TooManyBlocks => f.write_str("plan capacity exceeded"),
            PlanError::TooManyRegisters => f.write_str("too many register definitions"),
            PlanError::BadLimits => f.write_str("unusable read limits"),
            PlanError::RegisterTooLong { index } => write!(f, "register #{index} exceeds the read limit"),
            PlanError::RegisterInBarrier { index } => write!(f, "register #{index} touches a barrier"),
        }
    }
}

impl core::error::Error for PlanError {}

/// Marker for "no block" in [`Plan`]'s assignment table.
const UNASSIGNED: u8 = u8::MAX;

/// The read blocks of one device and which block reads each register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<const N: usize> {
    blocks: Vec<Block, N>,
    /// `assignment[i]` = block index of register `i`.
    assignment: [u8; MAX_PLAN_REGISTERS],
    registers: usize,
    max_hole: u16,
}

/// A register's span as the planner sees it.
#[derive(Clone, Copy)]
struct Span {
    class: PollClass,
    bank: RegisterBank,
    alone: bool,
    /// Aligned span (what a block must cover).
    start: u32,
    end: u32,
    /// The register's own span (for the hole rule).
    real_start: u32,
    real_end: u32,
    index: u8,
}

const fn align_down(x: u32, a: u32) -> u32 {
    x - x % a
}

const fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a) * a
}

impl<const N: usize> Plan<N> {
    /// Packs `registers` into blocks. `max_hole` is usually
    /// [`Transport::max_hole`] of the device's transport.
    pub fn new(registers: &[RegisterDef], limits: &ReadLimits, max_hole: u16) -> Result<Self, PlanError> {
        let max = u32::from(limits.max_registers);
        let align = u32::from(limits.alignment);
        if max == 0 || max > u32::from(MODBUS_MAX_READ) || align == 0 || max % align != 0 || N > 255 {
            return Err(PlanError::BadLimits);
        }
        if registers.len() > MAX_PLAN_REGISTERS {
            return Err(PlanError::TooManyRegisters);
        }
        let mut spans: Vec<Span, MAX_PLAN_REGISTERS> = Vec::new();
        for (index, r) in registers.iter().enumerate() {
            let (start, end) = if r.alone {
                (u32::from(r.address), r.end())
            } else {
                (align_down(u32::from(r.address), align), align_up(r.end(), align))
            };
            if end - start > max || end > 0x1_0000 {
                return Err(PlanError::RegisterTooLong { index });
            }
            if limits.barriers.iter().any(|b| b.blocks(r.bank, start, end)) {
                return Err(PlanError::RegisterInBarrier { index });
            }
            let span = Span {
                class: r.class,
                bank: r.bank,
                alone: r.alone,
                start,
                end,
                real_start: u32::from(r.address),
                real_end: r.end(),
                index: index as u8,
            };
            spans.push(span).map_err(|_| PlanError::TooManyRegisters)?;
        }
        spans.sort_unstable_by_key(|s| (s.class.order_key(), s.bank, s.alone, s.start, s.end, s.index));

        let mut plan = Plan {
            blocks: Vec::new(),
            assignment: [UNASSIGNED; MAX_PLAN_REGISTERS],
            registers: registers.len(),
            max_hole,
        };
        // The open block: (bank, class, alone, start, end, real_end).
        let mut open: Option<(Span, u32)> = None;
        for s in spans.iter() {
            let joins = match open {
                Some((o, real_end)) => {
                    let same_group = o.class == s.class && o.bank == s.bank && o.alone == s.alone;
                    let new_end = o.end.max(s.end);
                    if s.alone {
                        same_group && o.start == s.start && o.end == s.end
                    } else {
                        same_group
                            && s.real_start.saturating_sub(real_end) <= u32::from(max_hole)
                            && new_end - o.start <= max
                            && !limits.barriers.iter().any(|b| b.blocks(s.bank, o.start, new_end))
                    }
                }
                None => false,
            };
            if let (true, Some((o, real_end))) = (joins, open.as_mut()) {
                o.end = o.end.max(s.end);
                *real_end = (*real_end).max(s.real_end);
            } else {
                if let Some((o, _)) = open {
                    plan.push_block(&o)?;
                }
                open = Some((*s, s.real_end));
            }
            // The block being built is always the next index to be pushed.
            plan.assignment[usize::from(s.index)] = plan.blocks.len() as u8;
        }
        if let Some((o, _)) = open {
            plan.push_block(&o)?;
        }
        Ok(plan)
    }

    fn push_block(&mut self, s: &Span) -> Result<(), PlanError> {
        // Spans were checked to lie below 0x10000 and within 125 registers.
        let block =
            Block { bank: s.bank, start: s.start as u16, count: (s.end - s.start) as u16, class: s.class };
        self.blocks.push(block).map_err(|_| PlanError::TooManyBlocks)
    }

    /// The blocks, fastest class first.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The hole limit the plan was made with.
    pub fn max_hole(&self) -> u16 {
        self.max_hole
    }

    /// The block that reads register `index` of the table the plan was made from.
    pub fn block_of(&self, index: usize) -> Option<usize> {
        if index >= self.registers {
            return None;
        }
        match self.assignment.get(index) {
            Some(&b) if b != UNASSIGNED => Some(usize::from(b)),
            _ => None,
        }
    }

    /// Indices of the registers read by `block`, in table order. The caller
    /// decodes each with [`RegisterDef::decode_in_block`].
    pub fn registers_of(&self, block: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.registers).filter(move |&i| self.block_of(i) == Some(block))
    }

    /// Wire bytes (request + response) of one read of every block of the
    /// classes `filter` accepts.
    pub fn wire_bytes(&self, transport: &Transport, filter: impl Fn(&Block) -> bool) -> u32 {
        self.blocks
            .iter()
            .filter(|b| filter(b))
            .map(|b| {
                let (q, r) = transport.read_bytes(b.count);
                q + r
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{RegisterType, WordOrder};

    const F32: RegisterType = RegisterType::F32(WordOrder::HighFirst);
    const FAST: Duration = Duration::from_millis(250);

    fn reg(addr: u16) -> RegisterDef {
        RegisterDef::new("r", RegisterBank::Input, addr, F32).every(FAST)
    }

    #[test]
    fn test_max_hole_at_9600() {
        // 13 chars + 2 x 3.5 chars = 20 chars = 20.84 ms; 9 registers = 18 chars.
        let rtu = Transport::Rtu(LineConfig::new_8n1(9600));
        assert_eq!(rtu.max_hole(Duration::ZERO), 9);
        // 6 ms of turnaround is 5.76 more characters.
        assert_eq!(rtu.max_hole(Duration::from_millis(6)), 12);
        assert_eq!(Transport::Mbap.max_hole(Duration::ZERO), 10);
    }

    #[test]
    fn test_holes_merge_up_to_limit() {
        let regs = [reg(0), reg(6), reg(12), reg(40)];
        let plan: Plan<4> = Plan::new(&regs, &ReadLimits::MODBUS, 9).unwrap();
        assert_eq!(plan.blocks().len(), 2);
        assert_eq!((plan.blocks()[0].start, plan.blocks()[0].count), (0, 14));
        assert_eq!((plan.blocks()[1].start, plan.blocks()[1].count), (40, 2));
        assert_eq!(plan.registers_of(0).collect::<heapless::Vec<_, 4>>().as_slice(), &[0, 1, 2]);
        assert_eq!(plan.block_of(3), Some(1));
        assert_eq!(plan.block_of(4), None);
    }

    #[test]
    fn test_alignment_barrier_and_capacity() {
        let odd = RegisterDef::new("o", RegisterBank::Input, 3, RegisterType::U16).every(FAST);
        let limits = ReadLimits { max_registers: 80, alignment: 2, barriers: &[] };
        let plan: Plan<2> = Plan::new(&[odd], &limits, 9).unwrap();
        assert_eq!((plan.blocks()[0].start, plan.blocks()[0].count), (2, 2));
        const SPLIT: [Barrier; 1] = [Barrier { bank: RegisterBank::Input, start: 6, end: 6 }];
        let limits = ReadLimits { max_registers: 80, alignment: 2, barriers: &SPLIT };
        let plan: Plan<2> = Plan::new(&[reg(0), reg(6)], &limits, 9).unwrap();
        assert_eq!(plan.blocks().len(), 2);
        assert_eq!(Plan::<1>::new(&[reg(0), reg(6)], &limits, 9), Err(PlanError::TooManyBlocks));
        const REFUSED: [Barrier; 1] = [Barrier { bank: RegisterBank::Input, start: 1, end: 2 }];
        let limits = ReadLimits { max_registers: 80, alignment: 1, barriers: &REFUSED };
        assert_eq!(Plan::<2>::new(&[reg(0)], &limits, 9), Err(PlanError::RegisterInBarrier { index: 0 }));
    }
}
