//! `-P/--probe SPEC` and `scan`: identify devices once, print what they are.
//!
//! Both run the engine's own identification (the same probe reads, judges
//! and timeouts as the daemon), without D-Bus: `--probe` prints the identity
//! and every register value of each spec; `scan` asks every unit of a range
//! on one port and lists what answered, with a progress bar on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use dmc_core::time::Instant;

use crate::engine::{Bus, BusConfig, Clock, Device, Observer, PresenceChange};
use crate::link::LinkError;
use crate::publish::item_text;
use crate::spec::{DeviceSpec, Method};

/// How far identification should go before a device counts as done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Profile matched (scan).
    Identified,
    /// Identity and every block read once (probe).
    AllValues,
}

struct Watch {
    goal: Goal,
    done: Vec<bool>,
    deadline: StdInstant,
    /// The port could not be opened: nothing to wait for.
    link_error: Option<String>,
}

impl Watch {
    fn mark(&mut self, i: usize) {
        if let Some(d) = self.done.get_mut(i) {
            *d = true;
        }
    }
}

impl Observer for Watch {
    fn presence(&mut self, i: usize, device: &Device, change: PresenceChange, _now: Instant) {
        match change {
            PresenceChange::Identified if self.goal == Goal::Identified => self.mark(i),
            PresenceChange::Ready if self.goal == Goal::Identified => self.mark(i),
            PresenceChange::Lost => self.mark(i),
            _ => {}
        }
        if device.unidentified() {
            self.mark(i);
        }
    }

    fn values(&mut self, i: usize, device: &Device, _now: Instant) {
        // Probe: done once every block has been read at least once.
        if self.goal == Goal::AllValues && device.is_ready() && device.fresh.iter().all(|&f| f) {
            self.mark(i);
        }
    }

    fn link(&mut self, _bus: &str, error: Option<&LinkError>) {
        self.link_error = error.map(ToString::to_string);
    }

    fn stop_requested(&mut self) -> bool {
        StdInstant::now() >= self.deadline || self.done.iter().all(|&d| d) || self.link_error.is_some()
    }
}

/// Runs identification for `specs` (one bus) until each is done or `limit` passes.
async fn identify(specs: Vec<DeviceSpec>, goal: Goal, limit: StdDuration) -> Result<Bus, String> {
    let Some(first) = specs.first() else { return Err("no device".into()) };
    let config = BusConfig::for_spec(first);
    let n = specs.len();
    let mut bus = Bus::new(config, specs, Clock::new())?;
    let mut watch =
        Watch { goal, done: vec![false; n], deadline: StdInstant::now() + limit, link_error: None };
    bus.run(&mut watch).await;
    match watch.link_error {
        Some(e) => Err(e),
        None => Ok(bus),
    }
}

/// One line describing what answered on a spec.
fn describe(device: &Device) -> String {
    match device.profile {
        Some(p) => {
            let serial = device.value_of("/Serial").and_then(|v| v.as_str().map(str::to_string));
            format!(
                "{}: {} ({}), serial {}",
                device.spec.without_profile(),
                p.product_name,
                p.name,
                serial.unwrap_or_else(|| "?".into())
            )
        }
        None if device.unidentified() => format!("{}: answers, but matches no known model", device.spec),
        None => format!("{}: no answer", device.spec),
    }
}

/// `-P/--probe`: prints identity and every register value; exit 0 when every spec was identified.
pub fn probe(specs: Vec<DeviceSpec>) -> i32 {
    let mut code = 0;
    let mut by_bus: std::collections::BTreeMap<String, Vec<DeviceSpec>> = Default::default();
    for s in specs {
        by_bus.entry(s.bus_key()).or_default().push(s);
    }
    for (_, specs) in by_bus {
        let bus = match async_io::block_on(identify(specs, Goal::AllValues, StdDuration::from_secs(20))) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("dbus-modbus-client: {e}");
                return 1;
            }
        };
        for device in &bus.devices {
            println!("{}", describe(device));
            let Some(profile) = device.profile else {
                code = 1;
                continue;
            };
            for (def, value) in profile.registers.iter().zip(&device.values) {
                let path = def.paths.first().copied().unwrap_or(def.name);
                println!("  {path:<36} {}", item_text(def, value));
            }
        }
    }
    code
}

/// Parses a unit range `A-B` or a single unit.
pub fn parse_units(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("bad unit range '{s}': expected e.g. 1-247 or 2");
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: u8 = a.parse().map_err(|_| bad())?;
    let b: u8 = b.parse().map_err(|_| bad())?;
    if a == 0 || b > 247 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `scan`: asks units `first..=last` on `port` at `baud`; lists what answered.
/// Exit 0 when something was found, 1 otherwise (what serial-starter needs).
pub fn scan(port: &str, baud: u32, ascii: bool, first: u8, last: u8) -> i32 {
    let tty = std::io::stderr().is_terminal();
    match async_io::block_on(scan_units(port, baud, ascii, first, last, tty)) {
        Err(e) => {
            eprintln!("dbus-modbus-client scan: {e}");
            1
        }
        Ok(found) if found.is_empty() => {
            eprintln!("scan: no device answered on {port} at {baud} baud (units {first}-{last})");
            1
        }
        Ok(_) => 0,
    }
}

/// Asks units `first..=last` on one port and returns the identified devices'
/// specs, with the profile named so the daemon skips identifying them again.
/// Prints a line per device found and the progress (a bar when `tty`).
pub async fn scan_units(
    port: &str,
    baud: u32,
    ascii: bool,
    first: u8,
    last: u8,
    tty: bool,
) -> Result<Vec<DeviceSpec>, String> {
    let method = if ascii { Method::Ascii } else { Method::Rtu };
    let target = port.strip_prefix("/dev/").filter(|n| !n.contains('/')).unwrap_or(port).to_string();
    let total = usize::from(last.saturating_sub(first)) + 1;
    let mut found = Vec::new();
    let mut asked = 0usize;
    let units: Vec<u8> = (first..=last).collect();
    for chunk in units.chunks(crate::engine::bus::MAX_DEVICES) {
        let specs: Vec<DeviceSpec> = chunk
            .iter()
            .map(|&unit| DeviceSpec {
                method,
                target: target.clone(),
                rate_or_port: baud,
                unit,
                profile: None,
            })
            .collect();
        let bus = identify(specs, Goal::Identified, StdDuration::from_secs(10 + chunk.len() as u64)).await?;
        for d in &bus.devices {
            if d.profile.is_some() || d.unidentified() {
                if tty {
                    eprint!("\r\x1b[2K");
                }
                println!("{}", describe(d));
            }
            if let Some(p) = d.profile {
                found.push(DeviceSpec { profile: Some(p.name.to_string()), ..d.spec.clone() });
            }
        }
        asked += chunk.len();
        progress(tty, asked, total, found.len());
    }
    if tty {
        eprintln!();
    }
    Ok(found)
}

fn progress(tty: bool, asked: usize, total: usize, found: usize) {
    if tty {
        let width = 30;
        let filled = asked * width / total.max(1);
        eprint!(
            "\r[{}{}] {asked}/{total} units, {found} found",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = std::io::stderr().flush();
    } else {
        eprintln!("scan: {asked}/{total} units asked, {found} found");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_ranges() {
        assert_eq!(parse_units("1-247"), Ok((1, 247)));
        assert_eq!(parse_units("2"), Ok((2, 2)));
        for bad in ["0-5", "1-248", "5-1", "x", ""] {
            assert!(parse_units(bad).unwrap_err().contains("e.g. 1-247"), "{bad}");
        }
    }
}
