//! Register definitions: where a value lives, how its words decode, how it is
//! published on D-Bus, how often it must be read and whether it may be written.
//!
//! Profiles are `const` tables of [`RegisterDef`], built with the `const fn`
//! builder methods so each row reads like a line of the vendor's register map:
//!
//! ```
//! use dmc_core::register::{RegisterBank, RegisterDef, RegisterType, WordOrder, PollClass};
//! use dmc_core::value::TextFormat;
//! use dmc_core::time::Duration;
//! const VOLTAGE: RegisterDef =
//!     RegisterDef::new("voltage", RegisterBank::Input, 0x0000, RegisterType::F32(WordOrder::HighFirst))
//!         .paths(&["/Ac/L1/Voltage"])
//!         .text(TextFormat::new("V", 1))
//!         .every(Duration::from_millis(250));
//! ```
//!
//! Decoding is total: any words, any definition, yields a [`Value`] (possibly
//! [`Value::Invalid`]), never a panic. Numeric kinds decode as
//! `raw / scale + offset` into [`Value::Float`] (published as `d`, like
//! upstream's `Reg_num` subclasses); sentinel raw values, NaN and infinities
//! decode as invalid (venus-conventions 6.7).

use core::fmt::{self, Write};
use heapless::Vec;

use crate::time::Duration;
use crate::value::{write_float, DbusType, ShortText, TextFormat, Value, TEXT_CAPACITY};

/// Which register space, and so which read function, a register lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RegisterBank {
    /// Holding registers: read with FC03, written with FC06/FC16.
    Holding,
    /// Input registers: read with FC04, never writable.
    Input,
}

impl RegisterBank {
    /// The Modbus function code that reads this bank.
    pub const fn read_function(self) -> u8 {
        match self {
            RegisterBank::Holding => 0x03,
            RegisterBank::Input => 0x04,
        }
    }
}

/// Order of the 16-bit words of a multi-register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WordOrder {
    /// Most significant word at the lowest address: the Modbus habit
    /// (Eastron, Growatt, Victron).
    HighFirst,
    /// Least significant word first, for devices that do it.
    LowFirst,
}

/// Order of the two characters inside one register of a text value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ByteOrder {
    /// First character in the high byte (the usual case).
    HighFirst,
    /// First character in the low byte.
    LowFirst,
}

/// One entry of an enum map: raw register value to Victron code and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EnumEntry {
    /// Raw register value.
    pub raw: u16,
    /// Code published on D-Bus.
    pub code: i32,
    /// `GetText` for this code; empty means "render the number".
    pub text: &'static str,
}

/// What an enum register publishes for a raw value missing from its map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Unmapped {
    /// Publish invalid (a code the consumer cannot interpret is worse than none).
    Invalid,
    /// Publish the raw value itself as the code.
    Raw,
}

/// How an enum code travels on D-Bus. Upstream's `Reg_mapu16` is a float
/// subclass (`d`), its `Reg_e16` an int subclass (`i`); each enum register
/// states which one it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EnumPublish {
    /// As a double (`d`), like `Reg_mapu16` (e.g. `/StatusCode`).
    Double,
    /// As an int32 (`i`), like `Reg_e16`.
    Int,
}

/// A u16 -> code mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EnumMap {
    /// Known raw values.
    pub entries: &'static [EnumEntry],
    /// Policy for raw values not in `entries`.
    pub unmapped: Unmapped,
    /// D-Bus type of the code.
    pub publish: EnumPublish,
}

impl EnumMap {
    /// The entry for a raw value.
    pub fn by_raw(&self, raw: u16) -> Option<&EnumEntry> {
        self.entries.iter().find(|e| e.raw == raw)
    }

    /// The entry for a published code (the first one, if several raws share it).
    pub fn by_code(&self, code: i32) -> Option<&EnumEntry> {
        self.entries.iter().find(|e| e.code == code)
    }
}

/// Longest text register: [`TEXT_CAPACITY`] bytes.
pub const MAX_TEXT_WORDS: u8 = (TEXT_CAPACITY / 2) as u8;

/// How the words of a register decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RegisterType {
    /// Unsigned 16 bit.
    U16,
    /// Signed 16 bit (two's complement).
    S16,
    /// Unsigned 32 bit over two registers.
    U32(WordOrder),
    /// Signed 32 bit over two registers.
    S32(WordOrder),
    /// Unsigned 64 bit over four registers.
    U64(WordOrder),
    /// Signed 64 bit over four registers.
    S64(WordOrder),
    /// IEEE-754 single over two registers.
    F32(WordOrder),
    /// ASCII/UTF-8 text over `words` registers (at most [`MAX_TEXT_WORDS`]):
    /// cut at the first NUL, trailing spaces trimmed, invalid UTF-8 is invalid.
    Text {
        /// Number of registers.
        words: u8,
        /// Character order within each register.
        bytes: ByteOrder,
    },
    /// Registers rendered as upper-case hex digits, as upstream's `Reg_hexstr`
    /// (e.g. a meter code 0x0020 -> `"0020"`), published as text.
    HexText {
        /// Number of registers (at most 8).
        words: u8,
    },
    /// An unsigned 32-bit number published as decimal text (serial numbers).
    DecimalText(WordOrder),
    /// A u16 mapped to a code.
    Enum(EnumMap),
    /// One bit of a u16 (0 = least significant), published as 0/1 `i`.
    Bit(u8),
    /// Bits `lsb .. lsb + width` of a u16 as an unsigned number (`i`).
    Field {
        /// Lowest bit.
        lsb: u8,
        /// Number of bits.
        width: u8,
    },
    /// Bits `lsb .. lsb + width` of a u16 mapped like [`RegisterType::Enum`]
    /// (the map's `raw` is the field value): a status packed with other
    /// flags, e.g. the Victron meter's phase-rotation alarm in bits 0-1.
    /// Sentinels compare with the whole word.
    EnumField {
        /// Lowest bit.
        lsb: u8,
        /// Number of bits.
        width: u8,
        /// Field value -> code.
        map: EnumMap,
    },
    /// Victron firmware version over two registers read as four bytes
    /// `[_, major, minor, build]` (upstream `VEReg_ver`): published as the
    /// integer `major << 16 | minor << 8 | build` (`i`), shown as
    /// `v<major hex>.<minor 2 hex digits>`, plus `-beta-<build 2 hex>` unless
    /// build is 0xFF (a release): 0x0109FF -> `v1.09`. Sentinels compare
    /// with the two words as a u32.
    VictronVersion,
}

impl RegisterType {
    /// Registers occupied.
    pub const fn word_count(&self) -> u16 {
        match self {
            RegisterType::U16
            | RegisterType::S16
            | RegisterType::Enum(_)
            | RegisterType::Bit(_)
            | RegisterType::Field { .. }
            | RegisterType::EnumField { .. } => 1,
            RegisterType::U32(_) | RegisterType::S32(_) | RegisterType::F32(_) => 2,
            RegisterType::VictronVersion => 2,
            RegisterType::DecimalText(_) => 2,
            RegisterType::U64(_) | RegisterType::S64(_) => 4,
            RegisterType::Text { words, .. } | RegisterType::HexText { words } => *words as u16,
        }
    }
}

/// How fresh a register must be kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PollClass {
    /// Re-read at least this often; zero means "as fast as the line allows".
    Every(Duration),
    /// Read once after connecting (identity).
    Once,
}

impl PollClass {
    /// Sort key: faster classes first, `Once` last.
    pub const fn order_key(self) -> u64 {
        match self {
            PollClass::Every(d) => d.as_micros(),
            PollClass::Once => u64::MAX,
        }
    }
}

/// The write function a device needs for a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WriteFunction {
    /// FC06, write single register (one-word values only).
    Single,
    /// FC16, write multiple registers (Eastron accepts only this).
    Multiple,
}

impl WriteFunction {
    /// The Modbus function code.
    pub const fn code(self) -> u8 {
        match self {
            WriteFunction::Single => 0x06,
            WriteFunction::Multiple => 0x10,
        }
    }
}

/// Engineering values a write may carry.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Allowed {
    /// `min <= value <= max`.
    Range {
        /// Lowest allowed value.
        min: f64,
        /// Highest allowed value.
        max: f64,
    },
    /// Exactly one of these values.
    Set(&'static [f64]),
}

impl Allowed {
    /// Whether `value` may be written.
    pub fn permits(&self, value: f64) -> bool {
        match self {
            Allowed::Range { min, max } => *min <= value && value <= *max,
            Allowed::Set(set) => set.contains(&value),
        }
    }
}

/// Whether and how a register may be written.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WritePolicy {
    /// Never written.
    ReadOnly,
    /// Writable within `allowed`, with `function`.
    Writable {
        /// Values accepted (engineering units, checked before encoding).
        allowed: Allowed,
        /// FC06 or FC16.
        function: WriteFunction,
    },
}

/// Why a write was refused. Nothing was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The register is read-only (or lives in the input bank).
    ReadOnly,
    /// The value is outside the allowed range or set.
    NotAllowed,
    /// NaN or infinite.
    NotFinite,
    /// The raw value does not fit the register type, or the output buffer.
    Unrepresentable,
    /// The type cannot be written by value (text, bits, fields need
    /// read-modify-write, which is the caller's business).
    Unsupported,
    /// FC06 asked for a value wider than one register (a table error).
    SingleWriteTooWide,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::ReadOnly => "register is read-only",
            EncodeError::NotAllowed => "value outside the allowed range",
            EncodeError::NotFinite => "value is not finite",
            EncodeError::Unrepresentable => "value does not fit the register",
            EncodeError::Unsupported => "register type cannot be written by value",
            EncodeError::SingleWriteTooWide => "FC06 cannot write more than one register",
        })
    }
}

impl core::error::Error for EncodeError {}

/// A ready-to-send write: function, address and raw words.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriteRequest {
    /// FC06 or FC16.
    pub function: WriteFunction,
    /// First holding register.
    pub address: u16,
    /// Raw words in wire order.
    pub words: Vec<u16, 4>,
}

/// One register (or group of registers forming one value) of a device.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RegisterDef {
    /// Short name for logs and reports.
    pub name: &'static str,
    /// Register space.
    pub bank: RegisterBank,
    /// First register, 0-based as on the wire.
    pub address: u16,
    /// Decoding.
    pub kind: RegisterType,
    /// value = raw / scale + offset (numeric kinds).
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
    /// Raw values meaning "not available" (compared with the raw integer in
    /// logical word order, or the f32 bit pattern).
    pub invalid: &'static [u64],
    /// D-Bus paths this value is published on (may be several, e.g.
    /// `/Ac/Power` and `/Ac/L1/Power`); empty = read but not published.
    pub paths: &'static [&'static str],
    /// `GetText` unit and decimals.
    pub format: TextFormat,
    /// Freshness class.
    pub class: PollClass,
    /// Write policy.
    pub write: WritePolicy,
    /// Read this register in a transaction of exactly its own words,
    /// exempt from the device's alignment: for undocumented registers known
    /// to answer only that exact read (the SDM230's 0xFC00..0xFC03).
    pub alone: bool,
}

impl RegisterDef {
    /// A read-only, unpublished, once-read definition with scale 1; refine it
    /// with the builder methods.
    pub const fn new(name: &'static str, bank: RegisterBank, address: u16, kind: RegisterType) -> Self {
        RegisterDef {
            name,
            bank,
            address,
            kind,
            scale: 1.0,
            offset: 0.0,
            invalid: &[],
            paths: &[],
            format: TextFormat::PLAIN,
            class: PollClass::Once,
            write: WritePolicy::ReadOnly,
            alone: false,
        }
    }

    /// Sets the divisor (value = raw / scale).
    pub const fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Sets the offset added after scaling.
    pub const fn offset(mut self, offset: f64) -> Self {
        self.offset = offset;
        self
    }

    /// Sets the raw sentinel values that mean invalid.
    pub const fn invalid_raw(mut self, raw: &'static [u64]) -> Self {
        self.invalid = raw;
        self
    }

    /// Sets the D-Bus paths.
    pub const fn paths(mut self, paths: &'static [&'static str]) -> Self {
        self.paths = paths;
        self
    }

    /// Sets the `GetText` format.
    pub const fn text(mut self, format: TextFormat) -> Self {
        self.format = format;
        self
    }

    /// Poll at least every `period`.
    pub const fn every(mut self, period: Duration) -> Self {
        self.class = PollClass::Every(period);
        self
    }

    /// Read once (identity).
    pub const fn once(mut self) -> Self {
        self.class = PollClass::Once;
        self
    }

    /// Makes the register writable.
    pub const fn writable(mut self, allowed: Allowed, function: WriteFunction) -> Self {
        self.write = WritePolicy::Writable { allowed, function };
        self
    }

    /// Reads the register on its own (see [`RegisterDef::alone`]).
    pub const fn alone(mut self) -> Self {
        self.alone = true;
        self
    }

    /// Registers occupied.
    pub const fn word_count(&self) -> u16 {
        self.kind.word_count()
    }

    /// One past the last register, as u32 so that 0xFFFF + n never overflows.
    pub const fn end(&self) -> u32 {
        self.address as u32 + self.word_count() as u32
    }

    /// The D-Bus type of a valid value of this register.
    pub const fn dbus_type(&self) -> DbusType {
        match self.kind {
            RegisterType::Text { .. } | RegisterType::HexText { .. } | RegisterType::DecimalText(_) => {
                DbusType::Text
            }
            RegisterType::Enum(map) | RegisterType::EnumField { map, .. } => match map.publish {
                EnumPublish::Double => DbusType::Double,
                EnumPublish::Int => DbusType::Int32,
            },
            RegisterType::Bit(_) | RegisterType::Field { .. } | RegisterType::VictronVersion => {
                DbusType::Int32
            }
            _ => DbusType::Double,
        }
    }

    /// Checks the definition for table mistakes (tests run it over every
    /// profile): a usable scale, sane widths, FC06 only for one-word holding
    /// registers. Decoding stays total even for a bad definition.
    pub fn check(&self) -> Result<(), &'static str> {
        if !(self.scale.is_finite() && self.scale != 0.0 && self.offset.is_finite()) {
            return Err("scale must be finite and non-zero, offset finite");
        }
        match self.kind {
            RegisterType::Text { words, .. } if words == 0 || words > MAX_TEXT_WORDS => {
                return Err("text must be 1..=32 registers")
            }
            RegisterType::HexText { words } if words == 0 || words > 8 => {
                return Err("hex text must be 1..=8 registers")
            }
            RegisterType::Bit(b) if b > 15 => return Err("bit out of range"),
            RegisterType::Field { lsb, width } | RegisterType::EnumField { lsb, width, .. }
                if width == 0 || u32::from(lsb) + u32::from(width) > 16 =>
            {
                return Err("field out of range")
            }
            _ => {}
        }
        if self.end() > 0x1_0000 {
            return Err("register runs past address 0xFFFF");
        }
        if let WritePolicy::Writable { function, .. } = self.write {
            if self.bank == RegisterBank::Input {
                return Err("input registers are not writable");
            }
            if function == WriteFunction::Single && self.word_count() != 1 {
                return Err("FC06 writes exactly one register");
            }
        }
        Ok(())
    }

    /// Decodes this register from its own words (`words[0]` is the register
    /// at `address`). Too few words decode as invalid.
    pub fn decode(&self, words: &[u16]) -> Value {
        let Some(words) = words.get(..usize::from(self.word_count())) else {
            return Value::Invalid;
        };
        match self.kind {
            RegisterType::U16 => self.numeric(u64::from(words[0]), f64::from(words[0])),
            RegisterType::S16 => self.numeric(u64::from(words[0]), f64::from(words[0] as i16)),
            RegisterType::U32(order) => {
                let raw = combine(words, order);
                self.numeric(raw, raw as u32 as f64)
            }
            RegisterType::S32(order) => {
                let raw = combine(words, order);
                self.numeric(raw, f64::from(raw as u32 as i32))
            }
            RegisterType::U64(order) => {
                let raw = combine(words, order);
                self.numeric(raw, raw as f64)
            }
            RegisterType::S64(order) => {
                let raw = combine(words, order);
                self.numeric(raw, raw as i64 as f64)
            }
            RegisterType::F32(order) => {
                let raw = combine(words, order);
                self.numeric(raw, f64::from(f32::from_bits(raw as u32)))
            }
            RegisterType::Text { bytes, .. } => decode_text(words, bytes),
            RegisterType::HexText { .. } => {
                let mut s = ShortText::new();
                for w in words {
                    if write!(s, "{w:04X}").is_err() {
                        return Value::Invalid;
                    }
                }
                Value::Text(s)
            }
            RegisterType::DecimalText(order) => {
                let raw = combine(words, order);
                if self.invalid.contains(&raw) {
                    return Value::Invalid;
                }
                let mut s = ShortText::new();
                match write!(s, "{raw}") {
                    Ok(()) => Value::Text(s),
                    Err(_) => Value::Invalid,
                }
            }
            RegisterType::Enum(map) => {
                let raw = words[0];
                if self.invalid.contains(&u64::from(raw)) {
                    return Value::Invalid;
                }
                map_enum(&map, raw)
            }
            RegisterType::EnumField { lsb, width, map } => {
                if self.invalid.contains(&u64::from(words[0])) {
                    return Value::Invalid;
                }
                map_enum(&map, field(words[0], lsb, width))
            }
            RegisterType::VictronVersion => {
                let raw = combine(words, WordOrder::HighFirst);
                if self.invalid.contains(&raw) {
                    return Value::Invalid;
                }
                // Bytes [_, major, minor, build]: drop the first.
                Value::Int((raw & 0x00FF_FFFF) as i64)
            }
            RegisterType::Bit(bit) => {
                if self.invalid.contains(&u64::from(words[0])) {
                    return Value::Invalid;
                }
                Value::Int(i64::from((words[0] >> (bit & 15)) & 1))
            }
            RegisterType::Field { lsb, width } => {
                if self.invalid.contains(&u64::from(words[0])) {
                    return Value::Invalid;
                }
                Value::Int(i64::from(field(words[0], lsb, width)))
            }
        }
    }

    /// Decodes this register out of a block read starting at `block_start`;
    /// invalid if the block does not hold all of it.
    pub fn decode_in_block(&self, block_start: u16, words: &[u16]) -> Value {
        let Some(offset) = self.address.checked_sub(block_start) else {
            return Value::Invalid;
        };
        match words.get(usize::from(offset)..) {
            Some(rest) => self.decode(rest),
            None => Value::Invalid,
        }
    }

    /// Scales a numeric raw value, applying sentinels and rejecting non-finite results.
    fn numeric(&self, raw_bits: u64, raw: f64) -> Value {
        if self.invalid.contains(&raw_bits) {
            return Value::Invalid;
        }
        let v = raw / self.scale + self.offset;
        if v.is_finite() {
            Value::Float(v)
        } else {
            Value::Invalid
        }
    }

    /// Writes the `GetText` of `value` as this register shows it: the enum
    /// text when the map has one, otherwise the value with unit and decimals.
    pub fn write_text<W: Write>(&self, value: &Value, out: &mut W) -> fmt::Result {
        match (self.kind, value) {
            (RegisterType::Enum(map) | RegisterType::EnumField { map, .. }, _) => {
                if let Some(code) = value.as_f64() {
                    if let Some(e) =
                        map.entries.iter().find(|e| f64::from(e.code) == code && !e.text.is_empty())
                    {
                        return out.write_str(e.text);
                    }
                }
            }
            (RegisterType::VictronVersion, Value::Int(n)) => return write_victron_version(*n, out),
            _ => {}
        }
        value.write_text(&self.format, out)
    }

    /// Encodes an engineering value into raw words (`out` must hold
    /// [`RegisterDef::word_count`] words), after checking the write policy.
    /// Returns the number of words written. Nothing is written on error.
    pub fn encode(&self, value: f64, out: &mut [u16]) -> Result<usize, EncodeError> {
        let WritePolicy::Writable { allowed, .. } = self.write else {
            return Err(EncodeError::ReadOnly);
        };
        if self.bank == RegisterBank::Input {
            return Err(EncodeError::ReadOnly);
        }
        if !value.is_finite() {
            return Err(EncodeError::NotFinite);
        }
        if !allowed.permits(value) {
            return Err(EncodeError::NotAllowed);
        }
        let n = usize::from(self.word_count());
        let out = out.get_mut(..n).ok_or(EncodeError::Unrepresentable)?;
        let raw_f = (value - self.offset) * self.scale;
        let (raw, order): (u64, WordOrder) = match self.kind {
            RegisterType::U16 => (in_range(raw_f, 0, i128::from(u16::MAX))?, WordOrder::HighFirst),
            RegisterType::S16 => {
                let r = in_range(raw_f, i128::from(i16::MIN), i128::from(i16::MAX))?;
                (r & 0xFFFF, WordOrder::HighFirst)
            }
            RegisterType::U32(o) => (in_range(raw_f, 0, i128::from(u32::MAX))?, o),
            RegisterType::S32(o) => {
                (in_range(raw_f, i128::from(i32::MIN), i128::from(i32::MAX))? & 0xFFFF_FFFF, o)
            }
            RegisterType::U64(o) => (in_range(raw_f, 0, i128::from(u64::MAX))?, o),
            RegisterType::S64(o) => (in_range(raw_f, i128::from(i64::MIN), i128::from(i64::MAX))?, o),
            RegisterType::F32(o) => {
                let f = raw_f as f32;
                if !f.is_finite() {
                    return Err(EncodeError::Unrepresentable);
                }
                (u64::from(f.to_bits()), o)
            }
            RegisterType::Enum(map) => {
                let code = in_range(value, i128::from(i32::MIN), i128::from(i32::MAX))? as u32 as i32;
                let raw = match (map.by_code(code), map.unmapped) {
                    (Some(e), _) => e.raw,
                    (None, Unmapped::Raw) => u16::try_from(code).map_err(|_| EncodeError::Unrepresentable)?,
                    (None, Unmapped::Invalid) => return Err(EncodeError::Unrepresentable),
                };
                (u64::from(raw), WordOrder::HighFirst)
            }
            RegisterType::Text { .. }
            | RegisterType::HexText { .. }
            | RegisterType::DecimalText(_)
            | RegisterType::Bit(_)
            | RegisterType::Field { .. }
            | RegisterType::EnumField { .. }
            | RegisterType::VictronVersion => return Err(EncodeError::Unsupported),
        };
        split(raw, order, out);
        Ok(n)
    }

    /// Encodes a complete write request (function, address, words).
    pub fn encode_write(&self, value: f64) -> Result<WriteRequest, EncodeError> {
        let WritePolicy::Writable { function, .. } = self.write else {
            return Err(EncodeError::ReadOnly);
        };
        if function == WriteFunction::Single && self.word_count() != 1 {
            return Err(EncodeError::SingleWriteTooWide);
        }
        let mut buf = [0u16; 4];
        let n = self.encode(value, &mut buf)?;
        let mut words = Vec::new();
        for w in buf.iter().take(n) {
            words.push(*w).map_err(|_| EncodeError::Unrepresentable)?;
        }
        Ok(WriteRequest { function, address: self.address, words })
    }
}

/// Bits `lsb .. lsb + width` of `word` (masked so any definition is total).
fn field(word: u16, lsb: u8, width: u8) -> u16 {
    let shifted = u32::from(word) >> (lsb & 15);
    let mask = if width >= 16 { 0xFFFF } else { (1u32 << width) - 1 };
    (shifted & mask) as u16
}

/// An enum map applied to a raw value.
fn map_enum(map: &EnumMap, raw: u16) -> Value {
    let code = match (map.by_raw(raw), map.unmapped) {
        (Some(e), _) => e.code,
        (None, Unmapped::Raw) => i32::from(raw),
        (None, Unmapped::Invalid) => return Value::Invalid,
    };
    match map.publish {
        EnumPublish::Double => Value::Float(f64::from(code)),
        EnumPublish::Int => Value::Int(i64::from(code)),
    }
}

/// `v%x.%02x` plus `-beta-%02x` unless build is 0xFF, from
/// `major << 16 | minor << 8 | build` (upstream `VEReg_ver.__str__`).
fn write_victron_version<W: Write>(n: i64, out: &mut W) -> fmt::Result {
    let [_, _, _, _, _, major, minor, build] = n.to_be_bytes();
    write!(out, "v{major:x}.{minor:02x}")?;
    if build != 0xFF {
        write!(out, "-beta-{build:02x}")?;
    }
    Ok(())
}

/// Combines up to four words into one integer in logical order.
fn combine(words: &[u16], order: WordOrder) -> u64 {
    let fold = |acc: u64, w: &u16| (acc << 16) | u64::from(*w);
    match order {
        WordOrder::HighFirst => words.iter().fold(0, fold),
        WordOrder::LowFirst => words.iter().rev().fold(0, fold),
    }
}

/// Splits an integer into `out.len()` words in the given order.
fn split(raw: u64, order: WordOrder, out: &mut [u16]) {
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let shift_words = match order {
            WordOrder::HighFirst => n - 1 - i,
            WordOrder::LowFirst => i,
        };
        *slot = (raw.checked_shr(16 * shift_words as u32).unwrap_or(0) & 0xFFFF) as u16;
    }
}

/// Rounds half away from zero and checks `min..=max`; the result as u64 bits
/// of the (possibly negative) integer.
fn in_range(x: f64, min: i128, max: i128) -> Result<u64, EncodeError> {
    let r = round_half_away(x).ok_or(EncodeError::Unrepresentable)?;
    if r < min || r > max {
        return Err(EncodeError::Unrepresentable);
    }
    Ok(r as u64)
}

/// `f64::round` is not in `core`; this one only has to be exact for values a
/// register can hold (|x| < 2^64).
fn round_half_away(x: f64) -> Option<i128> {
    if !x.is_finite() || x.abs() > 1.9e19 {
        return None;
    }
    let t = x as i128; // truncates toward zero; in range by the check above
    let frac = x - t as f64;
    Some(if frac >= 0.5 {
        t + 1
    } else if frac <= -0.5 {
        t - 1
    } else {
        t
    })
}

/// Text decoding: characters in register order, cut at the first NUL,
/// trailing spaces trimmed, invalid UTF-8 invalid.
fn decode_text(words: &[u16], order: ByteOrder) -> Value {
    let mut bytes = [0u8; TEXT_CAPACITY];
    let mut len = 0;
    for w in words {
        let [hi, lo] = w.to_be_bytes();
        let pair = match order {
            ByteOrder::HighFirst => [hi, lo],
            ByteOrder::LowFirst => [lo, hi],
        };
        for b in pair {
            let Some(slot) = bytes.get_mut(len) else {
                return Value::Invalid;
            };
            *slot = b;
            len += 1;
        }
    }
    let raw = &bytes[..len];
    let raw = match raw.iter().position(|b| *b == 0) {
        Some(nul) => &raw[..nul],
        None => raw,
    };
    let Ok(s) = core::str::from_utf8(raw) else {
        return Value::Invalid;
    };
    match ShortText::try_from(s.trim_end_matches(' ')) {
        Ok(t) => Value::Text(t),
        Err(_) => Value::Invalid,
    }
}

/// Renders a float the way [`Value`] does, for callers that hold a bare number
/// (e.g. a converted power limit) and a register's format.
pub fn write_number<W: Write>(value: f64, format: &TextFormat, out: &mut W) -> fmt::Result {
    write_float(value, format.decimals, out)?;
    if !format.unit.is_empty() {
        out.write_char(' ')?;
        out.write_str(format.unit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: WordOrder = WordOrder::HighFirst;
    const L: WordOrder = WordOrder::LowFirst;

    fn def(kind: RegisterType) -> RegisterDef {
        RegisterDef::new("t", RegisterBank::Holding, 0, kind)
    }

    #[test]
    fn test_integer_types_both_word_orders() {
        assert_eq!(def(RegisterType::U16).decode(&[0xFFFF]), Value::Float(65535.0));
        assert_eq!(def(RegisterType::S16).decode(&[0xFFFF]), Value::Float(-1.0));
        assert_eq!(def(RegisterType::U32(H)).decode(&[0x0001, 0x0002]), Value::Float(65538.0));
        assert_eq!(def(RegisterType::U32(L)).decode(&[0x0002, 0x0001]), Value::Float(65538.0));
        assert_eq!(def(RegisterType::S32(H)).decode(&[0xFFFF, 0xFFFE]), Value::Float(-2.0));
        assert_eq!(def(RegisterType::S32(L)).decode(&[0xFFFE, 0xFFFF]), Value::Float(-2.0));
        assert_eq!(def(RegisterType::U64(H)).decode(&[0, 0, 1, 0]), Value::Float(65536.0));
        assert_eq!(def(RegisterType::U64(L)).decode(&[0, 1, 0, 0]), Value::Float(65536.0));
        assert_eq!(def(RegisterType::S64(H)).decode(&[0xFFFF; 4]), Value::Float(-1.0));
        assert_eq!(def(RegisterType::S64(L)).decode(&[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]), Value::Float(-2.0));
    }

    #[test]
    fn test_f32_both_word_orders() {
        // 230.1 rounds to 0x4366199A as f32 (mantissa 0x66199A: 0x...9999.9 rounds
        // up); 0x43661999 is one ulp lower, 230.09999 V. Both render as 230.1 V.
        assert_eq!(230.1f32.to_bits(), 0x4366_199A);
        let hf = def(RegisterType::F32(H)).decode(&[0x4366, 0x199A]);
        let lf = def(RegisterType::F32(L)).decode(&[0x199A, 0x4366]);
        assert_eq!(hf, lf);
        assert_eq!(hf, Value::Float(f64::from(230.1f32)));
        let below = def(RegisterType::F32(H)).decode(&[0x4366, 0x1999]).as_f64().unwrap();
        assert!((below - 230.1).abs() < 2e-5 && below < 230.1);
        // NaN and infinities are invalid whatever the sentinels say.
        assert_eq!(def(RegisterType::F32(H)).decode(&[0x7FC0, 0]), Value::Invalid);
        assert_eq!(def(RegisterType::F32(H)).decode(&[0x7F80, 0]), Value::Invalid);
    }

    #[test]
    fn test_scale_offset_and_sentinels() {
        let d = def(RegisterType::U16).scale(10.0).offset(-40.0).invalid_raw(&[0xFFFF]);
        assert_eq!(d.decode(&[650]), Value::Float(25.0));
        assert_eq!(d.decode(&[0xFFFF]), Value::Invalid);
        let s = def(RegisterType::S16).scale(100.0).invalid_raw(&[0x8000]);
        assert_eq!(s.decode(&[0x8000]), Value::Invalid);
        assert_eq!(s.decode(&[0xFF9C]), Value::Float(-1.0));
        let u = def(RegisterType::U32(H)).scale(100.0).invalid_raw(&[0xFFFF_FFFF]);
        assert_eq!(u.decode(&[0xFFFF, 0xFFFF]), Value::Invalid);
        // A zero scale never divides into a published infinity.
        assert_eq!(def(RegisterType::U16).scale(0.0).decode(&[1]), Value::Invalid);
        // Too few words: invalid, not a panic.
        assert_eq!(def(RegisterType::U32(H)).decode(&[1]), Value::Invalid);
    }

    #[test]
    fn test_text_trimming_byte_orders_and_bad_utf8() {
        let t = |words: &[u16], bytes| {
            let n = words.len() as u8;
            def(RegisterType::Text { words: n, bytes }).decode(words)
        };
        // "AB12  " padded with spaces then NUL.
        let v = t(&[0x4142, 0x3132, 0x2020, 0x0000], ByteOrder::HighFirst);
        assert_eq!(v.as_str(), Some("AB12"));
        let v = t(&[0x4241, 0x3231, 0x0020], ByteOrder::LowFirst);
        assert_eq!(v.as_str(), Some("AB12"));
        assert_eq!(t(&[0xFF41], ByteOrder::HighFirst), Value::Invalid);
        assert_eq!(t(&[0, 0], ByteOrder::HighFirst).as_str(), Some(""));
    }

    #[test]
    fn test_enum_bit_field_hex_decimal() {
        const MAP: EnumMap = EnumMap {
            entries: &[
                EnumEntry { raw: 0, code: 8, text: "Standby" },
                EnumEntry { raw: 1, code: 7, text: "" },
            ],
            unmapped: Unmapped::Invalid,
            publish: EnumPublish::Double,
        };
        let e = def(RegisterType::Enum(MAP));
        assert_eq!(e.decode(&[0]), Value::Float(8.0));
        assert_eq!(e.decode(&[2]), Value::Invalid);
        let mut s = heapless::String::<16>::new();
        e.write_text(&Value::Float(8.0), &mut s).unwrap();
        assert_eq!(s, "Standby");
        let raw =
            def(RegisterType::Enum(EnumMap { unmapped: Unmapped::Raw, publish: EnumPublish::Int, ..MAP }));
        assert_eq!(raw.decode(&[42]), Value::Int(42));
        assert_eq!(def(RegisterType::Bit(15)).decode(&[0x8000]), Value::Int(1));
        assert_eq!(def(RegisterType::Field { lsb: 8, width: 8 }).decode(&[0x0201]), Value::Int(2));
        assert_eq!(def(RegisterType::Field { lsb: 0, width: 16 }).decode(&[0xFFFF]), Value::Int(65535));
        assert_eq!(def(RegisterType::HexText { words: 1 }).decode(&[0x0020]).as_str(), Some("0020"));
        assert_eq!(def(RegisterType::DecimalText(H)).decode(&[0x0001, 0xE240]).as_str(), Some("123456"));
    }

    #[test]
    fn test_enum_field_and_victron_version() {
        const ROTATION: EnumMap = EnumMap {
            entries: &[
                EnumEntry { raw: 1, code: 0, text: "Ok" },
                EnumEntry { raw: 2, code: 1, text: "Warning" },
                EnumEntry { raw: 3, code: 2, text: "Alarm" },
            ],
            unmapped: Unmapped::Invalid,
            publish: EnumPublish::Int,
        };
        let f = def(RegisterType::EnumField { lsb: 0, width: 2, map: ROTATION });
        assert_eq!(f.decode(&[0xFFF0]), Value::Invalid);
        assert_eq!(f.decode(&[0xFFF2]), Value::Int(1));
        assert_eq!(f.decode(&[0x0003]), Value::Int(2));
        let mut s = heapless::String::<16>::new();
        f.write_text(&Value::Int(2), &mut s).unwrap();
        assert_eq!(s, "Alarm");
        assert_eq!(f.dbus_type(), DbusType::Int32);
        assert!(f.check().is_ok());
        assert!(def(RegisterType::EnumField { lsb: 15, width: 2, map: ROTATION }).check().is_err());

        let v = def(RegisterType::VictronVersion);
        let text = |value: &Value| {
            let mut s = heapless::String::<32>::new();
            v.write_text(value, &mut s).unwrap();
            s
        };
        let release = v.decode(&[0x0001, 0x09FF]);
        assert_eq!(release, Value::Int(0x0109FF));
        assert_eq!(text(&release), "v1.09");
        let beta = v.decode(&[0xAB01, 0x1007]);
        assert_eq!(beta, Value::Int(0x011007));
        assert_eq!(text(&beta), "v1.10-beta-07");
        assert_eq!(text(&v.decode(&[0x00FF, 0xFF00])), "vff.ff-beta-00");
        assert_eq!(text(&Value::Invalid), "---");
        assert_eq!(v.dbus_type(), DbusType::Int32);
        assert_eq!(v.decode(&[1]), Value::Invalid);
        assert_eq!(v.encode_write(1.0), Err(EncodeError::ReadOnly));
    }

    #[test]
    fn test_encode_checks_policy_and_range_first() {
        let rate = RegisterDef::new("rate", RegisterBank::Holding, 3, RegisterType::U16)
            .writable(Allowed::Range { min: 0.0, max: 100.0 }, WriteFunction::Single);
        let req = rate.encode_write(100.0).unwrap();
        assert_eq!((req.function.code(), req.address, req.words.as_slice()), (0x06, 3, &[100u16][..]));
        assert_eq!(rate.encode_write(101.0), Err(EncodeError::NotAllowed));
        assert_eq!(rate.encode_write(f64::NAN), Err(EncodeError::NotFinite));
        let ro = RegisterDef::new("ro", RegisterBank::Holding, 3, RegisterType::U16);
        assert_eq!(ro.encode_write(1.0), Err(EncodeError::ReadOnly));
        let signed = RegisterDef::new("s", RegisterBank::Holding, 123, RegisterType::S16)
            .scale(10.0)
            .writable(Allowed::Range { min: -100.0, max: 100.0 }, WriteFunction::Single);
        assert_eq!(signed.encode_write(-87.6).unwrap().words.as_slice(), &[(-876i16) as u16]);
        let float = RegisterDef::new("f", RegisterBank::Holding, 0x14, RegisterType::F32(H))
            .writable(Allowed::Set(&[1.0, 2.0]), WriteFunction::Multiple);
        let req = float.encode_write(2.0).unwrap();
        assert_eq!((req.function.code(), req.words.as_slice()), (0x10, &[0x4000u16, 0][..]));
        assert_eq!(float.encode_write(3.0), Err(EncodeError::NotAllowed));
        let wide = RegisterDef::new("w", RegisterBank::Holding, 0, RegisterType::U32(L))
            .writable(Allowed::Range { min: 0.0, max: 1e12 }, WriteFunction::Multiple);
        assert_eq!(wide.encode_write(65538.0).unwrap().words.as_slice(), &[2, 1]);
        assert_eq!(wide.encode_write(1e11), Err(EncodeError::Unrepresentable));
        let mut small = [0u16; 1];
        assert_eq!(wide.encode(1.0, &mut small), Err(EncodeError::Unrepresentable));
    }

    #[test]
    fn test_round_half_away() {
        assert_eq!(round_half_away(2.5), Some(3));
        assert_eq!(round_half_away(-2.5), Some(-3));
        assert_eq!(round_half_away(2.49), Some(2));
        assert_eq!(round_half_away(f64::INFINITY), None);
    }
}
