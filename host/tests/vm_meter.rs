//! The Victron VM-3P75CT dictates its configuration (devices.md section 4): role from 0x2001,
//! phases from 0x2000, position from 0x2022. Private dbus-daemon, the simulated meter at unit 3
//! on a pty, the settings stand-in and the daemon: the service shows what the meter says, and a
//! change on the meter re-creates the service with the same VRM instance.

mod common;

use std::time::Duration;

use common::services::{call, names, text, try_get_items, wait_for, wait_until, DaemonRun, Items};
use common::settings_rig::SettingsRig;
use dbus_modbus_client::daemon::DaemonOptions;
use dbus_modbus_client::dbus::ItemValue;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::model::DeviceKind;

const UNIT: u8 = 3;
const IDENT: &str = "ve_HQ2250ABCDE";
const WITHIN: Duration = Duration::from_secs(30);

/// The daemon polling the simulated meter, with the settings stand-in (the daemon first, so it
/// stops before the bus goes).
struct Rig {
    _daemon: DaemonRun,
    s: SettingsRig,
}

impl Rig {
    fn start() -> Option<Rig> {
        let s = SettingsRig::new(&[(UNIT, DeviceKind::Vm3p75ct)])?;
        let spec = format!("rtu:{}:9600:{UNIT}", s.sim.path().display());
        let devices = vec![DeviceSpec::parse(&spec).expect("spec")];
        let daemon =
            DaemonRun::start(&s.bg, DaemonOptions { bus: s.bus.bus(), devices, ..DaemonOptions::default() });
        Some(Rig { _daemon: daemon, s })
    }

    fn class_and_instance(&self) -> ItemValue {
        self.s.get_setting(&format!("/Settings/Devices/{IDENT}/ClassAndVrmInstance"))
    }

    fn set_class_and_instance(&self, value: &str) {
        let path = format!("/Settings/Devices/{IDENT}/ClassAndVrmInstance");
        assert_eq!(self.s.set_setting(&path, ItemValue::Text(value.into())), 0, "{value}");
    }

    /// The unique name owning `service` (a re-created service has a new connection).
    fn owner(&self, service: &str) -> String {
        let args = [
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetNameOwner",
        ];
        let name = format!("string:{service}");
        let (ok, out, err) = self.s.bus.run("dbus-send", &[&args[..], &[name.as_str()]].concat());
        assert!(ok, "GetNameOwner {service}: {err}");
        out.lines().last().unwrap_or_default().trim().to_string()
    }

    fn set_sim(&self, name: &str, value: &str) {
        self.s.sim.set("vm3p75ct", name, value).unwrap_or_else(|e| panic!("sim {name} {value}: {e}"));
    }

    /// Waits until `service`'s GetItems answer satisfies `ok` (a re-registration in between is
    /// tolerated); that answer.
    fn wait_items(&self, service: &str, what: &str, ok: impl Fn(&Items) -> bool) -> Items {
        let mut last = None;
        let found = wait_until(WITHIN, || {
            let items = try_get_items(&self.s.bg, &self.s.bus, service).ok()?;
            if ok(&items) {
                return Some(items);
            }
            last = Some(items);
            None
        });
        found.unwrap_or_else(|| panic!("{service}: never {what}; last {last:?}"))
    }

    /// Waits for the service of `role` to appear and show `/Position` = `position`.
    fn wait_role(&self, role: &str, position: &str) -> (String, Items) {
        let name = format!("com.victronenergy.{role}.{IDENT}");
        assert_eq!(wait_for(&self.s.bus, &name, WITHIN).as_deref(), Some(name.as_str()), "{role} service");
        let items = self.wait_items(&name, "the position", |i| text(i, "/Position") == position);
        assert_eq!(text(&items, "/Role"), role);
        assert_eq!(text(&items, "/PositionIsAdjustable"), "0");
        (name, items)
    }
}

/// Which of `/Ac/L1/Power`, `/Ac/L2/Power`, `/Ac/L3/Power` (and their other per-phase paths) exist.
fn phases_present(items: &Items) -> [bool; 3] {
    [1, 2, 3].map(|n| {
        let has = |leaf: &str| items.contains_key(&format!("/Ac/L{n}/{leaf}"));
        let all = ["Power", "Voltage", "Current", "Energy/Forward", "PowerFactor"].iter().all(|l| has(l));
        let any = ["Power", "Voltage", "Current", "Energy/Forward", "PowerFactor"].iter().any(|l| has(l));
        assert_eq!(all, any, "L{n}: all or none of its paths");
        all
    })
}

#[test]
fn the_meter_dictates_role_phases_and_position() {
    let Some(rig) = Rig::start() else { return };
    let grid = format!("com.victronenergy.grid.{IDENT}");
    assert_eq!(wait_for(&rig.s.bus, &grid, WITHIN).as_deref(), Some(grid.as_str()), "grid service");

    // Default: a three-phase grid meter.
    let items = rig.wait_items(&grid, "three-phase", |i| text(i, "/NrOfPhases") == "3");
    assert_eq!(phases_present(&items), [true; 3]);
    assert_eq!(text(&items, "/Role"), "grid");
    assert!(!items.contains_key("/AllowedRoles"), "the meter dictates its role");
    assert!(!items.contains_key("/Position"), "no /Position for grid");
    assert_eq!(text(&items, "/PositionIsAdjustable"), "0");
    assert_eq!(text(&items, "/RefreshTime"), "20");
    assert_eq!(text(&items, "/DeviceInstance"), "40");
    assert_eq!(rig.class_and_instance(), ItemValue::Text("grid:40".into()));

    // /Role is read-only: a SetValue is refused (1, not writable) and nothing moves.
    let answer = call(&rig.s.bus, &grid, "/Role", "SetValue", Some("variant:string:pvinverter"));
    assert!(answer.contains("int32 1"), "SetValue /Role: {answer}");
    assert_eq!(rig.class_and_instance(), ItemValue::Text("grid:40".into()));

    // The user still owns the instance: a GUI edit re-registers with it.
    rig.set_class_and_instance("grid:41");
    rig.wait_items(&grid, "instance 41", |i| text(i, "/DeviceInstance") == "41");

    // Single phase on L2: the service is re-created with only L2's paths.
    let three_phase_owner = rig.owner(&grid);
    rig.set_sim("phase_config", "1");
    let items = rig.wait_items(&grid, "single phase", |i| text(i, "/NrOfPhases") == "1");
    assert_eq!(phases_present(&items), [false, true, false]);
    assert_ne!(rig.owner(&grid), three_phase_owner, "a new service, not an update");
    assert_eq!(text(&items, "/DeviceInstance"), "41");

    // Role 1 (pvinverter) with position 2: a pvinverter service, same instance, /Position 2.
    rig.set_sim("position", "2");
    rig.set_sim("role", "1");
    let (pv, items) = rig.wait_role("pvinverter", "2");
    assert_eq!(text(&items, "/DeviceInstance"), "41", "same instance");
    assert_eq!(phases_present(&items), [false, true, false]);
    assert!(
        wait_until(WITHIN, || (!names(&rig.s.bus).contains(&grid)).then_some(())).is_some(),
        "the grid service is gone"
    );
    assert_eq!(rig.class_and_instance(), ItemValue::Text("pvinverter:41".into()));

    // /Position follows 0x2022 in place; an acload maps 0x2022 = 1 to /Position 0.
    let pv_owner = rig.owner(&pv);
    rig.set_sim("position", "0");
    rig.wait_items(&pv, "/Position 0", |i| text(i, "/Position") == "0");
    assert_eq!(rig.owner(&pv), pv_owner, "the same service");
    rig.set_sim("position", "1");
    rig.set_sim("role", "3");
    let (_, items) = rig.wait_role("acload", "0");
    assert_eq!(text(&items, "/DeviceInstance"), "41");
}
