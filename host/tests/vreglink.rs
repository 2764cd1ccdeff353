//! VregLink end to end: the daemon publishes a simulated Victron VM-3P75CT (over RTU on a pty,
//! and over Modbus UDP and Modbus TCP on loopback) on a private bus, and D-Bus clients (zbus here, `dbus-send`
//! in one test) call `GetVreg` / `SetVreg` on `/Devices/0/VregLink`. The simulator's FC23
//! counter (`read_writes`) shows which calls reached the wire.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Task;
use common::{Background, PrivateBus};
use dbus_modbus_client::daemon::{self, DaemonOptions};
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::{DeviceKind, SimConfig, SimHandle};
use zbus::zvariant::OwnedValue;

const UNIT: u8 = 3;
const SERVICE: &str = "com.victronenergy.grid.ve_HQ2250ABCDE";
const VREG_PATH: &str = "/Devices/0/VregLink";
const VREGLINK: &str = "com.victronenergy.VregLink";

/// A private bus, a simulator with the meter at unit 3, and the daemon polling it.
struct Rig {
    bus: PrivateBus,
    bg: Background,
    sim: SimHandle,
    conn: zbus::Connection,
    stop: Arc<AtomicBool>,
    daemon: Option<Task<i32>>,
}

impl Rig {
    fn start(bus: PrivateBus, sim: SimHandle, spec: &str) -> Rig {
        let bg = Background::start();
        let stop = Arc::new(AtomicBool::new(false));
        let devices = vec![DeviceSpec::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))];
        let options = DaemonOptions {
            bus: bus.bus(),
            devices,
            no_settings: true,
            no_watchdog: true,
            ..DaemonOptions::default()
        };
        let daemon = bg.spawner.spawn(daemon::run_async(options, bg.spawner.clone(), stop.clone()));
        let address = bus.address().to_string();
        let conn = bg.block_on(async move {
            zbus::connection::Builder::address(address.as_str())
                .expect("address")
                .build()
                .await
                .expect("connect")
        });
        let rig = Rig { bus, bg, sim, conn, stop, daemon: Some(daemon) };
        rig.wait_for_service();
        rig
    }

    fn rtu(bus: PrivateBus) -> Rig {
        let sim = SimHandle::spawn_pty(SimConfig::with_units(&[(UNIT, DeviceKind::Vm3p75ct)])).expect("sim");
        let spec = format!("rtu:{}:9600:{UNIT}", sim.path().display());
        Rig::start(bus, sim, &spec)
    }

    fn udp(bus: PrivateBus) -> Rig {
        let config = SimConfig::with_units(&[(UNIT, DeviceKind::Vm3p75ct)]);
        let sim = SimHandle::spawn_udp(config, "127.0.0.1:0".parse().expect("addr")).expect("sim");
        let addr = sim.udp_addr().expect("udp address");
        Rig::start(bus, sim, &format!("udp:{}:{}:{UNIT}", addr.ip(), addr.port()))
    }

    fn tcp(bus: PrivateBus) -> Rig {
        let config = SimConfig::with_units(&[(UNIT, DeviceKind::Vm3p75ct)]);
        let sim = SimHandle::spawn_tcp(config, "127.0.0.1:0".parse().expect("addr")).expect("sim");
        let addr = sim.tcp_addr().expect("tcp address");
        Rig::start(bus, sim, &format!("tcp:{}:{}:{UNIT}", addr.ip(), addr.port()))
    }

    fn wait_for_service(&self) {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if self.try_value("/DeviceInstance").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{SERVICE} did not appear");
    }

    fn call<B, R>(&self, path: &str, interface: &str, member: &str, body: B) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType + Send + Sync + 'static,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type + Send + 'static,
    {
        let conn = self.conn.clone();
        let (path, interface, member) = (path.to_string(), interface.to_string(), member.to_string());
        self.bg.block_on(async move {
            let reply = conn
                .call_method(Some(SERVICE), path.as_str(), Some(interface.as_str()), member.as_str(), &body)
                .await?;
            reply.body().deserialize::<R>()
        })
    }

    fn get_vreg(&self, id: u16) -> (u16, Vec<u8>) {
        self.call(VREG_PATH, VREGLINK, "GetVreg", (id,)).unwrap_or_else(|e| panic!("GetVreg {id:#x}: {e}"))
    }

    fn set_vreg(&self, id: u16, data: &[u8]) -> (u16, Vec<u8>) {
        self.call(VREG_PATH, VREGLINK, "SetVreg", (id, data.to_vec()))
            .unwrap_or_else(|e| panic!("SetVreg {id:#x}: {e}"))
    }

    fn try_value(&self, path: &str) -> Option<OwnedValue> {
        self.call(path, "com.victronenergy.BusItem", "GetValue", ()).ok()
    }

    fn text(&self, path: &str) -> String {
        self.try_value(path).and_then(|v| String::try_from(v).ok()).unwrap_or_default()
    }

    fn int(&self, path: &str) -> i32 {
        self.try_value(path).and_then(|v| i32::try_from(v).ok()).unwrap_or(-1)
    }

    /// FC23 requests the simulated meter has received.
    fn read_writes(&self) -> u64 {
        self.sim.stats().unit(UNIT).map_or(0, |c| c.read_writes)
    }

    /// Polls until `path` reads `want` (the daemon publishes after its next read).
    fn wait_text(&self, path: &str, want: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if self.text(path) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{path} never became {want:?} (is {:?})", self.text(path));
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(daemon) = self.daemon.take() {
            let _ = async_io::block_on(daemon);
        }
    }
}

/// The daemon publishes on `path` a value the simulator served for `quantity` (the core profile's
/// table against the simulator's, both from devices.md section 4).
fn check_published(rig: &Rig, path: &str, quantity: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < end {
        let published = rig
            .try_value(path)
            .and_then(|v| f64::try_from(&v).ok().or_else(|| i32::try_from(&v).ok().map(f64::from)));
        if let Some(p) = published {
            if rig.sim.served(UNIT, quantity).iter().any(|s| (s - p).abs() < 0.0051) {
                return;
            }
        }
        last = published;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{path} = {last:?} is no value served for {quantity}: {:?}", rig.sim.served(UNIT, quantity));
}

/// The seed's worked example (product id 00 12 34 FE), every status code, the description.
fn check_vreglink(rig: &Rig) {
    assert_eq!(rig.get_vreg(0x0100), (0, vec![0x00, 0x12, 0x34, 0xFE]));
    check_status_codes(rig);
    check_description(rig);
}

/// Every status code of the seed reaches the caller, plus the at-once answers without traffic.
fn check_status_codes(rig: &Rig) {
    assert_eq!(rig.get_vreg(0x0999), (0x8001, vec![]), "unknown VREG, get");
    assert_eq!(rig.set_vreg(0x0999, &[1]), (0x8101, vec![]), "unknown VREG, set");
    assert_eq!(rig.get_vreg(0xEE00).0, 0x8002, "write-only VREG, get");
    assert_eq!(rig.set_vreg(0xEE00, &[1]).0, 0, "write-only VREG, set");
    assert_eq!(rig.set_vreg(0x0100, &[0, 0x12, 0x34, 0xFE]).0, 0x8102, "read-only VREG, set");
    assert_eq!(rig.set_vreg(0x0112, &[1, 2]).0, 0x8104, "bad data");
    rig.sim.set("vm3p75ct", "vreg_fail", "on").expect("vreg_fail on");
    assert_eq!(rig.get_vreg(0x0100).0, 0x8000, "unknown error, get");
    assert_eq!(rig.set_vreg(0x010C, b"x").0, 0x8100, "unknown error, set");
    rig.sim.set("vm3p75ct", "vreg_fail", "off").expect("vreg_fail off");
    // A Modbus exception on the block (below VregLink): the op's unknown error, as upstream.
    rig.sim.fault("vm3p75ct", "exception holding 0x4000 0x4022 4").expect("exception fault");
    assert_eq!(rig.get_vreg(0x0100), (0x8000, vec![]), "exception, get");
    assert_eq!(rig.set_vreg(0x0112, &[1]), (0x8100, vec![]), "exception, set");
    rig.sim.fault("vm3p75ct", "exception off").expect("exception off");

    // More data than the 32-register block carries: 0x8104 at once, nothing on the wire.
    let before = rig.read_writes();
    assert_eq!(rig.set_vreg(0x010C, &[b'a'; 65]), (0x8104, vec![]));
    assert_eq!(rig.set_vreg(0x010C, &[b'a'; 240]).0, 0x8104);
    assert_eq!(rig.read_writes(), before, "an oversized SetVreg reached the device");
    // Exactly 64 bytes fit.
    assert_eq!(rig.set_vreg(0x010C, &[b'b'; 64]).0, 0);
    assert_eq!(rig.read_writes(), before + 1);
}

/// Description written with SetVreg reads back, and `/CustomName` (and its `/Devices/0` copy)
/// follows; a `/CustomName` SetValue goes to the device through VREG 0x010C.
fn check_description(rig: &Rig) {
    assert_eq!(rig.set_vreg(0x010C, b"My Precious"), (0, vec![]));
    assert_eq!(rig.get_vreg(0x010C), (0, b"My Precious".to_vec()));
    rig.wait_text("/CustomName", "My Precious");
    rig.wait_text("/Devices/0/CustomName", "My Precious");

    let before = rig.read_writes();
    let answer: i32 = rig
        .call(
            "/CustomName",
            "com.victronenergy.BusItem",
            "SetValue",
            (zbus::zvariant::Value::from("Garage"),),
        )
        .expect("SetValue");
    assert_eq!(answer, 0);
    assert_eq!(rig.read_writes(), before + 1, "the custom name went through VregLink");
    assert_eq!(rig.get_vreg(0x010C), (0, b"Garage".to_vec()));
    rig.wait_text("/Devices/0/CustomName", "Garage");
    // 65 bytes do not fit the VREG: refused (2) without traffic.
    let long = "n".repeat(65);
    let before = rig.read_writes();
    let answer: i32 = rig
        .call("/CustomName", "com.victronenergy.BusItem", "SetValue", (zbus::zvariant::Value::from(long),))
        .expect("SetValue");
    assert_eq!((answer, rig.read_writes()), (2, before));
}

#[test]
fn vreglink_over_rtu_get_set_status_codes_and_device_entry() {
    let Some(bus) = PrivateBus::start() else { return };
    let rig = Rig::rtu(bus);

    check_vreglink(&rig);

    // The system instance VREG moves /N2kSystemInstance; SetValue on it goes through VregLink too.
    assert_eq!(rig.set_vreg(0x0112, &[7]).0, 0);
    assert_eq!(rig.get_vreg(0x0112), (0, vec![7]));
    let answer: i32 = rig
        .call(
            "/N2kSystemInstance",
            "com.victronenergy.BusItem",
            "SetValue",
            (zbus::zvariant::Value::from(9i32),),
        )
        .expect("SetValue");
    assert_eq!(answer, 0);
    assert_eq!(rig.get_vreg(0x0112), (0, vec![9]));

    // Measurements and identity as devices.md section 4 lays them out.
    for (path, quantity) in [
        ("/Ac/Power", "power"),
        ("/Ac/L1/Power", "l1_power"),
        ("/Ac/L3/Power", "l3_power"),
        ("/Ac/L1/Voltage", "l1_voltage"),
        ("/Ac/L2/Current", "l2_current"),
        ("/Ac/L3/VoltageLineToLine", "l3_voltage_ll"),
        ("/Ac/L2/PowerFactor", "l2_power_factor"),
        ("/Ac/Energy/Forward", "energy_forward"),
        ("/Ac/L1/Energy/Reverse", "l1_energy_reverse"),
        ("/Ac/Frequency", "frequency"),
        ("/Ac/PENVoltage", "pen_voltage"),
        ("/Ac/N/Current", "neutral_current"),
        ("/Ac/PowerFactor", "power_factor"),
        ("/N2kSystemInstance", "n2k_system_instance"),
    ] {
        check_published(&rig, path, quantity);
    }
    assert_eq!(rig.int("/NrOfPhases"), 3);
    assert_eq!(rig.int("/PhaseSequence"), 0);
    assert_eq!(rig.int("/Alarms/PhaseRotation"), 0);
    assert_eq!(rig.int("/Capabilities/HasUdpSnapshots"), 1);
    assert_eq!(rig.int("/FirmwareVersion"), 0x0109FF);
    let firmware: String =
        rig.call("/FirmwareVersion", "com.victronenergy.BusItem", "GetText", ()).expect("text");
    assert_eq!(firmware, "v1.09");

    // /Devices/0 as the D-Bus API page lists it.
    assert_eq!(rig.int("/Devices/0/ProductId"), 0xA1B1);
    assert_eq!(rig.int("/Devices/0/DeviceInstance"), rig.int("/DeviceInstance"));
    assert_eq!(rig.text("/Devices/0/ProductName"), "Energy Meter VM-3P75CT");
    assert_eq!(rig.text("/Devices/0/ServiceName"), SERVICE);
    assert_eq!(rig.text("/Devices/0/Serial"), "HQ2250ABCDE");
    assert_eq!(rig.try_value("/Devices/0/FirmwareVersion"), rig.try_value("/FirmwareVersion"));
    let xml: String =
        rig.call(VREG_PATH, "org.freedesktop.DBus.Introspectable", "Introspect", ()).expect("introspect");
    assert!(xml.contains(r#"<interface name="com.victronenergy.VregLink">"#), "{xml}");
    assert!(xml.contains(r#"<method name="SetVreg">"#), "{xml}");
    let xml: String =
        rig.call("/Devices/0", "org.freedesktop.DBus.Introspectable", "Introspect", ()).expect("introspect");
    assert!(xml.contains(r#"<node name="VregLink"/>"#) && xml.contains(r#"<node name="Serial"/>"#), "{xml}");

    // Bad arguments: a D-Bus error, not a panic or a hang.
    let wrong: zbus::Result<(u16, Vec<u8>)> = rig.call(VREG_PATH, VREGLINK, "GetVreg", ("text",));
    assert!(wrong.is_err());
    let none: zbus::Result<(u16, Vec<u8>)> = rig.call(VREG_PATH, VREGLINK, "Reboot", ());
    assert!(none.is_err());

    // Calls in flight together all get their own answer (each waits for its turn on the bus).
    let calls: Vec<_> = (0..8u16)
        .map(|i| {
            let conn = rig.conn.clone();
            let id: u16 = if i % 2 == 0 { 0x0100 } else { 0x0112 };
            let task = rig.bg.spawner.spawn(async move {
                let reply =
                    conn.call_method(Some(SERVICE), VREG_PATH, Some(VREGLINK), "GetVreg", &(id,)).await?;
                reply.body().deserialize::<(u16, Vec<u8>)>()
            });
            (id, task)
        })
        .collect();
    for (id, task) in calls {
        let (status, data) = async_io::block_on(task).expect("GetVreg");
        assert_eq!((status, data.len()), (0, if id == 0x0100 { 4 } else { 1 }));
    }
}

#[test]
fn vreglink_over_udp_with_dbus_send_and_offline_device() {
    let Some(bus) = PrivateBus::start() else { return };
    let rig = Rig::udp(bus);

    check_vreglink(&rig);

    // A non-Rust client: dbus-send.
    let dest = format!("--dest={SERVICE}");
    let send = |args: &[&str]| {
        let mut all = vec!["--session", "--print-reply", dest.as_str(), VREG_PATH];
        all.extend_from_slice(args);
        let (ok, out, err) = rig.bus.run("dbus-send", &all);
        assert!(ok, "dbus-send {args:?}: {err}");
        out
    };
    let out = send(&["com.victronenergy.VregLink.GetVreg", "uint16:256"]);
    assert!(out.contains("uint16 0") && out.contains("00 12 34 fe"), "{out}");
    let out = send(&["com.victronenergy.VregLink.SetVreg", "uint16:268", "array:byte:72,105"]);
    assert!(out.contains("uint16 0"), "{out}");
    let out = send(&["com.victronenergy.VregLink.GetVreg", "uint16:268"]);
    assert!(out.contains(r#"array of bytes "Hi""#), "{out}");
    let out = send(&["com.victronenergy.VregLink.GetVreg", "uint16:2457"]);
    assert!(out.contains("uint16 32769"), "{out}");

    // The meter stops answering. Until the daemon notices, a GetVreg waits for its timeout on
    // the wire; once it has, GetVreg answers 0x8000 at once without any traffic.
    rig.sim.fault("vm3p75ct", "silent on").expect("silent");
    let mut offline_answered = false;
    for _ in 0..100 {
        let before = rig.read_writes();
        let reply: zbus::Result<(u16, Vec<u8>)> = rig.call(VREG_PATH, VREGLINK, "GetVreg", (0x0100u16,));
        let Ok((status, _)) = reply else { break };
        assert_eq!(status, 0x8000);
        if rig.read_writes() == before {
            offline_answered = true;
            let set: (u16, Vec<u8>) = rig.set_vreg(0x010C, b"x");
            assert_eq!((set.0, rig.read_writes()), (0x8100, before));
            break;
        }
    }
    assert!(offline_answered, "no GetVreg was answered without traffic while the meter was silent");
}

#[test]
fn vreglink_over_tcp() {
    let Some(bus) = PrivateBus::start() else { return };
    let rig = Rig::tcp(bus);
    assert_eq!(rig.get_vreg(0x0100), (0, vec![0x00, 0x12, 0x34, 0xFE]));
    assert_eq!(rig.set_vreg(0x010C, "Wärmepumpe".as_bytes()), (0, vec![]));
    assert_eq!(rig.get_vreg(0x010C), (0, "Wärmepumpe".as_bytes().to_vec()));
    rig.wait_text("/CustomName", "Wärmepumpe");
    assert_eq!(rig.get_vreg(0xEE00).0, 0x8002);
}

/// A GetVreg waiting for its turn on the bus blocks neither its own service's dispatcher nor
/// another service: the test holds the bus's command queue, so the call stays pending until the
/// test answers it (no timing involved). The answer it then gives is parsed as a device's.
#[test]
fn pending_vreg_call_blocks_no_dispatcher() {
    use dbus_modbus_client::dbus::{Item, ServiceBuilder};
    use dbus_modbus_client::engine::bus::{Command, CommandError};
    use dbus_modbus_client::vreg::{add_device_entry, DeviceEntry, VregPort};
    use dmc_core::pdu::Response;
    use dmc_core::profile::victron_em::VM_3P75CT;
    use dmc_core::vreglink::encode_reply;

    let Some(bus) = PrivateBus::start() else { return };
    let bg = Background::start();
    let (commands, queue) = async_channel::unbounded::<Command>();
    let support = VM_3P75CT.vreglink.expect("the VM-3P75CT has VregLink");
    let port = VregPort::new(support, 0, commands, Arc::new(AtomicBool::new(true)));
    let (name, other) = ("com.victronenergy.grid.vreg_pending", "com.victronenergy.grid.vreg_other");
    let mut meter = ServiceBuilder::new(name);
    meter.add("/CustomName", Item::new("")).expect("item");
    add_device_entry(
        &mut meter,
        &DeviceEntry { instance: 40, service_name: name, profile: &VM_3P75CT },
        port,
    );
    let mut plain = ServiceBuilder::new(other);
    plain.add("/Ac/Power", Item::new(1234.0)).expect("item");
    let (choice, spawner) = (bus.bus(), bg.spawner.clone());
    let _services = bg.block_on(async move {
        (
            meter.register(&choice, &spawner).await.expect("meter"),
            plain.register(&choice, &spawner).await.expect("other"),
        )
    });
    let address = bus.address().to_string();
    let conn = bg.block_on(async move {
        zbus::connection::Builder::address(address.as_str()).expect("address").build().await.expect("connect")
    });
    let get_vreg = |id: u16| {
        let conn = conn.clone();
        bg.spawner.spawn(async move {
            let reply = conn.call_method(Some(name), VREG_PATH, Some(VREGLINK), "GetVreg", &(id,)).await?;
            reply.body().deserialize::<(u16, Vec<u8>)>()
        })
    };
    let get_value = |service: &'static str, path: &'static str| {
        let conn = conn.clone();
        async_io::block_on(bg.spawner.spawn(async move {
            let reply = conn
                .call_method(Some(service), path, Some("com.victronenergy.BusItem"), "GetValue", &())
                .await?;
            reply.body().deserialize::<OwnedValue>()
        }))
    };

    let pending = get_vreg(0x0100);
    let command = async_io::block_on(queue.recv()).expect("the GetVreg reached the command queue");
    // The FC23 of a GetVreg on the meter's block: read 35 at 0x4000, write [0x0100] at 0x4000.
    assert_eq!(command.pdu, [0x17, 0x40, 0x00, 0x00, 0x23, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00]);
    // While it waits, both services answer.
    assert_eq!(
        get_value(name, "/Devices/0/ProductId").ok().and_then(|v| i32::try_from(v).ok()),
        Some(0xA1B1)
    );
    assert_eq!(get_value(other, "/Ac/Power").ok().and_then(|v| f64::try_from(v).ok()), Some(1234.0));
    assert!(!pending.is_finished(), "answered before the bus did");

    // The device's answer, as the engine hands it back.
    let words = encode_reply(0x0100, 0, &[0x00, 0x12, 0x34, 0xFE], 35);
    let mut pdu = [0u8; 256];
    let n = Response::ReadWriteMultipleRegisters(dmc_core::pdu::Words::from_slice(&words))
        .emit(&mut pdu)
        .expect("emit");
    command.reply.try_send(Ok(pdu[..n].to_vec())).expect("reply");
    assert_eq!(async_io::block_on(pending).expect("GetVreg"), (0, vec![0x00, 0x12, 0x34, 0xFE]));

    // A failed transaction, and an answer for another VREG: the op's unknown error.
    let pending = get_vreg(0x010C);
    let command = async_io::block_on(queue.recv()).expect("queued");
    command.reply.try_send(Err(CommandError::Failed("timeout".into()))).expect("reply");
    assert_eq!(async_io::block_on(pending).expect("GetVreg"), (0x8000, vec![]));
    let pending = get_vreg(0x010C);
    let command = async_io::block_on(queue.recv()).expect("queued");
    let words = encode_reply(0x0100, 0, &[1, 2], 35);
    let n = Response::ReadWriteMultipleRegisters(dmc_core::pdu::Words::from_slice(&words))
        .emit(&mut pdu)
        .expect("emit");
    command.reply.try_send(Ok(pdu[..n].to_vec())).expect("reply");
    assert_eq!(async_io::block_on(pending).expect("GetVreg"), (0x8000, vec![]));
}
