//! The settings stand-in and the settings client, on a private dbus-daemon.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Background, PrivateBus};
use dbus_modbus_client::dbus::{connect, BusConnection, ItemValue, BUSITEM};
use dbus_modbus_client::settings::client::{client_settings, device_settings, SettingSpec, SettingsClient};
use dbus_modbus_client::settings::standin::SettingsStandin;
use dbus_modbus_client::settings::SETTINGS_SERVICE;
use zbus::zvariant::OwnedValue;

fn temp_file(test: &str) -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("dmc-settings-{test}-{}-{nanos}.txt", std::process::id()))
}

struct Fixture {
    bus: PrivateBus,
    bg: Background,
    standin: Option<SettingsStandin>,
    client: SettingsClient,
    _client_conn: BusConnection,
    file: PathBuf,
}

fn fixture(test: &str) -> Option<Fixture> {
    let bus = PrivateBus::start()?;
    let bg = Background::start();
    let file = temp_file(test);
    let (choice, spawner, f) = (bus.bus(), bg.spawner.clone(), file.clone());
    let standin =
        bg.block_on(async move { SettingsStandin::start(f, &choice, &spawner).await }).expect("standin");
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let conn = bg.block_on(async move { connect(&choice, &spawner).await }).expect("client");
    let client = SettingsClient::new(conn.conn.clone(), bg.spawner.clone());
    Some(Fixture { bus, bg, standin: Some(standin), client, _client_conn: conn, file })
}

impl Fixture {
    fn run<T: Send + 'static>(&self, fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
        self.bg.block_on(fut)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn add_settings_returns_current_values() {
    let Some(f) = fixture("add") else { return };
    let c = f.client.clone();
    let mut specs = device_settings("cg_1", "grid:40", 1);
    specs.extend(client_settings("ttyUSB0", 1));
    specs.push(SettingSpec::float("/Settings/Test/Float", 1.5, 0.0, 10.0));
    let results = f.run(async move { c.add_settings(&specs).await }).expect("AddSettings");
    let got: Vec<(&str, i32, Option<ItemValue>)> =
        results.iter().map(|r| (r.path.as_str(), r.error, r.value.clone())).collect();
    assert_eq!(
        got,
        [
            ("/Settings/Devices/cg_1/ClassAndVrmInstance", 0, Some(ItemValue::Text("grid:40".into()))),
            ("/Settings/Devices/cg_1/Enabled", 0, Some(ItemValue::Int(1))),
            ("/Settings/Devices/cg_1/CustomName", 0, Some(ItemValue::Text(String::new()))),
            ("/Settings/Devices/cg_1/Position", 0, Some(ItemValue::Int(0))),
            ("/Settings/ModbusClient/ttyUSB0/Devices", 0, Some(ItemValue::Text(String::new()))),
            ("/Settings/ModbusClient/ttyUSB0/AutoScan", 0, Some(ItemValue::Int(1))),
            ("/Settings/Test/Float", 0, Some(ItemValue::Double(1.5))),
        ]
    );
    // An existing setting keeps its value.
    let c = f.client.clone();
    let again = f.run(async move {
        c.set_value("/Settings/Devices/cg_1/Position", &ItemValue::Int(2)).await?;
        c.add_settings(&[SettingSpec::int("/Settings/Devices/cg_1/Position", 0, 0, 2)]).await
    });
    assert_eq!(again.expect("again")[0].value, Some(ItemValue::Int(2)));

    // Error codes: not under /Settings (-9), underscore (-2), type differs (-5), out of range (-7).
    let c = f.client.clone();
    let errors = f
        .run(async move {
            c.add_settings(&[
                SettingSpec::text("/Other/X", ""),
                SettingSpec::text("/Settings/_X", ""),
                SettingSpec::text("/Settings/Devices/cg_1/Position", "0"),
                SettingSpec::int("/Settings/Test/Range", 5, 0, 2),
            ])
            .await
        })
        .expect("AddSettings");
    assert_eq!(errors.iter().map(|r| r.error).collect::<Vec<_>>(), [-9, -2, -5, -7]);

    // Leaf attributes, tree GetValue on a group, GetItems on / — with dbus-send as the client.
    let (ok, out, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=com.victronenergy.settings",
            "/Settings/Devices/cg_1/Position",
            "com.victronenergy.BusItem.GetMax",
        ],
    );
    assert!(ok && out.contains("int32 2"), "{out}{err}");
    let (ok, out, err) = f.bus.gdbus_call(SETTINGS_SERVICE, "/Settings/Devices", "GetValue");
    assert!(ok && out.contains("'cg_1/ClassAndVrmInstance': <'grid:40'>"), "{out}{err}");
    let (ok, out, err) = f.bus.gdbus_call(SETTINGS_SERVICE, "/", "GetItems");
    assert!(ok && out.contains("'/Settings/Test/Float': {'Text': <'1.5'>, 'Value': <1.5>}"), "{out}{err}");
}

#[test]
fn class_and_vrm_instance_conflicts_get_the_next_free_instance() {
    let Some(f) = fixture("cavi") else { return };
    let c = f.client.clone();
    let (a, b, pv, set_code, after) = f
        .run(async move {
            let a = c.add_settings(&device_settings("cg_1", "grid:40", 1)).await?;
            let b = c.add_settings(&device_settings("cg_2", "grid:40", 1)).await?;
            // Another class does not collide.
            let pv = c.add_settings(&device_settings("cg_3", "pvinverter:40", 1)).await?;
            // SetValue asking for a taken instance: 0, but the stored value is the next free one.
            let code = c
                .set_value("/Settings/Devices/cg_3/ClassAndVrmInstance", &ItemValue::from("grid:40"))
                .await?;
            let after = c.get_value("/Settings/Devices/cg_3/ClassAndVrmInstance").await?;
            Ok::<_, dbus_modbus_client::dbus::Error>((a, b, pv, code, after))
        })
        .expect("calls");
    assert_eq!(a[0].value, Some(ItemValue::from("grid:40")));
    assert_eq!(b[0].value, Some(ItemValue::from("grid:41")));
    assert_eq!(pv[0].value, Some(ItemValue::from("pvinverter:40")));
    assert_eq!(set_code, 0);
    assert_eq!(after, ItemValue::from("grid:42"));
    // Malformed: -1.
    let c = f.client.clone();
    let code = f.run(async move {
        c.set_value("/Settings/Devices/cg_3/ClassAndVrmInstance", &ItemValue::from("grid")).await
    });
    assert_eq!(code.expect("SetValue"), -1);
}

#[test]
fn set_value_converts_and_checks_range() {
    let Some(f) = fixture("range") else { return };
    let c = f.client.clone();
    let codes = f
        .run(async move {
            c.add_settings(&device_settings("cg_1", "grid:40", 0)).await?;
            let p = "/Settings/Devices/cg_1/Enabled";
            let mut codes = Vec::new();
            codes.push(c.set_value(p, &ItemValue::Double(1.7)).await?);
            codes.push(c.get_value(p).await.map(|v| if v == ItemValue::Int(1) { 0 } else { 99 })?);
            codes.push(c.set_value(p, &ItemValue::Int(5)).await?);
            codes.push(c.set_value(p, &ItemValue::from("1")).await?);
            codes.push(c.set_value("/Settings/Devices/cg_1/CustomName", &ItemValue::Int(3)).await?);
            Ok::<_, dbus_modbus_client::dbus::Error>(codes)
        })
        .expect("calls");
    assert_eq!(codes, [0, 0, -1, -1, -1]);
}

#[test]
fn properties_changed_reaches_a_subscriber() {
    let Some(f) = fixture("signal") else { return };
    let c = f.client.clone();
    let rx = f
        .run(async move {
            c.add_settings(&device_settings("cg_1", "grid:40", 1)).await?;
            c.add_settings(&device_settings("cg_2", "grid:41", 1)).await?;
            c.subscribe(vec![
                "/Settings/Devices/cg_1/CustomName".into(),
                "/Settings/Devices/cg_1/ClassAndVrmInstance".into(),
            ])
            .await
        })
        .expect("subscribe");
    // A GUI-like edit from an outside tool.
    let (ok, _, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=com.victronenergy.settings",
            "/Settings/Devices/cg_1/CustomName",
            "com.victronenergy.BusItem.SetValue",
            "variant:string:Kitchen",
        ],
    );
    assert!(ok, "{err}");
    let recv = || {
        async_io::block_on(futures_lite::future::or(async { rx.recv().await.ok() }, async {
            async_io::Timer::after(Duration::from_secs(5)).await;
            None
        }))
    };
    assert_eq!(recv(), Some(("/Settings/Devices/cg_1/CustomName".into(), ItemValue::from("Kitchen"))));
    let (ok, _, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=com.victronenergy.settings",
            "/Settings/Devices/cg_1/ClassAndVrmInstance",
            "com.victronenergy.BusItem.SetValue",
            "variant:string:grid:41",
        ],
    );
    assert!(ok, "{err}");
    // grid:41 is taken by cg_2: the signal carries the value actually stored.
    assert_eq!(
        recv(),
        Some(("/Settings/Devices/cg_1/ClassAndVrmInstance".into(), ItemValue::from("grid:42")))
    );
}

#[test]
fn settings_persist_across_a_restart_of_the_binary() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let file = temp_file("restart");
    let exe = env!("CARGO_BIN_EXE_dbus-modbus-client");
    let start = || {
        bus.command(exe).args(["settings-service", "--file"]).arg(&file).spawn().expect("settings-service")
    };
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let conn = bg.block_on(async move { connect(&choice, &spawner).await }).expect("client");
    let client = SettingsClient::new(conn.conn.clone(), bg.spawner.clone());

    let mut child = start();
    let c = client.clone();
    bg.block_on(async move {
        c.wait_for_service().await?;
        c.add_settings(&device_settings("cg_1", "grid:40", 1)).await?;
        c.set_value("/Settings/Devices/cg_1/CustomName", &ItemValue::from("Tab\there")).await?;
        c.set_value("/Settings/Devices/cg_1/Position", &ItemValue::Int(2)).await
    })
    .expect("first run");
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(!PathBuf::from(format!("{}.new", file.display())).exists());

    let mut child = start();
    let c = client.clone();
    let (name, pos, cavi) = bg
        .block_on(async move {
            c.wait_for_service().await?;
            Ok::<_, dbus_modbus_client::dbus::Error>((
                c.get_value("/Settings/Devices/cg_1/CustomName").await?,
                c.get_value("/Settings/Devices/cg_1/Position").await?,
                c.add_settings(&device_settings("cg_1", "grid:40", 1)).await?,
            ))
        })
        .expect("second run");
    child.kill().expect("kill");
    let _ = child.wait();
    let _ = std::fs::remove_file(&file);
    assert_eq!(name, ItemValue::from("Tab\there"));
    assert_eq!(pos, ItemValue::Int(2));
    assert_eq!(cavi[0].value, Some(ItemValue::from("grid:40")));
}

#[test]
fn client_waits_for_the_settings_service() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let conn = bg.block_on(async move { connect(&choice, &spawner).await }).expect("client");
    let client = SettingsClient::new(conn.conn.clone(), bg.spawner.clone());
    let waiting = bg.spawner.spawn(async move { client.wait_for_service().await });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished());
    let file = temp_file("wait");
    let (choice, spawner, f) = (bus.bus(), bg.spawner.clone(), file.clone());
    let _standin =
        bg.block_on(async move { SettingsStandin::start(f, &choice, &spawner).await }).expect("standin");
    async_io::block_on(waiting).expect("waited");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn leaf_attributes_and_introspection() {
    let Some(f) = fixture("attrs") else { return };
    let c = f.client.clone();
    f.run(async move { c.add_settings(&device_settings("cg_1", "grid:40", 1)).await }).expect("add");
    let conn = f._client_conn.conn.clone();
    let (min, max, default, xml) = f
        .run(async move {
            let p = "/Settings/Devices/cg_1/Position";
            let get = |m: &'static str| {
                let conn = conn.clone();
                async move {
                    let r = conn.call_method(Some(SETTINGS_SERVICE), p, Some(BUSITEM), m, &()).await?;
                    r.body().deserialize::<OwnedValue>()
                }
            };
            let xml = conn
                .call_method(
                    Some(SETTINGS_SERVICE),
                    "/",
                    Some("org.freedesktop.DBus.Introspectable"),
                    "Introspect",
                    &(),
                )
                .await?
                .body()
                .deserialize::<String>()?;
            Ok::<_, zbus::Error>((get("GetMin").await?, get("GetMax").await?, get("GetDefault").await?, xml))
        })
        .expect("calls");
    assert_eq!(i32::try_from(&min).unwrap(), 0);
    assert_eq!(i32::try_from(&max).unwrap(), 2);
    assert_eq!(i32::try_from(&default).unwrap(), 0);
    assert!(xml.contains("AddSettings") && xml.contains("<node name=\"Settings\"/>"), "{xml}");
    // The older per-setting call velib 67d2023 (pinned by upstream) uses.
    let (ok, out, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=com.victronenergy.settings",
            "/Settings",
            "com.victronenergy.Settings.AddSetting",
            "string:ModbusClient/tcp",
            "string:AutoScan",
            "variant:int32:0",
            "string:i",
            "variant:int32:0",
            "variant:int32:1",
        ],
    );
    assert!(ok && out.contains("int32 0"), "{out}{err}");
    let c = f.client.clone();
    let v = f.run(async move { c.get_value("/Settings/ModbusClient/tcp/AutoScan").await }).expect("GetValue");
    assert_eq!(v, ItemValue::Int(0));
    let standin = f.standin.as_ref().expect("standin");
    assert!(standin.service().tree().len() >= 4);
}
