//! The pure part of a remote `SetValue` on a device service: variant → item value → verdict.
//!
//! Two steps, kept free of I/O so the fuzzer (`fuzz/fuzz_targets/busitem_setvalue.rs`) and unit
//! tests drive exactly what the daemon runs:
//! 1. [`convert`]: what the dispatcher does with the raw variant (vedbus order, venus-conventions
//!    §1.2): not writable → 1, not convertible to the item's declared kind → 1.
//! 2. [`check_write`]: what the device's owner decides before anything leaves the process: a
//!    setting (`/CustomName`, `/Position`) within its limits, or a register write encoded by the
//!    profile (range checked). Everything else answers 2 and nothing reaches the device.

use dmc_core::profile::{Profile, Role};
use dmc_core::register::{EncodeError, WriteRequest};
use zbus::zvariant::Value;

use crate::dbus::item::is_plain_number;
use crate::dbus::{ItemValue, ValueKind};

/// The declared kind of every writable register path: a plain number, published as a float
/// like upstream registers (§1.4).
pub const REGISTER_KIND: ValueKind = ValueKind::Number;
/// The declared kind of `/Position` (published as `i`, a plain number only).
pub const POSITION_KIND: ValueKind = ValueKind::Integer;
/// Longest `/CustomName` accepted, in bytes. localsettings sets no limit, but a name is shown on
/// a small screen and stored in a settings file that is rewritten on every change: a megabyte of
/// text is a client's mistake, not a name.
pub const MAX_CUSTOM_NAME_BYTES: usize = 256;
/// `/Position` values (0 AC input 1, 1 AC output, 2 AC input 2).
pub const POSITIONS: std::ops::RangeInclusive<i32> = 0..=2;

/// Why a `SetValue` was refused; [`Refusal::code`] is the D-Bus answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The item is read-only (answer 1).
    NotWritable,
    /// The variant's type does not convert to the item's kind (answer 1).
    WrongType,
    /// `/CustomName` longer than [`MAX_CUSTOM_NAME_BYTES`] (answer 2).
    NameTooLong(usize),
    /// `/Position` outside [`POSITIONS`] (answer 2).
    BadPosition,
    /// A role the profile does not allow (not in `/AllowedRoles`) (answer 2).
    RoleNotAllowed,
    /// No register behind the path (answer 2).
    NoRegister,
    /// A register write needs a number; the value was invalid or not numeric (answer 2).
    NotANumber,
    /// The profile refused to encode the value (range, read-only, ...) (answer 2).
    Encode(EncodeError),
}

impl Refusal {
    /// The `SetValue` return code (venus-conventions §1.2).
    pub fn code(&self) -> i32 {
        match self {
            Refusal::NotWritable | Refusal::WrongType => 1,
            _ => 2,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotWritable => f.write_str("item is read-only"),
            Refusal::WrongType => f.write_str("value type does not convert to the item's type"),
            Refusal::NameTooLong(n) => write!(f, "name of {n} bytes exceeds {MAX_CUSTOM_NAME_BYTES}"),
            Refusal::BadPosition => f.write_str("position must be 0, 1 or 2"),
            Refusal::RoleNotAllowed => f.write_str("role not in /AllowedRoles"),
            Refusal::NoRegister => f.write_str("no register behind this path"),
            Refusal::NotANumber => f.write_str("a register write needs a number"),
            Refusal::Encode(e) => write!(f, "{e}"),
        }
    }
}

/// What an accepted `SetValue` does.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteAction {
    /// Store `value` as `/Settings/Devices/<ident>/<name>`.
    Setting {
        /// The setting's last path element (`CustomName`, `Position`).
        name: &'static str,
        /// The value to store.
        value: ItemValue,
    },
    /// Publish the device under this role (stored in `ClassAndVrmInstance`, which re-registers it).
    Role(Role),
    /// Send this write to the device (`number` is the engineering value, for the log).
    Register {
        /// The encoded write.
        write: WriteRequest,
        /// The value asked for.
        number: f64,
    },
}

/// Step 1, the dispatcher: unwraps the variant (`unwrap_dbus_value`) and coerces it to `kind`.
pub fn convert(raw: &Value<'_>, writable: bool, kind: ValueKind) -> Result<ItemValue, Refusal> {
    if !writable {
        return Err(Refusal::NotWritable);
    }
    if kind.plain_number_only() && !is_plain_number(raw) {
        return Err(Refusal::WrongType);
    }
    ItemValue::from_dbus(raw).and_then(|v| v.coerce(kind)).ok_or(Refusal::WrongType)
}

/// Step 2, the owner: what a converted value at `path` of a `profile` device turns into.
pub fn check_write(profile: &Profile, path: &str, value: &ItemValue) -> Result<WriteAction, Refusal> {
    match path {
        "/CustomName" => match value {
            ItemValue::Text(s) if s.len() > MAX_CUSTOM_NAME_BYTES => Err(Refusal::NameTooLong(s.len())),
            ItemValue::Text(_) => Ok(WriteAction::Setting { name: "CustomName", value: value.clone() }),
            _ => Err(Refusal::WrongType),
        },
        "/Position" => match value {
            ItemValue::Int(p) if POSITIONS.contains(p) => {
                Ok(WriteAction::Setting { name: "Position", value: value.clone() })
            }
            _ => Err(Refusal::BadPosition),
        },
        "/Role" => match value {
            ItemValue::Text(name) => Role::from_name(name)
                .filter(|r| profile.allows_role(*r))
                .map(WriteAction::Role)
                .ok_or(Refusal::RoleNotAllowed),
            _ => Err(Refusal::WrongType),
        },
        _ => {
            let (_, def) = profile.register_for_path(path).ok_or(Refusal::NoRegister)?;
            let number = match value {
                ItemValue::Double(d) => *d,
                ItemValue::Int(i) => f64::from(*i),
                ItemValue::Int64(i) => *i as f64,
                _ => return Err(Refusal::NotANumber),
            };
            let write = def.encode_write(number).map_err(Refusal::Encode)?;
            Ok(WriteAction::Register { write, number })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmc_core::profile::{growatt_min::GROWATT_MIN, sdm230::SDM230};

    const RATE: &str = "/Growatt/ActivePowerRate";

    fn set(profile: &Profile, path: &str, raw: Value<'_>, kind: ValueKind) -> Result<WriteAction, Refusal> {
        check_write(profile, path, &convert(&raw, true, kind)?)
    }

    #[test]
    fn test_wrong_types_answer_1() {
        let nested = Value::Value(Box::new(Value::F64(50.0)));
        for raw in [
            Value::from("50"),
            Value::from(vec!["a", "b"]),
            Value::from((1i32, 2i32)),
            Value::Bool(true),
            nested,
        ] {
            assert_eq!(set(&GROWATT_MIN, RATE, raw, REGISTER_KIND), Err(Refusal::WrongType));
        }
        assert_eq!(convert(&Value::F64(1.0), false, REGISTER_KIND), Err(Refusal::NotWritable));
        assert_eq!(Refusal::WrongType.code(), 1);
    }

    #[test]
    fn test_register_range_and_encoding() {
        let Ok(WriteAction::Register { write, .. }) =
            set(&GROWATT_MIN, RATE, Value::F64(50.0), REGISTER_KIND)
        else {
            panic!("50 % refused")
        };
        assert_eq!(write.words.as_slice(), &[50]);
        assert!(set(&GROWATT_MIN, RATE, Value::U16(7), REGISTER_KIND).is_ok(), "any integer type");
        assert_eq!(set(&GROWATT_MIN, RATE, Value::U8(7), REGISTER_KIND), Err(Refusal::WrongType), "a byte");
        let refused = set(&GROWATT_MIN, RATE, Value::F64(150.0), REGISTER_KIND);
        assert_eq!(refused, Err(Refusal::Encode(EncodeError::NotAllowed)));
        assert_eq!(refused.unwrap_err().code(), 2);
        let invalid = set(&GROWATT_MIN, RATE, Value::from(Vec::<i32>::new()), REGISTER_KIND);
        assert_eq!(invalid, Err(Refusal::WrongType), "an empty array is invalid, not a number");
        let invalid = check_write(&GROWATT_MIN, RATE, &ItemValue::Invalid);
        assert_eq!(invalid, Err(Refusal::NotANumber), "invalid through a looser kind");
        assert_eq!(set(&SDM230, "/Ac/Power", Value::F64(1.0), REGISTER_KIND).map_err(|e| e.code()), Err(2));
        assert_eq!(set(&SDM230, "/Nope", Value::F64(1.0), REGISTER_KIND), Err(Refusal::NoRegister));
    }

    #[test]
    fn test_settings_limits() {
        let name = "x".repeat(MAX_CUSTOM_NAME_BYTES);
        assert!(set(&SDM230, "/CustomName", Value::from(name.as_str()), ValueKind::Text).is_ok());
        let long = "x".repeat(MAX_CUSTOM_NAME_BYTES + 1);
        let refused = set(&SDM230, "/CustomName", Value::from(long.as_str()), ValueKind::Text);
        assert_eq!(refused, Err(Refusal::NameTooLong(MAX_CUSTOM_NAME_BYTES + 1)));
        assert_eq!(set(&SDM230, "/Position", Value::I32(3), ValueKind::Int), Err(Refusal::BadPosition));
        assert!(set(&SDM230, "/Position", Value::I32(2), ValueKind::Int).is_ok());
        assert_eq!(
            set(&SDM230, "/Role", Value::from("acload"), ValueKind::Text),
            Ok(WriteAction::Role(Role::AcLoad))
        );
        assert_eq!(set(&SDM230, "/Role", Value::from("tank"), ValueKind::Text), Err(Refusal::RoleNotAllowed));
    }
}
