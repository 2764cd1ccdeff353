//! Scheduling the read blocks of all devices on one bus.
//!
//! The scheduler answers two questions for the host loop: which block to
//! read now ([`Scheduler::next`]) and, when nothing is due, until when to
//! sleep ([`Next::Wait`]). It never reads a clock; `now` comes in.
//!
//! Policy: a block is due one period after its *anchor*, normally the start
//! of its last read. Reads are not preemptible, so a block is sometimes read
//! late behind another device's long read; its anchor then stays on the
//! nominal grid (previous due time), so the next read comes early and the
//! average period stays nominal. A block more than half a period late is
//! re-anchored half a period before its read, so an overload never turns
//! into a burst of catch-up reads. Among
//! due blocks the most *overdue relative to its own period* goes first
//! (urgency = time since last read / period, compared exactly by
//! cross-multiplication). With spare line capacity this is earliest-deadline
//! first and every class is refreshed within its period plus one
//! transaction (reads are not preemptible). When the line cannot keep up all
//! urgencies rise together, so every block ends up read at the same multiple
//! of its period: each class's achieved period stretches by the same factor
//! and no device starves. Exact ties (e.g. everything never read after start)
//! go round-robin by device.
//!
//! A period of zero means "as fast as the line allows": such a block's
//! effective period is its own transaction time, so it soaks up spare line
//! time while still yielding to overdue blocks. Blocks of [`PollClass::Once`]
//! are read once, then not again until [`Scheduler::reset_device`].
//! A device can be parked ([`Scheduler::set_not_before`], for sleeping
//! inverters and back-off) and can require a minimum spacing between its
//! commands ([`Scheduler::set_min_interval`], the Growatt's 850 ms rule).

use heapless::Vec;

use crate::register::PollClass;
use crate::time::{Duration, Instant};

/// A device's handle in the scheduler (its index, in order of addition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceId(pub u8);

/// What the host should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Next {
    /// Read `block` (index into the device's plan) of `device` now.
    Read {
        /// Device.
        device: DeviceId,
        /// Block index in that device's plan.
        block: usize,
    },
    /// Nothing is due; call again at `until` (or on any event).
    Wait {
        /// When the next block becomes due.
        until: Instant,
    },
    /// Nothing will ever become due (no devices, or only read `Once` blocks).
    Idle,
}

/// Scheduler errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ScheduleError {
    /// Device or block capacity exceeded.
    Capacity,
    /// No such device or block.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    device: u8,
    block: u8,
    /// `None` = once.
    period: Option<Duration>,
    /// Transaction time, the floor of the effective period.
    cost: Duration,
    /// Start of the last read.
    last: Option<Instant>,
    /// Virtual time of the last read on the block's nominal grid.
    anchor: Option<Instant>,
}

impl Slot {
    /// Period used for deadlines and urgency: never below the block's own
    /// transaction time, never zero.
    fn effective_period(&self) -> Option<Duration> {
        self.period.map(|p| p.max(self.cost).max(Duration::from_micros(1)))
    }

    /// When the block is next due, ignoring device gates; `None` = never.
    fn due_at(&self) -> Option<Instant> {
        match (self.anchor, self.effective_period()) {
            (None, _) => Some(Instant::ZERO),
            (Some(_), None) => None,
            (Some(last), Some(p)) => Some(last + p),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct DeviceState {
    not_before: Instant,
    min_interval: Duration,
    last_command: Option<Instant>,
}

impl DeviceState {
    fn ready_at(&self) -> Instant {
        match self.last_command {
            Some(t) => self.not_before.max(t + self.min_interval),
            None => self.not_before,
        }
    }
}

/// Urgency of a due slot as a fraction `age / period`; never-read slots are infinitely urgent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Urgency {
    Never,
    Ratio { age: u64, period: u64 },
}

impl Urgency {
    fn cmp(&self, other: &Urgency) -> core::cmp::Ordering {
        use core::cmp::Ordering;
        match (self, other) {
            (Urgency::Never, Urgency::Never) => Ordering::Equal,
            (Urgency::Never, _) => Ordering::Greater,
            (_, Urgency::Never) => Ordering::Less,
            (Urgency::Ratio { age: a1, period: p1 }, Urgency::Ratio { age: a2, period: p2 }) => {
                (u128::from(*a1) * u128::from(*p2)).cmp(&(u128::from(*a2) * u128::from(*p1)))
            }
        }
    }
}

/// Block scheduler for up to `D` devices and `B` blocks in total.
#[derive(Clone, Debug)]
pub struct Scheduler<const D: usize, const B: usize> {
    devices: Vec<DeviceState, D>,
    slots: Vec<Slot, B>,
    /// Device that wins the next exact tie (round-robin).
    cursor: u8,
}

impl<const D: usize, const B: usize> Default for Scheduler<D, B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const D: usize, const B: usize> Scheduler<D, B> {
    /// An empty scheduler.
    pub const fn new() -> Self {
        Scheduler { devices: Vec::new(), slots: Vec::new(), cursor: 0 }
    }

    /// Adds a device whose plan has `blocks`: each block's poll class and
    /// its transaction time (see [`crate::plan::Transport::read_time`]).
    pub fn add_device(
        &mut self,
        blocks: impl IntoIterator<Item = (PollClass, Duration)>,
    ) -> Result<DeviceId, ScheduleError> {
        let id = u8::try_from(self.devices.len()).map_err(|_| ScheduleError::Capacity)?;
        let mark = self.slots.len();
        for (i, (class, cost)) in blocks.into_iter().enumerate() {
            let block = u8::try_from(i).map_err(|_| ScheduleError::Capacity);
            let period = match class {
                PollClass::Every(p) => Some(p),
                PollClass::Once => None,
            };
            let pushed = block.and_then(|block| {
                self.slots
                    .push(Slot { device: id, block, period, cost, last: None, anchor: None })
                    .map_err(|_| ScheduleError::Capacity)
            });
            if let Err(e) = pushed {
                self.slots.truncate(mark);
                return Err(e);
            }
        }
        if self.devices.push(DeviceState::default()).is_err() {
            self.slots.truncate(mark);
            return Err(ScheduleError::Capacity);
        }
        Ok(DeviceId(id))
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Do not read `device` before `t` (asleep, backing off). `Instant::ZERO` clears it.
    pub fn set_not_before(&mut self, device: DeviceId, t: Instant) -> Result<(), ScheduleError> {
        self.device_mut(device)?.not_before = t;
        Ok(())
    }

    /// Require at least `interval` between the starts of two commands to `device`.
    pub fn set_min_interval(&mut self, device: DeviceId, interval: Duration) -> Result<(), ScheduleError> {
        self.device_mut(device)?.min_interval = interval;
        Ok(())
    }

    /// Replaces the transaction time of `block` of `device` (the host measures
    /// it; the profile's figure is only an estimate). It floors the block's
    /// effective period, so a period-zero block follows the real line speed.
    pub fn set_cost(&mut self, device: DeviceId, block: usize, cost: Duration) -> Result<(), ScheduleError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.device == device.0 && usize::from(s.block) == block)
            .ok_or(ScheduleError::Unknown)?;
        slot.cost = cost;
        Ok(())
    }

    /// Forget every read of `device` (after a reconnect): all its blocks,
    /// `Once` blocks included, become due.
    pub fn reset_device(&mut self, device: DeviceId) -> Result<(), ScheduleError> {
        self.device_mut(device)?;
        for s in self.slots.iter_mut().filter(|s| s.device == device.0) {
            s.last = None;
            s.anchor = None;
        }
        Ok(())
    }

    fn device_mut(&mut self, device: DeviceId) -> Result<&mut DeviceState, ScheduleError> {
        self.devices.get_mut(usize::from(device.0)).ok_or(ScheduleError::Unknown)
    }

    /// Records that a read of `block` of `device` started at `started`
    /// (whatever its outcome; failures are the host's to back off with
    /// [`Scheduler::set_not_before`]).
    pub fn mark_read(
        &mut self,
        device: DeviceId,
        block: usize,
        started: Instant,
    ) -> Result<(), ScheduleError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.device == device.0 && usize::from(s.block) == block)
            .ok_or(ScheduleError::Unknown)?;
        slot.anchor = Some(match (slot.anchor, slot.effective_period()) {
            (Some(anchor), Some(p)) => {
                let half = Duration::from_micros(p.as_micros() / 2);
                let floor = Instant::from_micros(started.as_micros().saturating_sub(half.as_micros()));
                (anchor + p).max(floor).min(started)
            }
            _ => started,
        });
        slot.last = Some(started);
        self.devices[usize::from(device.0)].last_command = Some(started);
        let n = self.devices.len().max(1) as u16;
        self.cursor = ((u16::from(device.0) + 1) % n) as u8;
        Ok(())
    }

    /// When `block` of `device` was last read.
    pub fn last_read(&self, device: DeviceId, block: usize) -> Option<Instant> {
        self.slots.iter().find(|s| s.device == device.0 && usize::from(s.block) == block).and_then(|s| s.last)
    }

    /// The block to read now, or how long to wait.
    #[must_use]
    pub fn next(&self, now: Instant) -> Next {
        let n = self.devices.len().max(1) as u16;
        let mut best: Option<(&Slot, Urgency, u16)> = None;
        let mut wake: Option<Instant> = None;
        for s in self.slots.iter() {
            let Some(due) = s.due_at() else { continue };
            let Some(dev) = self.devices.get(usize::from(s.device)) else { continue };
            let eligible = due.max(dev.ready_at());
            if eligible > now {
                wake = Some(wake.map_or(eligible, |w| w.min(eligible)));
                continue;
            }
            let urgency = match (s.last, s.effective_period()) {
                (Some(last), Some(p)) => {
                    Urgency::Ratio { age: (now - last).as_micros(), period: p.as_micros() }
                }
                _ => Urgency::Never,
            };
            // Round-robin rank: distance from the cursor.
            let rank = (u16::from(s.device) + n - u16::from(self.cursor) % n) % n;
            let better = match best {
                None => true,
                Some((b, bu, brank)) => match urgency.cmp(&bu) {
                    core::cmp::Ordering::Greater => true,
                    core::cmp::Ordering::Less => false,
                    // Blocks never read (start-up, identity): the cheapest
                    // first, so a meter's small reads are not queued behind an
                    // inverter's long ones and the first device is published
                    // sooner; equal costs go round-robin.
                    core::cmp::Ordering::Equal if urgency == Urgency::Never && s.cost != b.cost => {
                        s.cost < b.cost
                    }
                    core::cmp::Ordering::Equal => rank < brank,
                },
            };
            if better {
                best = Some((s, urgency, rank));
            }
        }
        match (best, wake) {
            (Some((s, _, _)), _) => Next::Read { device: DeviceId(s.device), block: usize::from(s.block) },
            (None, Some(until)) => Next::Wait { until },
            (None, None) => Next::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn test_never_read_blocks_go_round_robin_then_wait() {
        let mut s: Scheduler<2, 4> = Scheduler::new();
        let a = s.add_device([(PollClass::Every(MS(100)), MS(10))]).unwrap();
        let b = s.add_device([(PollClass::Once, MS(10))]).unwrap();
        let t0 = Instant::ZERO;
        assert_eq!(s.next(t0), Next::Read { device: a, block: 0 });
        s.mark_read(a, 0, t0).unwrap();
        assert_eq!(s.next(t0), Next::Read { device: b, block: 0 });
        s.mark_read(b, 0, t0).unwrap();
        assert_eq!(s.next(t0), Next::Wait { until: Instant::from_millis(100) });
        s.set_not_before(a, Instant::from_millis(500)).unwrap();
        assert_eq!(s.next(Instant::from_millis(200)), Next::Wait { until: Instant::from_millis(500) });
        s.reset_device(b).unwrap();
        assert_eq!(s.next(Instant::from_millis(200)), Next::Read { device: b, block: 0 });
    }

    #[test]
    fn test_measured_cost_paces_a_period_zero_block() {
        let mut s: Scheduler<1, 1> = Scheduler::new();
        // Estimated at 60 ms; the line turns out to take 40 ms.
        let d = s.add_device([(PollClass::Every(Duration::ZERO), MS(60))]).unwrap();
        s.mark_read(d, 0, Instant::ZERO).unwrap();
        assert_eq!(s.next(Instant::from_millis(40)), Next::Wait { until: Instant::from_millis(60) });
        s.set_cost(d, 0, MS(40)).unwrap();
        assert_eq!(s.next(Instant::from_millis(40)), Next::Read { device: d, block: 0 });
        assert_eq!(s.set_cost(d, 3, MS(1)), Err(ScheduleError::Unknown));
    }

    #[test]
    fn test_never_read_blocks_cheapest_first() {
        let mut s: Scheduler<2, 4> = Scheduler::new();
        let slow = s.add_device([(PollClass::Once, MS(200)), (PollClass::Every(MS(1000)), MS(250))]).unwrap();
        let meter = s.add_device([(PollClass::Once, MS(25)), (PollClass::Every(MS(250)), MS(50))]).unwrap();
        assert_eq!(s.next(Instant::ZERO), Next::Read { device: meter, block: 0 });
        s.mark_read(meter, 0, Instant::ZERO).unwrap();
        assert_eq!(s.next(Instant::ZERO), Next::Read { device: meter, block: 1 });
        s.mark_read(meter, 1, Instant::ZERO).unwrap();
        assert_eq!(s.next(Instant::ZERO), Next::Read { device: slow, block: 0 });
    }

    #[test]
    fn test_idle_and_capacity() {
        let mut s: Scheduler<1, 1> = Scheduler::new();
        assert_eq!(s.next(Instant::ZERO), Next::Idle);
        assert_eq!(
            s.add_device([(PollClass::Once, MS(1)), (PollClass::Once, MS(1))]),
            Err(ScheduleError::Capacity)
        );
        let d = s.add_device([(PollClass::Once, MS(1))]).unwrap();
        s.mark_read(d, 0, Instant::ZERO).unwrap();
        assert_eq!(s.next(Instant::ZERO), Next::Idle);
        assert_eq!(s.mark_read(d, 1, Instant::ZERO), Err(ScheduleError::Unknown));
    }

    #[test]
    fn test_min_interval_spaces_commands() {
        let mut s: Scheduler<1, 2> = Scheduler::new();
        let d = s.add_device([(PollClass::Every(MS(0)), MS(50)), (PollClass::Every(MS(0)), MS(50))]).unwrap();
        s.set_min_interval(d, MS(850)).unwrap();
        s.mark_read(d, 0, Instant::ZERO).unwrap();
        assert_eq!(s.next(Instant::from_millis(60)), Next::Wait { until: Instant::from_millis(850) });
    }
}
