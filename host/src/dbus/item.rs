//! Item values as Victron publishes them on D-Bus, and their conversions.
//!
//! The encoding follows velib `ve_utils.wrap_dbus_value` (venus-conventions §1.4): invalid is an
//! empty `ai`, floats are `d`, 32-bit integers `i` (wider ones `x`), strings `s`, booleans `b`
//! and a list of strings an `av` whose elements are `s`. Decoding is lenient like
//! `unwrap_dbus_value`: *any* empty array means invalid.

use zbus::zvariant::{Array, Signature, Value};

/// One item value. `Invalid` is what a device that does not deliver a value publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemValue {
    /// No value; sent as an empty `ai`, shown as `---`.
    Invalid,
    /// `d`
    Double(f64),
    /// `i`
    Int(i32),
    /// `x` (velib uses it for integers that do not fit 32 bits)
    Int64(i64),
    /// `s`
    Text(String),
    /// `b`
    Bool(bool),
    /// `av` of `s` (upstream `/AllowedRoles`)
    StrList(Vec<String>),
}

/// The declared type of an item: what a remote `SetValue` is coerced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// No declared type: any value is stored as sent (vedbus without `valuetype`).
    Any,
    /// Coerce to `f64` (accepts every numeric D-Bus type).
    Double,
    /// Coerce to `i32` (accepts integers in range and finite doubles, truncated like Python `int()`).
    Int,
    /// Coerce to `i64`.
    Int64,
    /// Only `s` is accepted.
    Text,
    /// `b`, or an integer 0/1.
    Bool,
    /// An array of strings (`as`, or `av` whose elements are all `s`).
    StrList,
    /// Like `Double`, but only a plain number (`n q i u x t d`) is accepted: a boolean, byte,
    /// text, container or nested variant sent to a device register is a client's mistake,
    /// refused with 1 before anything reaches the wire (vedbus would write `True` as 1).
    Number,
    /// Like `Int`, with the plain-number rule of `Number`.
    Integer,
}

impl ValueKind {
    /// True for the kinds that take only a plain number ([`ValueKind::Number`], [`ValueKind::Integer`]).
    pub fn plain_number_only(self) -> bool {
        matches!(self, ValueKind::Number | ValueKind::Integer)
    }
}

/// True when a received value is a bare D-Bus number (no bool, no byte, no wrapper, no container).
pub fn is_plain_number(value: &Value<'_>) -> bool {
    matches!(
        value,
        Value::I16(_)
            | Value::U16(_)
            | Value::I32(_)
            | Value::U32(_)
            | Value::I64(_)
            | Value::U64(_)
            | Value::F64(_)
    )
}

impl ItemValue {
    /// The kind a value of this shape declares when an item is created from it.
    pub fn kind(&self) -> ValueKind {
        match self {
            ItemValue::Invalid => ValueKind::Any,
            ItemValue::Double(_) => ValueKind::Double,
            ItemValue::Int(_) => ValueKind::Int,
            ItemValue::Int64(_) => ValueKind::Int64,
            ItemValue::Text(_) => ValueKind::Text,
            ItemValue::Bool(_) => ValueKind::Bool,
            ItemValue::StrList(_) => ValueKind::StrList,
        }
    }

    /// True for [`ItemValue::Invalid`].
    pub fn is_invalid(&self) -> bool {
        matches!(self, ItemValue::Invalid)
    }

    /// The D-Bus value to put inside the `v` (owned, so it can outlive the store lock).
    pub fn to_dbus(&self) -> Value<'static> {
        match self {
            ItemValue::Invalid => Value::from(Vec::<i32>::new()),
            ItemValue::Double(v) => Value::F64(*v),
            ItemValue::Int(v) => Value::I32(*v),
            ItemValue::Int64(v) => Value::I64(*v),
            ItemValue::Text(s) => Value::from(s.clone()),
            ItemValue::Bool(b) => Value::Bool(*b),
            ItemValue::StrList(list) if list.is_empty() => {
                // velib sends an empty list as an empty `au`; consumers read it as invalid anyway.
                Value::from(Vec::<u32>::new())
            }
            ItemValue::StrList(list) => {
                let mut array = Array::new(&Signature::Variant);
                for s in list {
                    // Elements of an `av` are variants; appending one cannot fail, and should
                    // zvariant ever disagree the element is skipped rather than panicking.
                    let _ = array.append(Value::Value(Box::new(Value::from(s.clone()))));
                }
                Value::Array(array)
            }
        }
    }

    /// Decodes the content of a received `v` without a declared type (`unwrap_dbus_value`).
    /// Returns `None` for types Victron never uses as item values (structs, dicts, ...).
    pub fn from_dbus(value: &Value<'_>) -> Option<ItemValue> {
        Some(match value {
            Value::Value(inner) => return ItemValue::from_dbus(inner),
            Value::U8(v) => ItemValue::Int(i32::from(*v)),
            Value::Bool(b) => ItemValue::Bool(*b),
            Value::I16(v) => ItemValue::Int(i32::from(*v)),
            Value::U16(v) => ItemValue::Int(i32::from(*v)),
            Value::I32(v) => ItemValue::Int(*v),
            Value::U32(v) => match i32::try_from(*v) {
                Ok(v) => ItemValue::Int(v),
                Err(_) => ItemValue::Int64(i64::from(*v)),
            },
            Value::I64(v) => match i32::try_from(*v) {
                Ok(v) => ItemValue::Int(v),
                Err(_) => ItemValue::Int64(*v),
            },
            Value::U64(v) => ItemValue::Int64(i64::try_from(*v).ok()?),
            Value::F64(v) => ItemValue::Double(*v),
            Value::Str(s) => ItemValue::Text(s.as_str().to_owned()),
            Value::ObjectPath(p) => ItemValue::Text(p.as_str().to_owned()),
            Value::Array(array) => {
                if array.is_empty() {
                    return Some(ItemValue::Invalid);
                }
                let mut list = Vec::with_capacity(array.len());
                for element in array.inner() {
                    match ItemValue::from_dbus(element)? {
                        ItemValue::Text(s) => list.push(s),
                        _ => return None,
                    }
                }
                ItemValue::StrList(list)
            }
            _ => return None,
        })
    }

    /// Coerces a received value to `kind` (vedbus `valuetype(value)`); invalid always passes.
    /// `None` means "not convertible" (SetValue answers 1).
    pub fn coerce(self, kind: ValueKind) -> Option<ItemValue> {
        use ItemValue as V;
        let kind = match kind {
            ValueKind::Number => ValueKind::Double,
            ValueKind::Integer => ValueKind::Int,
            other => other,
        };
        match (kind, self) {
            (_, V::Invalid) => Some(V::Invalid),
            (ValueKind::Any, v) => Some(v),
            (ValueKind::Double, V::Double(v)) => Some(V::Double(v)),
            (ValueKind::Double, V::Int(v)) => Some(V::Double(f64::from(v))),
            (ValueKind::Double, V::Int64(v)) => Some(V::Double(v as f64)),
            (ValueKind::Double, V::Bool(b)) => Some(V::Double(f64::from(u8::from(b)))),
            (ValueKind::Int, v) => i32::try_from(integral(&v)?).ok().map(V::Int),
            (ValueKind::Int64, v) => integral(&v).map(V::Int64),
            (ValueKind::Text, V::Text(s)) => Some(V::Text(s)),
            (ValueKind::Bool, V::Bool(b)) => Some(V::Bool(b)),
            (ValueKind::Bool, V::Int(0)) => Some(V::Bool(false)),
            (ValueKind::Bool, V::Int(1)) => Some(V::Bool(true)),
            (ValueKind::StrList, V::StrList(l)) => Some(V::StrList(l)),
            _ => None,
        }
    }

    /// The default display text (vedbus `GetText` without a text callback): `---` for invalid,
    /// otherwise Python's `str(value)`.
    pub fn default_text(&self) -> String {
        match self {
            ItemValue::Invalid => "---".to_owned(),
            ItemValue::Double(v) => python_float(*v),
            ItemValue::Int(v) => v.to_string(),
            ItemValue::Int64(v) => v.to_string(),
            ItemValue::Text(s) => s.clone(),
            ItemValue::Bool(true) => "True".to_owned(),
            ItemValue::Bool(false) => "False".to_owned(),
            ItemValue::StrList(list) => {
                let quoted: Vec<String> = list.iter().map(|s| format!("'{s}'")).collect();
                format!("[{}]", quoted.join(", "))
            }
        }
    }
}

/// The integer inside a numeric value, truncating finite doubles like Python `int()`.
fn integral(value: &ItemValue) -> Option<i64> {
    match value {
        ItemValue::Int(v) => Some(i64::from(*v)),
        ItemValue::Int64(v) => Some(*v),
        ItemValue::Bool(b) => Some(i64::from(*b)),
        ItemValue::Double(v) if v.is_finite() && v.abs() < 9.2e18 => Some(v.trunc() as i64),
        _ => None,
    }
}

/// Formats a float as Python's `str(float)` does for everyday values (`230.0`, `0.5`, `1e+20`
/// aside): integral values keep a trailing `.0`, so texts match upstream.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        "nan".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

impl From<f64> for ItemValue {
    fn from(v: f64) -> Self {
        ItemValue::Double(v)
    }
}
impl From<i32> for ItemValue {
    fn from(v: i32) -> Self {
        ItemValue::Int(v)
    }
}
impl From<i64> for ItemValue {
    fn from(v: i64) -> Self {
        ItemValue::Int64(v)
    }
}
impl From<bool> for ItemValue {
    fn from(v: bool) -> Self {
        ItemValue::Bool(v)
    }
}
impl From<&str> for ItemValue {
    fn from(v: &str) -> Self {
        ItemValue::Text(v.to_owned())
    }
}
impl From<String> for ItemValue {
    fn from(v: String) -> Self {
        ItemValue::Text(v)
    }
}
impl<T: Into<ItemValue>> From<Option<T>> for ItemValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(ItemValue::Invalid, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_round_trip_through_dbus_value() {
        let values = [
            ItemValue::Invalid,
            ItemValue::Double(1.5),
            ItemValue::Int(-3),
            ItemValue::Int64(1 << 40),
            ItemValue::Text("x".into()),
            ItemValue::Bool(true),
            ItemValue::StrList(vec!["grid".into(), "acload".into()]),
        ];
        for v in values {
            assert_eq!(ItemValue::from_dbus(&v.to_dbus()), Some(v.clone()), "{v:?}");
        }
    }

    #[test]
    fn test_signatures() {
        assert_eq!(ItemValue::Invalid.to_dbus().value_signature().to_string(), "ai");
        assert_eq!(ItemValue::StrList(vec!["a".into()]).to_dbus().value_signature().to_string(), "av");
        assert_eq!(ItemValue::Int64(5).to_dbus().value_signature().to_string(), "x");
    }

    #[test]
    fn test_coerce_like_vedbus() {
        assert_eq!(ItemValue::Int(3).coerce(ValueKind::Double), Some(ItemValue::Double(3.0)));
        assert_eq!(ItemValue::Double(1.7).coerce(ValueKind::Int), Some(ItemValue::Int(1)));
        assert_eq!(ItemValue::Int(3).coerce(ValueKind::Text), None);
        assert_eq!(ItemValue::Text("3".into()).coerce(ValueKind::Double), None);
        assert_eq!(ItemValue::Invalid.coerce(ValueKind::Text), Some(ItemValue::Invalid));
        assert_eq!(ItemValue::Int64(1 << 40).coerce(ValueKind::Int), None);
    }

    #[test]
    fn test_default_text() {
        assert_eq!(ItemValue::Double(230.0).default_text(), "230.0");
        assert_eq!(ItemValue::Double(0.25).default_text(), "0.25");
        assert_eq!(ItemValue::Invalid.default_text(), "---");
        assert_eq!(ItemValue::StrList(vec!["a".into(), "b".into()]).default_text(), "['a', 'b']");
    }
}
