//! Eastron SDM230-Modbus, single-phase MID meter (facts: devices.md section 1).
//!
//! Every measurement is an IEEE float over two input registers, high word
//! first. The meter refuses odd start addresses and odd counts (alignment 2)
//! and more than 80 registers (we stay at 60, the lower of the two vendor
//! figures). Writes would use FC16 only (the meter rejects FC06); the profile
//! publishes nothing writable today.
//!
//! Identification is heuristic because Eastron does not document the
//! SDM230's meter code: FC04 0x0000 x2 must hold a finite voltage in
//! 100..=300 V, then FC03 0xFC00 x2 (serial) must answer. The meter code at
//! 0xFC02 is only recorded (`/HardwareVersion`). The Python fork's probe of
//! holding 0x001C is deliberately not used: it reads the baud-rate setting.
//!
//! Published paths (grid role; the same for genset/acload/pvinverter):
//! standard `/Ac/L1/{Voltage,Current,Power,PowerFactor}`,
//! `/Ac/L1/Energy/{Forward,Reverse}`, `/Ac/Power`, `/Ac/PowerFactor`,
//! `/Ac/Frequency`, `/Ac/Energy/{Forward,Reverse}`, `/Serial`,
//! `/HardwareVersion` (meter code, hex text), `/FirmwareVersion` (hex text).
//! Non-standard extras, named for what they are:
//! `/Ac/L1/ApparentPower` (VA), `/Ac/L1/ReactivePower` (var),
//! `/Ac/Energy/ReactiveForward`, `/Ac/Energy/ReactiveReverse`,
//! `/Ac/Energy/ReactiveTotal` (kvarh), `/Ac/Energy/Total` (kWh, the meter's
//! own total = import + export in its default measurement mode 2).
//!
//! Poll classes: voltage, current and power every 250 ms (one 14-register
//! read, as the fork's V/I/P group); everything else every 5 s; identity once.
//! `/ProductId` 0xB230 is our own choice (Victron assigns none for this meter;
//! it is outside the ids upstream and dbus-fronius use).

use super::{DeviceSettings, ProbeRead, ProbeVerdict, Profile, Role, Turnaround};
use crate::plan::ReadLimits;
use crate::register::{RegisterBank, RegisterDef, RegisterType, WordOrder};
use crate::time::Duration;
use crate::value::TextFormat;

const F32: RegisterType = RegisterType::F32(WordOrder::HighFirst);
/// Active power: what ESS and the export limiter act on (4 Hz by default;
/// the host can set this fastest class to "as fast as the line allows", and
/// it is then a 2-register read).
const POWER: Duration = Duration::from_millis(250);
/// Voltage and current.
const FAST: Duration = Duration::from_secs(1);
const SLOW: Duration = Duration::from_secs(5);

const fn input(name: &'static str, address: u16) -> RegisterDef {
    RegisterDef::new(name, RegisterBank::Input, address, F32)
}

/// The register table.
pub static REGISTERS: [RegisterDef; 16] = [
    input("voltage", 0x0000).paths(&["/Ac/L1/Voltage"]).text(TextFormat::new("V", 1)).every(FAST),
    input("current", 0x0006).paths(&["/Ac/L1/Current"]).text(TextFormat::new("A", 2)).every(FAST),
    input("power", 0x000C).paths(&["/Ac/Power", "/Ac/L1/Power"]).text(TextFormat::new("W", 0)).every(POWER),
    input("apparent_power", 0x0012)
        .paths(&["/Ac/L1/ApparentPower"])
        .text(TextFormat::new("VA", 0))
        .every(SLOW),
    input("reactive_power", 0x0018)
        .paths(&["/Ac/L1/ReactivePower"])
        .text(TextFormat::new("var", 0))
        .every(SLOW),
    input("power_factor", 0x001E)
        .paths(&["/Ac/PowerFactor", "/Ac/L1/PowerFactor"])
        .text(TextFormat::new("", 3))
        .every(SLOW),
    input("frequency", 0x0046).paths(&["/Ac/Frequency"]).text(TextFormat::new("Hz", 2)).every(SLOW),
    input("import_energy", 0x0048)
        .paths(&["/Ac/Energy/Forward", "/Ac/L1/Energy/Forward"])
        .text(TextFormat::new("kWh", 2))
        .every(SLOW),
    input("export_energy", 0x004A)
        .paths(&["/Ac/Energy/Reverse", "/Ac/L1/Energy/Reverse"])
        .text(TextFormat::new("kWh", 2))
        .every(SLOW),
    input("import_reactive_energy", 0x004C)
        .paths(&["/Ac/Energy/ReactiveForward"])
        .text(TextFormat::new("kvarh", 2))
        .every(SLOW),
    input("export_reactive_energy", 0x004E)
        .paths(&["/Ac/Energy/ReactiveReverse"])
        .text(TextFormat::new("kvarh", 2))
        .every(SLOW),
    input("total_energy", 0x0156).paths(&["/Ac/Energy/Total"]).text(TextFormat::new("kWh", 2)).every(SLOW),
    input("total_reactive_energy", 0x0158)
        .paths(&["/Ac/Energy/ReactiveTotal"])
        .text(TextFormat::new("kvarh", 2))
        .every(SLOW),
    // Identity: undocumented for the SDM230, known to answer exactly these
    // reads (the fork's), so each is read alone.
    RegisterDef::new(
        "serial",
        RegisterBank::Holding,
        0xFC00,
        RegisterType::DecimalText(WordOrder::HighFirst),
    )
    .paths(&["/Serial"])
    .once()
    .alone(),
    RegisterDef::new("meter_code", RegisterBank::Holding, 0xFC02, RegisterType::HexText { words: 1 })
        .paths(&["/HardwareVersion"])
        .once()
        .alone(),
    RegisterDef::new("firmware", RegisterBank::Holding, 0xFC03, RegisterType::HexText { words: 1 })
        .paths(&["/FirmwareVersion"])
        .once()
        .alone(),
];

/// Probe: voltage, then serial.
pub static PROBE: [ProbeRead; 2] = [
    ProbeRead { bank: RegisterBank::Input, address: 0x0000, count: 2 },
    ProbeRead { bank: RegisterBank::Holding, address: 0xFC00, count: 2 },
];

/// Plausible line-neutral voltage of a meter on a live grid.
const VOLTAGE_RANGE: core::ops::RangeInclusive<f32> = 100.0..=300.0;

/// Judges [`PROBE`] results (devices.md 1.4).
pub fn judge(results: &[Option<&[u16]>]) -> ProbeVerdict {
    match results.first() {
        None => return ProbeVerdict::NeedMore,
        Some(Some([hi, lo, ..])) => {
            let volts = f32::from_bits((u32::from(*hi) << 16) | u32::from(*lo));
            // RangeInclusive::contains is false for NaN.
            if !VOLTAGE_RANGE.contains(&volts) {
                return ProbeVerdict::NoMatch;
            }
        }
        Some(_) => return ProbeVerdict::NoMatch,
    }
    match results.get(1) {
        None => ProbeVerdict::NeedMore,
        Some(Some(serial)) if serial.len() >= 2 => ProbeVerdict::Match,
        Some(_) => ProbeVerdict::NoMatch,
    }
}

/// The SDM230 profile.
pub static SDM230: Profile = Profile {
    name: "sdm230",
    product_name: "Eastron SDM230",
    product_id: 0xB230,
    vendor_ident: "eastron",
    default_unit: 2,
    default_role: Role::Grid,
    allowed_roles: &[Role::Grid, Role::PvInverter, Role::Genset, Role::AcLoad],
    registers: &REGISTERS,
    limits: ReadLimits { max_registers: 60, alignment: 2, barriers: &[] },
    probe: &PROBE,
    judge,
    may_sleep: false,
    // Fit to the public capture: 6 ms + 0.6 ms per register (devices.md 1.1).
    turnaround: Turnaround { fixed: Duration::from_millis(6), per_register: Duration::from_micros(600) },
    min_command_interval: Duration::ZERO,
    vreglink: None,
    device_settings: DeviceSettings::NONE,
};
