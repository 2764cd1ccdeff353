//! Victron Energy Meter VM-3P75CT (devices.md section 4), with its VregLink block.
//!
//! Registers (holding, FC03, at most 125 per read): identity at
//! 0x1000..=0x100B (product id 0xA1B1, serial text, firmware bytes
//! `[_, major, minor, build]` = v1.09 release, hardware version), settings at
//! 0x2000..=0x2025 (phase configuration 3 = three phase, role 0 = grid,
//! custom name 32 registers UTF-8, position 0 (settable 0..2), N2K system instance,
//! capabilities with the UDP-snapshot bit 0x0400) and measurements at
//! 0x3032..=0x308B (totals, then per phase n voltage 0x3040 + 8(n-1), current
//! 0x3041 + 8(n-1), energies, line-to-line voltage, power factor, and power
//! 0x3082 + 4(n-1)). Addresses inside those ranges without a value read 0;
//! anything outside answers exception 02. The meter's registers are
//! read-only: FC06/FC16 answer 01 (settings change through VregLink).
//!
//! VregLink (seed 001, "VregLink"): FC23 with both halves at 0x4000, a data
//! area of 32 registers, so reads of at most 35 and writes of at most 34
//! registers (more, or another address: exception 02). The VREG table:
//!
//! | VREG | access | value |
//! |---|---|---|
//! | 0x0100 | read-only | product id, the seed's bytes `00 12 34 FE` |
//! | 0x010A | read-only | serial number, ASCII (simulator's choice of id) |
//! | 0x010C | read-write | description (custom name): UTF-8, at most 64 bytes, shown at 0x2002 |
//! | 0x0112 | read-write | NMEA 2000 system instance, exactly one byte, shown at 0x2023 |
//! | 0xEE00 | write-only | identify (simulator-only): one byte 0 or 1 |
//!
//! Status codes as the seed lists them: an unknown VREG 0x8001 (get) /
//! 0x8101 (set), a write-only VREG read 0x8002, a read-only VREG written
//! 0x8102, data the VREG cannot take (wrong length, not UTF-8, out of range,
//! or a size field that does not match the registers) 0x8104, and while
//! `set vm3p75ct vreg_fail on` is active every access fails with the unknown
//! errors 0x8000 / 0x8100.
//!
//! Values: three phases around 230 V / 50 Hz with per-phase loads on slow
//! waves (or a fixed total split evenly, `set vm3p75ct power W`), energies
//! integrating them.

use super::{
    parse_f64, register_image, Bank, Device, DeviceKind, Encoding, Environment, ModelReply, ModelRequest,
    Noise, Quantity, SimTime, ILLEGAL_DATA_ADDRESS, ILLEGAL_FUNCTION,
};
use dmc_core::pdu::Words;
use dmc_core::vreglink::{self, VregCommand, VregData};

/// Product id register value of the VM-3P75CT.
pub const PRODUCT_ID: u16 = 0xA1B1;
/// First register of the VregLink block.
pub const VREG_BASE: u16 = 0x4000;
/// Data registers of the block.
pub const VREG_DATA_REGISTERS: u16 = 32;
/// VREG: product id (read-only).
pub const VREG_PRODUCT_ID: u16 = 0x0100;
/// VREG: serial number (read-only).
pub const VREG_SERIAL: u16 = 0x010A;
/// VREG: description, the custom name (read-write).
pub const VREG_DESCRIPTION: u16 = 0x010C;
/// VREG: NMEA 2000 system instance (read-write, one byte).
pub const VREG_SYSTEM_INSTANCE: u16 = 0x0112;
/// VREG: identify (write-only, simulator-only).
pub const VREG_IDENTIFY: u16 = 0xEE00;
/// The product id bytes of the seed's worked example.
pub const PRODUCT_ID_BYTES: [u8; 4] = [0x00, 0x12, 0x34, 0xFE];
/// Custom name registers (0x2002, 32 registers = 64 bytes).
const CUSTOM_NAME_ADDR: u16 = 0x2002;
const CUSTOM_NAME_WORDS: u16 = 32;
/// Serial text registers (0x1001, 8 registers).
const SERIAL_ADDR: u16 = 0x1001;
const SERIAL_WORDS: u16 = 8;
/// Firmware version registers: bytes `[_, major, minor, build]`, v1.09 release.
const FIRMWARE_ADDR: u16 = 0x1009;
const FIRMWARE_WORDS: [u16; 2] = [0x0001, 0x09FF];
/// Register ranges the meter answers (inclusive).
const RANGES: [(u16, u16); 3] = [(0x1000, 0x100B), (0x2000, 0x2025), (0x3032, 0x308B)];
/// Answering from RAM on the network; 3 ms is a guess, not a measurement.
const TURNAROUND_US: u64 = 3_000;

const fn h(name: &'static str, addr: u16, encoding: Encoding) -> Quantity {
    Quantity { name, bank: Bank::Holding, addr, encoding }
}

/// Per-phase quantities of phase `n` (1..=3), at their devices.md addresses.
macro_rules! phase {
    ($n:literal) => {
        [
            h(concat!("l", $n, "_voltage"), 0x3040 + 8 * ($n - 1), Encoding::S16(0.01)),
            h(concat!("l", $n, "_current"), 0x3041 + 8 * ($n - 1), Encoding::S16(0.01)),
            h(concat!("l", $n, "_energy_forward"), 0x3042 + 8 * ($n - 1), Encoding::U32(0.01)),
            h(concat!("l", $n, "_energy_reverse"), 0x3044 + 8 * ($n - 1), Encoding::U32(0.01)),
            h(concat!("l", $n, "_voltage_ll"), 0x3046 + 8 * ($n - 1), Encoding::U16(0.01)),
            h(concat!("l", $n, "_power_factor"), 0x3047 + 8 * ($n - 1), Encoding::S16(0.001)),
            h(concat!("l", $n, "_power"), 0x3082 + 4 * ($n - 1), Encoding::S32(1.0)),
        ]
    };
}

const L1: [Quantity; 7] = phase!(1);
const L2: [Quantity; 7] = phase!(2);
const L3: [Quantity; 7] = phase!(3);
const TOTALS: [Quantity; 17] = [
    h("product_id", 0x1000, Encoding::U16(1.0)),
    h("hardware_version", 0x100B, Encoding::U16(1.0)),
    h("phase_config", 0x2000, Encoding::U16(1.0)),
    h("role", 0x2001, Encoding::U16(1.0)),
    h("position", 0x2022, Encoding::U16(1.0)),
    h("n2k_system_instance", 0x2023, Encoding::U16(1.0)),
    h("capabilities", 0x2024, Encoding::U32(1.0)),
    h("frequency", 0x3032, Encoding::U16(0.01)),
    h("pen_voltage", 0x3033, Encoding::S16(0.01)),
    h("energy_forward", 0x3034, Encoding::U32(0.01)),
    h("energy_reverse", 0x3036, Encoding::U32(0.01)),
    h("error_code", 0x3038, Encoding::U16(1.0)),
    h("neutral_current", 0x3039, Encoding::S16(0.1)),
    h("power_factor", 0x303A, Encoding::S16(0.001)),
    h("phase_sequence", 0x303B, Encoding::U16(1.0)),
    h("alarms", 0x303C, Encoding::U32(1.0)),
    h("power", 0x3080, Encoding::S32(1.0)),
];

/// Everything the meter serves as numbers (text registers are separate).
pub static QUANTITIES: [Quantity; TOTALS.len() + 3 * L1.len()] = {
    let mut out = [TOTALS[0]; TOTALS.len() + 3 * L1.len()];
    let mut i = 0;
    while i < TOTALS.len() {
        out[i] = TOTALS[i];
        i += 1;
    }
    let mut j = 0;
    while j < L1.len() {
        out[TOTALS.len() + j] = L1[j];
        out[TOTALS.len() + L1.len() + j] = L2[j];
        out[TOTALS.len() + 2 * L1.len() + j] = L3[j];
        j += 1;
    }
    out
};

/// The VM-3P75CT model.
#[derive(Clone, Debug)]
pub struct Vm3p75ct {
    noise: Noise,
    power_override: Option<f64>,
    voltage_override: Option<f64>,
    power_w: [f64; 3],
    voltage_v: [f64; 3],
    frequency_hz: f64,
    forward_kwh: [f64; 3],
    reverse_kwh: [f64; 3],
    phase_config: u16,
    role: u16,
    position: u16,
    serial: String,
    description: String,
    system_instance: u8,
    /// Times the identify VREG was written with 1.
    identified: u64,
    /// Every VREG access fails with the unknown error while set.
    vreg_fail: bool,
}

impl Vm3p75ct {
    /// A three-phase grid meter, serial `HQ2250ABCDE`, empty description.
    pub fn new(t: SimTime) -> Self {
        let mut m = Vm3p75ct {
            noise: Noise::new(0x3775_0C70),
            power_override: None,
            voltage_override: None,
            power_w: [0.0; 3],
            voltage_v: [230.0; 3],
            frequency_hz: 50.0,
            forward_kwh: [412.37, 388.02, 290.55],
            reverse_kwh: [12.5, 9.75, 4.0],
            phase_config: 3,
            role: 0,
            position: 0,
            serial: "HQ2250ABCDE".to_string(),
            description: String::new(),
            system_instance: 0,
            identified: 0,
            vreg_fail: false,
        };
        m.recompute(t);
        m
    }

    /// The description (custom name) as stored.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn recompute(&mut self, t: SimTime) {
        use std::f64::consts::TAU;
        let w = t.wall_s;
        for n in 0..3 {
            let phase = n as f64;
            self.power_w[n] = match self.power_override {
                Some(total) => total / 3.0,
                None => 500.0 + 150.0 * phase + 300.0 * (TAU * w / (70.0 + 20.0 * phase)).sin(),
            };
            self.voltage_v[n] = self
                .voltage_override
                .unwrap_or_else(|| 230.0 + 2.0 * (TAU * w / 300.0 + phase).sin() + self.noise.symmetric(0.2));
        }
        self.frequency_hz = 50.0 + 0.03 * (TAU * w / 200.0).sin();
    }

    fn current_a(&self, n: usize) -> f64 {
        self.power_w[n] / self.voltage_v[n].max(1.0) / 0.95
    }

    /// The register image of `start..start + count`, or the exception code.
    fn read(&self, start: u16, count: u16) -> ModelReply {
        let end = u32::from(start) + u32::from(count);
        let inside =
            RANGES.iter().any(|(a, b)| u32::from(start) >= u32::from(*a) && end <= u32::from(*b) + 1);
        if !inside {
            return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
        }
        let image = register_image(&QUANTITIES, Bank::Holding, start, count, |n| self.value(n));
        let texts = [
            (SERIAL_ADDR, text_words(self.serial.as_bytes(), SERIAL_WORDS)),
            (FIRMWARE_ADDR, FIRMWARE_WORDS.to_vec()),
            (CUSTOM_NAME_ADDR, text_words(self.description.as_bytes(), CUSTOM_NAME_WORDS)),
        ];
        let words = (0..count)
            .map(|i| {
                let addr = start.wrapping_add(i);
                let text = texts.iter().find_map(|(first, words)| {
                    addr.checked_sub(*first).and_then(|off| words.get(usize::from(off))).copied()
                });
                text.or_else(|| image.get(&addr).copied()).unwrap_or(0)
            })
            .collect();
        ModelReply::Registers(words)
    }

    /// FC23 on the VregLink block.
    fn read_write(
        &mut self,
        read_start: u16,
        read_count: u16,
        write_start: u16,
        values: &[u16],
    ) -> ModelReply {
        let fits = read_count <= vreglink::READ_HEADER + VREG_DATA_REGISTERS
            && values.len() <= usize::from(vreglink::SET_HEADER + VREG_DATA_REGISTERS);
        if read_start != VREG_BASE || write_start != VREG_BASE || !fits {
            return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
        }
        let words = vreglink::serve(Words::from_slice(values), read_count, |cmd, data| self.vreg(cmd, data));
        ModelReply::Registers(words.to_vec())
    }

    /// One VREG access: the status, with `data` filled for a successful get.
    pub fn vreg(&mut self, cmd: &VregCommand, data: &mut VregData) -> u16 {
        use vreglink::*;
        if self.vreg_fail {
            return cmd.op.failure_status();
        }
        let value: &[u8] = &cmd.data;
        match (cmd.op, cmd.id) {
            (VregOp::Get, VREG_PRODUCT_ID) => fill(data, &PRODUCT_ID_BYTES),
            (VregOp::Get, VREG_SERIAL) => fill(data, self.serial.as_bytes()),
            (VregOp::Get, VREG_DESCRIPTION) => fill(data, self.description.as_bytes()),
            (VregOp::Get, VREG_SYSTEM_INSTANCE) => fill(data, &[self.system_instance]),
            (VregOp::Get, VREG_IDENTIFY) => STATUS_READ_WRITE_ONLY,
            (VregOp::Get, _) => STATUS_READ_NO_VREG,
            (VregOp::Set, VREG_PRODUCT_ID | VREG_SERIAL) => STATUS_WRITE_READ_ONLY,
            (VregOp::Set, VREG_DESCRIPTION) => {
                // Trailing NULs are padding some writers add; the text itself must be UTF-8.
                let end = value.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                match std::str::from_utf8(&value[..end]) {
                    Ok(text) if end <= usize::from(2 * CUSTOM_NAME_WORDS) => {
                        self.description = text.to_string();
                        STATUS_SUCCESS
                    }
                    _ => STATUS_WRITE_INVALID_DATA,
                }
            }
            (VregOp::Set, VREG_SYSTEM_INSTANCE) => match value {
                [instance] => {
                    self.system_instance = *instance;
                    STATUS_SUCCESS
                }
                _ => STATUS_WRITE_INVALID_DATA,
            },
            (VregOp::Set, VREG_IDENTIFY) => match value {
                [0] => STATUS_SUCCESS,
                [1] => {
                    self.identified += 1;
                    STATUS_SUCCESS
                }
                _ => STATUS_WRITE_INVALID_DATA,
            },
            (VregOp::Set, _) => STATUS_WRITE_NO_VREG,
        }
    }
}

/// Copies `bytes` into a reply (cut at its capacity) and answers success.
fn fill(data: &mut VregData, bytes: &[u8]) -> u16 {
    let n = bytes.len().min(data.capacity());
    let _ = data.extend_from_slice(&bytes[..n]);
    vreglink::STATUS_SUCCESS
}

/// `bytes` packed high byte first into `words` registers, zero padded and cut.
fn text_words(bytes: &[u8], words: u16) -> Vec<u16> {
    (0..usize::from(words))
        .map(|i| {
            let b = |k: usize| bytes.get(2 * i + k).copied().unwrap_or(0);
            u16::from_be_bytes([b(0), b(1)])
        })
        .collect()
}

impl Device for Vm3p75ct {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Vm3p75ct
    }

    fn step(&mut self, t: SimTime, dt_s: f64, _env: &Environment) {
        self.recompute(t);
        let hours = dt_s.max(0.0) / 3600.0;
        for n in 0..3 {
            let kwh = self.power_w[n] / 1000.0 * hours;
            if kwh >= 0.0 {
                self.forward_kwh[n] += kwh;
            } else {
                self.reverse_kwh[n] -= kwh;
            }
        }
    }

    fn handle(&mut self, request: &ModelRequest, _t: SimTime) -> ModelReply {
        match request {
            ModelRequest::Read { bank: Bank::Holding, start, count } => self.read(*start, *count),
            ModelRequest::ReadWrite { read_start, read_count, write_start, values } => {
                self.read_write(*read_start, *read_count, *write_start, values)
            }
            ModelRequest::Invalid { code, .. } => ModelReply::Exception(*code),
            ModelRequest::Read { bank: Bank::Input, .. }
            | ModelRequest::WriteSingle { .. }
            | ModelRequest::WriteMultiple { .. }
            | ModelRequest::Diagnostics { .. }
            | ModelRequest::Other { .. } => ModelReply::Exception(ILLEGAL_FUNCTION),
        }
    }

    fn turnaround_us(&self, _request: &ModelRequest) -> u64 {
        TURNAROUND_US
    }

    fn quantities(&self) -> &'static [Quantity] {
        &QUANTITIES
    }

    fn value(&self, name: &str) -> Option<f64> {
        let phase = |prefix: &str| -> Option<(usize, &str)> {
            let rest = name.strip_prefix(prefix)?;
            let (digit, tail) = rest.split_at_checked(1)?;
            let n = digit.parse::<usize>().ok().filter(|n| (1..=3).contains(n))?;
            Some((n - 1, tail.strip_prefix('_')?))
        };
        if let Some((n, what)) = phase("l") {
            let next = (n + 1) % 3;
            return Some(match what {
                "voltage" => self.voltage_v[n],
                "current" => self.current_a(n),
                "power" => self.power_w[n],
                "energy_forward" => self.forward_kwh[n],
                "energy_reverse" => self.reverse_kwh[n],
                // Line-to-line: the phasor difference of two phases 120° apart.
                "voltage_ll" => (self.voltage_v[n].powi(2)
                    + self.voltage_v[next].powi(2)
                    + self.voltage_v[n] * self.voltage_v[next])
                    .sqrt(),
                "power_factor" => 0.95,
                _ => return None,
            });
        }
        let sum = |a: &[f64; 3]| a.iter().sum::<f64>();
        Some(match name {
            "product_id" => f64::from(PRODUCT_ID),
            "hardware_version" => 2.0,
            "phase_config" => f64::from(self.phase_config),
            "role" => f64::from(self.role),
            "position" => f64::from(self.position),
            "n2k_system_instance" => f64::from(self.system_instance),
            "capabilities" => f64::from(0x0400u32),
            "frequency" => self.frequency_hz,
            "pen_voltage" => 0.35,
            "energy_forward" => sum(&self.forward_kwh),
            "energy_reverse" => sum(&self.reverse_kwh),
            "error_code" => 0.0,
            // Balanced-ish loads: a small neutral current.
            "neutral_current" => (self.current_a(0) - self.current_a(1)).abs() / 2.0,
            "power_factor" => 0.95,
            "phase_sequence" => 0.0,
            // Bits 0-1 = 1: phase rotation ok.
            "alarms" => 1.0,
            "power" => sum(&self.power_w),
            // Not a register: how often the identify VREG was written with 1.
            "identified" => self.identified as f64,
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: &str) -> Result<String, String> {
        let auto = value == "auto";
        let on_off = |v: &str| match v {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(format!("{name}: want on or off, got {v:?}")),
        };
        let small = |v: &str, max: u16| {
            v.parse::<u16>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{name}: want 0..={max}, got {v:?}"))
        };
        match name {
            "power" => self.power_override = if auto { None } else { Some(parse_f64(name, value)?) },
            "voltage" => self.voltage_override = if auto { None } else { Some(parse_f64(name, value)?) },
            "description" if value.len() <= usize::from(2 * CUSTOM_NAME_WORDS) => {
                self.description = value.to_string()
            }
            "description" => return Err("description: at most 64 bytes".to_string()),
            "serial" if value.len() <= usize::from(2 * SERIAL_WORDS) && value.is_ascii() => {
                self.serial = value.to_string()
            }
            "serial" => return Err("serial: at most 16 ASCII characters".to_string()),
            "phase_config" => self.phase_config = small(value, 4)?,
            "role" => self.role = small(value, 7)?,
            "position" => self.position = small(value, 2)?,
            "vreg_fail" => self.vreg_fail = on_off(value)?,
            _ => return Err(format!("vm3p75ct has no setting {name:?} (try: {})", self.settable())),
        }
        if let Some(total) = self.power_override {
            self.power_w = [total / 3.0; 3];
        }
        if let Some(v) = self.voltage_override {
            self.voltage_v = [v; 3];
        }
        Ok(format!("vm3p75ct {name} = {value}"))
    }

    fn settable(&self) -> &'static str {
        "power W|auto (total, split over 3 phases), voltage V|auto, description TEXT, serial TEXT, \
         phase_config 0..4, role 0..7, position 0..2, vreg_fail on|off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Bus, ClockConfig};
    use crate::frame::rtu_frame;
    use dmc_core::pdu::RawPdu;
    use dmc_core::timing::LineConfig;
    use dmc_core::vreglink::*;

    fn t() -> SimTime {
        SimTime { wall_s: 0.0, device_s: 0.0 }
    }

    fn bus() -> Bus {
        let mut b = Bus::new(LineConfig::new_8n1(9600), ClockConfig::default(), 1);
        b.add(3, DeviceKind::Vm3p75ct);
        b
    }

    /// Sends request PDU bytes to unit 3; the response PDU bytes (no unit, no CRC).
    fn exchange(b: &mut Bus, pdu: &[u8]) -> Vec<u8> {
        let frame = rtu_frame(3, &RawPdu(pdu)).unwrap_or_default();
        let out = b.handle_frame(&frame, 0.1);
        let bytes = out.first().map(|e| e.bytes.clone()).unwrap_or_default();
        assert_eq!(bytes.first(), Some(&3), "unit 3 answers");
        bytes[1..bytes.len() - 2].to_vec()
    }

    fn rw(m: &mut Vm3p75ct, read_count: u16, values: &[u16]) -> Vec<u16> {
        let req = ModelRequest::ReadWrite {
            read_start: VREG_BASE,
            read_count,
            write_start: VREG_BASE,
            values: values.to_vec(),
        };
        match m.handle(&req, t()) {
            ModelReply::Registers(w) => w,
            other => panic!("no registers: {other:?}"),
        }
    }

    #[test]
    fn test_seed_read_product_id_bytes() {
        // Seed 001, VregLink example 1: read VREG 0x100 with a 5-register window.
        let mut b = bus();
        let request = [0x17, 0x40, 0x00, 0x00, 0x05, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00];
        let response = [0x17, 0x0A, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x12, 0x34, 0xFE];
        assert_eq!(exchange(&mut b, &request), response);
        assert_eq!(b.stats().unit(3).map(|c| (c.requests, c.read_writes)), Some((1, 1)));
    }

    #[test]
    fn test_seed_write_description_bytes() {
        // Seed 001, VregLink example 2: set VREG 0x10C to "My Precious", read back [id, status].
        let mut b = bus();
        let request = [
            0x17, 0x40, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x08, 0x10, 0x01, 0x0C, 0x00, 0x0B, 0x4D, 0x79,
            0x20, 0x50, 0x72, 0x65, 0x63, 0x69, 0x6f, 0x75, 0x73, 0x00,
        ];
        assert_eq!(exchange(&mut b, &request), [0x17, 0x04, 0x01, 0x0C, 0x00, 0x00]);
        // Read back through VregLink (size 11, odd: one pad byte) and in the custom name registers.
        let get = [0x17, 0x40, 0x00, 0x00, 0x09, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x0C];
        let back = [
            0x17, 0x12, 0x01, 0x0C, 0x00, 0x00, 0x00, 0x0B, 0x4D, 0x79, 0x20, 0x50, 0x72, 0x65, 0x63, 0x69,
            0x6f, 0x75, 0x73, 0x00,
        ];
        assert_eq!(exchange(&mut b, &get), back);
        let name = exchange(&mut b, &[0x03, 0x20, 0x02, 0x00, 0x06]);
        assert_eq!(
            name,
            [0x03, 0x0C, 0x4D, 0x79, 0x20, 0x50, 0x72, 0x65, 0x63, 0x69, 0x6f, 0x75, 0x73, 0x00]
        );
    }

    #[test]
    fn test_vreg_table_status_codes() {
        let mut m = Vm3p75ct::new(t());
        // Read-only product id: get works, set refused.
        assert_eq!(&rw(&mut m, 35, &[0x0100])[..5], &[0x0100, 0, 4, 0x0012, 0x34FE]);
        assert_eq!(rw(&mut m, 3, &[0x0100, 2, 0x0102]), [0x0100, STATUS_WRITE_READ_ONLY, 0]);
        // Serial, read-only.
        assert_eq!(&rw(&mut m, 9, &[0x010A])[..4], &[0x010A, 0, 11, 0x4851]);
        assert_eq!(rw(&mut m, 3, &[0x010A, 1, 0x4100]), [0x010A, STATUS_WRITE_READ_ONLY, 0]);
        // Unknown VREG.
        assert_eq!(rw(&mut m, 3, &[0x0999]), [0x0999, STATUS_READ_NO_VREG, 0]);
        assert_eq!(rw(&mut m, 3, &[0x0999, 1, 0x0100]), [0x0999, STATUS_WRITE_NO_VREG, 0]);
        // Write-only identify.
        assert_eq!(rw(&mut m, 3, &[VREG_IDENTIFY]), [VREG_IDENTIFY, STATUS_READ_WRITE_ONLY, 0]);
        assert_eq!(rw(&mut m, 3, &[VREG_IDENTIFY, 1, 0x0100]), [VREG_IDENTIFY, 0, 0]);
        assert_eq!(m.value("identified"), Some(1.0));
        assert_eq!(rw(&mut m, 3, &[VREG_IDENTIFY, 1, 0x0200]), [VREG_IDENTIFY, STATUS_WRITE_INVALID_DATA, 0]);
        // System instance: exactly one byte, shown at 0x2023.
        assert_eq!(rw(&mut m, 3, &[0x0112, 1, 0x0700]), [0x0112, 0, 0]);
        assert_eq!(rw(&mut m, 4, &[0x0112]), [0x0112, 0, 1, 0x0700]);
        assert_eq!(rw(&mut m, 3, &[0x0112, 2, 0x0700]), [0x0112, STATUS_WRITE_INVALID_DATA, 0]);
        assert_eq!(
            m.handle(&ModelRequest::Read { bank: Bank::Holding, start: 0x2023, count: 1 }, t()),
            ModelReply::Registers(vec![7])
        );
        // Description: not UTF-8, and a size field that does not fit its registers.
        assert_eq!(rw(&mut m, 3, &[0x010C, 2, 0xC328]), [0x010C, STATUS_WRITE_INVALID_DATA, 0]);
        assert_eq!(rw(&mut m, 3, &[0x010C, 9, 0x4142]), [0x010C, STATUS_WRITE_INVALID_DATA, 0]);
        // 64 bytes fit exactly.
        let mut full = vec![0x010C, 64];
        full.extend(std::iter::repeat_n(0x4142, 32));
        assert_eq!(rw(&mut m, 3, &full), [0x010C, 0, 0]);
        assert_eq!(m.description().len(), 64);
        // The unknown errors while the failure switch is on.
        assert!(m.set("vreg_fail", "on").is_ok());
        assert_eq!(rw(&mut m, 3, &[0x0100]), [0x0100, STATUS_READ_UNKNOWN, 0]);
        assert_eq!(rw(&mut m, 3, &[0x010C, 1, 0x4100]), [0x010C, STATUS_WRITE_UNKNOWN, 0]);
        assert!(m.set("vreg_fail", "off").is_ok());
        assert_eq!(rw(&mut m, 3, &[0x0100])[1], STATUS_SUCCESS);
    }

    #[test]
    fn test_block_limits_and_registers() {
        let mut m = Vm3p75ct::new(t());
        let rw_at = |m: &mut Vm3p75ct, read_start, read_count, values: Vec<u16>| {
            m.handle(&ModelRequest::ReadWrite { read_start, read_count, write_start: VREG_BASE, values }, t())
        };
        let past = ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
        assert_eq!(rw_at(&mut m, VREG_BASE, 36, vec![0x100]), past);
        assert_eq!(rw_at(&mut m, 0x4001, 3, vec![0x100]), past);
        assert_eq!(rw_at(&mut m, VREG_BASE, 3, vec![0; 35]), past);
        // Identity: product id, serial text, firmware v1.09.
        let read = |m: &mut Vm3p75ct, start, count| {
            m.handle(&ModelRequest::Read { bank: Bank::Holding, start, count }, t())
        };
        let ModelReply::Registers(id) = read(&mut m, 0x1000, 12) else { panic!("identity") };
        assert_eq!((id[0], id[1], id[9], id[10]), (0xA1B1, 0x4851, 0x0001, 0x09FF));
        assert_eq!(read(&mut m, 0x0FFF, 2), past);
        assert_eq!(read(&mut m, 0x3080, 13), past);
        let ModelReply::Registers(p) = read(&mut m, 0x3032, 90) else { panic!("measurements") };
        assert_eq!(p.len(), 90);
        // Three phases: voltages near 230 V at 0x3040, 0x3048, 0x3050.
        for n in 0..3 {
            let v = f64::from(p[0x3040 - 0x3032 + 8 * n] as i16) / 100.0;
            assert!((225.0..235.0).contains(&v), "L{} {v}", n + 1);
        }
        assert!(m.set("power", "3000").is_ok());
        let ModelReply::Registers(total) = read(&mut m, 0x3080, 8) else { panic!("power") };
        assert_eq!(&total[..4], &[0, 3000, 0, 1000]);
        let fc16 = ModelRequest::WriteMultiple { start: 0x2002, values: vec![0x4142] };
        assert_eq!(m.handle(&fc16, t()), ModelReply::Exception(ILLEGAL_FUNCTION));
    }
}
