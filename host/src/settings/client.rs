//! Client of `com.victronenergy.settings` (localsettings, or the built-in stand-in).
//!
//! The daemon waits for the service (name present = ready), creates its settings with one
//! `AddSettings` call (integer defaults always as Int32, never booleans: a `b` default is
//! rejected with -3), reads and writes single settings, and subscribes to `PropertiesChanged`
//! so GUI edits arrive as `(path, value)` pairs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

use super::SETTINGS_SERVICE;
use crate::dbus::{Error, ItemValue, Spawner, BUSITEM};

/// One setting to create: `{path, default, min, max}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingSpec {
    /// Absolute path under `/Settings/`.
    pub path: String,
    /// Default; its type selects the setting type (`Int` → i, `Double` → f, `Text` → s).
    pub default: ItemValue,
    /// Lower bound (numeric settings only).
    pub min: Option<ItemValue>,
    /// Upper bound (numeric settings only).
    pub max: Option<ItemValue>,
}

impl SettingSpec {
    /// An integer setting within `min..=max`.
    pub fn int(path: impl Into<String>, default: i32, min: i32, max: i32) -> SettingSpec {
        SettingSpec {
            path: path.into(),
            default: ItemValue::Int(default),
            min: Some(ItemValue::Int(min)),
            max: Some(ItemValue::Int(max)),
        }
    }

    /// A float setting within `min..=max`.
    pub fn float(path: impl Into<String>, default: f64, min: f64, max: f64) -> SettingSpec {
        SettingSpec {
            path: path.into(),
            default: ItemValue::Double(default),
            min: Some(ItemValue::Double(min)),
            max: Some(ItemValue::Double(max)),
        }
    }

    /// A string setting.
    pub fn text(path: impl Into<String>, default: impl Into<String>) -> SettingSpec {
        SettingSpec { path: path.into(), default: ItemValue::Text(default.into()), min: None, max: None }
    }

    fn to_entry(&self) -> BTreeMap<&'static str, Value<'static>> {
        let mut e = BTreeMap::new();
        e.insert("path", Value::from(self.path.clone()));
        // A bool default would go out as `b` and be refused (-3); send it as Int32.
        let wire = |v: &ItemValue| match v {
            ItemValue::Bool(b) => Value::I32(i32::from(*b)),
            other => other.to_dbus(),
        };
        e.insert("default", wire(&self.default));
        if let Some(min) = &self.min {
            e.insert("min", wire(min));
        }
        if let Some(max) = &self.max {
            e.insert("max", wire(max));
        }
        e
    }
}

/// The per-device settings upstream creates under `/Settings/Devices/<ident>/`:
/// `ClassAndVrmInstance` (e.g. `grid:40`), `Enabled` (0..1), `CustomName`, `Position` (0..2).
pub fn device_settings(ident: &str, class_and_instance: &str, enabled_default: i32) -> Vec<SettingSpec> {
    let base = format!("/Settings/Devices/{ident}");
    vec![
        SettingSpec::text(format!("{base}/ClassAndVrmInstance"), class_and_instance),
        SettingSpec::int(format!("{base}/Enabled"), enabled_default, 0, 1),
        SettingSpec::text(format!("{base}/CustomName"), ""),
        SettingSpec::int(format!("{base}/Position"), 0, 0, 2),
    ]
}

/// The client-level settings under `/Settings/ModbusClient/<name>/`: `Devices` (spec list) and
/// `AutoScan` (0..1; upstream default 1 for serial clients, 0 for `tcp`).
pub fn client_settings(name: &str, autoscan_default: i32) -> Vec<SettingSpec> {
    let base = format!("/Settings/ModbusClient/{name}");
    vec![
        SettingSpec::text(format!("{base}/Devices"), ""),
        SettingSpec::int(format!("{base}/AutoScan"), autoscan_default, 0, 1),
    ]
}

/// One AddSettings result entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    /// The path as given.
    pub path: String,
    /// localsettings error code (0 = ok).
    pub error: i32,
    /// Current value (only when `error == 0`).
    pub value: Option<ItemValue>,
}

/// Talks to the settings service over a connection of the caller (the process-level one).
#[derive(Clone)]
pub struct SettingsClient {
    conn: Connection,
    spawner: Spawner,
}

impl SettingsClient {
    /// Uses `conn` (not a device service's connection: those carry the device's `/`).
    pub fn new(conn: Connection, spawner: Spawner) -> SettingsClient {
        SettingsClient { conn, spawner }
    }

    /// Returns once `com.victronenergy.settings` has an owner; logs once and retries every
    /// second (like velib's `SettingsDevice`), never spinning.
    pub async fn wait_for_service(&self) -> Result<(), Error> {
        let mut logged = false;
        loop {
            let reply = self
                .conn
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "NameHasOwner",
                    &(SETTINGS_SERVICE,),
                )
                .await?;
            if reply.body().deserialize::<bool>()? {
                if logged {
                    log::info!("{SETTINGS_SERVICE} is there");
                }
                return Ok(());
            }
            if !logged {
                log::info!("waiting for {SETTINGS_SERVICE}");
                logged = true;
            }
            async_io::Timer::after(Duration::from_secs(1)).await;
        }
    }

    /// `AddSettings` on `/`; returns one result per spec, in order.
    pub async fn add_settings(&self, specs: &[SettingSpec]) -> Result<Vec<AddResult>, Error> {
        let entries: Vec<_> = specs.iter().map(SettingSpec::to_entry).collect();
        let reply = self.call_root("AddSettings", &(entries,)).await?;
        let results: Vec<HashMap<String, OwnedValue>> = reply.body().deserialize()?;
        Ok(results
            .into_iter()
            .map(|r| AddResult {
                path: r.get("path").and_then(|v| <&str>::try_from(&**v).ok()).unwrap_or_default().to_owned(),
                error: r.get("error").and_then(|v| i32::try_from(&**v).ok()).unwrap_or(-1),
                value: r.get("value").and_then(|v| ItemValue::from_dbus(v)),
            })
            .collect())
    }

    /// `RemoveSettings` on `/`: one code per path (0 removed, -1 not a setting).
    pub async fn remove_settings(&self, paths: &[String]) -> Result<Vec<i32>, Error> {
        let reply = self.call_root("RemoveSettings", &(paths,)).await?;
        Ok(reply.body().deserialize::<Vec<i32>>()?)
    }

    /// A `com.victronenergy.Settings` method on `/`.
    async fn call_root<B>(&self, method: &str, body: &B) -> Result<zbus::Message, Error>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let reply = self
            .conn
            .call_method(Some(SETTINGS_SERVICE), "/", Some(super::SETTINGS_INTERFACE), method, body)
            .await?;
        Ok(reply)
    }

    /// Reads one setting.
    pub async fn get_value(&self, path: &str) -> Result<ItemValue, Error> {
        let reply =
            self.conn.call_method(Some(SETTINGS_SERVICE), path, Some(BUSITEM), "GetValue", &()).await?;
        let value: OwnedValue = reply.body().deserialize()?;
        ItemValue::from_dbus(&value)
            .ok_or_else(|| Error::Bus(zbus::Error::Failure(format!("unexpected value type at {path}"))))
    }

    /// Writes one setting; returns localsettings' code (0 ok, -1 refused).
    pub async fn set_value(&self, path: &str, value: &ItemValue) -> Result<i32, Error> {
        let reply = self
            .conn
            .call_method(Some(SETTINGS_SERVICE), path, Some(BUSITEM), "SetValue", &value.to_dbus())
            .await?;
        Ok(reply.body().deserialize::<i32>()?)
    }

    /// Delivers `PropertiesChanged` of the given setting paths as `(path, value)`.
    ///
    /// The subscription lives as long as the returned receiver; dropping it stops the task at
    /// the next signal.
    pub async fn subscribe(
        &self,
        paths: Vec<String>,
    ) -> Result<async_channel::Receiver<(String, ItemValue)>, Error> {
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(SETTINGS_SERVICE)?
            .interface(BUSITEM)?
            .member("PropertiesChanged")?
            .build();
        let mut stream = MessageStream::for_match_rule(rule, &self.conn, None).await?;
        let (tx, rx) = async_channel::unbounded();
        let task = async move {
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { continue };
                let header = msg.header();
                let Some(path) = header.path().map(|p| p.as_str().to_owned()) else { continue };
                if !paths.contains(&path) {
                    continue;
                }
                let Ok(props) = msg.body().deserialize::<HashMap<String, OwnedValue>>() else { continue };
                let Some(value) = props.get("Value").and_then(|v| ItemValue::from_dbus(v)) else { continue };
                if tx.send((path, value)).await.is_err() {
                    break;
                }
            }
        };
        self.spawner.spawn(task).detach();
        Ok(rx)
    }
}
