//! Device specs in the upstream format `method:target:rate_or_port:unit[:profile]`.
//!
//! The same strings appear on the command line (`-F`, `-P`), in the settings
//! list `/Settings/ModbusClient/<name>/Devices` and in logs, so parsing and
//! printing are exact inverses: `rtu:ttyUSB0:9600:2`, `tcp:192.168.1.20:502:1`,
//! `udp:10.0.0.5:502:1`, `rtuovertcp:gw.local:4001:3`, `ascii:ttyUSB1:19200:3`.
//! A serial target is a tty name under `/dev` (`ttyUSB0`) or an absolute path
//! without colons (`/dev/serial/by-id/usb-FTDI-if00`); an optional fifth field
//! names the profile and skips identification (`rtu:ttyUSB0:9600:2:sdm230`).

use std::fmt;
use std::path::PathBuf;

/// How a device is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Modbus RTU on a serial port.
    Rtu,
    /// Modbus ASCII on a serial port.
    Ascii,
    /// Modbus TCP (MBAP over a TCP stream).
    Tcp,
    /// Modbus UDP (MBAP in datagrams).
    Udp,
    /// RTU frames through a TCP serial gateway.
    RtuOverTcp,
}

impl Method {
    /// The spec keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rtu => "rtu",
            Method::Ascii => "ascii",
            Method::Tcp => "tcp",
            Method::Udp => "udp",
            Method::RtuOverTcp => "rtuovertcp",
        }
    }

    /// True for the methods that use a local serial port.
    pub fn is_serial(self) -> bool {
        matches!(self, Method::Rtu | Method::Ascii)
    }

    /// Parses the spec keyword, case-insensitively.
    fn parse(s: &str) -> Option<Method> {
        Some(match s.to_ascii_lowercase().as_str() {
            "rtu" => Method::Rtu,
            "ascii" => Method::Ascii,
            "tcp" => Method::Tcp,
            "udp" => Method::Udp,
            "rtuovertcp" | "rtu-over-tcp" => Method::RtuOverTcp,
            _ => return None,
        })
    }
}

/// One device on one bus.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceSpec {
    /// Transport.
    pub method: Method,
    /// Serial: tty name or absolute path. Network: host name or address.
    pub target: String,
    /// Serial: baud rate. Network: port.
    pub rate_or_port: u32,
    /// Modbus unit (slave) address.
    pub unit: u8,
    /// Profile name that skips identification, if given.
    pub profile: Option<String>,
}

/// Why a spec string was refused; `Display` gives one line with an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// Not 4 or 5 colon-separated fields.
    FieldCount { spec: String, found: usize },
    /// First field is not a known method.
    UnknownMethod { spec: String, method: String },
    /// Empty target or a serial target that is neither a tty name nor an absolute path.
    BadTarget { spec: String, target: String },
    /// Third field is not a positive number (or not a valid port).
    BadRateOrPort { spec: String, value: String },
    /// Unit not a number or outside the allowed range.
    BadUnit { spec: String, value: String, min: u8, max: u8 },
    /// Profile field present but empty or malformed.
    BadProfile { spec: String, value: String },
}

const EXAMPLE: &str = "e.g. rtu:ttyUSB0:9600:2, rtu:ttyUSB0:9600:2:sdm230 or tcp:192.168.1.20:502:1";

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::FieldCount { spec, found } => write!(
                f,
                "device spec '{spec}' has {found} fields, expected method:target:rate_or_port:unit[:profile] ({EXAMPLE})"
            ),
            SpecError::UnknownMethod { spec, method } => write!(
                f,
                "device spec '{spec}': unknown method '{method}', expected rtu, ascii, tcp, udp or rtuovertcp ({EXAMPLE})"
            ),
            SpecError::BadTarget { spec, target } => write!(
                f,
                "device spec '{spec}': bad target '{target}', expected a tty name like ttyUSB0, an absolute path, or a host ({EXAMPLE})"
            ),
            SpecError::BadRateOrPort { spec, value } => write!(
                f,
                "device spec '{spec}': '{value}' is not a baud rate or port number ({EXAMPLE})"
            ),
            SpecError::BadUnit { spec, value, min, max } => {
                write!(f, "device spec '{spec}': unit '{value}' is not in {min}..{max} ({EXAMPLE})")
            }
            SpecError::BadProfile { spec, value } => write!(
                f,
                "device spec '{spec}': bad profile name '{value}' (see --models; {EXAMPLE})"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

impl DeviceSpec {
    /// Parses one spec string.
    pub fn parse(spec: &str) -> Result<DeviceSpec, SpecError> {
        let spec = spec.trim();
        let fields: Vec<&str> = spec.split(':').collect();
        if !(4..=5).contains(&fields.len()) {
            return Err(SpecError::FieldCount { spec: spec.into(), found: fields.len() });
        }
        let method = Method::parse(fields[0])
            .ok_or_else(|| SpecError::UnknownMethod { spec: spec.into(), method: fields[0].into() })?;
        let target = fields[1];
        let target_ok = if method.is_serial() {
            valid_serial_target(target)
        } else {
            !target.is_empty() && !target.contains(char::is_whitespace)
        };
        if !target_ok {
            return Err(SpecError::BadTarget { spec: spec.into(), target: target.into() });
        }
        let rate_or_port: u32 = fields[2]
            .parse()
            .ok()
            .filter(|&v| v > 0 && (method.is_serial() || v <= u32::from(u16::MAX)))
            .ok_or_else(|| SpecError::BadRateOrPort { spec: spec.into(), value: fields[2].into() })?;
        // Serial units are 1..247 (0 is broadcast, 248.. reserved); over TCP/UDP
        // the unit id also addresses gateways, where 0 and 255 are common.
        let (min, max) = if method.is_serial() || method == Method::RtuOverTcp { (1, 247) } else { (0, 255) };
        let unit = fields[3]
            .parse::<u8>()
            .ok()
            .filter(|u| (min..=max).contains(u))
            .ok_or_else(|| SpecError::BadUnit { spec: spec.into(), value: fields[3].into(), min, max })?;
        let profile = match fields.get(4) {
            None => None,
            Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                Some(p.to_ascii_lowercase())
            }
            Some(p) => return Err(SpecError::BadProfile { spec: spec.into(), value: (*p).into() }),
        };
        Ok(DeviceSpec { method, target: normalise_target(method, target), rate_or_port, unit, profile })
    }

    /// Parses a comma-separated list (`-F` and the settings `Devices` string),
    /// skipping empty entries.
    pub fn parse_list(list: &str) -> Result<Vec<DeviceSpec>, SpecError> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(DeviceSpec::parse).collect()
    }

    /// The serial device node to open (`/dev/ttyUSB0` for `ttyUSB0`).
    pub fn serial_path(&self) -> PathBuf {
        if self.target.starts_with('/') {
            PathBuf::from(&self.target)
        } else {
            PathBuf::from("/dev").join(&self.target)
        }
    }

    /// The bus this device lives on: devices with equal keys share one port or socket.
    /// Units behind one serial port, one TCP connection or one UDP peer share
    /// a bus (one transaction at a time).
    pub fn bus_key(&self) -> String {
        format!("{}:{}:{}", self.method.as_str(), self.target, self.rate_or_port)
    }

    /// The same spec without the profile field (what the settings list stores
    /// after identification).
    pub fn without_profile(&self) -> DeviceSpec {
        DeviceSpec { profile: None, ..self.clone() }
    }

    /// `/Mgmt/Connection` text as upstream writes it: `Modbus RTU ttyUSB0:2`,
    /// `Modbus TCP 192.168.1.20`, `Modbus UDP 10.0.0.5`.
    pub fn connection_text(&self) -> String {
        match self.method {
            Method::Rtu => format!("Modbus RTU {}:{}", self.target, self.unit),
            Method::Ascii => format!("Modbus ASCII {}:{}", self.target, self.unit),
            Method::Tcp => format!("Modbus TCP {}", self.target),
            Method::Udp => format!("Modbus UDP {}", self.target),
            Method::RtuOverTcp => format!("Modbus RTU-over-TCP {}:{}", self.target, self.unit),
        }
    }
}

fn valid_serial_target(target: &str) -> bool {
    if target.is_empty() || target.contains(char::is_whitespace) {
        return false;
    }
    if target.starts_with('/') {
        return target.len() > 1 && !target.ends_with('/');
    }
    // A bare name under /dev: no path separators, no parent references.
    !target.contains('/') && target != "." && target != ".."
}

/// `/dev/ttyUSB0` is stored as `ttyUSB0`, as upstream writes serial targets;
/// deeper paths (by-id links) stay absolute.
fn normalise_target(method: Method, target: &str) -> String {
    if method.is_serial() {
        if let Some(name) = target.strip_prefix("/dev/") {
            if !name.contains('/') && !name.is_empty() {
                return name.to_string();
            }
        }
    }
    target.to_string()
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.method.as_str(), self.target, self.rate_or_port, self.unit)?;
        if let Some(p) = &self.profile {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_examples_and_prints_them_back() {
        for s in [
            "rtu:ttyUSB0:9600:2",
            "rtu:ttyUSB0:9600:2:sdm230",
            "ascii:ttyUSB0:19200:3",
            "tcp:192.168.1.20:502:1",
            "udp:192.168.1.60:502:1",
            "rtuovertcp:gw.local:4001:3",
            "rtu:/dev/serial/by-id/usb-FTDI_FT232R-if00-port0:9600:1",
        ] {
            let spec = DeviceSpec::parse(s).unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }

    #[test]
    fn fields_are_typed() {
        let s = DeviceSpec::parse("rtu:/dev/ttyUSB0:9600:2:SDM230").unwrap();
        assert_eq!(s.method, Method::Rtu);
        assert_eq!(s.target, "ttyUSB0");
        assert_eq!(s.serial_path(), PathBuf::from("/dev/ttyUSB0"));
        assert_eq!(s.rate_or_port, 9600);
        assert_eq!(s.unit, 2);
        assert_eq!(s.profile.as_deref(), Some("sdm230"));
        assert_eq!(s.connection_text(), "Modbus RTU ttyUSB0:2");
        assert_eq!(s.without_profile().to_string(), "rtu:ttyUSB0:9600:2");
    }

    #[test]
    fn refuses_bad_specs_with_one_line_reasons() {
        let cases: &[(&str, &str)] = &[
            ("rtu:ttyUSB0:fast:2", "not a baud rate"),
            ("rtu:ttyUSB0:9600:0", "not in 1..247"),
            ("rtu:ttyUSB0:9600:248", "not in 1..247"),
            ("rtu:ttyUSB0:9600", "has 3 fields"),
            ("serial:ttyUSB0:9600:1", "unknown method"),
            ("rtu:dev/ttyUSB0:9600:1", "bad target"),
            ("rtu::9600:1", "bad target"),
            ("tcp:host:70000:1", "not a baud rate or port"),
            ("rtu:ttyUSB0:9600:1:", "bad profile"),
            ("rtu:ttyUSB0:9600:1:sdm-230", "bad profile"),
        ];
        for (spec, want) in cases {
            let err = DeviceSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
            assert!(err.contains("e.g. rtu:ttyUSB0:9600:2"), "{err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn lists_skip_empty_entries() {
        let l = DeviceSpec::parse_list("rtu:ttyUSB0:9600:1, rtu:ttyUSB0:9600:2,,").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bus_key(), l[1].bus_key());
        assert!(DeviceSpec::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn tcp_units_may_be_zero_or_255() {
        assert_eq!(DeviceSpec::parse("tcp:10.0.0.1:502:0").unwrap().unit, 0);
        assert_eq!(DeviceSpec::parse("udp:10.0.0.1:502:255").unwrap().unit, 255);
    }
}
