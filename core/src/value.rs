//! Decoded register values, the D-Bus type they travel as, and `GetText` rendering.
//!
//! A [`Value`] is what one register definition decodes to. Its variant alone
//! decides the D-Bus signature (see [`DbusType`]), so the D-Bus layer never has
//! to guess: upstream publishes every scaled numeric register as a double
//! (`d`) even when integral, enum/bit registers as `i`, text as `s`, and an
//! invalid value as an empty `ai` array (venus-conventions 1.4).
//!
//! Text rendering follows upstream's printf formats (`230.1 V`, `-1520 W`,
//! `1234.56 kWh`); an invalid value renders as `---` (venus-conventions 1.5).
//! Everything writes into caller-provided `core::fmt::Write` sinks such as a
//! `heapless::String<N>`; nothing allocates.

use core::fmt::{self, Write};
use heapless::String;

/// Capacity of [`Value::Text`] in bytes: the longest text register of the
/// supported devices is the Victron meter's custom name (32 registers of
/// UTF-8, 64 bytes); 32 registers is the limit a text register may have.
pub const TEXT_CAPACITY: usize = 64;

/// A short text value (serial numbers, firmware strings).
pub type ShortText = String<TEXT_CAPACITY>;

/// One decoded register value.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Value {
    /// No valid value: unread, a sentinel raw value, NaN, bad text.
    Invalid,
    /// An integer published as `i` (or `x` when it does not fit 32 bits):
    /// enum codes and bits, like upstream's `Reg_e16` / `Reg_bit`.
    Int(i64),
    /// A number published as `d`: every scaled numeric register.
    Float(f64),
    /// Text published as `s`.
    Text(ShortText),
}

/// The D-Bus type a value is sent as inside the `v` variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DbusType {
    /// `d`, IEEE double.
    Double,
    /// `i`, 32-bit signed integer.
    Int32,
    /// `x`, 64-bit signed integer (integers that do not fit `i`).
    Int64,
    /// `s`, string.
    Text,
    /// `ai` empty array: how Venus spells "invalid".
    InvalidArray,
}

impl DbusType {
    /// The D-Bus signature string.
    pub const fn signature(self) -> &'static str {
        match self {
            DbusType::Double => "d",
            DbusType::Int32 => "i",
            DbusType::Int64 => "x",
            DbusType::Text => "s",
            DbusType::InvalidArray => "ai",
        }
    }
}

/// How a value is shown by `GetText`: unit suffix and number of decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TextFormat {
    /// Unit appended after a space (`V`, `kWh`); empty for none.
    pub unit: &'static str,
    /// Digits after the decimal point for floats (capped at [`MAX_DECIMALS`]).
    pub decimals: u8,
}

/// Most decimals a [`TextFormat`] renders; more carry no information for
/// any Modbus register and would only overflow small text buffers.
pub const MAX_DECIMALS: u8 = 9;

/// Above this magnitude floats are rendered in exponent form so that the text
/// stays short whatever the raw words were.
const PLAIN_FLOAT_LIMIT: f64 = 1e15;

impl TextFormat {
    /// No unit, no decimals.
    pub const PLAIN: TextFormat = TextFormat { unit: "", decimals: 0 };

    /// A unit with `decimals` digits after the point.
    pub const fn new(unit: &'static str, decimals: u8) -> Self {
        TextFormat { unit, decimals }
    }
}

impl Value {
    /// True unless [`Value::Invalid`].
    pub const fn is_valid(&self) -> bool {
        !matches!(self, Value::Invalid)
    }

    /// The D-Bus type this value is sent as.
    pub fn dbus_type(&self) -> DbusType {
        match self {
            Value::Invalid => DbusType::InvalidArray,
            Value::Int(i) if i32::try_from(*i).is_ok() => DbusType::Int32,
            Value::Int(_) => DbusType::Int64,
            Value::Float(_) => DbusType::Double,
            Value::Text(_) => DbusType::Text,
        }
    }

    /// The value as a number, for control code (`None` for invalid and text).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Invalid | Value::Text(_) => None,
        }
    }

    /// The text, if this is a text value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// Writes the `GetText` rendering: `---` when invalid, otherwise the value
    /// with `format.decimals` decimals (floats only) and ` unit` if the unit is
    /// not empty. Negative zero after rounding is shown as zero.
    pub fn write_text<W: Write>(&self, format: &TextFormat, out: &mut W) -> fmt::Result {
        match self {
            Value::Invalid => return out.write_str("---"),
            Value::Float(f) if !f.is_finite() => return out.write_str("---"),
            Value::Int(i) => write!(out, "{i}")?,
            Value::Float(f) => write_float(*f, format.decimals, out)?,
            Value::Text(t) => out.write_str(t)?,
        }
        if !format.unit.is_empty() {
            out.write_char(' ')?;
            out.write_str(format.unit)?;
        }
        Ok(())
    }

    /// The `GetText` rendering in a fixed-capacity string; an error when it
    /// does not fit `N` bytes.
    pub fn text<const N: usize>(&self, format: &TextFormat) -> Result<String<N>, fmt::Error> {
        let mut s = String::new();
        self.write_text(format, &mut s)?;
        Ok(s)
    }
}

/// 10^n for the decimals we render.
const POW10: [f64; MAX_DECIMALS as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Formats a float with fixed decimals, never printing `-0.0`, and switching
/// to exponent form for huge magnitudes (a corrupt raw value must still fit
/// a small GetText buffer).
pub(crate) fn write_float<W: Write>(f: f64, decimals: u8, out: &mut W) -> fmt::Result {
    let decimals = decimals.min(MAX_DECIMALS);
    if !f.is_finite() {
        return out.write_str("---");
    }
    if f.abs() >= PLAIN_FLOAT_LIMIT {
        return write!(out, "{f:e}");
    }
    // Anything that rounds to zero at this precision is shown as plain zero.
    let half_step = 0.5 / POW10[usize::from(decimals)];
    let f = if f.abs() < half_step { 0.0 } else { f };
    write!(out, "{:.*}", usize::from(decimals), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value, unit: &'static str, decimals: u8) -> String<32> {
        v.text::<32>(&TextFormat::new(unit, decimals)).unwrap()
    }

    #[test]
    fn test_text_examples_from_issue() {
        assert_eq!(text(Value::Float(230.1), "V", 1), "230.1 V");
        assert_eq!(text(Value::Float(-1520.0), "W", 0), "-1520 W");
        assert_eq!(text(Value::Float(1234.56), "kWh", 2), "1234.56 kWh");
        assert_eq!(text(Value::Float(49.98), "Hz", 2), "49.98 Hz");
        assert_eq!(text(Value::Invalid, "V", 1), "---");
        assert_eq!(text(Value::Int(7), "", 0), "7");
        assert_eq!(text(Value::Text(ShortText::try_from("ABC123").unwrap()), "", 0), "ABC123");
    }

    #[test]
    fn test_negative_zero_and_rounding() {
        assert_eq!(text(Value::Float(-0.04), "W", 1), "0.0 W");
        assert_eq!(text(Value::Float(-0.0), "W", 0), "0 W");
        assert_eq!(text(Value::Float(-0.06), "W", 1), "-0.1 W");
        assert_eq!(text(Value::Float(244.52), "V", 1), "244.5 V");
    }

    #[test]
    fn test_huge_and_non_finite_floats_stay_short() {
        let t = text(Value::Float(3.4e38), "W", 9);
        assert!(t.len() < 20, "{t}");
        assert_eq!(text(Value::Float(f64::NAN), "W", 1), "---");
        // A buffer too small is an error, not a panic.
        assert!(Value::Float(1234.5).text::<3>(&TextFormat::new("kWh", 1)).is_err());
    }

    #[test]
    fn test_dbus_types() {
        assert_eq!(Value::Invalid.dbus_type().signature(), "ai");
        assert_eq!(Value::Float(1.0).dbus_type(), DbusType::Double);
        assert_eq!(Value::Int(1).dbus_type(), DbusType::Int32);
        assert_eq!(Value::Int(1 << 40).dbus_type(), DbusType::Int64);
        assert_eq!(Value::Text(ShortText::new()).dbus_type(), DbusType::Text);
    }
}
