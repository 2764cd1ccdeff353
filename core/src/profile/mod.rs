//! Device profiles: everything device-specific, as a const table plus a few
//! pure hooks.
//!
//! A [`Profile`] says how to recognise a device (probe reads and a pure
//! judge over their raw words), how it may be read (limits, alignment,
//! barriers, timing), what it publishes (its [`RegisterDef`] table, product
//! name and id, roles) and how it is identified on D-Bus (vendor prefix +
//! serial). Adding a device means adding a table and a judge function; the
//! planner, scheduler, decoder and D-Bus layer need no change
//! (`core/tests/profiles.rs` defines one outside this crate to prove it).
//!
//! Profiles by short stable name (used in device specs such as
//! `rtu:ttyUSB0:9600:2:sdm230`): [`sdm230::SDM230`] `sdm230`,
//! [`growatt_min::GROWATT_MIN`] `growatt_min`,
//! [`victron_em::VM_3P75CT`] `victron_vm3p75ct`, [`victron_em::VM_3P5A`] `victron_vm3p5a`.
//!
//! Devices that dictate part of their own configuration (the Victron meters
//! choose their role, phases and position) describe it in
//! [`Profile::device_settings`]; devices with a VregLink block name it and
//! the D-Bus paths written through it in [`Profile::vreglink`].

pub mod growatt_min;
pub mod sdm230;
pub mod victron_em;

use core::fmt::Write;
use heapless::String;

use crate::plan::{Plan, PlanError, ReadLimits, Transport};
use crate::register::{RegisterBank, RegisterDef};
use crate::time::Duration;
use crate::vreglink::VregSupport;

/// A Victron device class a device may be published as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// `com.victronenergy.grid`.
    Grid,
    /// `com.victronenergy.pvinverter`.
    PvInverter,
    /// `com.victronenergy.genset`.
    Genset,
    /// `com.victronenergy.acload`.
    AcLoad,
    /// `com.victronenergy.evcharger`.
    EvCharger,
    /// `com.victronenergy.heatpump`.
    HeatPump,
}

impl Role {
    /// Every role, in upstream's `/AllowedRoles` order for energy meters.
    pub const ALL: [Role; 6] =
        [Role::Grid, Role::PvInverter, Role::Genset, Role::AcLoad, Role::EvCharger, Role::HeatPump];

    /// The service class name (`grid`, `pvinverter`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Grid => "grid",
            Role::PvInverter => "pvinverter",
            Role::Genset => "genset",
            Role::AcLoad => "acload",
            Role::EvCharger => "evcharger",
            Role::HeatPump => "heatpump",
        }
    }

    /// Parses a class name.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// One read of an identification probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ProbeRead {
    /// Bank (function).
    pub bank: RegisterBank,
    /// First register.
    pub address: u16,
    /// Registers.
    pub count: u16,
}

/// The judge's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeVerdict {
    /// This is the device.
    Match,
    /// It is not.
    NoMatch,
    /// Perform the next probe read and ask again.
    NeedMore,
}

/// Judges the results of the probe reads done so far: `results[i]` answers
/// `probe[i]`, `None` when the device replied with an exception or not at
/// all. Must be pure and total (any words, any length).
pub type Judge = fn(results: &[Option<&[u16]>]) -> ProbeVerdict;

/// Device turnaround (end of request to first response byte) for planning figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Turnaround {
    /// Fixed part.
    pub fixed: Duration,
    /// Added per register read.
    pub per_register: Duration,
}

impl Turnaround {
    /// Turnaround of a read of `count` registers.
    pub const fn for_count(&self, count: u16) -> Duration {
        self.fixed.saturating_add(self.per_register.saturating_mul(count as u64))
    }
}

/// A set of AC phases (bit n-1 = `L<n>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Phases(u8);

impl Phases {
    /// L1 only.
    pub const L1: Phases = Phases(0b001);
    /// L2 only.
    pub const L2: Phases = Phases(0b010);
    /// L3 only.
    pub const L3: Phases = Phases(0b100);
    /// L1 and L2.
    pub const L1_L2: Phases = Phases(0b011);
    /// All three.
    pub const ALL: Phases = Phases(0b111);

    /// From bits (bit 0 = L1); bits above L3 are dropped.
    pub const fn from_bits(bits: u8) -> Self {
        Phases(bits & 0b111)
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether phase `n` (1..=3) is in the set.
    pub const fn contains(self, n: u8) -> bool {
        n >= 1 && n <= 3 && self.0 & (1 << (n - 1)) != 0
    }

    /// Number of phases (`/NrOfPhases`).
    pub const fn count(self) -> u8 {
        self.0.count_ones() as u8
    }
}

/// The phase a per-phase path belongs to: `/Ac/L2/Power` -> 2.
pub fn path_phase(path: &str) -> Option<u8> {
    let rest = path.strip_prefix("/Ac/L")?;
    let (digit, tail) = rest.split_at_checked(1)?;
    let n = match digit {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return None,
    };
    (tail.is_empty() || tail.starts_with('/')).then_some(n)
}

/// A holding register whose raw value indexes the role the device runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RoleRegister {
    /// Holding register (also in [`Profile::registers`], so it is polled;
    /// a change means re-creating the service under the new class).
    pub address: u16,
    /// `roles[raw]`; a raw value past the end keeps the configured role.
    pub roles: &'static [Role],
}

impl RoleRegister {
    /// The role for a raw value.
    pub fn role(&self, raw: u16) -> Option<Role> {
        self.roles.get(usize::from(raw)).copied()
    }
}

/// A holding register that says which phases the device measures.
#[derive(Clone, Copy, Debug)]
pub struct PhaseRegister {
    /// Holding register (also in [`Profile::registers`]).
    pub address: u16,
    /// Raw value to phases (total; unknown values should give [`Phases::ALL`]).
    pub phases: fn(u16) -> Phases,
}

/// A holding register holding the device's `/Position` (the user cannot
/// change it: publish `/PositionIsAdjustable` 0).
#[derive(Clone, Copy, Debug)]
pub struct PositionRegister {
    /// Holding register (also in [`Profile::registers`]).
    pub address: u16,
    /// `/Position` for the role the device runs as and the raw value;
    /// `None`: no `/Position` in that role.
    pub position: fn(Role, u16) -> Option<i32>,
}

/// Configuration the device dictates rather than the user.
#[derive(Clone, Copy, Debug)]
pub struct DeviceSettings {
    /// The device chooses its role.
    pub role: Option<RoleRegister>,
    /// The device says which phases exist (the host publishes `/Ac/L<n>/...`
    /// only for those, see [`Profile::publishes_path`]).
    pub phases: Option<PhaseRegister>,
    /// The device fixes its position.
    pub position: Option<PositionRegister>,
    /// `/RefreshTime` (ms) the service publishes (`None`: no such path).
    pub refresh_time: Option<i32>,
}

impl DeviceSettings {
    /// Nothing dictated: role from settings, all phases, position from settings.
    pub const NONE: DeviceSettings =
        DeviceSettings { role: None, phases: None, position: None, refresh_time: None };
}

/// Everything device-specific.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Short stable name for device specs (`sdm230`).
    pub name: &'static str,
    /// `/ProductName`.
    pub product_name: &'static str,
    /// `/ProductId` (not Victron-assigned; see each profile).
    pub product_id: u16,
    /// Service ident prefix: ident = `<vendor>_<serial>`.
    pub vendor_ident: &'static str,
    /// Default Modbus unit id.
    pub default_unit: u8,
    /// Role when the settings say nothing.
    pub default_role: Role,
    /// Roles the user may choose (`/AllowedRoles`); one entry = fixed;
    /// empty = the device dictates its role ([`DeviceSettings::role`]):
    /// `/Role` read-only and no `/AllowedRoles`, as upstream's Victron meters.
    pub allowed_roles: &'static [Role],
    /// Everything read, with how it is published.
    pub registers: &'static [RegisterDef],
    /// Read limits.
    pub limits: ReadLimits,
    /// Identification reads, in order.
    pub probe: &'static [ProbeRead],
    /// Identification judge.
    pub judge: Judge,
    /// Whether silence is normal (a PV inverter at night) rather than a fault.
    pub may_sleep: bool,
    /// Measured/expected turnaround.
    pub turnaround: Turnaround,
    /// Vendor's minimum spacing between commands (zero if none).
    pub min_command_interval: Duration,
    /// VregLink block and the paths written through it (`None`: no VregLink).
    pub vreglink: Option<VregSupport>,
    /// Configuration the device dictates ([`DeviceSettings::NONE`] if none).
    pub device_settings: DeviceSettings,
}

/// Capacity of a service ident (`growatt_` + 30-char serial fits).
pub const IDENT_CAPACITY: usize = 48;

/// Most blocks any built-in profile plans into.
pub const MAX_BLOCKS: usize = 16;

impl Profile {
    /// Extra cost of each transaction beyond framing and gaps, used for the
    /// hole rule: fixed turnaround plus the vendor's command spacing.
    pub const fn transaction_overhead(&self) -> Duration {
        self.turnaround.fixed.saturating_add(self.min_command_interval)
    }

    /// Plans this profile's registers for `transport`.
    pub fn plan<const N: usize>(&self, transport: &Transport) -> Result<Plan<N>, PlanError> {
        Plan::new(self.registers, &self.limits, transport.max_hole(self.transaction_overhead()))
    }

    /// Line time of reading `count` registers in one transaction.
    pub fn read_time(&self, transport: &Transport, count: u16) -> Duration {
        transport.read_time(count, self.turnaround.for_count(count))
    }

    /// The register published on `path`, with its index.
    pub fn register_for_path(&self, path: &str) -> Option<(usize, &'static RegisterDef)> {
        self.registers.iter().enumerate().find(|(_, r)| r.paths.contains(&path))
    }

    /// The register at `address` of `bank`, with its index.
    pub fn register_at(&self, bank: RegisterBank, address: u16) -> Option<(usize, &'static RegisterDef)> {
        self.registers.iter().enumerate().find(|(_, r)| r.bank == bank && r.address == address)
    }

    /// Whether `path` exists for a device measuring `phases`: per-phase
    /// paths (`/Ac/L<n>/...`) only for the phases present, all others always.
    pub fn publishes_path(&self, path: &str, phases: Phases) -> bool {
        path_phase(path).is_none_or(|n| phases.contains(n))
    }

    /// Whether the user may publish the device as `role`.
    pub fn allows_role(&self, role: Role) -> bool {
        self.allowed_roles.contains(&role)
    }

    /// The service ident `<vendor>_<serial>`, keeping only ASCII letters and
    /// digits of the serial (it becomes part of a settings path).
    pub fn service_ident(&self, serial: &str) -> Option<String<IDENT_CAPACITY>> {
        let mut s = String::new();
        write!(s, "{}_", self.vendor_ident).ok()?;
        for c in serial.chars().filter(char::is_ascii_alphanumeric) {
            s.push(c).ok()?;
        }
        Some(s)
    }
}

/// All built-in profiles, in identification order (the meter first: its
/// probe is cheap and it never sleeps).
pub static ALL: [&Profile; 4] =
    [&sdm230::SDM230, &growatt_min::GROWATT_MIN, &victron_em::VM_3P75CT, &victron_em::VM_3P5A];

/// Looks a profile up by its short name.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().copied().find(|p| p.name == name)
}
