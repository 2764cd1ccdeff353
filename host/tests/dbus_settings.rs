//! Settings and the daemon's services: role and instance changes re-register, custom names
//! persist and follow GUI edits, two meters asking for the same instance get distinct ones, the
//! Python fork's settings are migrated, and outside consumers (gdbus, dbus-python) see the
//! running daemon. Private dbus-daemon, simulators on a pty, the built-in settings stand-in.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use common::services::{call, get_items, names, text, try_get_items, wait_for, wait_until, DaemonRun};
use dbus_modbus_client::daemon::DaemonOptions;
use dbus_modbus_client::dbus::ItemValue;
use dbus_modbus_client::settings::client::SettingSpec;
use dbus_modbus_client::spec::DeviceSpec;
use dmc_hil::model::DeviceKind;

const REGISTER_WITHIN: Duration = Duration::from_secs(20);

type Setup = common::settings_rig::SettingsRig;

impl Setup {
    fn daemon(&self, units: &[u8]) -> DaemonRun {
        let devices = units
            .iter()
            .map(|u| DeviceSpec::parse(&format!("rtu:{}:9600:{u}", self.sim.path().display())).expect("spec"))
            .collect();
        DaemonRun::start(&self.bg, DaemonOptions { bus: self.bus.bus(), devices, ..DaemonOptions::default() })
    }

    /// Waits until `service`'s GetItems text at `path` is `want`.
    fn wait_text(&self, service: &str, path: &str, want: &str) -> bool {
        wait_until(REGISTER_WITHIN, || {
            let items = try_get_items(&self.bg, &self.bus, service).ok()?;
            (text(&items, path) == want).then_some(())
        })
        .is_some()
    }
}

fn ident_of(service: &str) -> &str {
    service.rsplit('.').next().unwrap_or_default()
}

#[test]
fn role_change_grid_to_acload_reregisters_with_the_same_instance() {
    let Some(s) = Setup::new(&[(2, DeviceKind::Sdm230)]) else { return };
    let _daemon = s.daemon(&[2]);
    let grid = wait_for(&s.bus, "com.victronenergy.grid.eastron_", REGISTER_WITHIN).expect("grid service");
    let ident = ident_of(&grid).to_string();
    let before = get_items(&s.bg, &s.bus, &grid);
    assert_eq!(text(&before, "/DeviceInstance"), "40");
    assert!(!before.contains_key("/Position"), "a grid meter has no /Position");

    // A role not in /AllowedRoles is refused (2) and changes nothing.
    assert!(call(&s.bus, &grid, "/Role", "SetValue", Some("variant:string:tank")).contains("int32 2"));
    // The GUI's way: SetValue on /Role.
    assert!(call(&s.bus, &grid, "/Role", "SetValue", Some("variant:string:acload")).contains("int32 0"));
    let acload = format!("com.victronenergy.acload.{ident}");
    assert_eq!(wait_for(&s.bus, &acload, REGISTER_WITHIN).as_deref(), Some(acload.as_str()));
    assert!(
        wait_until(REGISTER_WITHIN, || (!names(&s.bus).contains(&grid)).then_some(())).is_some(),
        "the grid service is gone"
    );
    let items = get_items(&s.bg, &s.bus, &acload);
    assert_eq!(text(&items, "/DeviceInstance"), "40", "same instance");
    assert_eq!(text(&items, "/Role"), "acload");
    assert_eq!(text(&items, "/IsGenericEnergyMeter"), "1");
    assert_eq!(text(&items, "/Position"), "0", "acload has /Position");
    let setting = format!("/Settings/Devices/{ident}/ClassAndVrmInstance");
    assert_eq!(s.get_setting(&setting), ItemValue::Text("acload:40".into()));

    // A GUI edit of the instance re-registers under the same name with the new instance.
    assert_eq!(s.set_setting(&setting, ItemValue::Text("acload:45".into())), 0);
    assert!(s.wait_text(&acload, "/DeviceInstance", "45"), "instance 45 published");

    // A GUI edit of the class alone moves the service back.
    assert_eq!(s.set_setting(&setting, ItemValue::Text("grid:45".into())), 0);
    assert!(s.wait_text(&grid, "/Role", "grid"), "back to grid");
    assert_eq!(text(&get_items(&s.bg, &s.bus, &grid), "/DeviceInstance"), "45");
}

#[test]
fn custom_name_follows_gui_edits_and_persists_across_a_restart() {
    let Some(s) = Setup::new(&[(2, DeviceKind::Sdm230)]) else { return };
    let daemon = s.daemon(&[2]);
    let grid = wait_for(&s.bus, "com.victronenergy.grid.eastron_", REGISTER_WITHIN).expect("grid service");
    let setting = format!("/Settings/Devices/{}/CustomName", ident_of(&grid));

    // Written on the service: stored in settings.
    assert!(call(&s.bus, &grid, "/CustomName", "SetValue", Some("variant:string:Roof")).contains("int32 0"));
    assert_eq!(s.get_setting(&setting), ItemValue::Text("Roof".into()));
    // Written in settings (the GUI): appears on the service.
    assert_eq!(s.set_setting(&setting, ItemValue::Text("Shed meter".into())), 0);
    assert!(s.wait_text(&grid, "/CustomName", "Shed meter"));
    let control_name = format!("/Devices/{}/Name", ident_of(&grid));
    assert!(
        s.wait_text("com.victronenergy.modbusclient.tcp", &control_name, "Shed meter"),
        "control service name"
    );

    assert_eq!(daemon.stop(), 0);
    assert!(
        wait_until(REGISTER_WITHIN, || (!names(&s.bus).contains(&grid)).then_some(())).is_some(),
        "service gone with the daemon"
    );
    let _again = s.daemon(&[2]);
    assert_eq!(wait_for(&s.bus, &grid, REGISTER_WITHIN).as_deref(), Some(grid.as_str()));
    assert_eq!(text(&get_items(&s.bg, &s.bus, &grid), "/CustomName"), "Shed meter");
}

#[test]
fn two_meters_asking_grid_40_get_distinct_instances() {
    let Some(s) = Setup::new(&[(2, DeviceKind::Sdm230), (3, DeviceKind::Sdm230)]) else { return };
    s.sim.set("3", "serial", "22000999").expect("second serial");
    let _daemon = s.daemon(&[2, 3]);
    let both = wait_until(REGISTER_WITHIN, || {
        let grids: Vec<String> =
            names(&s.bus).into_iter().filter(|n| n.starts_with("com.victronenergy.grid.")).collect();
        (grids.len() == 2).then_some(grids)
    })
    .expect("two grid services");
    let mut instances: Vec<String> =
        both.iter().map(|n| text(&get_items(&s.bg, &s.bus, n), "/DeviceInstance")).collect();
    instances.sort();
    assert_eq!(instances, ["40", "41"], "localsettings gives the next free instance of the class");
}

#[test]
fn settings_of_the_python_fork_are_migrated() {
    let Some(s) = Setup::new(&[(1, DeviceKind::GrowattMin), (2, DeviceKind::Sdm230)]) else { return };
    // What the fork left in settings.xml (its idents: cg_<serial>, pv_<serial>).
    let client = s.settings.clone();
    let old = |ident: &str, class: &str, name: &str, position: i32| {
        let base = format!("/Settings/Devices/{ident}");
        vec![
            SettingSpec::text(format!("{base}/ClassAndVrmInstance"), class),
            SettingSpec::text(format!("{base}/CustomName"), name),
            SettingSpec::int(format!("{base}/Position"), position, 0, 2),
        ]
    };
    let mut specs = old("cg_22000123", "grid:43", "Old meter", 0);
    specs.extend(old("pv_SIMGW00001", "pvinverter:27", "Old PV", 1));
    let results = s.bg.block_on(async move { client.add_settings(&specs).await.expect("AddSettings") });
    assert!(results.iter().all(|r| r.error == 0), "{results:?}");

    let _daemon = s.daemon(&[1, 2]);
    let grid = wait_for(&s.bus, "com.victronenergy.grid.eastron_22000123", REGISTER_WITHIN).expect("grid");
    let pv =
        wait_for(&s.bus, "com.victronenergy.pvinverter.growatt_SIMGW00001", REGISTER_WITHIN).expect("pv");
    let items = get_items(&s.bg, &s.bus, &grid);
    assert_eq!(text(&items, "/DeviceInstance"), "43");
    assert_eq!(text(&items, "/CustomName"), "Old meter");
    let items = get_items(&s.bg, &s.bus, &pv);
    assert_eq!(text(&items, "/DeviceInstance"), "27");
    assert_eq!(text(&items, "/CustomName"), "Old PV");
    assert_eq!(text(&items, "/Position"), "1");
    assert_eq!(
        s.get_setting("/Settings/Devices/eastron_22000123/ClassAndVrmInstance"),
        ItemValue::Text("grid:43".into())
    );
    // The fork's instance was released (RemoveSettings), its name left alone.
    let client = s.settings.clone();
    let gone = s.bg.block_on(async move {
        client.get_value("/Settings/Devices/cg_22000123/ClassAndVrmInstance").await.is_err()
    });
    assert!(gone, "the fork's ClassAndVrmInstance is removed");
    assert_eq!(
        s.get_setting("/Settings/Devices/cg_22000123/CustomName"),
        ItemValue::Text("Old meter".into())
    );
}

const PY_ITEMS_CHANGED: &str = r#"
import sys, dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib
DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
owner = bus.get_name_owner(sys.argv[1])
loop = GLib.MainLoop()
def changed(items, sender=None):
    # Only the values the test sets (negative), not the simulator's own.
    if sender == owner and '/Ac/Power' in items and float(items['/Ac/Power']['Value']) < -1000:
        print("power %s %s" % (float(items['/Ac/Power']['Value']), items['/Ac/Power']['Text']))
        sys.stdout.flush()
        loop.quit()
bus.add_signal_receiver(changed, signal_name='ItemsChanged', dbus_interface='com.victronenergy.BusItem',
                        path='/', sender_keyword='sender')
print("ready"); sys.stdout.flush()
GLib.timeout_add(30000, loop.quit)
loop.run()
"#;

#[test]
fn outside_consumers_read_the_running_daemon() {
    let Some(s) = Setup::new(&[(2, DeviceKind::Sdm230)]) else { return };
    let _daemon = s.daemon(&[2]);
    let grid = wait_for(&s.bus, "com.victronenergy.grid.eastron_", REGISTER_WITHIN).expect("grid service");

    let (ok, out, err) = s.bus.gdbus_call(&grid, "/DeviceInstance", "GetValue");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "(<40>,)");

    let mut child = s
        .bus
        .command("/usr/bin/python3")
        .args(["-c", PY_ITEMS_CHANGED, &grid])
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "/usr/bin/python3 with python3-dbus and gi is needed");
    // Change the meter's power until the listener has seen one ItemsChanged carrying it.
    let mut rest = String::new();
    let mut watts = -1500;
    let seen = wait_until(Duration::from_secs(30), || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(());
        }
        watts -= 10;
        let _ = s.sim.set("sdm230", "power", &watts.to_string());
        None
    });
    assert!(seen.is_some(), "python listener ended");
    stdout.read_to_string(&mut rest).expect("output");
    assert!(rest.starts_with("power -1"), "{rest}");
    assert!(rest.trim_end().ends_with(" W"), "{rest}");
}
