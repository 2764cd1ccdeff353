//! The bench: a check suite against whatever answers on a port, real devices or the simulator.
//!
//! For each configured device it uses `dmc-core`'s profile: identifies it with
//! the profile's probe reads and judge, reads every profile register along
//! core's read plan and checks the decoded values are plausible (mains voltage
//! 180..260 V, frequency 45..65 Hz, energy counters non-negative and not
//! decreasing between the first and last round), measures round-trip latency
//! over `reads` reads (request write to last reply byte), and counts timeouts,
//! CRC errors, exceptions, wrong-unit and malformed replies. It confirms that an
//! absent unit times out cleanly and, only when asked, writes the Growatt
//! active power rate, reads it back and restores it.
//!
//! Every wait is bounded by the response timeout (plus one retry budget per
//! read), so a dead port, a wrong baud rate or a line full of garbage ends in a
//! report, never a hang. Every transaction runs through core's `Master` state
//! machine over RTU framing ([`exchange`]); `--record` keeps the bytes in a [`capture`].

pub mod capture;
pub mod exchange;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use serialport::{SerialPort, TTYPort};

use capture::{Capture, CapturedTransaction, Chunk};
use dmc_core::pdu::Request;
use dmc_core::plan::Transport;
use dmc_core::profile::{ProbeVerdict, Profile, MAX_BLOCKS};
use dmc_core::register::RegisterBank;
use dmc_core::rtu;
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::{LineConfig, Parity};
use dmc_core::value::Value;
use exchange::{BenchMaster, Outcome};

/// Attempts per read before the bench gives up on it.
const ATTEMPTS: usize = 3;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Serial port (or pty) path.
    pub port: String,
    /// Line settings.
    pub line: LineConfig,
    /// Devices to check: unit and core profile.
    pub devices: Vec<(u8, &'static Profile)>,
    /// Save a capture here.
    pub record: Option<PathBuf>,
    /// Run the Growatt active-power-rate write test.
    pub write_test: bool,
    /// Reads per device for the latency figures.
    pub reads: usize,
    /// Response timeout.
    pub timeout: StdDuration,
    /// Unit expected to be absent (default: the highest address not in use).
    pub missing_unit: Option<u8>,
}

/// Transaction counts of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Normal replies.
    pub ok: u32,
    /// No reply before the timeout.
    pub timeouts: u32,
    /// Replies with a bad CRC.
    pub crc_errors: u32,
    /// Exception replies.
    pub exceptions: u32,
    /// Replies from another unit.
    pub wrong_unit: u32,
    /// Cut, overlong or unfitting replies.
    pub malformed: u32,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome) {
        let c = match outcome {
            Outcome::Registers(_) | Outcome::WriteEcho => &mut self.ok,
            Outcome::Timeout | Outcome::Io(_) => &mut self.timeouts,
            Outcome::CrcError => &mut self.crc_errors,
            Outcome::Exception(_) => &mut self.exceptions,
            Outcome::WrongUnit => &mut self.wrong_unit,
            Outcome::Malformed(_) => &mut self.malformed,
        };
        *c += 1;
    }

    /// Every failed transaction.
    pub fn errors(&self) -> u32 {
        self.timeouts + self.crc_errors + self.exceptions + self.wrong_unit + self.malformed
    }
}

/// Results for one device.
#[derive(Clone, Debug, Default)]
pub struct DeviceReport {
    /// Unit address.
    pub unit: u8,
    /// Profile name.
    pub profile: &'static str,
    /// Identified by the profile's probe.
    pub identified: bool,
    /// Decoded values of the last round: register name and text.
    pub values: Vec<(&'static str, String)>,
    /// Round-trip latencies of the successful latency reads (the profile's first planned block, `reads` times).
    pub latencies: Vec<StdDuration>,
    /// Transaction counts.
    pub counts: Counts,
}

impl DeviceReport {
    /// Latency percentile `p` (0..=1), if any reads succeeded.
    pub fn latency(&self, p: f64) -> Option<StdDuration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(idx).copied()
    }
}

/// Everything a bench run found.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Per device.
    pub devices: Vec<DeviceReport>,
    /// The absent unit, its outcome and how long it took.
    pub missing: Option<(u8, String, StdDuration)>,
    /// The write test's summary, if run.
    pub write_test: Option<String>,
    /// Failed checks, one line each, in order found.
    pub failures: Vec<String>,
    /// Frames recorded (when recording).
    pub recorded: Option<usize>,
}

impl BenchReport {
    /// `Ok` when every check passed, else the first failure.
    pub fn verdict(&self) -> Result<(), String> {
        match self.failures.first() {
            None => Ok(()),
            Some(first) if self.failures.len() == 1 => Err(first.clone()),
            Some(first) => Err(format!("{first} (and {} more)", self.failures.len() - 1)),
        }
    }

    /// A table for people.
    pub fn table(&self) -> String {
        let ms =
            |d: Option<StdDuration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>4} {:>5} {:>5} {:>8} {:>4} {:>4} {:>5} {:>5}   latency ms min / p50 / p99 / max",
            "device", "unit", "ident", "ok", "timeouts", "crc", "exc", "wrong", "bad"
        );
        for d in &self.devices {
            let c = d.counts;
            let _ = writeln!(
                s,
                "{:<12} {:>4} {:>5} {:>5} {:>8} {:>4} {:>4} {:>5} {:>5}   {} / {} / {} / {}  ({} reads)",
                d.profile,
                d.unit,
                if d.identified { "yes" } else { "NO" },
                c.ok,
                c.timeouts,
                c.crc_errors,
                c.exceptions,
                c.wrong_unit,
                c.malformed,
                ms(d.latency(0.0)),
                ms(d.latency(0.5)),
                ms(d.latency(0.99)),
                ms(d.latency(1.0)),
                d.latencies.len()
            );
        }
        for d in &self.devices {
            if d.values.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{} (unit {}):", d.profile, d.unit);
            for (name, text) in &d.values {
                let _ = writeln!(s, "  {name:<26} {text}");
            }
        }
        if let Some((unit, outcome, took)) = &self.missing {
            let _ = writeln!(s, "\nabsent unit {unit}: {outcome} after {:.0} ms", took.as_secs_f64() * 1e3);
        }
        if let Some(w) = &self.write_test {
            let _ = writeln!(s, "write test: {w}");
        }
        if let Some(n) = self.recorded {
            let _ = writeln!(s, "recorded {n} transactions");
        }
        s
    }
}

/// The port plus timing and recording.
struct Link {
    port: TTYPort,
    line: LineConfig,
    start: StdInstant,
    master: BenchMaster,
    capture: Option<Capture>,
}

impl Link {
    fn open(options: &BenchOptions) -> Result<Link, String> {
        let parity = match options.line.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        };
        let stop_bits =
            if options.line.stop_bits == 2 { serialport::StopBits::Two } else { serialport::StopBits::One };
        let port = serialport::new(&options.port, options.line.baud)
            .parity(parity)
            .stop_bits(stop_bits)
            .data_bits(serialport::DataBits::Eight)
            .timeout(StdDuration::from_millis(10))
            .open_native()
            .map_err(|e| format!("cannot open {}: {e}", options.port))?;
        let now = StdInstant::now();
        let capture = options.record.as_ref().map(|_| Capture::new(&options.line));
        Ok(Link { port, line: options.line, start: now, master: BenchMaster::new(&options.line), capture })
    }

    fn core_now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as u64)
    }

    /// One request, one outcome, and the round-trip time (write start to outcome).
    fn transact(&mut self, unit: u8, request: Request<'_>, timeout: StdDuration) -> (Outcome, StdDuration) {
        let core_timeout = Duration::from_micros(timeout.as_micros() as u64);
        let started_at = self.core_now();
        // The timeout is what the device may add to the line time: the t3.5 wait,
        // the request and the expected response on the wire come on top, so a
        // 125-register read at 9600 baud is not cut off by a timeout sized for turnaround.
        let line_time = self.line.t35()
            + self.line.wire_time(rtu::adu_len(request.buffer_len()))
            + self.line.wire_time(rtu::adu_len(request.expected_response_len()));
        let deadline = started_at + line_time + core_timeout;
        if let Err(e) = self.master.start(started_at, unit, &request, deadline) {
            return (Outcome::Malformed(format!("cannot start request: {e}")), StdDuration::ZERO);
        }
        // Core's master says when the line is quiet long enough (t3.5) to send.
        let request_bytes = loop {
            if let Some(bytes) = self.master.poll_transmit(self.core_now()) {
                break bytes;
            }
            let wake = self.master.next_wakeup().unwrap_or(deadline);
            let wait = wake.saturating_since(self.core_now()).min(Duration::from_millis(50));
            std::thread::sleep(StdDuration::from_micros(wait.as_micros().max(50)));
        };
        // Stale bytes (a late reply, garbage) belong to nothing we will ask.
        let _ = self.port.clear(serialport::ClearBuffer::Input);
        let written_at = StdInstant::now();
        let sent_us = self.core_now().as_micros();
        if let Err(e) = self.port.write_all(&request_bytes) {
            return (Outcome::Io(format!("write failed: {e}")), written_at.elapsed());
        }
        let mut received = Vec::new();
        let mut buf = [0u8; 512];
        // A second, independent bound on the loop, in case the port misbehaves.
        let hard_stop = written_at + timeout + StdDuration::from_secs(1);
        let outcome = loop {
            let now = self.core_now();
            let wake = self.master.next_wakeup().unwrap_or(deadline);
            let wait = StdDuration::from_micros(wake.saturating_since(now).as_micros())
                .clamp(StdDuration::from_micros(100), timeout);
            if self.port.set_timeout(wait).is_err() {
                break Outcome::Io("cannot set the port timeout".to_string());
            }
            match self.port.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let at = self.core_now();
                    let bytes = buf.get(..n).unwrap_or_default();
                    received.push(Chunk { t_us: at.as_micros(), bytes: bytes.to_vec() });
                    if let Some(o) = self.master.on_bytes(at, bytes) {
                        break o.clone();
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => break Outcome::Io(format!("read failed: {e}")),
            }
            if let Some(o) = self.master.on_time(self.core_now()) {
                break o.clone();
            }
            if StdInstant::now() > hard_stop {
                break Outcome::Timeout;
            }
        };
        let took = written_at.elapsed();
        if let Some(c) = self.capture.as_mut() {
            c.transactions.push(CapturedTransaction {
                unit,
                started_us: started_at.as_micros(),
                request: Chunk { t_us: sent_us, bytes: request_bytes },
                received,
                deadline_us: deadline.as_micros(),
                settled_us: self.start.elapsed().as_micros() as u64,
                outcome: outcome.to_string(),
            });
        }
        (outcome, took)
    }
}

fn read_request(bank: RegisterBank, address: u16, count: u16) -> Request<'static> {
    match bank {
        RegisterBank::Holding => Request::ReadHoldingRegisters { address, quantity: count },
        RegisterBank::Input => Request::ReadInputRegisters { address, quantity: count },
    }
}

/// Runs the suite. `Err` only when the port cannot be used at all.
pub fn run(options: &BenchOptions) -> Result<BenchReport, String> {
    let mut link = Link::open(options)?;
    let mut report = BenchReport::default();
    for (unit, profile) in &options.devices {
        let device = check_device(&mut link, options, *unit, profile, &mut report.failures);
        report.devices.push(device);
    }
    if let Some(fatal) = report.failures.iter().find(|f| f.contains("port error")) {
        return Err(fatal.clone());
    }
    let missing = options.missing_unit.unwrap_or_else(|| {
        (1..=247u8).rev().find(|u| !options.devices.iter().any(|(d, _)| d == u)).unwrap_or(247)
    });
    let (outcome, took) = link.transact(missing, read_request(RegisterBank::Input, 0, 2), options.timeout);
    // A stray frame (a late reply of another unit, noise) is not an answer from the absent unit.
    if outcome.is_ok() || matches!(outcome, Outcome::Exception(_)) {
        report.failures.push(format!("absent unit {missing} answered: {outcome}"));
    }
    report.missing = Some((missing, outcome.to_string(), took));
    if options.write_test {
        match options.devices.iter().find(|(_, p)| p.name == "growatt_min") {
            Some((unit, _)) => match write_test(&mut link, options, *unit) {
                Ok(summary) => report.write_test = Some(summary),
                Err(e) => {
                    report.write_test = Some(format!("FAILED: {e}"));
                    report.failures.push(format!("write test on unit {unit}: {e}"));
                }
            },
            None => report.write_test = Some("skipped: no Growatt configured".to_string()),
        }
    }
    if let (Some(path), Some(capture)) = (&options.record, &link.capture) {
        capture.save(path)?;
        report.recorded = Some(capture.transactions.len());
    }
    Ok(report)
}

/// One read with retries; every attempt is counted.
fn read_with_retries(
    link: &mut Link,
    options: &BenchOptions,
    unit: u8,
    request: Request<'_>,
    device: &mut DeviceReport,
    measure: bool,
) -> Outcome {
    let mut last = Outcome::Timeout;
    for _ in 0..ATTEMPTS {
        let (outcome, took) = link.transact(unit, request, options.timeout);
        device.counts.add(&outcome);
        if outcome.is_ok() {
            if measure {
                device.latencies.push(took);
            }
            return outcome;
        }
        // An exception is the device's considered answer; asking again changes nothing.
        if matches!(outcome, Outcome::Exception(_) | Outcome::Io(_)) {
            return outcome;
        }
        last = outcome;
    }
    last
}

fn check_device(
    link: &mut Link,
    options: &BenchOptions,
    unit: u8,
    profile: &'static Profile,
    failures: &mut Vec<String>,
) -> DeviceReport {
    let mut device = DeviceReport { unit, profile: profile.name, ..DeviceReport::default() };
    let who = format!("unit {unit} ({})", profile.name);
    // Identify.
    let mut results: Vec<Option<Vec<u16>>> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut last = Outcome::Timeout;
    let mut verdict = ProbeVerdict::NeedMore;
    for probe in profile.probe {
        let outcome = read_with_retries(
            link,
            options,
            unit,
            read_request(probe.bank, probe.address, probe.count),
            &mut device,
            false,
        );
        if let Outcome::Io(e) = &outcome {
            failures.push(format!("port error: {e}"));
            return device;
        }
        results.push(match &outcome {
            Outcome::Registers(w) => Some(w.clone()),
            _ => None,
        });
        let shown = if outcome.is_ok() { "ok".to_string() } else { outcome.to_string() };
        seen.push(format!("{:?} {}+{}: {shown}", probe.bank, probe.address, probe.count));
        last = outcome;
        let views: Vec<Option<&[u16]>> = results.iter().map(|r| r.as_deref()).collect();
        verdict = (profile.judge)(&views);
        if verdict != ProbeVerdict::NeedMore {
            break;
        }
    }
    match verdict {
        ProbeVerdict::Match => device.identified = true,
        _ if results.iter().all(Option::is_none) => {
            failures.push(format!("{who}: no usable answer to the identification probe ({last})"));
            return device;
        }
        _ => {
            failures.push(format!(
                "{who}: answers but is not identified as {} (probe {})",
                profile.product_name,
                seen.join(", ")
            ));
            return device;
        }
    }
    // Every register, twice (start and end), with the latency reads in between.
    let plan = match profile.plan::<MAX_BLOCKS>(&Transport::Rtu(options.line)) {
        Ok(p) => p,
        Err(e) => {
            failures.push(format!("{who}: core cannot plan the profile: {e:?}"));
            return device;
        }
    };
    let first = read_all(link, options, unit, profile, &plan, &mut device, failures);
    if let Some(block) = plan.blocks().first() {
        for _ in 0..options.reads {
            let _ = read_with_retries(
                link,
                options,
                unit,
                read_request(block.bank, block.start, block.count),
                &mut device,
                true,
            );
        }
    }
    let last_round = read_all(link, options, unit, profile, &plan, &mut device, failures);
    for ((name, before), (_, after)) in first.iter().zip(&last_round) {
        if let (true, Some(b), Some(a)) = (name.contains("energy"), before, after) {
            // A "today" counter restarts at midnight; anything else must not go back.
            if a < b && !(name.ends_with("today") && *a < 0.5) {
                failures.push(format!("{who}: {name} went backwards: {b} -> {a}"));
            }
        }
    }
    device
}

/// Reads every planned block; checks plausibility; returns (name, numeric value) per register.
fn read_all<const N: usize>(
    link: &mut Link,
    options: &BenchOptions,
    unit: u8,
    profile: &'static Profile,
    plan: &dmc_core::plan::Plan<N>,
    device: &mut DeviceReport,
    failures: &mut Vec<String>,
) -> Vec<(&'static str, Option<f64>)> {
    let who = format!("unit {unit} ({})", profile.name);
    let mut values = Vec::new();
    device.values.clear();
    for (i, block) in plan.blocks().iter().enumerate() {
        let outcome = read_with_retries(
            link,
            options,
            unit,
            read_request(block.bank, block.start, block.count),
            device,
            false,
        );
        let words = match outcome {
            Outcome::Registers(w) => w,
            other => {
                failures.push(format!(
                    "{who}: read of {:?} {}+{} failed: {other}",
                    block.bank, block.start, block.count
                ));
                continue;
            }
        };
        for r in plan.registers_of(i) {
            let Some(def) = profile.registers.get(r) else { continue };
            let value = def.decode_in_block(block.start, &words);
            let mut text = String::new();
            let _ = def.write_text(&value, &mut text);
            if let Some(problem) = implausible(def.name, &value) {
                failures.push(format!("{who}: {} = {text}: {problem}", def.name));
            }
            device.values.push((def.name, text));
            values.push((def.name, value.as_f64()));
        }
    }
    values
}

/// Why a decoded value cannot be right, if it cannot.
fn implausible(name: &str, value: &Value) -> Option<String> {
    let v = value.as_f64();
    match name {
        "voltage" | "ac_voltage" => match v {
            Some(v) if (180.0..=260.0).contains(&v) => None,
            other => Some(format!("mains voltage outside 180..260 V ({other:?})")),
        },
        "frequency" | "ac_frequency" => match v {
            Some(v) if (45.0..=65.0).contains(&v) => None,
            other => Some(format!("frequency outside 45..65 Hz ({other:?})")),
        },
        n if n.contains("energy") => match v {
            Some(v) if v >= 0.0 => None,
            other => Some(format!("energy counter negative or invalid ({other:?})")),
        },
        "power_factor" => match v {
            Some(v) if (-1.0..=1.0).contains(&v) => None,
            other => Some(format!("power factor outside -1..1 ({other:?})")),
        },
        _ => None,
    }
}

/// Growatt holding 3: write a different rate, read it back, restore, read back.
fn write_test(link: &mut Link, options: &BenchOptions, unit: u8) -> Result<String, String> {
    const RATE: u16 = 3;
    let mut scratch = DeviceReport::default();
    let read_rate = |link: &mut Link, scratch: &mut DeviceReport| -> Result<u16, String> {
        match read_with_retries(
            link,
            options,
            unit,
            read_request(RegisterBank::Holding, RATE, 1),
            scratch,
            false,
        ) {
            Outcome::Registers(w) => w.first().copied().ok_or_else(|| "empty read of holding 3".to_string()),
            other => Err(format!("read of holding 3: {other}")),
        }
    };
    let write = |link: &mut Link, value: u16| -> Result<(), String> {
        let request = Request::WriteSingleRegister { address: RATE, value };
        // Writes are not retried blindly: one attempt, as a careful master would.
        match link.transact(unit, request, options.timeout).0 {
            Outcome::WriteEcho => Ok(()),
            other => Err(format!("write of holding 3 = {value}: {other}")),
        }
    };
    let original = read_rate(link, &mut scratch)?;
    let new = if original == 255 || original >= 60 { 50 } else { original + 10 };
    write(link, new)?;
    let seen = read_rate(link, &mut scratch)?;
    let restore = write(link, original);
    let back = read_rate(link, &mut scratch);
    if seen != new {
        return Err(format!("wrote {new}, read back {seen}"));
    }
    restore?;
    let back = back?;
    if back != original {
        return Err(format!("restored {original}, read back {back}"));
    }
    Ok(format!("holding 3: {original} -> {new} (read back {seen}) -> restored {back}"))
}
