//! Device models: what each simulated slave stores and answers, independent of framing.
//!
//! A model sees a decoded request ([`ModelRequest`]) and returns a [`ModelReply`]
//! (register words, a write echo, or an exception code). It never sees bytes,
//! CRCs or time on the wire; the bus ([`crate::bus`]) does that.
//!
//! Register values are encoded here **from the device facts in
//! `docs/devices.md`**, deliberately not from `dmc-core`'s profile tables: the
//! simulator is the independent witness that catches a wrong table in core.
//!
//! Each model publishes a table of [`Quantity`] (name, bank, address, encoding)
//! that serves two purposes: building the register image it answers with, and
//! letting the bus decode what it actually served ("last served power") so
//! tests can compare the daemon's published values against the wire.
//!
//! Adding a device: add a module with a type implementing [`Device`], a
//! variant in [`DeviceKind`], and a constructor arm in [`DeviceKind::build`].

pub mod growatt;
pub mod plant;
pub mod sdm230;
pub mod vm3p75ct;

use std::collections::BTreeMap;

/// Modbus exception code 01: function not supported by the device.
pub const ILLEGAL_FUNCTION: u8 = 0x01;
/// Modbus exception code 02: register address not served.
pub const ILLEGAL_DATA_ADDRESS: u8 = 0x02;
/// Modbus exception code 03: bad quantity or value.
pub const ILLEGAL_DATA_VALUE: u8 = 0x03;
/// Modbus exception code 04: the device failed to perform the action.
pub const SLAVE_DEVICE_FAILURE: u8 = 0x04;

/// Which register space a read addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bank {
    /// Input registers, FC04.
    Input,
    /// Holding registers, FC03 read, FC06/FC16 write.
    Holding,
}

impl Bank {
    /// Lower-case name used in the control protocol.
    pub fn name(self) -> &'static str {
        match self {
            Bank::Input => "input",
            Bank::Holding => "holding",
        }
    }
}

/// A request as a device sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRequest {
    /// FC03 (holding) or FC04 (input).
    Read {
        /// Register space.
        bank: Bank,
        /// First register address (0-based, as on the wire).
        start: u16,
        /// Number of registers.
        count: u16,
    },
    /// FC06.
    WriteSingle {
        /// Register address.
        addr: u16,
        /// New value.
        value: u16,
    },
    /// FC16.
    WriteMultiple {
        /// First register address.
        start: u16,
        /// New values, one per register.
        values: Vec<u16>,
    },
    /// FC23 read/write multiple registers (the write half is applied first).
    ReadWrite {
        /// First register read.
        read_start: u16,
        /// Registers read.
        read_count: u16,
        /// First register written.
        write_start: u16,
        /// Values written, one per register.
        values: Vec<u16>,
    },
    /// FC08 diagnostics.
    Diagnostics {
        /// Sub-function.
        sub_function: u16,
        /// Data word.
        data: u16,
    },
    /// Any other function code.
    Other {
        /// The function code byte.
        function: u8,
    },
    /// Well-formed but outside the protocol's limits (e.g. a read of 0 or 126
    /// registers): every slave answers this exception, whatever its model.
    Invalid {
        /// The function code byte.
        function: u8,
        /// Exception code to answer.
        code: u8,
    },
}

impl ModelRequest {
    /// The function code this request travels with.
    pub fn function(&self) -> u8 {
        match self {
            ModelRequest::Read { bank: Bank::Holding, .. } => 0x03,
            ModelRequest::Read { bank: Bank::Input, .. } => 0x04,
            ModelRequest::WriteSingle { .. } => 0x06,
            ModelRequest::WriteMultiple { .. } => 0x10,
            ModelRequest::ReadWrite { .. } => 0x17,
            ModelRequest::Diagnostics { .. } => 0x08,
            ModelRequest::Other { function } | ModelRequest::Invalid { function, .. } => *function,
        }
    }

    /// True for FC06/FC16.
    pub fn is_write(&self) -> bool {
        matches!(self, ModelRequest::WriteSingle { .. } | ModelRequest::WriteMultiple { .. })
    }

    /// Registers touched: (bank, first, count); none for diagnostics/unknown functions.
    pub fn span(&self) -> Option<(Bank, u16, u16)> {
        match self {
            ModelRequest::Read { bank, start, count } => Some((*bank, *start, *count)),
            ModelRequest::WriteSingle { addr, .. } => Some((Bank::Holding, *addr, 1)),
            ModelRequest::WriteMultiple { start, values } => {
                Some((Bank::Holding, *start, u16::try_from(values.len()).unwrap_or(u16::MAX)))
            }
            // The read half: what an `exception` fault on a range hits, and what is served.
            ModelRequest::ReadWrite { read_start, read_count, .. } => {
                Some((Bank::Holding, *read_start, *read_count))
            }
            _ => None,
        }
    }
}

/// What a device answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelReply {
    /// Register words for a read.
    Registers(Vec<u16>),
    /// FC06 success: echo of address and value.
    WriteSingle {
        /// Register address.
        addr: u16,
        /// Value written.
        value: u16,
    },
    /// FC16 success: start and count.
    WriteMultiple {
        /// First register.
        start: u16,
        /// Registers written.
        count: u16,
    },
    /// FC08 success: echo.
    Diagnostics {
        /// Sub-function.
        sub_function: u16,
        /// Data word.
        data: u16,
    },
    /// Exception response with this code.
    Exception(u8),
    /// No reply at all (asleep, or a request the device ignores).
    Silence,
}

/// How a quantity is laid out in registers. Scales convert raw to engineering units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Encoding {
    /// IEEE-754 float32, high word first (Eastron).
    F32,
    /// Unsigned 16-bit, value = raw × scale.
    U16(f64),
    /// Signed 16-bit, value = raw × scale.
    S16(f64),
    /// Unsigned 32-bit, high word first, value = raw × scale.
    U32(f64),
    /// Signed 32-bit, high word first, value = raw × scale.
    S32(f64),
}

impl Encoding {
    /// Registers occupied.
    pub fn words(self) -> u16 {
        match self {
            Encoding::U16(_) | Encoding::S16(_) => 1,
            Encoding::F32 | Encoding::U32(_) | Encoding::S32(_) => 2,
        }
    }

    /// Raw register words for `value` (rounded to the register's resolution, clamped to its range).
    pub fn encode(self, value: f64) -> [u16; 2] {
        fn raw(value: f64, scale: f64) -> f64 {
            (value / scale).round()
        }
        match self {
            Encoding::F32 => {
                let bits = (value as f32).to_bits();
                [(bits >> 16) as u16, bits as u16]
            }
            Encoding::U16(s) => [raw(value, s).clamp(0.0, 65535.0) as u16, 0],
            Encoding::S16(s) => [(raw(value, s).clamp(-32768.0, 32767.0) as i16) as u16, 0],
            Encoding::U32(s) => {
                let v = raw(value, s).clamp(0.0, f64::from(u32::MAX)) as u32;
                [(v >> 16) as u16, v as u16]
            }
            Encoding::S32(s) => {
                let v = raw(value, s).clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32 as u32;
                [(v >> 16) as u16, v as u16]
            }
        }
    }

    /// Engineering value of raw words (`words` must hold [`Encoding::words`] entries).
    pub fn decode(self, words: &[u16]) -> Option<f64> {
        let w0 = *words.first()?;
        let two = || -> Option<u32> { Some((u32::from(w0) << 16) | u32::from(*words.get(1)?)) };
        Some(match self {
            Encoding::F32 => f64::from(f32::from_bits(two()?)),
            Encoding::U16(s) => f64::from(w0) * s,
            Encoding::S16(s) => f64::from(w0 as i16) * s,
            Encoding::U32(s) => f64::from(two()?) * s,
            Encoding::S32(s) => f64::from(two()? as i32) * s,
        })
    }
}

/// One named value and where a device serves it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantity {
    /// Name used by `set`/`last` on the control channel (e.g. `power`).
    pub name: &'static str,
    /// Register space.
    pub bank: Bank,
    /// First register.
    pub addr: u16,
    /// Layout and scale.
    pub encoding: Encoding,
}

/// Simulation time handed to models: wall seconds since start and device time.
///
/// Device time runs `speed` times faster than the wall clock (`--day-seconds`
/// compresses a day) and starts at a configurable time of day, so the
/// Growatt's day curve and every energy counter advance consistently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimTime {
    /// Seconds of wall time since the simulator started.
    pub wall_s: f64,
    /// Seconds of device time since midnight of day 0.
    pub device_s: f64,
}

impl SimTime {
    /// Device hour of day, 0.0 ..< 24.0.
    pub fn hour_of_day(&self) -> f64 {
        (self.device_s / 3600.0).rem_euclid(24.0)
    }

    /// Whole device days since start (for "today" counters).
    pub fn day_index(&self) -> i64 {
        (self.device_s / 86_400.0).floor() as i64
    }
}

/// Shared conditions on the bus: the PV inverter's output seen by the meter.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Environment {
    /// AC power produced by simulated PV inverters on this site, W.
    pub pv_ac_w: f64,
    /// PV available to the inverters (AC), W, when a [`plant::Plant`] sets the sun.
    pub pv_available_w: Option<f64>,
    /// Grid power at the meter, W, when a [`plant::Plant`] balances the site.
    pub grid_w: Option<f64>,
}

/// The device types the simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Eastron SDM230-Modbus single-phase meter.
    Sdm230,
    /// Growatt MIN TL-X PV inverter.
    GrowattMin,
    /// Victron Energy Meter VM-3P75CT (three phase, VregLink).
    Vm3p75ct,
}

impl DeviceKind {
    /// Name used on the command line and control channel.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Sdm230 => "sdm230",
            DeviceKind::GrowattMin => "growatt",
            DeviceKind::Vm3p75ct => "vm3p75ct",
        }
    }

    /// Parses [`DeviceKind::name`].
    pub fn from_name(name: &str) -> Option<DeviceKind> {
        match name {
            "sdm230" => Some(DeviceKind::Sdm230),
            "growatt" => Some(DeviceKind::GrowattMin),
            "vm3p75ct" => Some(DeviceKind::Vm3p75ct),
            _ => None,
        }
    }

    /// A fresh model at `unit` with its defaults.
    pub fn build(self, unit: u8, t: SimTime) -> Box<dyn Device> {
        match self {
            DeviceKind::Sdm230 => Box::new(sdm230::Sdm230::new(t)),
            DeviceKind::GrowattMin => Box::new(growatt::GrowattMin::new(unit, t)),
            DeviceKind::Vm3p75ct => Box::new(vm3p75ct::Vm3p75ct::new(t)),
        }
    }
}

/// A simulated Modbus slave.
pub trait Device: Send {
    /// Which model this is.
    fn kind(&self) -> DeviceKind;

    /// Advances the internal state (integrators) by `dt_s` device seconds ending at `t`.
    fn step(&mut self, t: SimTime, dt_s: f64, env: &Environment);

    /// AC power this device feeds into the site (PV inverters), W.
    fn ac_production_w(&self) -> f64 {
        0.0
    }

    /// True when the device currently answers at all (a MIN TL-X sleeps at night).
    fn is_awake(&self) -> bool {
        true
    }

    /// Answers one request at time `t` (state already stepped to `t`).
    fn handle(&mut self, request: &ModelRequest, t: SimTime) -> ModelReply;

    /// Device turnaround for this request: end of request to first reply byte, µs.
    fn turnaround_us(&self, request: &ModelRequest) -> u64;

    /// The named values this device serves.
    fn quantities(&self) -> &'static [Quantity];

    /// Current engineering value of a named quantity.
    fn value(&self, name: &str) -> Option<f64>;

    /// Changes a setting or overrides a value (`set UNIT NAME VALUE` on the control channel).
    ///
    /// Returns a short confirmation or a one-line error.
    fn set(&mut self, name: &str, value: &str) -> Result<String, String>;

    /// Names accepted by [`Device::set`], for `help`.
    fn settable(&self) -> &'static str;
}

/// Builds the register image of `quantities` for one bank: address → word.
///
/// Only addresses covered by a quantity appear; the caller decides what
/// uncovered addresses answer (zero or an exception, per device).
pub fn register_image(
    quantities: &[Quantity],
    bank: Bank,
    start: u16,
    count: u16,
    value: impl Fn(&str) -> Option<f64>,
) -> BTreeMap<u16, u16> {
    let mut image = BTreeMap::new();
    let end = u32::from(start) + u32::from(count);
    for q in quantities.iter().filter(|q| q.bank == bank) {
        let q_end = u32::from(q.addr) + u32::from(q.encoding.words());
        if q_end <= u32::from(start) || u32::from(q.addr) >= end {
            continue;
        }
        let words = q.encoding.encode(value(q.name).unwrap_or(0.0));
        for (i, w) in words.iter().take(usize::from(q.encoding.words())).enumerate() {
            image.insert(q.addr.wrapping_add(i as u16), *w);
        }
    }
    image
}

/// A small deterministic noise source (xorshift64*), so runs and tests repeat.
#[derive(Clone, Debug)]
pub struct Noise {
    state: u64,
}

impl Noise {
    /// A generator from a seed (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Noise { state: if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed } }
    }

    /// Next raw 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-amplitude, amplitude).
    pub fn symmetric(&mut self, amplitude: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * amplitude
    }
}

/// Parses a number from the control channel, with a one-line error.
pub fn parse_f64(name: &str, value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{name}: not a number: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_encoding_round_trip() {
        assert_eq!(Encoding::F32.encode(244.52)[0], 0x4374);
        assert_eq!(Encoding::U32(0.1).encode(205.7), [0, 2057]);
        assert_eq!(Encoding::U16(0.01).encode(50.09), [5009, 0]);
        assert_eq!(Encoding::S16(0.1).decode(&[0xFFF6]), Some(-1.0));
        assert_eq!(Encoding::U16(1.0).encode(-5.0), [0, 0]);
        let v = Encoding::F32.decode(&[0x4374, 0x8495]).unwrap_or(0.0);
        assert!((v - 244.518).abs() < 0.01, "{v}");
    }

    #[test]
    fn test_noise_is_deterministic_and_bounded() {
        let mut a = Noise::new(7);
        let mut b = Noise::new(7);
        for _ in 0..1000 {
            let x = a.unit();
            assert_eq!(x, b.unit());
            assert!((0.0..1.0).contains(&x));
        }
    }
}
