//! The control channel: a line protocol to change faults and values while the simulator runs.
//!
//! The same commands arrive over a Unix socket (`dmc-hil sim --control PATH`,
//! default `<pty path>.ctl`), from a `--script` file, and from
//! [`crate::SimHandle::command`]. One request per line, one reply line per
//! request: `ok ...` or `err <reason>`. `UNIT` is an address (`2`) or a device
//! name (`sdm230`, `growatt`); `all` applies to every simulated unit.
//!
//! ```text
//! help                                   this list
//! stats                                  counters: bus.frames= bus.crc_bad= ... u1.requests= u1.responses= ...
//! stats reset                            zero all counters
//! faults                                 active faults per unit
//! fault UNIT|all clear                   remove every fault
//! fault UNIT|all silent on|off           answer nothing (inverter asleep, cable cut)
//! fault UNIT|all crc RATE                damage the CRC of this fraction of responses (0..1)
//! fault UNIT|all truncate RATE           cut this fraction of responses short
//! fault UNIT|all garbage RATE            send random bytes after this fraction of responses
//! fault UNIT|all wrong-unit RATE         answer this fraction with another unit's address
//! fault UNIT|all delay MS                reply MS later than the device turnaround (0 = off)
//! fault UNIT|all exception input|holding|any FIRST LAST CODE
//!                                        answer exception CODE for requests touching FIRST..=LAST
//! fault UNIT|all exception off           drop the forced exceptions
//! fault UNIT|all refuse-writes CODE|off  refuse every write with exception CODE
//! turnaround UNIT|all MS|auto            override the device turnaround
//! set UNIT NAME VALUE                    change a model value (e.g. set sdm230 power -1500, set growatt pv auto)
//! get UNIT NAME                          the model's current value of a quantity
//! last UNIT NAME                         the value last served intact on the wire
//! served UNIT NAME                       count and the last 16 values served intact
//! ```
//! Example session: `fault growatt silent on` → `ok growatt(1) silent=on`.

use crate::bus::Bus;
use crate::fault::{ExceptionRange, Faults};
use crate::model::Bank;

/// The command list, for `help` and `--help`.
pub const HELP: &str = "commands: help | stats [reset] | faults | fault UNIT|all clear | \
fault UNIT|all silent on|off | fault UNIT|all crc|truncate|garbage|wrong-unit RATE | \
fault UNIT|all delay MS | fault UNIT|all exception input|holding|any FIRST LAST CODE | \
fault UNIT|all exception off | fault UNIT|all refuse-writes CODE|off | turnaround UNIT|all MS|auto | \
set UNIT NAME VALUE | get UNIT NAME | last UNIT NAME | served UNIT NAME";

/// Runs one command line against the bus at wall time `wall_s`; returns the reply text without `ok`/`err`.
pub fn execute(bus: &mut Bus, line: &str, wall_s: f64) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Err("empty command".to_string()),
        ["help"] => Ok(HELP.to_string()),
        ["stats"] => Ok(bus.stats().to_line()),
        ["stats", "reset"] => {
            bus.reset_stats();
            Ok("counters reset".to_string())
        }
        ["faults"] => Ok(bus
            .units()
            .iter()
            .map(|u| format!("u{}={}", u.addr, u.faults.describe()))
            .collect::<Vec<_>>()
            .join(" ")),
        ["fault", unit, rest @ ..] => {
            let change = parse_fault(rest)?;
            let addrs = bus.select(unit)?;
            for a in &addrs {
                if let Some(u) = bus.unit_mut(&a.to_string()) {
                    change(&mut u.faults);
                }
            }
            Ok(describe_units(bus, &addrs))
        }
        ["turnaround", unit, value] => {
            let us = match *value {
                "auto" => None,
                ms => Some(parse_ms(ms)?),
            };
            let addrs = bus.select(unit)?;
            for a in &addrs {
                if let Some(u) = bus.unit_mut(&a.to_string()) {
                    u.turnaround_us = us;
                }
            }
            Ok(format!("turnaround {unit} = {value}"))
        }
        ["set", unit, name, value] => {
            bus.advance(wall_s);
            let u = bus.unit_mut(unit).ok_or_else(|| format!("no simulated unit {unit:?}"))?;
            u.device.set(name, value)
        }
        ["get", unit, name] => bus.value(unit, name, wall_s).map(|v| format!("{v}")),
        ["last", unit, name] => {
            let addr = *bus.select(unit)?.first().ok_or("no unit")?;
            bus.served(addr, name)
                .last()
                .map(|v| format!("{v}"))
                .ok_or_else(|| format!("no {name} served yet"))
        }
        ["served", unit, name] => {
            let addr = *bus.select(unit)?.first().ok_or("no unit")?;
            let all = bus.served(addr, name);
            let tail: Vec<String> = all.iter().rev().take(16).rev().map(|v| format!("{v}")).collect();
            Ok(format!("count={} values={}", all.len(), tail.join(",")))
        }
        _ => Err(format!("unknown command {line:?}; {HELP}")),
    }
}

fn describe_units(bus: &Bus, addrs: &[u8]) -> String {
    bus.units()
        .iter()
        .filter(|u| addrs.contains(&u.addr))
        .map(|u| format!("{}({}) {}", u.device.kind().name(), u.addr, u.faults.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

type FaultChange = Box<dyn Fn(&mut Faults)>;

fn parse_rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("rate must be a number in 0..1, got {s:?}"))
}

fn parse_ms(s: &str) -> Result<u64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= 60_000.0)
        .map(|v| (v * 1000.0) as u64)
        .ok_or_else(|| format!("milliseconds must be in 0..60000, got {s:?}"))
}

fn parse_u16(what: &str, s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    parsed.ok_or_else(|| format!("{what} must be 0..65535, got {s:?}"))
}

fn parse_code(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .ok()
        .filter(|c| *c > 0 && *c < 0x80)
        .ok_or_else(|| format!("exception code 1..127, got {s:?}"))
}

fn parse_fault(words: &[&str]) -> Result<FaultChange, String> {
    Ok(match words {
        ["clear"] => Box::new(|f| *f = Faults::default()),
        ["silent", "on"] => Box::new(|f| f.silent = true),
        ["silent", "off"] => Box::new(|f| f.silent = false),
        ["crc", r] => {
            let r = parse_rate(r)?;
            Box::new(move |f| f.crc_rate = r)
        }
        ["truncate", r] => {
            let r = parse_rate(r)?;
            Box::new(move |f| f.truncate_rate = r)
        }
        ["garbage", r] => {
            let r = parse_rate(r)?;
            Box::new(move |f| f.garbage_rate = r)
        }
        ["wrong-unit", r] => {
            let r = parse_rate(r)?;
            Box::new(move |f| f.wrong_unit_rate = r)
        }
        ["delay", ms] => {
            let us = parse_ms(ms)?;
            Box::new(move |f| f.extra_delay_us = us)
        }
        ["exception", "off"] => Box::new(|f| f.exceptions.clear()),
        ["exception", bank, first, last, code] => {
            let bank = match *bank {
                "input" => Some(Bank::Input),
                "holding" => Some(Bank::Holding),
                "any" => None,
                other => return Err(format!("bank must be input|holding|any, got {other:?}")),
            };
            let range = ExceptionRange {
                bank,
                first: parse_u16("first", first)?,
                last: parse_u16("last", last)?,
                code: parse_code(code)?,
            };
            Box::new(move |f| f.exceptions.push(range.clone()))
        }
        ["refuse-writes", "off"] => Box::new(|f| f.refuse_writes = None),
        ["refuse-writes", code] => {
            let code = parse_code(code)?;
            Box::new(move |f| f.refuse_writes = Some(code))
        }
        _ => return Err(format!("unknown fault {:?}; {HELP}", words.join(" "))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::ClockConfig;
    use crate::model::DeviceKind;
    use dmc_core::timing::LineConfig;

    fn bus() -> Bus {
        let mut b = Bus::new(LineConfig::new_8n1(9600), ClockConfig::default(), 1);
        b.add(2, DeviceKind::Sdm230);
        b.add(1, DeviceKind::GrowattMin);
        b
    }

    #[test]
    fn test_fault_commands() {
        let mut b = bus();
        assert_eq!(execute(&mut b, "fault growatt silent on", 0.0), Ok("growatt(1) silent".to_string()));
        assert!(execute(&mut b, "fault all crc 0.1", 0.0).is_ok());
        assert!(execute(&mut b, "fault 2 exception input 0x100 0x110 4", 0.0).is_ok());
        let faults = execute(&mut b, "faults", 0.0).unwrap_or_default();
        assert!(faults.contains("u1=silent,crc=0.1"), "{faults}");
        assert!(faults.contains("exception=input:256-272:4"), "{faults}");
        assert!(execute(&mut b, "fault all clear", 0.0).is_ok());
        assert_eq!(execute(&mut b, "faults", 0.0), Ok("u1=none u2=none".to_string()));
        assert!(execute(&mut b, "fault all crc 2", 0.0).is_err());
        assert!(execute(&mut b, "fault 7 silent on", 0.0).is_err());
        assert!(execute(&mut b, "bogus", 0.0).is_err());
    }

    #[test]
    fn test_set_and_get() {
        let mut b = bus();
        assert!(execute(&mut b, "set sdm230 power -1500", 0.0).is_ok());
        assert_eq!(execute(&mut b, "get sdm230 power", 1.0), Ok("-1500".to_string()));
        assert_eq!(execute(&mut b, "get growatt device_type", 1.0), Ok("5100".to_string()));
        assert!(execute(&mut b, "set growatt nonsense 1", 0.0).is_err());
        assert!(execute(&mut b, "last sdm230 power", 0.0).is_err());
        let stats = execute(&mut b, "stats", 0.0).unwrap_or_default();
        assert!(stats.starts_with("bus.frames=0") && stats.contains("u2.requests=0"), "{stats}");
    }
}
