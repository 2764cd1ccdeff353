//! A built-in stand-in for Victron's localsettings (`com.victronenergy.settings`).
//!
//! It implements the part of the localsettings D-Bus API the daemon uses (venus-conventions §3):
//! `AddSettings`, `AddSetting`/`AddSilentSetting`, `RemoveSettings`, and on each setting leaf `GetValue`,
//! `SetValue` (0 / -1, values converted to the setting type, min/max enforced), `GetText`,
//! `GetMin`, `GetMax`, `GetDefault`, `GetAttributes`; `GetItems` and tree `GetValue` come from the
//! shared BusItem dispatcher, which this module extends through a [`CallHook`]. Changes are
//! signalled with `PropertiesChanged` only (localsettings never sends ItemsChanged), and
//! `ClassAndVrmInstance` values get the first free instance of their class (§3.1).
//!
//! Persistence is a readable line format, one setting per line, tab separated:
//!
//! ```text
//! # dbus-modbus-client settings v1
//! /Settings/Devices/cg_1/ClassAndVrmInstance<TAB>s<TAB>grid:40<TAB>grid:40
//! /Settings/Devices/cg_1/Position<TAB>i<TAB>2<TAB>0<TAB>0<TAB>2
//! ```
//!
//! Fields (`<TAB>` = one tab character): path, type (`i`, `f`, `s`), value, default, then optional min and max (empty when
//! unbounded). `\\`, tab and newline in strings are escaped as `\\\\`, `\\t`, `\\n`. Every change
//! is written to `PATH.new`, fsynced and renamed over `PATH`, so a crash leaves either the old or
//! the new file. The file is loaded before the bus name is requested: "name present" = ready.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use zbus::fdo;
use zbus::message::Message;
use zbus::zvariant::{OwnedValue, Value};

use super::{SETTINGS_INTERFACE, SETTINGS_SERVICE};
use crate::dbus::introspect::ObjectKind;
use crate::dbus::service::{error_reply, method_return, signal};
use crate::dbus::{
    BusChoice, CallHook, CallTarget, Error, Item, ItemTree, ItemValue, Service, ServiceBuilder, Spawner,
    BUSITEM,
};

/// The type of a setting, as localsettings stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    /// Integer (`i`).
    Int,
    /// Float (`f`, `d` on D-Bus).
    Float,
    /// String (`s`).
    Text,
}

impl SettingType {
    fn code(self) -> &'static str {
        match self {
            SettingType::Int => "i",
            SettingType::Float => "f",
            SettingType::Text => "s",
        }
    }

    fn from_code(code: &str) -> Option<SettingType> {
        match code {
            "i" => Some(SettingType::Int),
            "f" => Some(SettingType::Float),
            "s" => Some(SettingType::Text),
            _ => None,
        }
    }

    /// The type an AddSettings default selects (`i`/`x` → i, `d` → f, `s` → s).
    fn of_default(value: &Value<'_>) -> Option<SettingType> {
        match value {
            Value::Value(inner) => SettingType::of_default(inner),
            Value::I32(_) | Value::I64(_) => Some(SettingType::Int),
            Value::F64(_) => Some(SettingType::Float),
            Value::Str(_) => Some(SettingType::Text),
            _ => None,
        }
    }

    /// Converts a value to this type (`int(1.7)` = 1); `None` when not convertible.
    fn convert(self, value: &ItemValue) -> Option<ItemValue> {
        match (self, value) {
            (SettingType::Text, ItemValue::Text(s)) => Some(ItemValue::Text(s.clone())),
            (SettingType::Text, _) => None,
            (SettingType::Float, ItemValue::Double(v)) => Some(ItemValue::Double(*v)),
            (SettingType::Float, ItemValue::Int(v)) => Some(ItemValue::Double(f64::from(*v))),
            (SettingType::Float, ItemValue::Int64(v)) => Some(ItemValue::Double(*v as f64)),
            (SettingType::Int, v) => {
                let n = match v {
                    ItemValue::Int(v) => i64::from(*v),
                    ItemValue::Int64(v) => *v,
                    ItemValue::Bool(b) => i64::from(*b),
                    ItemValue::Double(v) if v.is_finite() && v.abs() < 9.2e18 => v.trunc() as i64,
                    _ => return None,
                };
                // GetValue sends Int64 above 0x7FFFFFFF, like localsettings.
                Some(i32::try_from(n).map_or(ItemValue::Int64(n), ItemValue::Int))
            }
            _ => None,
        }
    }
}

fn as_f64(value: &ItemValue) -> Option<f64> {
    match value {
        ItemValue::Int(v) => Some(f64::from(*v)),
        ItemValue::Int64(v) => Some(*v as f64),
        ItemValue::Double(v) => Some(*v),
        _ => None,
    }
}

/// One setting's attributes (its value lives in the item tree).
#[derive(Debug, Clone)]
struct Setting {
    kind: SettingType,
    default: ItemValue,
    /// `None` for both: unbounded (localsettings `min == max == 0`).
    min: Option<ItemValue>,
    max: Option<ItemValue>,
    silent: bool,
}

impl Setting {
    fn in_range(&self, value: &ItemValue) -> bool {
        let Some(v) = as_f64(value) else { return true };
        let below = self.min.as_ref().and_then(as_f64).is_some_and(|min| v < min);
        let above = self.max.as_ref().and_then(as_f64).is_some_and(|max| v > max);
        !(below || above)
    }
}

/// localsettings error codes (AddSetting return / AddSettings `error`).
mod code {
    pub const OK: i32 = 0;
    pub const UNDERSCORE: i32 = -2;
    pub const UNKNOWN_TYPE: i32 = -3;
    pub const PATH_NOT_STRING: i32 = -4;
    pub const TYPE_DIFFERS: i32 = -5;
    pub const NOT_CONVERTIBLE: i32 = -6;
    pub const OUT_OF_RANGE: i32 = -7;
    pub const IS_GROUP: i32 = -8;
    pub const NOT_UNDER_SETTINGS: i32 = -9;
}

/// `/Settings/Devices/<ident>/ClassAndVrmInstance`, exactly at that depth.
fn is_class_and_instance(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.len() == 5 && parts[1] == "Settings" && parts[2] == "Devices" && parts[4] == "ClassAndVrmInstance"
}

/// Splits `grid:40` into class and instance (exactly one `:` and an integer instance).
fn parse_class_and_instance(value: &str) -> Option<(&str, i64)> {
    let (class, instance) = value.split_once(':')?;
    if instance.contains(':') {
        return None;
    }
    Some((class, instance.trim().parse().ok()?))
}

struct StandinState {
    settings: BTreeMap<String, Setting>,
    file: PathBuf,
}

/// The call hook holding the settings attributes; the values live in the service's item tree.
struct SettingsHook {
    state: Mutex<StandinState>,
}

impl SettingsHook {
    fn lock(&self) -> MutexGuard<'_, StandinState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Text of a setting value: Python `str(value)`.
fn text_of(value: &ItemValue) -> String {
    value.default_text()
}

/// First free instance >= the requested one among the other settings of the same class.
fn allocate_instance(tree: &ItemTree, state: &StandinState, path: &str, requested: &str) -> Option<String> {
    let (class, mut instance) = parse_class_and_instance(requested)?;
    let taken: Vec<i64> = state
        .settings
        .keys()
        .filter(|p| p.as_str() != path && is_class_and_instance(p))
        .filter_map(|p| match tree.get(p).map(|item| item.value().clone()) {
            Some(ItemValue::Text(v)) => {
                parse_class_and_instance(&v).filter(|(c, _)| *c == class).map(|(_, i)| i)
            }
            _ => None,
        })
        .collect();
    while taken.contains(&instance) {
        instance += 1;
    }
    Some(format!("{class}:{instance}"))
}

impl SettingsHook {
    /// Adds one setting; returns the error code and the current value.
    fn add_setting(&self, tree: &ItemTree, path: &str, request: AddRequest<'_>) -> (i32, Option<ItemValue>) {
        let AddRequest { default, kind, min, max, silent } = request;
        if path.contains("/_") {
            return (code::UNDERSCORE, None);
        }
        if crate::dbus::check_path(path).is_err() {
            return (code::NOT_CONVERTIBLE, None);
        }
        let Some(kind) = kind else { return (code::UNKNOWN_TYPE, None) };
        let Some(default) = ItemValue::from_dbus(default).and_then(|v| kind.convert(&v)) else {
            return (code::NOT_CONVERTIBLE, None);
        };
        let bound = |v: Option<&Value<'_>>| v.and_then(ItemValue::from_dbus).and_then(|v| kind.convert(&v));
        let (mut min, mut max) = (bound(min), bound(max));
        let zero = |v: &Option<ItemValue>| v.as_ref().and_then(as_f64).is_none_or(|x| x == 0.0);
        if kind == SettingType::Text || (zero(&min) && zero(&max)) {
            (min, max) = (None, None);
        }
        let setting = Setting { kind, default: default.clone(), min, max, silent };
        if !setting.in_range(&default) {
            return (code::OUT_OF_RANGE, None);
        }
        let mut state = self.lock();
        if let Some(existing) = state.settings.get_mut(path) {
            if existing.kind != kind {
                return (code::TYPE_DIFFERS, None);
            }
            // Existing setting: the value is kept, the attributes updated.
            *existing = setting;
            let value = tree.get(path).map(|item| item.value().clone());
            self.persist(tree, &state);
            return (code::OK, value);
        }
        if tree.kind_of(path) == Some(ObjectKind::Node) {
            return (code::IS_GROUP, None);
        }
        let value = if is_class_and_instance(path) {
            let requested = match &default {
                ItemValue::Text(s) => s.clone(),
                _ => return (code::NOT_CONVERTIBLE, None),
            };
            match allocate_instance(tree, &state, path, &requested) {
                Some(v) => ItemValue::Text(v),
                None => return (code::NOT_CONVERTIBLE, None),
            }
        } else {
            default
        };
        let item = Item::new(value.clone()).with_text(text_of(&value));
        if tree.insert(path, item).is_err() {
            return (code::NOT_CONVERTIBLE, None);
        }
        state.settings.insert(path.to_owned(), setting);
        self.persist(tree, &state);
        (code::OK, Some(value))
    }

    /// Leaf SetValue: 0 ok, -1 not convertible or out of range. Returns the code and the
    /// PropertiesChanged payload when the stored value changed.
    fn set_value(&self, tree: &ItemTree, path: &str, raw: &Value<'_>) -> (i32, Option<ItemValue>) {
        let state = self.lock();
        let Some(setting) = state.settings.get(path) else { return (-1, None) };
        let Some(value) = ItemValue::from_dbus(raw).and_then(|v| setting.kind.convert(&v)) else {
            return (-1, None);
        };
        if !setting.in_range(&value) {
            return (-1, None);
        }
        let value = match (&value, is_class_and_instance(path)) {
            (ItemValue::Text(requested), true) => match allocate_instance(tree, &state, path, requested) {
                Some(v) => ItemValue::Text(v),
                None => return (-1, None),
            },
            _ => value,
        };
        match tree.set(path, value.clone(), Some(text_of(&value))) {
            Ok(true) => {
                self.persist(tree, &state);
                (0, Some(value))
            }
            Ok(false) => (0, None),
            Err(_) => (-1, None),
        }
    }

    /// RemoveSettings for one path: 0 removed, -1 not a setting.
    fn remove_setting(&self, tree: &ItemTree, path: &str) -> i32 {
        let mut state = self.lock();
        if state.settings.remove(path).is_none() {
            return -1;
        }
        tree.remove_tree(path);
        self.persist(tree, &state);
        0
    }

    fn persist(&self, tree: &ItemTree, state: &StandinState) {
        if let Err(e) = save(&state.file, tree, &state.settings) {
            log::error!("saving settings to {} failed: {e}", state.file.display());
        }
    }

    /// AddSettings(aa{sv}) on `object` → aa{sv}.
    fn add_settings(
        &self,
        tree: &ItemTree,
        object: &str,
        entries: Vec<BTreeMap<String, OwnedValue>>,
    ) -> Vec<BTreeMap<String, Value<'static>>> {
        entries
            .into_iter()
            .map(|entry| {
                let mut result = BTreeMap::new();
                let path = match entry.get("path").and_then(|v| <&str>::try_from(&**v).ok()) {
                    Some(p) => p.to_owned(),
                    None => {
                        result.insert("error".to_owned(), Value::I32(code::PATH_NOT_STRING));
                        return result;
                    }
                };
                result.insert("path".to_owned(), Value::from(path.clone()));
                let full = join_path(object, &path);
                let (error, value) = if object == "/" && !path.starts_with("/Settings/") {
                    (code::NOT_UNDER_SETTINGS, None)
                } else if let Some(default) = entry.get("default") {
                    let kind = SettingType::of_default(default);
                    let silent = entry.get("silent").and_then(|v| bool::try_from(&**v).ok()).unwrap_or(false);
                    let min = entry.get("min").map(|v| &**v);
                    let max = entry.get("max").map(|v| &**v);
                    self.add_setting(tree, &full, AddRequest { default, kind, min, max, silent })
                } else {
                    (code::NOT_CONVERTIBLE, None)
                };
                result.insert("error".to_owned(), Value::I32(error));
                if let (code::OK, Some(value)) = (error, value) {
                    result.insert("value".to_owned(), value.to_dbus());
                }
                result
            })
            .collect()
    }
}

/// The arguments of one AddSetting / AddSettings entry, as received.
struct AddRequest<'a> {
    default: &'a Value<'a>,
    /// `None`: unknown type (-3).
    kind: Option<SettingType>,
    min: Option<&'a Value<'a>>,
    max: Option<&'a Value<'a>>,
    silent: bool,
}

/// `object` + `/` + relative path (localsettings paths are relative to the called object).
fn join_path(object: &str, relative: &str) -> String {
    let relative = relative.trim_matches('/');
    if object == "/" {
        format!("/{relative}")
    } else {
        format!("{}/{relative}", object.trim_end_matches('/'))
    }
}

const LEAF_EXTRA: &str = r#"  <interface name="com.victronenergy.BusItem">
    <method name="GetMin"><arg direction="out" type="v"/></method>
    <method name="GetMax"><arg direction="out" type="v"/></method>
    <method name="GetDefault"><arg direction="out" type="v"/></method>
  </interface>
  <interface name="com.victronenergy.Settings">
    <method name="GetAttributes"><arg direction="out" type="v"/><arg direction="out" type="v"/><arg direction="out" type="v"/><arg direction="out" type="i"/></method>
    <method name="GetSilent"><arg direction="out" type="b"/></method>
  </interface>
"#;

const GROUP_EXTRA: &str = r#"  <interface name="com.victronenergy.Settings">
    <method name="AddSetting"><arg direction="in" type="s"/><arg direction="in" type="s"/><arg direction="in" type="v"/><arg direction="in" type="s"/><arg direction="in" type="v"/><arg direction="in" type="v"/><arg direction="out" type="i"/></method>
    <method name="AddSilentSetting"><arg direction="in" type="s"/><arg direction="in" type="s"/><arg direction="in" type="v"/><arg direction="in" type="s"/><arg direction="in" type="v"/><arg direction="in" type="v"/><arg direction="out" type="i"/></method>
    <method name="AddSettings"><arg direction="in" type="aa{sv}"/><arg direction="out" type="aa{sv}"/></method>
    <method name="RemoveSettings"><arg direction="in" type="as"/><arg direction="out" type="ai"/></method>
  </interface>
"#;

impl CallHook for SettingsHook {
    fn handle(&self, tree: &ItemTree, call: &Message, target: CallTarget<'_>) -> Option<Vec<Message>> {
        let iface_ok = matches!(target.interface, None | Some(BUSITEM) | Some(SETTINGS_INTERFACE));
        if !iface_ok {
            return None;
        }
        let one = |m: Option<Message>| Some(m.into_iter().collect::<Vec<_>>());
        let path = target.path;
        match target.member {
            "AddSettings" => {
                let entries = match call.body().deserialize::<Vec<BTreeMap<String, OwnedValue>>>() {
                    Ok(entries) => entries,
                    Err(e) => {
                        return one(error_reply(
                            call,
                            fdo::Error::InvalidArgs(format!("AddSettings takes aa{{sv}}: {e}")),
                        ))
                    }
                };
                let result = self.add_settings(tree, path, entries);
                one(method_return(call, &result))
            }
            "AddSetting" | "AddSilentSetting" => {
                type Args<'a> = (String, String, Value<'a>, String, Value<'a>, Value<'a>);
                let body = call.body();
                let Ok((group, name, default, kind, min, max)) = body.deserialize::<Args<'_>>() else {
                    return one(error_reply(
                        call,
                        fdo::Error::InvalidArgs("AddSetting takes (ssvsvv)".into()),
                    ));
                };
                let relative = [group.as_str(), name.as_str()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/");
                let full = join_path(path, &relative);
                let code = if path == "/" && !full.starts_with("/Settings/") {
                    code::NOT_UNDER_SETTINGS
                } else {
                    let silent = target.member == "AddSilentSetting";
                    let kind = SettingType::from_code(&kind);
                    let request =
                        AddRequest { default: &default, kind, min: Some(&min), max: Some(&max), silent };
                    self.add_setting(tree, &full, request).0
                };
                one(method_return(call, &code))
            }
            "RemoveSettings" => {
                let Ok(paths) = call.body().deserialize::<Vec<String>>() else {
                    return one(error_reply(call, fdo::Error::InvalidArgs("RemoveSettings takes as".into())));
                };
                let codes: Vec<i32> =
                    paths.iter().map(|p| self.remove_setting(tree, &join_path(path, p))).collect();
                one(method_return(call, &codes))
            }
            "SetValue" if self.lock().settings.contains_key(path) => {
                let body = call.body();
                let raw = match body.deserialize::<Value<'_>>() {
                    Ok(raw) if body.signature().to_string() == "v" => raw,
                    _ => {
                        return one(error_reply(
                            call,
                            fdo::Error::InvalidArgs("SetValue takes one variant".into()),
                        ))
                    }
                };
                let (code, changed) = self.set_value(tree, path, &raw);
                let mut out: Vec<Message> = method_return(call, &code).into_iter().collect();
                if let Some(value) = changed {
                    let mut props: BTreeMap<&str, Value<'static>> = BTreeMap::new();
                    props.insert("Value", value.to_dbus());
                    props.insert("Text", Value::from(text_of(&value)));
                    out.extend(signal(path, "PropertiesChanged", &(props,)));
                }
                Some(out)
            }
            "GetMin" | "GetMax" | "GetDefault" | "GetAttributes" | "GetSilent" => {
                let setting = self.lock().settings.get(path).cloned()?;
                let bound = |b: &Option<ItemValue>| b.as_ref().map_or(Value::I32(0), ItemValue::to_dbus);
                match target.member {
                    "GetMin" => one(method_return(call, &bound(&setting.min))),
                    "GetMax" => one(method_return(call, &bound(&setting.max))),
                    "GetDefault" => one(method_return(call, &setting.default.to_dbus())),
                    "GetSilent" => one(method_return(call, &setting.silent)),
                    _ => one(method_return(
                        call,
                        &(
                            setting.default.to_dbus(),
                            bound(&setting.min),
                            bound(&setting.max),
                            i32::from(setting.silent),
                        ),
                    )),
                }
            }
            _ => None,
        }
    }

    fn introspect_extra(&self, kind: ObjectKind) -> &'static str {
        match kind {
            ObjectKind::Leaf => LEAF_EXTRA,
            ObjectKind::Node | ObjectKind::Root => GROUP_EXTRA,
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn format_value(value: &ItemValue) -> String {
    match value {
        ItemValue::Text(s) => escape(s),
        ItemValue::Double(v) => format!("{v:?}"),
        other => other.default_text(),
    }
}

fn parse_value(kind: SettingType, field: &str) -> Option<ItemValue> {
    match kind {
        SettingType::Text => Some(ItemValue::Text(unescape(field))),
        SettingType::Int => kind.convert(&ItemValue::Int64(field.parse().ok()?)),
        SettingType::Float => Some(ItemValue::Double(field.parse().ok()?)),
    }
}

/// Writes the settings file atomically (`.new`, fsync, rename).
fn save(file: &Path, tree: &ItemTree, settings: &BTreeMap<String, Setting>) -> std::io::Result<()> {
    let mut text = String::from("# dbus-modbus-client settings v1\n");
    for (path, setting) in settings {
        let value = tree.get(path).map_or(ItemValue::Invalid, |item| item.value().clone());
        let bound = |b: &Option<ItemValue>| b.as_ref().map(format_value).unwrap_or_default();
        text.push_str(&format!(
            "{path}\t{}\t{}\t{}",
            setting.kind.code(),
            format_value(&value),
            format_value(&setting.default)
        ));
        if setting.min.is_some() || setting.max.is_some() || setting.silent {
            text.push_str(&format!("\t{}\t{}", bound(&setting.min), bound(&setting.max)));
        }
        if setting.silent {
            text.push_str("\tsilent");
        }
        text.push('\n');
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; a failure here is not worth failing the write.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Loads the settings file (a missing file is an empty store); malformed lines are skipped.
fn load(file: &Path) -> std::io::Result<Vec<(String, Setting, ItemValue)>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = (|| {
            let kind = SettingType::from_code(fields.get(1)?)?;
            let value = parse_value(kind, fields.get(2)?)?;
            let default = parse_value(kind, fields.get(3)?)?;
            let bound = |i: usize| fields.get(i).filter(|f| !f.is_empty()).and_then(|f| parse_value(kind, f));
            let silent = fields.get(6) == Some(&"silent");
            crate::dbus::check_path(fields[0]).ok()?;
            Some((
                fields[0].to_owned(),
                Setting { kind, default, min: bound(4), max: bound(5), silent },
                value,
            ))
        })();
        match parsed {
            Some(entry) => out.push(entry),
            None => log::warn!("{}:{}: malformed setting line skipped", file.display(), n + 1),
        }
    }
    Ok(out)
}

/// A running stand-in.
pub struct SettingsStandin {
    service: Service,
}

impl SettingsStandin {
    /// Loads `file`, then registers `com.victronenergy.settings` on `bus`.
    pub async fn start(
        file: impl Into<PathBuf>,
        bus: &BusChoice,
        spawner: &Spawner,
    ) -> Result<SettingsStandin, StandinError> {
        let file = file.into();
        let loaded = load(&file).map_err(|e| StandinError::File(file.clone(), e))?;
        let mut builder = ServiceBuilder::new(SETTINGS_SERVICE);
        let mut settings = BTreeMap::new();
        for (path, setting, value) in loaded {
            builder.add(&path, Item::new(value.clone()).with_text(text_of(&value)))?;
            settings.insert(path, setting);
        }
        log::info!("loaded {} settings from {}", settings.len(), file.display());
        builder.hook(Arc::new(SettingsHook { state: Mutex::new(StandinState { settings, file }) }));
        let service = builder.register(bus, spawner).await?;
        Ok(SettingsStandin { service })
    }

    /// The underlying service (for its unique name or tree).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Releases the name and closes the connection.
    pub async fn stop(self) -> Result<(), Error> {
        self.service.unregister().await
    }
}

/// Why the stand-in could not start.
#[derive(Debug)]
pub enum StandinError {
    /// The settings file could not be read.
    File(PathBuf, std::io::Error),
    /// D-Bus registration failed.
    Bus(Error),
}

impl std::fmt::Display for StandinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StandinError::File(path, e) => write!(f, "reading {}: {e}", path.display()),
            StandinError::Bus(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StandinError {}

impl From<Error> for StandinError {
    fn from(e: Error) -> Self {
        StandinError::Bus(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_class_and_instance_parsing() {
        assert!(is_class_and_instance("/Settings/Devices/cg_1/ClassAndVrmInstance"));
        assert!(!is_class_and_instance("/Settings/Devices/x/y/ClassAndVrmInstance"));
        assert_eq!(parse_class_and_instance("grid:40"), Some(("grid", 40)));
        assert_eq!(parse_class_and_instance("grid:4:0"), None);
        assert_eq!(parse_class_and_instance("grid"), None);
    }

    #[test]
    fn test_convert_truncates_like_localsettings() {
        assert_eq!(SettingType::Int.convert(&ItemValue::Double(1.7)), Some(ItemValue::Int(1)));
        assert_eq!(SettingType::Int.convert(&ItemValue::Text("1".into())), None);
        assert_eq!(SettingType::Float.convert(&ItemValue::Int(2)), Some(ItemValue::Double(2.0)));
        assert_eq!(SettingType::Int.convert(&ItemValue::Int64(1 << 33)), Some(ItemValue::Int64(1 << 33)));
    }

    #[test]
    fn test_escape_round_trip() {
        let s = "a\tb\\c\nd";
        assert_eq!(unescape(&escape(s)), s);
    }

    #[test]
    fn test_join_path() {
        assert_eq!(join_path("/", "/Settings/A"), "/Settings/A");
        assert_eq!(join_path("/Settings", "A/B"), "/Settings/A/B");
    }
}
