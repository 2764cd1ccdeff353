//! The simulated RS485 bus: units, faults, counters and the served-value log.
//!
//! [`Bus::handle_frame`] is sans-IO: it takes one complete received frame and
//! the wall time, and returns the [`Emission`]s to put on the line (each with
//! the silence to keep before it). The serial loop in [`crate::serve`] does the
//! waiting and byte pacing. This split keeps every decision — which unit, which
//! fault, which counter — testable without a port.
//!
//! Like real slaves, the bus stays silent for frames with a bad CRC, for
//! broadcasts, and for units it does not simulate.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use crate::fault::Faults;
use crate::frame::{encode_response, parse_request, FrameError};
use crate::model::plant::{Plant, PlantConfig, PlantState};
use crate::model::{Device, DeviceKind, Environment, ModelReply, ModelRequest, Noise, SimTime};
use dmc_core::crc::crc16;
use dmc_core::rtu::DropReason;
use dmc_core::timing::LineConfig;

/// How many served values are kept per (unit, quantity).
pub const SERVED_HISTORY: usize = 4096;
/// Longest integration step, device seconds (finer steps follow the day curve and load waves).
const MAX_STEP_S: f64 = 1.0;
/// Cap on integration steps per advance, so a long idle period costs bounded time.
const MAX_STEPS: u64 = 200_000;

/// Per-unit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitCounters {
    /// Requests with a good CRC addressed to this unit.
    pub requests: u64,
    /// Among them, FC23 read/write requests (VregLink traffic).
    pub read_writes: u64,
    /// Responses put on the wire (normal or exception, faulty or not).
    pub responses: u64,
    /// Exception responses among them.
    pub exceptions: u64,
    /// Writes the device applied.
    pub writes_applied: u64,
    /// Writes refused (exception, or the refuse-writes fault).
    pub writes_refused: u64,
    /// Requests left unanswered because the unit was silent or asleep.
    pub unanswered: u64,
    /// Responses sent with a damaged CRC.
    pub crc_corrupted: u64,
    /// Responses cut short.
    pub truncated: u64,
    /// Garbage bursts sent after a response.
    pub garbage: u64,
    /// Responses sent with another unit's address.
    pub wrong_unit: u64,
    /// Responses delayed by the late-reply fault.
    pub delayed: u64,
}

/// Bus-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusCounters {
    /// Frames delimited on the line (any content).
    pub frames: u64,
    /// Frames ignored for a bad CRC.
    pub crc_bad: u64,
    /// Frames too short or malformed for their function code.
    pub malformed: u64,
    /// Good frames for units not simulated here.
    pub other_unit: u64,
    /// Broadcasts (unit 0), ignored like the SDM230 does.
    pub broadcast: u64,
}

/// A snapshot of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bus-wide counters.
    pub bus: BusCounters,
    /// Per unit: (address, device name, counters).
    pub units: Vec<(u8, &'static str, UnitCounters)>,
}

impl Stats {
    /// Counters of one unit.
    pub fn unit(&self, unit: u8) -> Option<UnitCounters> {
        self.units.iter().find(|(u, _, _)| *u == unit).map(|(_, _, c)| *c)
    }

    /// One line `key=value ...`, as the control channel's `stats` prints it.
    pub fn to_line(&self) -> String {
        let b = &self.bus;
        let mut s = format!(
            "bus.frames={} bus.crc_bad={} bus.malformed={} bus.other_unit={} bus.broadcast={}",
            b.frames, b.crc_bad, b.malformed, b.other_unit, b.broadcast
        );
        for (unit, _, c) in &self.units {
            let fields = [
                ("requests", c.requests),
                ("read_writes", c.read_writes),
                ("responses", c.responses),
                ("exceptions", c.exceptions),
                ("writes_applied", c.writes_applied),
                ("writes_refused", c.writes_refused),
                ("unanswered", c.unanswered),
                ("crc_corrupted", c.crc_corrupted),
                ("truncated", c.truncated),
                ("garbage", c.garbage),
                ("wrong_unit", c.wrong_unit),
                ("delayed", c.delayed),
            ];
            for (k, v) in fields {
                let _ = write!(s, " u{unit}.{k}={v}");
            }
        }
        s
    }
}

/// Bytes to put on the line after keeping `gap_us` of silence
/// (measured from the end of the request, or of the previous emission).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emission {
    /// Silence before the first byte, µs.
    pub gap_us: u64,
    /// The bytes, sent paced at the line's character time.
    pub bytes: Vec<u8>,
}

/// One simulated slave on the bus.
pub struct Unit {
    /// Modbus address.
    pub addr: u8,
    /// The model.
    pub device: Box<dyn Device>,
    /// Active faults.
    pub faults: Faults,
    /// Counters.
    pub counters: UnitCounters,
    /// Turnaround override, µs (`None` = the model's own).
    pub turnaround_us: Option<u64>,
}

/// Clock settings of a bus.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockConfig {
    /// Device seconds per wall second (86400 / `--day-seconds`).
    pub speed: f64,
    /// Device time of day at start, hours.
    pub start_hour: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig { speed: 1.0, start_hour: 12.0 }
    }
}

/// The simulated bus.
pub struct Bus {
    line: LineConfig,
    clock: ClockConfig,
    units: Vec<Unit>,
    counters: BusCounters,
    rng: Noise,
    served: HashMap<(u8, &'static str), VecDeque<f64>>,
    /// Device time the models were last stepped to.
    stepped_to: SimTime,
    /// The household around the devices, if simulated.
    plant: Option<Plant>,
}

impl Bus {
    /// An empty bus on `line`.
    pub fn new(line: LineConfig, clock: ClockConfig, seed: u64) -> Self {
        let start = SimTime { wall_s: 0.0, device_s: clock.start_hour * 3600.0 };
        Bus {
            line,
            clock,
            units: Vec::new(),
            counters: BusCounters::default(),
            rng: Noise::new(seed),
            served: HashMap::new(),
            stepped_to: start,
            plant: None,
        }
    }

    /// Puts the devices in a household ([`crate::model::plant`]) whose day starts now.
    pub fn set_plant(&mut self, config: PlantConfig) {
        self.plant = Some(Plant::new(config, self.stepped_to));
    }

    /// The household's state, if one is simulated.
    pub fn plant(&self) -> Option<PlantState> {
        self.plant.as_ref().map(Plant::state)
    }

    /// Adds a device at `addr` (replacing any there).
    pub fn add(&mut self, addr: u8, kind: DeviceKind) {
        self.units.retain(|u| u.addr != addr);
        let mut device = kind.build(addr, self.stepped_to);
        device.step(self.stepped_to, 0.0, &Environment::default());
        self.units.push(Unit {
            addr,
            device,
            faults: Faults::default(),
            counters: UnitCounters::default(),
            turnaround_us: None,
        });
        self.units.sort_by_key(|u| u.addr);
    }

    /// The line settings.
    pub fn line(&self) -> LineConfig {
        self.line
    }

    /// Simulation time at `wall_s` seconds after start.
    pub fn time_at(&self, wall_s: f64) -> SimTime {
        SimTime { wall_s, device_s: self.clock.start_hour * 3600.0 + wall_s * self.clock.speed }
    }

    /// The units, ordered by address.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// A unit by address or device name (`2`, `sdm230`).
    pub fn unit_mut(&mut self, selector: &str) -> Option<&mut Unit> {
        let idx = self.find(selector)?;
        self.units.get_mut(idx)
    }

    fn find(&self, selector: &str) -> Option<usize> {
        if let Ok(addr) = selector.parse::<u8>() {
            return self.units.iter().position(|u| u.addr == addr);
        }
        self.units.iter().position(|u| u.device.kind().name() == selector)
    }

    /// Addresses matched by a selector; `all` matches every unit.
    pub fn select(&self, selector: &str) -> Result<Vec<u8>, String> {
        if selector == "all" {
            return Ok(self.units.iter().map(|u| u.addr).collect());
        }
        self.find(selector)
            .and_then(|i| self.units.get(i))
            .map(|u| vec![u.addr])
            .ok_or_else(|| format!("no simulated unit {selector:?}"))
    }

    /// Steps every model up to `wall_s` (producers before meters, so a meter sees the PV output).
    pub fn advance(&mut self, wall_s: f64) {
        let target = self.time_at(wall_s);
        let span = target.device_s - self.stepped_to.device_s;
        if span <= 0.0 {
            return;
        }
        let steps = ((span / MAX_STEP_S).ceil() as u64).clamp(1, MAX_STEPS);
        let dt = span / steps as f64;
        let wall_dt = (target.wall_s - self.stepped_to.wall_s) / steps as f64;
        for i in 1..=steps {
            let t = SimTime {
                wall_s: self.stepped_to.wall_s + wall_dt * i as f64,
                device_s: self.stepped_to.device_s + dt * i as f64,
            };
            let mut env = Environment {
                pv_available_w: self.plant.as_ref().map(|p| p.pv_available_w(t)),
                ..Environment::default()
            };
            for u in self.units.iter_mut().filter(|u| u.device.kind() != DeviceKind::Sdm230) {
                u.device.step(t, dt, &env);
                env.pv_ac_w += u.device.ac_production_w();
            }
            if let Some(plant) = &mut self.plant {
                env.grid_w = Some(plant.step(t, dt, env.pv_ac_w));
            }
            for u in self.units.iter_mut().filter(|u| u.device.kind() == DeviceKind::Sdm230) {
                u.device.step(t, dt, &env);
            }
        }
        self.stepped_to = target;
    }

    /// Counter snapshot.
    pub fn stats(&self) -> Stats {
        Stats {
            bus: self.counters,
            units: self.units.iter().map(|u| (u.addr, u.device.kind().name(), u.counters)).collect(),
        }
    }

    /// Zeroes every counter.
    pub fn reset_stats(&mut self) {
        self.counters = BusCounters::default();
        for u in &mut self.units {
            u.counters = UnitCounters::default();
        }
    }

    /// Values of `quantity` that unit `addr` put on the wire intact, oldest first.
    pub fn served(&self, addr: u8, quantity: &str) -> Vec<f64> {
        self.served
            .iter()
            .find(|((a, q), _)| *a == addr && *q == quantity)
            .map(|(_, v)| v.iter().copied().collect())
            .unwrap_or_default()
    }

    fn record_served(&mut self, idx: usize, request: &ModelRequest, words: &[u16]) {
        let Some(unit) = self.units.get(idx) else { return };
        let Some((bank, start, count)) = request.span() else { return };
        let end = u32::from(start) + u32::from(count);
        let addr = unit.addr;
        let mut found = Vec::new();
        for q in unit.device.quantities().iter().filter(|q| q.bank == bank) {
            let q_end = u32::from(q.addr) + u32::from(q.encoding.words());
            if u32::from(q.addr) >= u32::from(start) && q_end <= end {
                let off = usize::from(q.addr - start);
                if let Some(v) = words.get(off..).and_then(|w| q.encoding.decode(w)) {
                    found.push((q.name, v));
                }
            }
        }
        for (name, v) in found {
            let log = self.served.entry((addr, name)).or_default();
            if log.len() == SERVED_HISTORY {
                log.pop_front();
            }
            log.push_back(v);
        }
    }

    /// Counts a frame the receiver threw away before it reached [`Bus::handle_frame`].
    pub fn note_dropped(&mut self, reason: DropReason) {
        self.counters.frames += 1;
        match reason {
            DropReason::CrcMismatch => self.counters.crc_bad += 1,
            _ => self.counters.malformed += 1,
        }
    }

    /// Handles one complete frame received at `wall_s`; returns what to send back.
    pub fn handle_frame(&mut self, frame: &[u8], wall_s: f64) -> Vec<Emission> {
        self.counters.frames += 1;
        let (addr, request) = match parse_request(frame) {
            Ok(parsed) => parsed,
            Err(FrameError::BadCrc) => {
                self.counters.crc_bad += 1;
                return Vec::new();
            }
            Err(FrameError::TooShort | FrameError::Malformed(_)) => {
                self.counters.malformed += 1;
                return Vec::new();
            }
        };
        if addr == 0 {
            self.counters.broadcast += 1;
            return Vec::new();
        }
        let Some(idx) = self.units.iter().position(|u| u.addr == addr) else {
            self.counters.other_unit += 1;
            return Vec::new();
        };
        self.advance(wall_s);
        let now = self.time_at(wall_s);
        let Some(unit) = self.units.get_mut(idx) else { return Vec::new() };
        unit.counters.requests += 1;
        if matches!(request, ModelRequest::ReadWrite { .. }) {
            unit.counters.read_writes += 1;
        }
        if unit.faults.silent || !unit.device.is_awake() {
            unit.counters.unanswered += 1;
            return Vec::new();
        }
        let forced = request.span().and_then(|(bank, start, count)| {
            unit.faults.exceptions.iter().find(|e| e.hits(bank, start, count)).map(|e| e.code)
        });
        let reply = match (forced, unit.faults.refuse_writes) {
            (Some(code), _) => ModelReply::Exception(code),
            (None, Some(code)) if request.is_write() => ModelReply::Exception(code),
            _ => unit.device.handle(&request, now),
        };
        if request.is_write() {
            if matches!(reply, ModelReply::Exception(_)) {
                unit.counters.writes_refused += 1;
            } else {
                unit.counters.writes_applied += 1;
            }
        }
        let turnaround = unit.turnaround_us.unwrap_or_else(|| unit.device.turnaround_us(&request));
        let Some(mut bytes) = encode_response(addr, request.function(), &reply) else {
            unit.counters.unanswered += 1;
            return Vec::new();
        };
        unit.counters.responses += 1;
        if matches!(reply, ModelReply::Exception(_)) {
            unit.counters.exceptions += 1;
        }
        let faults = unit.faults.clone();
        let mut intact = true;
        let mut gap_us = turnaround;
        if faults.extra_delay_us > 0 {
            gap_us += faults.extra_delay_us;
            unit.counters.delayed += 1;
        }
        if faults.wrong_unit_rate > 0.0 && self.rng.unit() < faults.wrong_unit_rate {
            bytes[0] = addr.wrapping_add(100).max(1);
            let body = bytes.len() - 2;
            let crc = crc16(&bytes[..body]).to_le_bytes();
            bytes[body..].copy_from_slice(&crc);
            intact = false;
            self.bump(idx, |c| c.wrong_unit += 1);
        }
        if faults.crc_rate > 0.0 && self.rng.unit() < faults.crc_rate {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0x5A;
            }
            intact = false;
            self.bump(idx, |c| c.crc_corrupted += 1);
        }
        if faults.truncate_rate > 0.0 && self.rng.unit() < faults.truncate_rate && bytes.len() > 1 {
            let keep = 1 + (self.rng.next_u64() % (bytes.len() as u64 - 1)) as usize;
            bytes.truncate(keep);
            intact = false;
            self.bump(idx, |c| c.truncated += 1);
        }
        if intact {
            if let ModelReply::Registers(words) = &reply {
                self.record_served(idx, &request, words);
            }
        }
        let mut out = vec![Emission { gap_us, bytes }];
        if faults.garbage_rate > 0.0 && self.rng.unit() < faults.garbage_rate {
            let len = 1 + (self.rng.next_u64() % 7) as usize;
            let garbage = (0..len).map(|_| self.rng.next_u64() as u8).collect();
            // Noise after a frame-separating silence, so it is a frame of its own to the master.
            out.push(Emission { gap_us: 2 * self.line.t35().as_micros(), bytes: garbage });
            self.bump(idx, |c| c.garbage += 1);
        }
        out
    }

    fn bump(&mut self, idx: usize, f: impl FnOnce(&mut UnitCounters)) {
        if let Some(u) = self.units.get_mut(idx) {
            f(&mut u.counters);
        }
    }

    /// Current value of a named quantity of a unit (after stepping to `wall_s`).
    pub fn value(&mut self, selector: &str, quantity: &str, wall_s: f64) -> Result<f64, String> {
        self.advance(wall_s);
        let unit = self.unit_mut(selector).ok_or_else(|| format!("no simulated unit {selector:?}"))?;
        unit.device.value(quantity).ok_or_else(|| format!("{selector} has no quantity {quantity:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::ExceptionRange;
    use crate::frame::encode_request;
    use crate::model::Bank;

    fn bus() -> Bus {
        let mut b = Bus::new(LineConfig::new_8n1(9600), ClockConfig::default(), 1);
        b.add(2, DeviceKind::Sdm230);
        b.add(1, DeviceKind::GrowattMin);
        b
    }

    fn read(unit: u8, bank: Bank, start: u16, count: u16) -> Vec<u8> {
        encode_request(unit, &ModelRequest::Read { bank, start, count }).unwrap_or_default()
    }

    #[test]
    fn test_answers_and_counts() {
        let mut b = bus();
        let out = b.handle_frame(&read(2, Bank::Input, 0, 2), 0.1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes.len(), 9);
        // SDM230 turnaround: 6 ms + 2 × 0.6 ms.
        assert_eq!(out[0].gap_us, 7_200);
        let v = b.served(2, "voltage");
        assert_eq!(v.len(), 1);
        assert!((220.0..240.0).contains(&v[0]));
        let s = b.stats();
        assert_eq!(s.unit(2).map(|c| (c.requests, c.responses)), Some((1, 1)));
    }

    #[test]
    fn test_silences() {
        let mut b = bus();
        let mut bad = read(2, Bank::Input, 0, 2);
        bad[7] ^= 1;
        assert!(b.handle_frame(&bad, 0.1).is_empty());
        assert!(b.handle_frame(&read(9, Bank::Input, 0, 2), 0.1).is_empty());
        assert!(b.handle_frame(&read(0, Bank::Input, 0, 2), 0.1).is_empty());
        if let Some(u) = b.unit_mut("growatt") {
            u.faults.silent = true;
        }
        assert!(b.handle_frame(&read(1, Bank::Input, 0, 2), 0.1).is_empty());
        let s = b.stats();
        assert_eq!((s.bus.crc_bad, s.bus.other_unit, s.bus.broadcast), (1, 1, 1));
        assert_eq!(s.unit(1).map(|c| (c.requests, c.unanswered)), Some((1, 1)));
    }

    #[test]
    fn test_faults_apply() {
        let mut b = bus();
        if let Some(u) = b.unit_mut("1") {
            u.faults.crc_rate = 1.0;
            u.faults.garbage_rate = 1.0;
            u.faults.extra_delay_us = 100_000;
            u.faults.exceptions.push(ExceptionRange { bank: None, first: 100, last: 110, code: 4 });
            u.faults.refuse_writes = Some(4);
        }
        let out = b.handle_frame(&read(1, Bank::Input, 0, 5), 0.1);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].gap_us, 115_000);
        assert!(!dmc_core::crc::check_crc_trailer(&out[0].bytes));
        assert!(b.served(1, "status").is_empty(), "corrupted replies are not 'served'");
        let out = b.handle_frame(&read(1, Bank::Input, 104, 2), 0.1);
        assert_eq!(out[0].bytes[1..3], [0x84, 0x04]);
        let w = encode_request(1, &ModelRequest::WriteSingle { addr: 3, value: 50 }).unwrap_or_default();
        let out = b.handle_frame(&w, 0.1);
        assert_eq!(out[0].bytes[1..3], [0x86, 0x04]);
        let c = b.stats().unit(1).unwrap_or_default();
        assert_eq!((c.writes_refused, c.exceptions, c.crc_corrupted), (1, 2, 3));
    }
}
