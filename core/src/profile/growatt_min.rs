//! Growatt MIN TL-X single-phase PV inverter, legacy register bank
//! (facts: devices.md section 2).
//!
//! Live values come from the legacy input bank 0..124 (FC04), settings and
//! identity from holding 0..124 and 3000 (FC03) — holding registers are read
//! with FC03, unlike the Python fork (devices.md 2.9). Registers 125..2999 of
//! both banks are barriers: outside the ranges protocol V1.24 lists for the
//! TL-X (the fork's serial at holding 209 is therefore not used; 23..27 is).
//!
//! Growatt asks for >= 850 ms between commands. The profile states it as
//! [`Profile::min_command_interval`], the scheduler can enforce it, and the
//! planner counts it as the cost of a second transaction, which is what
//! makes it read few big blocks (devices.md 3.5): all live input registers
//! in one 106-register read per second.
//!
//! Published paths (pvinverter role):
//! standard `/Ac/Power`, `/Ac/L1/Power` (W), `/Ac/Frequency`, `/Ac/L1/Voltage`,
//! `/Ac/L1/Current`, `/Ac/Energy/Forward` and `/Ac/L1/Energy/Forward` (kWh,
//! the lifetime total 55..56, not today's 53..54), `/Ac/MaxPower` (W, a number,
//! from nominal power 6..7 in 0.1 VA), `/StatusCode` (Victron code, `d` like
//! upstream's mapped registers: 0 waiting -> 8 Standby, 1 normal -> 7 Running,
//! 3 fault -> 10 Error, others invalid), `/ErrorCode` (Growatt fault main code,
//! `d`), `/Serial` (23..27), `/FirmwareVersion` (9..11), `/Ac/NumberOfPhases`
//! (low byte of 44, `i`).
//! Per-string PV values: `/Pv/<n>/V` (V), `/Pv/<n>/I` (A), `/Pv/<n>/P` (W) for
//! tracker n = 0, 1 (Growatt's PV1, PV2), and `/Pv/P` the total PV input.
//! Vendor extras under `/Growatt/`: `EnergyToday` (kWh),
//! `Temperature/{Inverter,Ipm,Boost}` (°C), `DeratingMode` (`i` with text),
//! `ActivePowerRate` (holding 3, %, writable 0..=100 with FC06; 255 means no
//! limit), `ExportLimit/{Mode,Rate,FailedRate}` (122, 123, 3000, read-only),
//! `G100FailSafe` (42); the limiter registers are read once a minute, `DeviceTypeCode` (43), `NrOfTrackers` (high byte of 44),
//! `ControlFirmwareVersion` (12..14).
//!
//! `/ProductId` 0xA1F0 is our own choice (Victron assigns none; it avoids the
//! ids of upstream and dbus-fronius).

use super::{DeviceSettings, ProbeRead, ProbeVerdict, Profile, Role, Turnaround};
use crate::plan::{Barrier, ReadLimits, MODBUS_MAX_READ};
use crate::register::{
    Allowed, ByteOrder, EnumEntry, EnumMap, EnumPublish, RegisterBank, RegisterDef, RegisterType, Unmapped,
    WordOrder, WriteFunction,
};
use crate::time::Duration;
use crate::value::TextFormat;

const U32: RegisterType = RegisterType::U32(WordOrder::HighFirst);
const LIVE: Duration = Duration::from_secs(1);
/// Holding 3 (the power limit we may write) is read back every 10 s.
const SETTINGS: Duration = Duration::from_secs(10);
/// Export-limiter configuration changes only by hand: once a minute, so that
/// with the 850 ms command spacing the live read keeps its 1 s period.
const CONFIG: Duration = Duration::from_secs(60);

const fn input(name: &'static str, address: u16, kind: RegisterType) -> RegisterDef {
    RegisterDef::new(name, RegisterBank::Input, address, kind).every(LIVE)
}

const fn holding(name: &'static str, address: u16, kind: RegisterType) -> RegisterDef {
    RegisterDef::new(name, RegisterBank::Holding, address, kind)
}

const fn text(words: u8) -> RegisterType {
    RegisterType::Text { words, bytes: ByteOrder::HighFirst }
}

/// Growatt status (input 0) to Victron pvinverter `/StatusCode`.
pub const STATUS_MAP: EnumMap = EnumMap {
    entries: &[
        EnumEntry { raw: 0, code: 8, text: "Standby" },
        EnumEntry { raw: 1, code: 7, text: "Running" },
        EnumEntry { raw: 3, code: 10, text: "Error" },
    ],
    unmapped: Unmapped::Invalid,
    publish: EnumPublish::Double,
};

/// Derating mode of the legacy bank (input 104), devices.md 2.6.
pub const DERATING_MAP: EnumMap = EnumMap {
    entries: &[
        EnumEntry { raw: 0, code: 0, text: "None" },
        EnumEntry { raw: 1, code: 1, text: "PV" },
        EnumEntry { raw: 3, code: 3, text: "AC voltage" },
        EnumEntry { raw: 4, code: 4, text: "AC frequency" },
        EnumEntry { raw: 5, code: 5, text: "Boost temperature" },
        EnumEntry { raw: 6, code: 6, text: "Inverter temperature" },
        EnumEntry { raw: 7, code: 7, text: "Control" },
        EnumEntry { raw: 9, code: 9, text: "Over back by time" },
    ],
    unmapped: Unmapped::Raw,
    publish: EnumPublish::Int,
};

/// Export limit mode (holding 122).
pub const EXPORT_LIMIT_MODE_MAP: EnumMap = EnumMap {
    entries: &[
        EnumEntry { raw: 0, code: 0, text: "Off" },
        EnumEntry { raw: 1, code: 1, text: "RS485 meter" },
        EnumEntry { raw: 2, code: 2, text: "RS232 meter" },
        EnumEntry { raw: 3, code: 3, text: "CT" },
    ],
    unmapped: Unmapped::Raw,
    publish: EnumPublish::Int,
};

const V: TextFormat = TextFormat::new("V", 1);
const A: TextFormat = TextFormat::new("A", 1);
const W: TextFormat = TextFormat::new("W", 0);
const KWH: TextFormat = TextFormat::new("kWh", 1);
const CELSIUS: TextFormat = TextFormat::new("°C", 1);
const PERCENT: TextFormat = TextFormat::new("%", 1);

/// Index of holding 3 (active power rate) in [`REGISTERS`].
pub const ACTIVE_POWER_RATE: usize = 20;

/// The register table.
pub static REGISTERS: [RegisterDef; 35] = [
    // Live, input bank, one read per second.
    input("status", 0, RegisterType::Enum(STATUS_MAP)).paths(&["/StatusCode"]),
    input("pv_power", 1, U32).scale(10.0).paths(&["/Pv/P"]).text(W),
    input("pv1_voltage", 3, RegisterType::U16).scale(10.0).paths(&["/Pv/0/V"]).text(V),
    input("pv1_current", 4, RegisterType::U16).scale(10.0).paths(&["/Pv/0/I"]).text(A),
    input("pv1_power", 5, U32).scale(10.0).paths(&["/Pv/0/P"]).text(W),
    input("pv2_voltage", 7, RegisterType::U16).scale(10.0).paths(&["/Pv/1/V"]).text(V),
    input("pv2_current", 8, RegisterType::U16).scale(10.0).paths(&["/Pv/1/I"]).text(A),
    input("pv2_power", 9, U32).scale(10.0).paths(&["/Pv/1/P"]).text(W),
    input("ac_power", 35, U32).scale(10.0).paths(&["/Ac/Power", "/Ac/L1/Power"]).text(W),
    input("ac_frequency", 37, RegisterType::U16)
        .scale(100.0)
        .paths(&["/Ac/Frequency"])
        .text(TextFormat::new("Hz", 2)),
    input("ac_voltage", 38, RegisterType::U16).scale(10.0).paths(&["/Ac/L1/Voltage"]).text(V),
    input("ac_current", 39, RegisterType::U16).scale(10.0).paths(&["/Ac/L1/Current"]).text(A),
    input("energy_today", 53, U32).scale(10.0).paths(&["/Growatt/EnergyToday"]).text(KWH),
    input("energy_total", 55, U32)
        .scale(10.0)
        .paths(&["/Ac/Energy/Forward", "/Ac/L1/Energy/Forward"])
        .text(KWH),
    // Signed although the document says u16: a cold inverter must not read 6553 °C.
    input("temp_inverter", 93, RegisterType::S16)
        .scale(10.0)
        .paths(&["/Growatt/Temperature/Inverter"])
        .text(CELSIUS),
    input("temp_ipm", 94, RegisterType::S16).scale(10.0).paths(&["/Growatt/Temperature/Ipm"]).text(CELSIUS),
    input("temp_boost", 95, RegisterType::S16)
        .scale(10.0)
        .paths(&["/Growatt/Temperature/Boost"])
        .text(CELSIUS),
    input("derating_mode", 104, RegisterType::Enum(DERATING_MAP)).paths(&["/Growatt/DeratingMode"]),
    input("fault_code", 105, RegisterType::U16).paths(&["/ErrorCode"]),
    // Settings, holding bank: the power rate every 10 s, limiter configuration every minute.
    holding("g100_fail_safe", 42, RegisterType::U16).paths(&["/Growatt/G100FailSafe"]).every(CONFIG),
    holding("active_power_rate", 3, RegisterType::U16)
        .paths(&["/Growatt/ActivePowerRate"])
        .text(TextFormat::new("%", 0))
        .every(SETTINGS)
        .writable(Allowed::Range { min: 0.0, max: 100.0 }, WriteFunction::Single),
    holding("export_limit_mode", 122, RegisterType::Enum(EXPORT_LIMIT_MODE_MAP))
        .paths(&["/Growatt/ExportLimit/Mode"])
        .every(CONFIG),
    holding("export_limit_rate", 123, RegisterType::S16)
        .scale(10.0)
        .paths(&["/Growatt/ExportLimit/Rate"])
        .text(PERCENT)
        .every(CONFIG),
    holding("export_limit_failed_rate", 3000, RegisterType::U16)
        .scale(10.0)
        .paths(&["/Growatt/ExportLimit/FailedRate"])
        .text(PERCENT)
        .every(CONFIG),
    // Identity, read once.
    holding("nominal_power", 6, U32).scale(10.0).paths(&["/Ac/MaxPower"]).text(W).once(),
    holding("firmware", 9, text(3)).paths(&["/FirmwareVersion"]).once(),
    holding("control_firmware", 12, text(3)).paths(&["/Growatt/ControlFirmwareVersion"]).once(),
    holding("serial", 23, text(5)).paths(&["/Serial"]).once(),
    holding("device_type_code", 43, RegisterType::U16).paths(&["/Growatt/DeviceTypeCode"]).once(),
    holding("trackers", 44, RegisterType::Field { lsb: 8, width: 8 })
        .paths(&["/Growatt/NrOfTrackers"])
        .once(),
    holding("phases", 44, RegisterType::Field { lsb: 0, width: 8 }).paths(&["/Ac/NumberOfPhases"]).once(),
    holding("modbus_version", 88, RegisterType::U16).scale(100.0).text(TextFormat::new("", 2)).once(),
    // Read but unpublished live extras that sit inside the live block anyway.
    input("ac_apparent_power", 40, U32).scale(10.0).text(TextFormat::new("VA", 0)),
    input("output_power_percent", 101, RegisterType::U16).text(TextFormat::new("%", 0)),
    input("output_power_limit", 102, U32).scale(10.0).text(W),
];

/// Registers 125..2999 are outside the TL-X ranges of protocol V1.24.
static BARRIERS: [Barrier; 2] = [
    Barrier { bank: RegisterBank::Input, start: 125, end: 3000 },
    Barrier { bank: RegisterBank::Holding, start: 125, end: 3000 },
];

/// Probe: device type code and trackers/phases in one read.
pub static PROBE: [ProbeRead; 1] = [ProbeRead { bank: RegisterBank::Holding, address: 43, count: 2 }];

/// Device type codes accepted at holding 43: 5100 (the fork's MIN 4200TL-X
/// expectation, listed elsewhere as MIN TL-XH) and 5200 (MIC/MIN TL-X in the
/// VPP table). devices.md 2.5 lists no other; log unknown values.
pub const ACCEPTED_DEVICE_TYPE_CODES: [u16; 2] = [5100, 5200];

/// Most MPPT trackers of a MIN model.
const MAX_TRACKERS: u16 = 4;

/// Judges [`PROBE`]: an accepted device type code, and register 44 (trackers
/// << 8 | phases) either unreported (0) or one phase with 1..=4 trackers.
pub fn judge(results: &[Option<&[u16]>]) -> ProbeVerdict {
    match results.first() {
        None => ProbeVerdict::NeedMore,
        Some(Some([dtc, tp, ..])) => {
            let (trackers, phases) = (tp >> 8, tp & 0xFF);
            let tp_ok = *tp == 0 || (phases == 1 && (1..=MAX_TRACKERS).contains(&trackers));
            if ACCEPTED_DEVICE_TYPE_CODES.contains(dtc) && tp_ok {
                ProbeVerdict::Match
            } else {
                ProbeVerdict::NoMatch
            }
        }
        Some(_) => ProbeVerdict::NoMatch,
    }
}

/// The Growatt MIN TL-X profile.
pub static GROWATT_MIN: Profile = Profile {
    name: "growatt_min",
    product_name: "Growatt MIN TL-X",
    product_id: 0xA1F0,
    vendor_ident: "growatt",
    default_unit: 1,
    default_role: Role::PvInverter,
    allowed_roles: &[Role::PvInverter],
    registers: &REGISTERS,
    limits: ReadLimits { max_registers: MODBUS_MAX_READ, alignment: 1, barriers: &BARRIERS },
    probe: &PROBE,
    judge,
    may_sleep: true,
    // Fork log: 15-17 ms including the USB adapter (devices.md 2.1).
    turnaround: Turnaround { fixed: Duration::from_millis(15), per_register: Duration::ZERO },
    // Protocol V1.24: wait >= 850 ms after a command.
    min_command_interval: Duration::from_millis(850),
    vreglink: None,
    device_settings: DeviceSettings::NONE,
};
