//! Victron Energy Meter VM-3P75CT and VM-3P5A (facts: devices.md section 4,
//! upstream `victron_em.py` / `victron_regs.py`).
//!
//! Holding registers only (FC03), unit 1, the same map over UDP/TCP (MBAP)
//! and RTU. Two profiles share one table and differ only in the per-phase
//! current: VM-3P75CT s16/100 at 0x3041 + 8(n-1), VM-3P5A s32/100 at
//! 0x3058 + 2(n-1). Identification reads the product id at 0x1000 (0xA1B1
//! VM-3P75CT, 0xA1B2 VM-3P5A); each profile's judge accepts only its own id.
//!
//! The meter dictates its configuration ([`Profile::device_settings`]):
//! - role: 0x2001 indexes [`ROLES`] (grid, pvinverter, genset, acload,
//!   evcharger, heatpump, acload, acload); `/Role` is read-only, there is no
//!   `/AllowedRoles` (upstream `allowed_roles = None`); a change of 0x2001 or
//!   0x2000 means re-creating the service, as upstream's `sched_reinit`;
//! - phases: 0x2000 = 0/1/2 single phase on L1/L2/L3, 3 three phase, 4 two
//!   phase L1+L2 ([`phases`]; unknown = three phase, as upstream); the host
//!   publishes `/Ac/L<n>/...` only for those phases
//!   ([`Profile::publishes_path`]) and `/NrOfPhases` = `phases(raw).count()`;
//!   the register is read as a raw u16 without a path, so the host sees
//!   which single phase is measured (a count alone would lose it);
//! - position: 0x2022, pvinverter as is, acload/evcharger/heatpump mapped
//!   0->1, 1->0, 2->1, no `/Position` for grid and genset ([`position`]);
//!   `/PositionIsAdjustable` 0.
//!
//! Writes: `/CustomName` (0x2002, 32 registers UTF-8) through VregLink
//! SetVreg 0x010C with the UTF-8 bytes; `/N2kSystemInstance` (0x2023)
//! through SetVreg 0x0112 with one byte ([`Profile::vreglink`]). The
//! registers themselves stay read-only and show the result on the next poll.
//! VregLink block: base 0x4000, 32 data registers (reads of 35).
//!
//! Published paths (texts as upstream's printf formats):
//! `/Serial`, `/FirmwareVersion` (`i` 0xMMmmbb, text `v1.09`, `-beta-xx` for
//! a build other than 0xFF), `/HardwareVersion`, `/CustomName`,
//! `/NrOfPhases`, `/N2kSystemInstance`, `/Capabilities/HasUdpSnapshots`
//! (0x2024 bit 0x0400), `/Ac/Power`, `/Ac/Frequency`, `/Ac/PENVoltage`,
//! `/Ac/Energy/Forward`, `/Ac/Energy/Reverse` (0xFFFFFFFF invalid),
//! `/ErrorCode`, `/Ac/N/Current`, `/Ac/PowerFactor`, `/PhaseSequence` (0
//! `L1-L2-L3`, 1 `L1-L3-L2`, 0xFF invalid), `/Alarms/PhaseRotation`
//! (0x303C bits 0-1: 0 invalid, 1..3 -> 0..2), and for n = 1..3
//! `/Ac/L<n>/{Voltage,Current,Power,Energy/Forward,Energy/Reverse,
//! VoltageLineToLine,PowerFactor}` (line-to-line 0xFFFF invalid).
//! Host-side extras upstream publishes: `/RefreshTime` 20
//! ([`REFRESH_TIME`], [`DeviceSettings::refresh_time`]), `/Devices/0/...`;
//! `/NrOfPhases`, `/Role`, `/Position`, `/PositionIsAdjustable` come from
//! the dictated registers above, not from the table.
//!
//! Poll classes: power (0x3080..0x308B) every pass, everything else every
//! second, identity and capabilities once.
//!
//! Firmware: upstream reads some registers only from newer firmware
//! (line-to-line voltage from v1.07, power factors, N2K instance, phase
//! sequence, alarms and capabilities from v1.09, measurements at all from
//! v1.03 build 1). This table assumes v1.09 or later; an older meter that
//! refuses those reads fails the blocks that contain them.

use super::{
    DeviceSettings, PhaseRegister, Phases, PositionRegister, ProbeRead, ProbeVerdict, Profile, Role,
    RoleRegister, Turnaround,
};
use crate::plan::ReadLimits;
use crate::register::{
    ByteOrder, EnumEntry, EnumMap, EnumPublish, RegisterBank, RegisterDef, RegisterType, Unmapped, WordOrder,
};
use crate::time::Duration;
use crate::value::TextFormat;
use crate::vreglink::{VregEncoding, VregLink, VregSupport, VregWrite};

/// Product id of the VM-3P75CT.
pub const PRODUCT_ID_VM_3P75CT: u16 = 0xA1B1;
/// Product id of the VM-3P5A.
pub const PRODUCT_ID_VM_3P5A: u16 = 0xA1B2;
/// Product id register.
pub const PRODUCT_ID_REGISTER: u16 = 0x1000;
/// Role register: index into [`ROLES`].
pub const ROLE_REGISTER: u16 = 0x2001;
/// Phase configuration register (see [`phases`]).
pub const PHASE_CONFIG_REGISTER: u16 = 0x2000;
/// Position register (see [`position`]).
pub const POSITION_REGISTER: u16 = 0x2022;
/// VREG of the custom name (description), UTF-8.
pub const VREG_CUSTOM_NAME: u16 = 0x010C;
/// VREG of the NMEA 2000 system instance, one byte.
pub const VREG_N2K_SYSTEM_INSTANCE: u16 = 0x0112;
/// `/RefreshTime` upstream publishes for these meters.
pub const REFRESH_TIME: i32 = 20;

/// Role by the value of 0x2001 (upstream `role_names`).
pub static ROLES: [Role; 8] = [
    Role::Grid,
    Role::PvInverter,
    Role::Genset,
    Role::AcLoad,
    Role::EvCharger,
    Role::HeatPump,
    Role::AcLoad,
    Role::AcLoad,
];

/// Phases measured for a phase configuration value (upstream `get_phases`).
pub fn phases(config: u16) -> Phases {
    match config {
        0 => Phases::L1,
        1 => Phases::L2,
        2 => Phases::L3,
        4 => Phases::L1_L2,
        _ => Phases::ALL,
    }
}

/// `/Position` for the meter's role and raw 0x2022 (upstream: pvinverter
/// as is; acload, evcharger, heatpump reversed with 2 -> AC-in (1), to match
/// VictronConnect; none for grid and genset).
pub fn position(role: Role, raw: u16) -> Option<i32> {
    match role {
        Role::PvInverter => Some(i32::from(raw)),
        Role::AcLoad | Role::EvCharger | Role::HeatPump => match raw {
            0 | 2 => Some(1),
            1 => Some(0),
            _ => None,
        },
        Role::Grid | Role::Genset => None,
    }
}

/// The VregLink block: 0x4000, 32 data registers.
pub const VREGLINK: VregLink = VregLink::new(0x4000, 32);

/// Paths written through VregLink.
pub static VREG_WRITES: [VregWrite; 2] = [
    VregWrite { path: "/CustomName", id: VREG_CUSTOM_NAME, encoding: VregEncoding::Utf8 },
    VregWrite { path: "/N2kSystemInstance", id: VREG_N2K_SYSTEM_INSTANCE, encoding: VregEncoding::U8 },
];

const SETTINGS: DeviceSettings = DeviceSettings {
    role: Some(RoleRegister { address: ROLE_REGISTER, roles: &ROLES }),
    phases: Some(PhaseRegister { address: PHASE_CONFIG_REGISTER, phases }),
    position: Some(PositionRegister { address: POSITION_REGISTER, position }),
    refresh_time: Some(REFRESH_TIME),
};

const FAST: Duration = Duration::ZERO;
const SECOND: Duration = Duration::from_secs(1);

const U32: RegisterType = RegisterType::U32(WordOrder::HighFirst);
const S32: RegisterType = RegisterType::S32(WordOrder::HighFirst);
const V: TextFormat = TextFormat::new("V", 1);
const A: TextFormat = TextFormat::new("A", 1);
const W: TextFormat = TextFormat::new("W", 1);
const KWH: TextFormat = TextFormat::new("kWh", 1);
const HZ: TextFormat = TextFormat::new("Hz", 1);
const PF: TextFormat = TextFormat::new("", 3);
const INVALID_U32: &[u64] = &[0xFFFF_FFFF];

const fn reg(name: &'static str, address: u16, kind: RegisterType) -> RegisterDef {
    RegisterDef::new(name, RegisterBank::Holding, address, kind).every(SECOND)
}

const fn text(words: u8) -> RegisterType {
    RegisterType::Text { words, bytes: ByteOrder::HighFirst }
}

/// 0x303B to `/PhaseSequence`.
pub const PHASE_SEQUENCE_MAP: EnumMap = EnumMap {
    entries: &[
        EnumEntry { raw: 0, code: 0, text: "L1-L2-L3" },
        EnumEntry { raw: 1, code: 1, text: "L1-L3-L2" },
    ],
    unmapped: Unmapped::Raw,
    publish: EnumPublish::Int,
};

/// Bits 0-1 of 0x303C to `/Alarms/PhaseRotation` (upstream `[None, 0, 1, 2]`).
pub const PHASE_ROTATION_MAP: EnumMap = EnumMap {
    entries: &[
        EnumEntry { raw: 1, code: 0, text: "Ok" },
        EnumEntry { raw: 2, code: 1, text: "Warning" },
        EnumEntry { raw: 3, code: 2, text: "Alarm" },
    ],
    unmapped: Unmapped::Invalid,
    publish: EnumPublish::Int,
};

/// Everything but the per-phase current.
const COMMON: [RegisterDef; 37] = [
    // Identity, once.
    RegisterDef::new("serial", RegisterBank::Holding, 0x1001, text(8)).paths(&["/Serial"]),
    RegisterDef::new("firmware", RegisterBank::Holding, 0x1009, RegisterType::VictronVersion)
        .paths(&["/FirmwareVersion"]),
    RegisterDef::new("hardware", RegisterBank::Holding, 0x100B, RegisterType::U16)
        .paths(&["/HardwareVersion"]),
    // Low word of the u32 capabilities at 0x2024: bit 0x0400.
    RegisterDef::new("udp_snapshots", RegisterBank::Holding, 0x2025, RegisterType::Bit(10))
        .paths(&["/Capabilities/HasUdpSnapshots"]),
    // Configuration the meter dictates, every second (a change of phase
    // configuration or role re-creates the service).
    // Raw: the host derives `/NrOfPhases` and the per-phase paths from it.
    reg("phase_config", PHASE_CONFIG_REGISTER, RegisterType::U16),
    reg("role", ROLE_REGISTER, RegisterType::U16),
    reg("custom_name", 0x2002, text(32)).paths(&["/CustomName"]),
    reg("position", POSITION_REGISTER, RegisterType::U16),
    reg("n2k_system_instance", 0x2023, RegisterType::U16).paths(&["/N2kSystemInstance"]),
    // Totals.
    reg("frequency", 0x3032, RegisterType::U16).scale(100.0).paths(&["/Ac/Frequency"]).text(HZ),
    reg("pen_voltage", 0x3033, RegisterType::S16).scale(100.0).paths(&["/Ac/PENVoltage"]).text(V),
    reg("energy_forward", 0x3034, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/Energy/Forward"])
        .text(KWH),
    reg("energy_reverse", 0x3036, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/Energy/Reverse"])
        .text(KWH),
    reg("error_code", 0x3038, RegisterType::U16).paths(&["/ErrorCode"]),
    reg("neutral_current", 0x3039, RegisterType::S16).scale(10.0).paths(&["/Ac/N/Current"]).text(A),
    reg("power_factor", 0x303A, RegisterType::S16).scale(1000.0).paths(&["/Ac/PowerFactor"]).text(PF),
    reg("phase_sequence", 0x303B, RegisterType::Enum(PHASE_SEQUENCE_MAP))
        .invalid_raw(&[0xFF])
        .paths(&["/PhaseSequence"]),
    // Low word of the u32 alarms at 0x303C.
    reg(
        "phase_rotation_alarm",
        0x303D,
        RegisterType::EnumField { lsb: 0, width: 2, map: PHASE_ROTATION_MAP },
    )
    .paths(&["/Alarms/PhaseRotation"]),
    // L1.
    reg("l1_voltage", 0x3040, RegisterType::S16).scale(100.0).paths(&["/Ac/L1/Voltage"]).text(V),
    reg("l1_energy_forward", 0x3042, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L1/Energy/Forward"])
        .text(KWH),
    reg("l1_energy_reverse", 0x3044, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L1/Energy/Reverse"])
        .text(KWH),
    reg("l1_voltage_ll", 0x3046, RegisterType::U16)
        .scale(100.0)
        .invalid_raw(&[0xFFFF])
        .paths(&["/Ac/L1/VoltageLineToLine"])
        .text(V),
    reg("l1_power_factor", 0x3047, RegisterType::S16).scale(1000.0).paths(&["/Ac/L1/PowerFactor"]).text(PF),
    // L2.
    reg("l2_voltage", 0x3048, RegisterType::S16).scale(100.0).paths(&["/Ac/L2/Voltage"]).text(V),
    reg("l2_energy_forward", 0x304A, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L2/Energy/Forward"])
        .text(KWH),
    reg("l2_energy_reverse", 0x304C, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L2/Energy/Reverse"])
        .text(KWH),
    reg("l2_voltage_ll", 0x304E, RegisterType::U16)
        .scale(100.0)
        .invalid_raw(&[0xFFFF])
        .paths(&["/Ac/L2/VoltageLineToLine"])
        .text(V),
    reg("l2_power_factor", 0x304F, RegisterType::S16).scale(1000.0).paths(&["/Ac/L2/PowerFactor"]).text(PF),
    // L3.
    reg("l3_voltage", 0x3050, RegisterType::S16).scale(100.0).paths(&["/Ac/L3/Voltage"]).text(V),
    reg("l3_energy_forward", 0x3052, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L3/Energy/Forward"])
        .text(KWH),
    reg("l3_energy_reverse", 0x3054, U32)
        .scale(100.0)
        .invalid_raw(INVALID_U32)
        .paths(&["/Ac/L3/Energy/Reverse"])
        .text(KWH),
    reg("l3_voltage_ll", 0x3056, RegisterType::U16)
        .scale(100.0)
        .invalid_raw(&[0xFFFF])
        .paths(&["/Ac/L3/VoltageLineToLine"])
        .text(V),
    reg("l3_power_factor", 0x3057, RegisterType::S16).scale(1000.0).paths(&["/Ac/L3/PowerFactor"]).text(PF),
    // Power, every pass.
    reg("power", 0x3080, S32).paths(&["/Ac/Power"]).text(W).every(FAST),
    reg("l1_power", 0x3082, S32).paths(&["/Ac/L1/Power"]).text(W).every(FAST),
    reg("l2_power", 0x3086, S32).paths(&["/Ac/L2/Power"]).text(W).every(FAST),
    reg("l3_power", 0x308A, S32).paths(&["/Ac/L3/Power"]).text(W).every(FAST),
];

/// Per-phase current of the VM-3P75CT: s16/100 at 0x3041 + 8(n-1).
const CURRENT_3P75CT: [RegisterDef; 3] = [
    reg("l1_current", 0x3041, RegisterType::S16).scale(100.0).paths(&["/Ac/L1/Current"]).text(A),
    reg("l2_current", 0x3049, RegisterType::S16).scale(100.0).paths(&["/Ac/L2/Current"]).text(A),
    reg("l3_current", 0x3051, RegisterType::S16).scale(100.0).paths(&["/Ac/L3/Current"]).text(A),
];

/// Per-phase current of the VM-3P5A: s32/100 at 0x3058 + 2(n-1).
const CURRENT_3P5A: [RegisterDef; 3] = [
    reg("l1_current", 0x3058, S32).scale(100.0).paths(&["/Ac/L1/Current"]).text(A),
    reg("l2_current", 0x305A, S32).scale(100.0).paths(&["/Ac/L2/Current"]).text(A),
    reg("l3_current", 0x305C, S32).scale(100.0).paths(&["/Ac/L3/Current"]).text(A),
];

/// Registers of each profile: [`COMMON`] then the model's currents.
const TABLE_LEN: usize = COMMON.len() + 3;

/// `COMMON ++ current`, in const context.
const fn table(current: [RegisterDef; 3]) -> [RegisterDef; TABLE_LEN] {
    let mut out = [COMMON[0]; TABLE_LEN];
    let mut i = 0;
    while i < COMMON.len() {
        out[i] = COMMON[i];
        i += 1;
    }
    let mut j = 0;
    while j < current.len() {
        out[COMMON.len() + j] = current[j];
        j += 1;
    }
    out
}

/// VM-3P75CT register table.
pub static REGISTERS_VM_3P75CT: [RegisterDef; TABLE_LEN] = table(CURRENT_3P75CT);
/// VM-3P5A register table.
pub static REGISTERS_VM_3P5A: [RegisterDef; TABLE_LEN] = table(CURRENT_3P5A);

/// Probe: the product id.
pub static PROBE: [ProbeRead; 1] =
    [ProbeRead { bank: RegisterBank::Holding, address: PRODUCT_ID_REGISTER, count: 1 }];

/// Judges [`PROBE`] for one product id.
fn judge_id(results: &[Option<&[u16]>], id: u16) -> ProbeVerdict {
    match results.first() {
        None => ProbeVerdict::NeedMore,
        Some(Some([found, ..])) if *found == id => ProbeVerdict::Match,
        Some(_) => ProbeVerdict::NoMatch,
    }
}

/// Judge of the VM-3P75CT: product id 0xA1B1.
pub fn judge_vm_3p75ct(results: &[Option<&[u16]>]) -> ProbeVerdict {
    judge_id(results, PRODUCT_ID_VM_3P75CT)
}

/// Judge of the VM-3P5A: product id 0xA1B2.
pub fn judge_vm_3p5a(results: &[Option<&[u16]>]) -> ProbeVerdict {
    judge_id(results, PRODUCT_ID_VM_3P5A)
}

const VREG: VregSupport = VregSupport { link: VREGLINK, writes: &VREG_WRITES };

/// The VM-3P75CT.
pub static VM_3P75CT: Profile = Profile {
    name: "victron_vm3p75ct",
    product_name: "Energy Meter VM-3P75CT",
    product_id: PRODUCT_ID_VM_3P75CT,
    vendor_ident: "ve",
    default_unit: 1,
    default_role: Role::Grid,
    allowed_roles: &[],
    registers: &REGISTERS_VM_3P75CT,
    limits: ReadLimits::MODBUS,
    probe: &PROBE,
    judge: judge_vm_3p75ct,
    may_sleep: false,
    // Not measured; a network meter answering from RAM (upstream's minimum
    // timeout for it is 0.5 s, its refresh time 20 ms).
    turnaround: Turnaround { fixed: Duration::from_millis(5), per_register: Duration::ZERO },
    min_command_interval: Duration::ZERO,
    vreglink: Some(VREG),
    device_settings: SETTINGS,
};

/// The VM-3P5A.
pub static VM_3P5A: Profile = Profile {
    name: "victron_vm3p5a",
    product_name: "Energy Meter VM-3P5A",
    product_id: PRODUCT_ID_VM_3P5A,
    registers: &REGISTERS_VM_3P5A,
    judge: judge_vm_3p5a,
    ..VM_3P75CT
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, Transport};
    use crate::profile::MAX_BLOCKS;
    use crate::timing::LineConfig;
    use crate::value::Value;
    use crate::vreglink::VregValue;

    fn reg_of(p: &Profile, path: &str) -> &'static RegisterDef {
        p.register_for_path(path).unwrap().1
    }

    #[test]
    fn test_tables_are_sane_and_distinct() {
        for p in [&VM_3P75CT, &VM_3P5A] {
            for r in p.registers {
                r.check().unwrap();
            }
            // Unique addresses, every path once.
            for (i, a) in p.registers.iter().enumerate() {
                for b in &p.registers[i + 1..] {
                    assert!(a.address != b.address, "{} {}", a.name, b.name);
                    assert!(a.paths.iter().all(|x| !b.paths.contains(x)), "{}", a.name);
                }
            }
            for n in 1..=3 {
                for leaf in [
                    "Voltage",
                    "Current",
                    "Power",
                    "Energy/Forward",
                    "Energy/Reverse",
                    "VoltageLineToLine",
                    "PowerFactor",
                ] {
                    let path = std::format!("/Ac/L{n}/{leaf}");
                    assert!(p.register_for_path(&path).is_some(), "{path}");
                }
            }
            assert!(p.register_at(RegisterBank::Holding, ROLE_REGISTER).is_some());
            assert!(p.register_at(RegisterBank::Holding, PHASE_CONFIG_REGISTER).is_some());
            assert!(p.register_at(RegisterBank::Holding, POSITION_REGISTER).is_some());
        }
        assert_eq!(reg_of(&VM_3P75CT, "/Ac/L2/Current").address, 0x3049);
        assert_eq!(reg_of(&VM_3P5A, "/Ac/L2/Current").address, 0x305A);
        assert_eq!(reg_of(&VM_3P5A, "/Ac/L3/Current").decode(&[0xFFFF, 0xFF9C]), Value::Float(-1.0));
        assert_eq!(VM_3P5A.product_name, "Energy Meter VM-3P5A");
        assert_eq!(VM_3P5A.vreglink, VM_3P75CT.vreglink);
    }

    #[test]
    fn test_judges() {
        let (a, b) = (judge_vm_3p75ct, judge_vm_3p5a);
        assert_eq!(a(&[]), ProbeVerdict::NeedMore);
        assert_eq!(b(&[]), ProbeVerdict::NeedMore);
        assert_eq!(a(&[Some(&[0xA1B1])]), ProbeVerdict::Match);
        assert_eq!(b(&[Some(&[0xA1B1])]), ProbeVerdict::NoMatch);
        assert_eq!(a(&[Some(&[0xA1B2])]), ProbeVerdict::NoMatch);
        assert_eq!(b(&[Some(&[0xA1B2])]), ProbeVerdict::Match);
        // An exception, an empty answer, another device, a byte-swapped id.
        for r in [None, Some(&[][..]), Some(&[0xB017][..]), Some(&[0xB1A1][..])] {
            assert_eq!(a(&[r]), ProbeVerdict::NoMatch);
            assert_eq!(b(&[r]), ProbeVerdict::NoMatch);
        }
        assert_eq!(VM_3P75CT.probe, &[ProbeRead { bank: RegisterBank::Holding, address: 0x1000, count: 1 }]);
        assert_eq!(crate::profile::by_name("victron_vm3p5a").map(|p| p.product_id), Some(0xA1B2));
        assert_eq!(VM_3P75CT.service_ident("HQ2236ABCDE").unwrap().as_str(), "ve_HQ2236ABCDE");
        assert_eq!((VM_3P75CT.default_unit, VM_3P75CT.default_role), (1, Role::Grid));
    }

    #[test]
    fn test_decode_vectors() {
        let p = &VM_3P75CT;
        let show = |path: &str, v: &Value| {
            let mut s = heapless::String::<64>::new();
            reg_of(p, path).write_text(v, &mut s).unwrap();
            s
        };
        // Firmware bytes [00, 01, 09, FF]: v1.09, 0x0109FF as an int.
        let fw = reg_of(p, "/FirmwareVersion").decode(&[0x0001, 0x09FF]);
        assert_eq!(fw, Value::Int(0x0109FF));
        assert_eq!(show("/FirmwareVersion", &fw), "v1.09");
        let beta = reg_of(p, "/FirmwareVersion").decode(&[0x0001, 0x0A03]);
        assert_eq!(show("/FirmwareVersion", &beta), "v1.0a-beta-03");
        // Energy: 0xFFFFFFFF is invalid, otherwise raw / 100 kWh.
        let fwd = reg_of(p, "/Ac/Energy/Forward");
        assert_eq!(fwd.decode(&[0xFFFF, 0xFFFF]), Value::Invalid);
        assert_eq!(show("/Ac/Energy/Forward", &Value::Invalid), "---");
        let e = fwd.decode(&[0x0001, 0xE240]);
        assert_eq!(e, Value::Float(1234.56));
        assert_eq!(show("/Ac/Energy/Forward", &e), "1234.6 kWh");
        assert_eq!(reg_of(p, "/Ac/L3/Energy/Reverse").decode(&[0xFFFF, 0xFFFF]), Value::Invalid);
        // Power is signed s32 W; voltage s16/100; frequency u16/100.
        let pw = reg_of(p, "/Ac/Power").decode(&[0xFFFF, 0xFA10]);
        assert_eq!(pw, Value::Float(-1520.0));
        assert_eq!(show("/Ac/Power", &pw), "-1520.0 W");
        assert_eq!(reg_of(p, "/Ac/L1/Voltage").decode(&[23012]), Value::Float(230.12));
        assert_eq!(show("/Ac/Frequency", &reg_of(p, "/Ac/Frequency").decode(&[4998])), "50.0 Hz");
        assert_eq!(reg_of(p, "/Ac/L1/Current").decode(&[0xFF38]), Value::Float(-2.0));
        assert_eq!(reg_of(p, "/Ac/PowerFactor").decode(&[0xFC18]), Value::Float(-1.0));
        assert_eq!(reg_of(p, "/Ac/N/Current").decode(&[15]), Value::Float(1.5));
        assert_eq!(reg_of(p, "/Ac/L2/VoltageLineToLine").decode(&[0xFFFF]), Value::Invalid);
        // Sequence, rotation alarm, phases, capabilities.
        let seq = reg_of(p, "/PhaseSequence");
        assert_eq!(seq.decode(&[1]), Value::Int(1));
        assert_eq!(show("/PhaseSequence", &Value::Int(1)), "L1-L3-L2");
        assert_eq!(seq.decode(&[0xFF]), Value::Invalid);
        let rot = reg_of(p, "/Alarms/PhaseRotation");
        assert_eq!(rot.decode(&[0x0000]), Value::Invalid);
        assert_eq!(rot.decode(&[0x0001]), Value::Int(0));
        assert_eq!(rot.decode(&[0x0007]), Value::Int(2));
        // 0x2000 stays raw (0/1/2 must stay apart); `/NrOfPhases` is its phase count.
        let (_, config) = p.register_at(RegisterBank::Holding, PHASE_CONFIG_REGISTER).unwrap();
        assert!(config.paths.is_empty());
        assert!(p.register_for_path("/NrOfPhases").is_none());
        assert_eq!(config.decode(&[1]), Value::Float(1.0));
        assert_eq!(config.decode(&[2]), Value::Float(2.0));
        assert_eq!([0, 1, 2, 3, 4, 9].map(|raw| phases(raw).count()), [1, 1, 1, 3, 2, 3]);
        assert_eq!(reg_of(p, "/Capabilities/HasUdpSnapshots").decode(&[0x0400]), Value::Int(1));
        assert_eq!(reg_of(p, "/Capabilities/HasUdpSnapshots").decode(&[0xFBFF]), Value::Int(0));
        // Serial and a 64-byte custom name.
        let serial = reg_of(p, "/Serial").decode(&[0x4851, 0x3232, 0x3336, 0x4142, 0x4344, 0x4500, 0, 0]);
        assert_eq!(serial.as_str(), Some("HQ2236ABCDE"));
        let mut name = [0x4142u16; 32];
        assert_eq!(reg_of(p, "/CustomName").decode(&name).as_str().map(str::len), Some(64));
        name[1] = 0xC3A9; // "ABé" then NUL
        name[2] = 0;
        assert_eq!(reg_of(p, "/CustomName").decode(&name).as_str(), Some("ABé"));
    }

    #[test]
    fn test_vreg_routes() {
        let v = VM_3P75CT.vreglink.unwrap();
        assert_eq!((v.link.base, v.link.data_registers, v.link.read_quantity()), (0x4000, 32, 35));
        let name = v.set_request("/CustomName", VregValue::Text("Garage")).unwrap().unwrap();
        assert_eq!(name.write_words(), &[0x010C, 6, 0x4761, 0x7261, 0x6765]);
        let inst = v.set_request("/N2kSystemInstance", VregValue::Number(2.0)).unwrap().unwrap();
        assert_eq!(inst.write_words(), &[0x0112, 1, 0x0200]);
        assert!(v.set_request("/Ac/Power", VregValue::Number(1.0)).is_none());
        // Neither path is a plain register write.
        for path in ["/CustomName", "/N2kSystemInstance"] {
            assert_eq!(reg_of(&VM_3P75CT, path).write, crate::register::WritePolicy::ReadOnly);
        }
    }

    #[test]
    fn test_plans_for_mbap_and_rtu() {
        for p in [&VM_3P75CT, &VM_3P5A] {
            for t in [Transport::Mbap, Transport::Rtu(LineConfig::new_8n1(9600))] {
                let plan: Plan<MAX_BLOCKS> = p.plan(&t).unwrap();
                // Power first, in one read of 0x3080..0x308B.
                let first = plan.blocks()[0];
                assert_eq!((first.start, first.count), (0x3080, 12), "{}", p.name);
            }
        }
    }

    proptest::proptest! {
        /// Any words decode and render (64-byte names fit a 64-byte text)
        /// for every register of both models; the hooks are total.
        #[test]
        fn prop_decode_total(words in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..40), raw: u16) {
            for p in [&VM_3P75CT, &VM_3P5A] {
                for r in p.registers {
                    let v = r.decode(&words);
                    let mut s = heapless::String::<64>::new();
                    proptest::prop_assert!(r.write_text(&v, &mut s).is_ok(), "{}", r.name);
                }
            }
            let _ = (phases(raw), ROLES.get(usize::from(raw)));
            for role in Role::ALL {
                let _ = position(role, raw);
            }
        }
    }

    #[test]
    fn test_dictated_settings() {
        let s = VM_3P75CT.device_settings;
        let role = s.role.unwrap();
        assert_eq!(role.role(0), Some(Role::Grid));
        assert_eq!(role.role(5), Some(Role::HeatPump));
        assert_eq!(role.role(7), Some(Role::AcLoad));
        assert_eq!(role.role(8), None);
        assert_eq!((s.phases.unwrap().phases)(3), Phases::ALL);
        assert_eq!(phases(1), Phases::L2);
        assert_eq!(phases(4).count(), 2);
        assert_eq!(phases(99), Phases::ALL);
        assert!(!VM_3P75CT.publishes_path("/Ac/L2/Power", phases(0)));
        assert!(VM_3P75CT.publishes_path("/Ac/L1/Power", phases(0)));
        assert!(VM_3P75CT.publishes_path("/Ac/Power", phases(0)));
        assert_eq!(position(Role::PvInverter, 2), Some(2));
        assert_eq!(position(Role::AcLoad, 0), Some(1));
        assert_eq!(position(Role::EvCharger, 1), Some(0));
        assert_eq!(position(Role::HeatPump, 2), Some(1));
        assert_eq!(position(Role::Grid, 0), None);
        assert!(VM_3P75CT.allowed_roles.is_empty());
    }
}
