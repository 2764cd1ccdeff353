//! A remote `SetValue` on a device service: arbitrary bytes decoded as a D-Bus `v` (real
//! zvariant variants, any nesting), sent to every writable and read-only path of every profile
//! through the daemon's own checks (`dbus_modbus_client::setvalue`: the dispatcher's conversion,
//! then the owner's settings limits and the profile's range check and encoding).
//!
//! Input: byte 0 picks the profile, byte 1 the path, the rest is the variant (D-Bus wire
//! format, little-endian, offset 0). Checks:
//! - nothing panics;
//! - a read-only path answers 1 whatever the value;
//! - a register write is accepted only for a plain number (no bool, byte, text, container,
//!   nested variant) that the register's `Allowed` permits, and its words decode back to that
//!   number within one raw step;
//! - `/CustomName` takes only text (at most `MAX_CUSTOM_NAME_BYTES`), `/Position` only 0..=2.
#![no_main]

use dbus_modbus_client::dbus::item::is_plain_number;
use dbus_modbus_client::dbus::ValueKind;
use dbus_modbus_client::setvalue::{
    check_write, convert, Refusal, WriteAction, MAX_CUSTOM_NAME_BYTES, POSITIONS, POSITION_KIND,
    REGISTER_KIND,
};
use dmc_core::profile::{self, Profile};
use dmc_core::register::{Allowed, RegisterDef, RegisterType, WriteFunction, WritePolicy};
use dmc_core::value::Value as RegValue;
use libfuzzer_sys::fuzz_target;
use zvariant::serialized::{Context, Data};
use zvariant::{Value, LE};

/// Every path a device service has that a SetValue may name: (path, writable, kind).
fn paths(profile: &'static Profile) -> Vec<(&'static str, bool, ValueKind)> {
    let mut out = vec![
        ("/CustomName", true, ValueKind::Text),
        ("/Role", true, ValueKind::Text),
        ("/Position", true, POSITION_KIND),
        ("/ProductName", false, ValueKind::Any),
        ("/DeviceInstance", false, ValueKind::Any),
    ];
    for def in profile.registers {
        let writable = matches!(def.write, WritePolicy::Writable { .. });
        let kind = if writable { REGISTER_KIND } else { ValueKind::Any };
        out.extend(def.paths.iter().map(|p| (*p, writable, kind)));
    }
    out
}

/// The register's value as a number after decoding `words` (`None`: not numeric).
fn decoded(def: &RegisterDef, words: &[u16]) -> Option<f64> {
    match def.decode(words) {
        RegValue::Float(f) => Some(f),
        RegValue::Int(i) => Some(i as f64),
        _ => None,
    }
}

fn check_register(def: &RegisterDef, number: f64, words: &[u16], function: WriteFunction) {
    let WritePolicy::Writable { allowed, function: declared } = def.write else {
        panic!("{}: read-only register accepted a write", def.name);
    };
    assert_eq!(function, declared, "{}: write function", def.name);
    assert!(number.is_finite(), "{}: accepted {number}", def.name);
    assert!(allowed.permits(number), "{}: accepted {number} outside {allowed:?}", def.name);
    assert_eq!(words.len(), usize::from(def.word_count()), "{}: word count", def.name);
    let back = decoded(def, words).unwrap_or_else(|| panic!("{}: written words do not decode", def.name));
    // One raw step of the register, plus f32 rounding for float registers.
    let step = if matches!(def.kind, RegisterType::Enum(_)) { 0.0 } else { 1.0 / def.scale.abs() };
    let slack = step + number.abs() * 1e-6 + 1e-9;
    assert!((back - number).abs() <= slack, "{}: wrote {number}, reads back {back}", def.name);
    if let Allowed::Range { min, max } = allowed {
        assert!(back >= min - slack && back <= max + slack, "{}: {back} outside {min}..={max}", def.name);
    }
}

fuzz_target!(|data: &[u8]| {
    let [p, path_pick, wire @ ..] = data else { return };
    let profile: &'static Profile = profile::ALL[usize::from(*p) % profile::ALL.len()];
    let table = paths(profile);
    let (path, writable, kind) = table[usize::from(*path_pick) % table.len()];
    let encoded = Data::new(wire, Context::new_dbus(LE, 0));
    let Ok((raw, _)) = encoded.deserialize::<Value<'_>>() else {
        return;
    };
    let verdict = convert(&raw, writable, kind).and_then(|v| check_write(profile, path, &v));
    if !writable {
        assert_eq!(verdict, Err(Refusal::NotWritable), "{path} is read-only");
        return;
    }
    if let Err(refusal) = &verdict {
        let code = refusal.code();
        assert!(code == 1 || code == 2, "{refusal:?} answers {code}");
    }
    match verdict {
        Ok(WriteAction::Register { write, number }) => {
            assert!(is_plain_number(&raw), "{path}: {raw:?} is not a plain number");
            let (_, def) = profile.register_for_path(path).expect("a register path");
            check_register(def, number, &write.words, write.function);
        }
        Ok(WriteAction::Setting { name: "CustomName", value }) => {
            assert!(matches!(raw, Value::Str(_) | Value::ObjectPath(_)), "CustomName from {raw:?}");
            let dbus_modbus_client::dbus::ItemValue::Text(s) = value else { panic!("CustomName {value:?}") };
            assert!(s.len() <= MAX_CUSTOM_NAME_BYTES);
        }
        Ok(WriteAction::Setting { name: "Position", value }) => {
            assert!(is_plain_number(&raw), "Position from {raw:?}");
            let dbus_modbus_client::dbus::ItemValue::Int(p) = value else { panic!("Position {value:?}") };
            assert!(POSITIONS.contains(&p));
        }
        Ok(WriteAction::Role(role)) => {
            assert_eq!(path, "/Role");
            assert!(profile.allows_role(role), "{role:?} not allowed");
        }
        Ok(other) => panic!("{path}: unexpected action {other:?}"),
        Err(_) => {}
    }
});
