//! BusItem services on a private dbus-daemon, checked with zbus and with the outside tools GX
//! developers use (dbus-send, gdbus, busctl, dbus-python with a GLib main loop).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Background, PrivateBus};
use dbus_modbus_client::dbus::{
    connect, BusChoice, BusConnection, Item, ItemValue, Service, ServiceBuilder, SetRequest, Spawner,
    ValueKind, BUSITEM,
};
use zbus::zvariant::{OwnedValue, Value};

const NAME: &str = "com.victronenergy.grid.test_1";

fn test_items(builder: &mut ServiceBuilder) {
    let items: Vec<(&str, Item)> = vec![
        ("/DeviceInstance", Item::new(40)),
        ("/ProductId", Item::new(0xB017)),
        ("/ProductName", Item::new("Test meter")),
        ("/Mgmt/ProcessName", Item::new("dbus-modbus-client")),
        ("/Mgmt/Connection", Item::new("Modbus RTU ttyUSB0:1")),
        ("/Connected", Item::new(1)),
        ("/Serial", Item::new("S123")),
        ("/Ac/Power", Item::new(1234.5).with_text("1234.5 W")),
        ("/Ac/Energy/Forward", Item::new(10.25)),
        ("/Ac/L1/Power", Item::new(400.0)),
        ("/Ac/L1/Voltage", Item::new(230.1).with_text("230.1 V")),
        ("/Ac/L1/Current", Item::new(ItemValue::Invalid)),
        ("/Ac/L2/Power", Item::new(410.0)),
        ("/Ac/L3/Power", Item::new(424.5)),
        ("/AllowedRoles", Item::new(ItemValue::StrList(vec!["grid".into(), "pvinverter".into()]))),
        ("/Role", Item::new("grid").writable()),
        ("/CustomName", Item::new("").writable().with_description("Name shown in the GUI")),
        ("/Position", Item::new(0).writable()),
        ("/Ac/PowerLimit", Item::new(1000.0).refresh_on_write()),
        ("/Scan", Item::new(false).writable()),
        ("/Big", Item::new(1i64 << 40)),
        ("/Setpoint", Item::new(ItemValue::Invalid).with_kind(ValueKind::Double).writable()),
    ];
    for (path, item) in items {
        builder.add(path, item).expect("valid path");
    }
}

/// Owner calls seen by the test owner: (path, value).
type Calls = Arc<Mutex<Vec<(String, ItemValue)>>>;

/// A test owner: rejects `/Position` = 2, sleeps 300 ms on `/Ac/PowerLimit` = 999, accepts the rest.
fn spawn_owner(spawner: &Spawner) -> (async_channel::Sender<SetRequest>, Calls) {
    let (tx, rx) = async_channel::unbounded::<SetRequest>();
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    spawner
        .spawn(async move {
            while let Ok(req) = rx.recv().await {
                seen.lock().unwrap().push((req.path.clone(), req.value.clone()));
                if req.path == "/Position" && req.value == ItemValue::Int(2) {
                    req.reject();
                } else if req.path == "/Ac/PowerLimit" && req.value == ItemValue::Double(999.0) {
                    // A slow Modbus write: answered later, from its own task.
                    async_io::Timer::after(Duration::from_millis(300)).await;
                    req.accept();
                } else {
                    req.accept();
                }
            }
        })
        .detach();
    (tx, calls)
}

struct Fixture {
    bus: PrivateBus,
    bg: Background,
    service: Option<Service>,
    calls: Calls,
    client: BusConnection,
}

fn fixture() -> Option<Fixture> {
    let bus = PrivateBus::start()?;
    let bg = Background::start();
    let (owner, calls) = spawn_owner(&bg.spawner);
    let mut builder = ServiceBuilder::new(NAME);
    test_items(&mut builder);
    builder.owner(owner);
    let choice = bus.bus();
    let spawner = bg.spawner.clone();
    let service = bg.block_on(async move { builder.register(&choice, &spawner).await }).expect("register");
    let choice = bus.bus();
    let spawner = bg.spawner.clone();
    let client = bg.block_on(async move { connect(&choice, &spawner).await.expect("client") });
    Some(Fixture { bus, bg, service: Some(service), calls, client })
}

impl Fixture {
    fn service(&self) -> &Service {
        self.service.as_ref().expect("service")
    }

    fn call(
        &self,
        path: &str,
        iface: &str,
        member: &str,
        body: impl serde::Serialize + zbus::zvariant::DynamicType + Send + Sync + 'static,
    ) -> zbus::Result<zbus::Message> {
        let client = self.client.conn.clone();
        let (path, iface, member) = (path.to_owned(), iface.to_owned(), member.to_owned());
        self.bg.block_on(async move {
            client.call_method(Some(NAME), path.as_str(), Some(iface.as_str()), member.as_str(), &body).await
        })
    }

    fn get_value(&self, path: &str) -> OwnedValue {
        let reply = self.call(path, BUSITEM, "GetValue", ()).expect("GetValue");
        reply.body().deserialize::<OwnedValue>().expect("variant")
    }

    fn set_value(&self, path: &str, value: Value<'static>) -> i32 {
        let reply = self.call(path, BUSITEM, "SetValue", value).expect("SetValue");
        reply.body().deserialize::<i32>().expect("i")
    }

    fn flush(&self) -> usize {
        let service = self.service.as_ref().expect("service");
        async_io::block_on(service.flush()).expect("flush")
    }
}

/// The signature of the value inside a variant.
fn sig(v: &Value<'_>) -> String {
    match v {
        Value::Value(inner) => sig(inner),
        other => other.value_signature().to_string(),
    }
}

#[test]
fn get_items_lists_every_path_with_its_signature() {
    let Some(f) = fixture() else { return };
    let reply = f.call("/", BUSITEM, "GetItems", ()).expect("GetItems");
    assert_eq!(reply.body().signature().to_string(), "a{sa{sv}}");
    let items: BTreeMap<String, BTreeMap<String, OwnedValue>> =
        reply.body().deserialize().expect("a{sa{sv}}");
    assert_eq!(items.len(), 22);
    let expect = [
        ("/DeviceInstance", "i"),
        ("/ProductId", "i"),
        ("/ProductName", "s"),
        ("/Ac/Power", "d"),
        ("/Ac/L1/Current", "ai"),
        ("/AllowedRoles", "av"),
        ("/Scan", "b"),
        ("/Big", "x"),
    ];
    for (path, signature) in expect {
        let entry = items.get(path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(sig(&entry["Value"]), signature, "{path}");
        assert_eq!(sig(&entry["Text"]), "s", "{path}");
    }
    let text = |p: &str| String::try_from(items[p]["Text"].try_clone().unwrap()).unwrap();
    assert_eq!(text("/ProductId"), "0xB017");
    assert_eq!(text("/Ac/L1/Current"), "---");
    assert_eq!(text("/Ac/L1/Voltage"), "230.1 V");
    assert_eq!(text("/Ac/L1/Power"), "400.0");
    // `av` elements are plain strings.
    let roles = items["/AllowedRoles"]["Value"].try_clone().unwrap();
    assert_eq!(
        ItemValue::from_dbus(&roles),
        Some(ItemValue::StrList(vec!["grid".into(), "pvinverter".into()]))
    );
}

#[test]
fn tree_get_value_and_get_text_use_relative_keys() {
    let Some(f) = fixture() else { return };
    let ac = f.get_value("/Ac");
    let ac: HashMap<String, OwnedValue> = ac.try_into().expect("a{sv}");
    let mut keys: Vec<&str> = ac.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "Energy/Forward",
            "L1/Current",
            "L1/Power",
            "L1/Voltage",
            "L2/Power",
            "L3/Power",
            "Power",
            "PowerLimit"
        ]
    );
    let l1: HashMap<String, OwnedValue> = f.get_value("/Ac/L1").try_into().expect("a{sv}");
    let mut keys: Vec<&str> = l1.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["Current", "Power", "Voltage"]);
    assert_eq!(f64::try_from(&l1["Power"]).unwrap(), 400.0);
    assert_eq!(sig(&l1["Current"]), "ai");

    let root: HashMap<String, OwnedValue> = f.get_value("/").try_into().expect("a{sv}");
    assert!(root.contains_key("Ac/Power") && root.contains_key("DeviceInstance"));

    let reply = f.call("/Ac/L1", BUSITEM, "GetText", ()).expect("GetText");
    let texts = reply.body().deserialize::<OwnedValue>().expect("v");
    let texts: HashMap<String, String> = texts.try_into().expect("a{ss}");
    assert_eq!(texts["Voltage"], "230.1 V");
    assert_eq!(texts["Current"], "---");

    let reply = f.call("/Ac/Power", BUSITEM, "GetText", ()).expect("GetText");
    assert_eq!(reply.body().deserialize::<String>().unwrap(), "1234.5 W");
    let reply = f.call("/CustomName", BUSITEM, "GetDescription", ("en", 0i32)).expect("desc");
    assert_eq!(reply.body().deserialize::<String>().unwrap(), "Name shown in the GUI");
    let reply = f.call("/Serial", BUSITEM, "GetDescription", ("en", 0i32)).expect("desc");
    assert_eq!(reply.body().deserialize::<String>().unwrap(), "No description given");
}

#[test]
fn introspect_lists_children_and_interfaces() {
    let Some(f) = fixture() else { return };
    let xml = |path: &str| {
        let reply =
            f.call(path, "org.freedesktop.DBus.Introspectable", "Introspect", ()).expect("Introspect");
        reply.body().deserialize::<String>().expect("s")
    };
    let root = xml("/");
    for child in ["Ac", "DeviceInstance", "Mgmt", "AllowedRoles"] {
        assert!(root.contains(&format!("<node name=\"{child}\"/>")), "{child} in {root}");
    }
    assert!(root.contains("GetItems") && root.contains("ItemsChanged"));
    let node = xml("/Ac/L1");
    assert!(node.contains("<node name=\"Voltage\"/>") && !node.contains("GetItems"));
    let leaf = xml("/Ac/L1/Voltage");
    assert!(leaf.contains("SetValue") && leaf.contains("GetDescription") && !leaf.contains("<node name"));

    // Unknown path and unknown method are errors, not panics.
    let err = f.call("/Nope", BUSITEM, "GetValue", ()).unwrap_err().to_string();
    assert!(err.contains("UnknownObject"), "{err}");
    let err = f.call("/Ac/Power", BUSITEM, "Frobnicate", ()).unwrap_err().to_string();
    assert!(err.contains("UnknownMethod"), "{err}");
    let err = f.call("/Ac/Power", BUSITEM, "SetValue", ("not a variant",)).unwrap_err().to_string();
    assert!(err.contains("InvalidArgs"), "{err}");
    f.call("/", "org.freedesktop.DBus.Peer", "Ping", ()).expect("Ping");
}

#[test]
fn outside_tools_read_values() {
    let Some(f) = fixture() else { return };
    let (ok, out, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            &format!("--dest={NAME}"),
            "/Ac/Power",
            "com.victronenergy.BusItem.GetValue",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("variant") && out.contains("double 1234.5"), "{out}");

    let (ok, out, err) = f.bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            &format!("--dest={NAME}"),
            "/Ac/L1/Current",
            "com.victronenergy.BusItem.GetValue",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("array ["), "invalid is an empty array: {out}");

    let (ok, out, err) = f.bus.gdbus_call(NAME, "/DeviceInstance", "GetValue");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "(<40>,)");

    let (ok, out, err) = f.bus.gdbus_call(NAME, "/Ac/L1", "GetValue");
    assert!(ok, "{err}");
    assert!(out.contains("'Power': <400.0>") && out.contains("'Current': <@ai []>"), "{out}");

    if std::path::Path::new("/usr/bin/busctl").exists() {
        let (ok, out, err) = f.bus.run("busctl", &["--user", "tree", NAME]);
        if ok {
            assert!(out.contains("/Ac/L1/Voltage") && out.contains("/Mgmt/ProcessName"), "{out}");
        } else {
            eprintln!("busctl --user tree unavailable here: {err}");
        }
    }
}

const PY_LISTENER: &str = r#"
import sys, dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
name = sys.argv[1]
owner = bus.get_name_owner(name)
loop = GLib.MainLoop()
def changed(items, sender=None):
    for path, entry in sorted(items.items()):
        print("%s %s %r %s" % (sender == owner, path, entry['Value'], entry['Text']))
    sys.stdout.flush()
    loop.quit()
bus.add_signal_receiver(changed, signal_name='ItemsChanged', dbus_interface='com.victronenergy.BusItem',
                        path='/', sender_keyword='sender', bus_name=owner)
print("ready"); sys.stdout.flush()
GLib.timeout_add(5000, loop.quit)
loop.run()
"#;

#[test]
fn python_consumer_sees_items_changed_after_flush() {
    let Some(f) = fixture() else { return };
    let python =
        if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let mut child = f
        .bus
        .command(python)
        .args(["-c", PY_LISTENER, NAME])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "python3 with dbus-python and gi is needed");

    let s = f.service();
    assert_eq!(f.flush(), 0, "nothing changed yet");
    s.set("/Ac/Power", 99.5, "99.5 W").unwrap();
    s.set_value("/Ac/L1/Power", 400.0).unwrap(); // unchanged: not sent
    s.set_value("/Ac/L1/Current", 1.5).unwrap();
    s.add_item("/Ac/L1/Energy/Forward", Item::new(3.0)).unwrap();
    assert_eq!(f.flush(), 3);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("output");
    let _ = child.wait();
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(
        lines,
        [
            "True /Ac/L1/Current dbus.Double(1.5, variant_level=1) 1.5",
            "True /Ac/L1/Energy/Forward dbus.Double(3.0, variant_level=1) 3.0",
            "True /Ac/Power dbus.Double(99.5, variant_level=1) 99.5 W",
        ]
    );
}

/// Waits up to 5 s for the next message.
fn recv(rx: &async_channel::Receiver<zbus::Message>) -> zbus::Message {
    async_io::block_on(futures_lite::future::or(async { rx.recv().await.ok() }, async {
        async_io::Timer::after(Duration::from_secs(5)).await;
        None
    }))
    .expect("signal within 5 s")
}

/// Collects signals of `member` from the service into a channel.
fn signal_stream(f: &Fixture, member: &'static str) -> async_channel::Receiver<zbus::Message> {
    let client = f.client.conn.clone();
    let (tx, rx) = async_channel::unbounded();
    let stream = f.bg.block_on(async move {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(BUSITEM)
            .unwrap()
            .member(member)
            .unwrap()
            .build();
        zbus::MessageStream::for_match_rule(rule, &client, None).await.expect("match")
    });
    f.bg.spawner
        .spawn(async move {
            use futures_lite::StreamExt;
            let mut stream = stream;
            while let Some(Ok(msg)) = stream.next().await {
                let _ = tx.send(msg).await;
            }
        })
        .detach();
    rx
}

#[test]
fn set_value_follows_vedbus_order() {
    let Some(f) = fixture() else { return };
    let changes = signal_stream(&f, "PropertiesChanged");

    // Writable, owner accepts: 0, stored, PropertiesChanged.
    assert_eq!(f.set_value("/CustomName", Value::from("Kitchen")), 0);
    assert_eq!(f.service().value("/CustomName"), Some(ItemValue::Text("Kitchen".into())));
    let msg = recv(&changes);
    assert_eq!(msg.header().path().unwrap().as_str(), "/CustomName");
    let props: HashMap<String, OwnedValue> = msg.body().deserialize().unwrap();
    assert_eq!(String::try_from(props["Text"].try_clone().unwrap()).unwrap(), "Kitchen");

    // Read-only: 1. Wrong type: 1. Owner rejects: 2.
    assert_eq!(f.set_value("/Serial", Value::from("X")), 1);
    assert_eq!(f.set_value("/CustomName", Value::from(5i32)), 1);
    assert_eq!(f.set_value("/Position", Value::from("two")), 1);
    assert_eq!(f.set_value("/Position", Value::from(2i32)), 2);
    assert_eq!(f.service().value("/Position"), Some(ItemValue::Int(0)));
    // Coercion: an int into a double-typed (initially invalid) item.
    assert_eq!(f.set_value("/Setpoint", Value::from(7i32)), 0);
    assert_eq!(f.service().value("/Setpoint"), Some(ItemValue::Double(7.0)));

    // Equal value: 0, and the owner is not asked.
    let before = f.calls.lock().unwrap().len();
    assert_eq!(f.set_value("/CustomName", Value::from("Kitchen")), 0);
    assert_eq!(f.calls.lock().unwrap().len(), before);
    // Refresh-flagged path: the owner sees every write, equal or not.
    assert_eq!(f.set_value("/Ac/PowerLimit", Value::from(1000.0)), 0);
    assert_eq!(f.calls.lock().unwrap().len(), before + 1);
    assert_eq!(
        f.calls.lock().unwrap().last().unwrap(),
        &("/Ac/PowerLimit".to_owned(), ItemValue::Double(1000.0))
    );
    // Empty array = invalid.
    assert_eq!(f.set_value("/Setpoint", Value::from(Vec::<i32>::new())), 0);
    assert_eq!(f.service().value("/Setpoint"), Some(ItemValue::Invalid));
}

#[test]
fn slow_owner_does_not_block_other_calls() {
    let Some(f) = fixture() else { return };
    let client = f.client.conn.clone();
    let start = Instant::now();
    let slow = f.bg.spawner.spawn(async move {
        let reply = client
            .call_method(Some(NAME), "/Ac/PowerLimit", Some(BUSITEM), "SetValue", &Value::from(999.0))
            .await?;
        Ok::<_, zbus::Error>((reply.body().deserialize::<i32>()?, Instant::now()))
    });
    std::thread::sleep(Duration::from_millis(50));
    let v = f.get_value("/DeviceInstance");
    let fast_done = Instant::now();
    let (code, slow_done) = async_io::block_on(slow).expect("slow SetValue");
    assert_eq!(i32::try_from(&v).unwrap(), 40);
    assert_eq!(code, 0);
    assert!(fast_done < slow_done, "GetValue waited for the slow owner");
    assert!(fast_done - start < Duration::from_millis(250), "GetValue took {:?}", fast_done - start);
    assert!(slow_done - start >= Duration::from_millis(300));
}

#[test]
fn flush_removes_paths_as_invalid() {
    let Some(f) = fixture() else { return };
    let changed = signal_stream(&f, "ItemsChanged");
    let s = f.service();
    assert_eq!(s.remove_tree("/Ac/L1"), 3);
    assert_eq!(f.flush(), 3);
    let items: BTreeMap<String, HashMap<String, OwnedValue>> = recv(&changed).body().deserialize().unwrap();
    assert_eq!(items.len(), 3);
    let entry = &items["/Ac/L1/Voltage"];
    assert_eq!(sig(&entry["Value"]), "ai");
    let err = f.call("/Ac/L1/Voltage", BUSITEM, "GetValue", ()).unwrap_err().to_string();
    assert!(err.contains("UnknownObject"), "{err}");
    let err = f.call("/Ac/L1", BUSITEM, "GetValue", ()).unwrap_err().to_string();
    assert!(err.contains("UnknownObject"), "node gone with its last item: {err}");
}

#[test]
fn unregister_releases_the_name() {
    let Some(mut f) = fixture() else { return };
    let service = f.service.take().expect("service");
    async_io::block_on(service.unregister()).expect("unregister");
    let client = f.client.conn.clone();
    let has_owner = f.bg.block_on(async move {
        let dbus = zbus::fdo::DBusProxy::new(&client).await?;
        dbus.name_has_owner(NAME.try_into().expect("name")).await
    });
    assert!(!has_owner.expect("NameHasOwner"));
}

#[test]
fn second_registration_of_a_name_fails_clearly() {
    let Some(f) = fixture() else { return };
    let mut builder = ServiceBuilder::new(NAME);
    builder.add("/DeviceInstance", Item::new(1)).unwrap();
    let choice = f.bus.bus();
    let spawner = f.bg.spawner.clone();
    let err = f.bg.block_on(async move { builder.register(&choice, &spawner).await.err() });
    let msg = err.expect("must fail").to_string();
    assert!(msg.contains("already owned"), "{msg}");
}

/// A DbusMonitor-style consumer: on NameOwnerChanged it immediately calls GetItems, and must
/// always find `/DeviceInstance` (all paths exist before the name is requested).
#[test]
fn monitor_finds_device_instance_at_name_owner_changed() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let choice = bus.bus();
    let spawner = bg.spawner.clone();
    let monitor = bg.block_on(async move { connect(&choice, &spawner).await.expect("monitor") });
    let m = monitor.conn.clone();
    let (found_tx, found_rx) = async_channel::unbounded::<bool>();
    let m2 = m.clone();
    let mut noc = bg.block_on(async move {
        let m = m2;
        zbus::fdo::DBusProxy::new(&m)
            .await
            .expect("proxy")
            .receive_name_owner_changed()
            .await
            .expect("stream")
    });
    bg.spawner
        .spawn(async move {
            use futures_lite::StreamExt;
            while let Some(signal) = noc.next().await {
                let Ok(args) = signal.args() else { continue };
                if !args.name().starts_with("com.victronenergy.grid.") || args.new_owner().is_none() {
                    continue;
                }
                let owner = args.new_owner().as_ref().map(|o| o.to_string()).unwrap_or_default();
                let found =
                    match m.call_method(Some(owner.as_str()), "/", Some(BUSITEM), "GetItems", &()).await {
                        Ok(reply) => reply
                            .body()
                            .deserialize::<BTreeMap<String, BTreeMap<String, OwnedValue>>>()
                            .map(|items| items.contains_key("/DeviceInstance"))
                            .unwrap_or(false),
                        Err(_) => false,
                    };
                let _ = found_tx.send(found).await;
            }
        })
        .detach();
    for round in 0..10 {
        let mut builder = ServiceBuilder::new(format!("com.victronenergy.grid.round{round}"));
        test_items(&mut builder);
        let choice = bus.bus();
        let spawner = bg.spawner.clone();
        let service =
            bg.block_on(async move { builder.register(&choice, &spawner).await }).expect("register");
        let found = async_io::block_on(async {
            futures_lite::future::or(async { found_rx.recv().await.ok() }, async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                None
            })
            .await
        });
        assert_eq!(found, Some(true), "round {round}");
        drop(service);
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Not a limit check (the test harness itself is in this process); prints the figure the
/// `rss_probe` example measures precisely.
#[test]
fn three_services_of_sixty_paths_answer() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let before = vm_rss_kib();
    let mut services = Vec::new();
    for n in 0..3 {
        let mut builder = ServiceBuilder::new(format!("com.victronenergy.grid.rss{n}"));
        for i in 0..60 {
            builder.add(&format!("/Ac/L{}/Value{i}", i % 3 + 1), Item::new(i as f64)).unwrap();
        }
        let choice = bus.bus();
        let spawner = bg.spawner.clone();
        services
            .push(bg.block_on(async move { builder.register(&choice, &spawner).await }).expect("register"));
    }
    let choice: BusChoice = bus.bus();
    let (ok, out, err) = bus.run(
        "dbus-send",
        &[
            "--session",
            "--print-reply",
            "--dest=com.victronenergy.grid.rss2",
            "/Ac/L3/Value59",
            "com.victronenergy.BusItem.GetValue",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("double 59"), "{out}");
    eprintln!("VmRSS {} KiB -> {} KiB with 3 x 60 paths ({choice:?})", before, vm_rss_kib());
}

#[test]
fn properties_changed_on_flush_when_enabled() {
    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let mut builder = ServiceBuilder::new("com.victronenergy.grid.pc");
    builder.add("/DeviceInstance", Item::new(1)).unwrap();
    builder.add("/Ac/Power", Item::new(1.0)).unwrap();
    builder.properties_changed_on_flush(true);
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let service = bg.block_on(async move { builder.register(&choice, &spawner).await }).expect("register");
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let client = bg.block_on(async move { connect(&choice, &spawner).await }).expect("client");
    let f = Fixture { bus, bg, service: Some(service), calls: Arc::default(), client };
    let props = signal_stream(&f, "PropertiesChanged");
    let items = signal_stream(&f, "ItemsChanged");
    f.service().set_value("/Ac/Power", 2.5).unwrap();
    assert_eq!(f.flush(), 1);
    let msg = recv(&props);
    assert_eq!(msg.header().path().unwrap().as_str(), "/Ac/Power");
    let body: HashMap<String, OwnedValue> = msg.body().deserialize().unwrap();
    assert_eq!(f64::try_from(&body["Value"]).unwrap(), 2.5);
    let all: HashMap<String, HashMap<String, OwnedValue>> = recv(&items).body().deserialize().unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["/Ac/Power"]);
}

#[test]
fn dropping_a_service_removes_its_name() {
    let Some(mut f) = fixture() else { return };
    drop(f.service.take());
    let client = f.client.conn.clone();
    let gone = f.bg.block_on(async move {
        let dbus = zbus::fdo::DBusProxy::new(&client).await?;
        for _ in 0..50 {
            if !dbus.name_has_owner(NAME.try_into().expect("name")).await? {
                return Ok(true);
            }
            async_io::Timer::after(Duration::from_millis(20)).await;
        }
        Ok::<_, zbus::fdo::Error>(false)
    });
    assert!(gone.expect("NameHasOwner"), "the connection stayed open after drop");
}
