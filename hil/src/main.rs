//! `dmc-hil`: run device simulators, the hardware-in-the-loop bench, or replay a capture.
//!
//! `dmc-hil sim` serves a simulated SDM230 + Growatt MIN + VM-3P75CT bus on a pty or a real
//! port, and/or over Modbus TCP, Modbus UDP or RTU over TCP; `dmc-hil ctl` talks to a running simulator's control socket;
//! `dmc-hil bench` checks whatever answers on a port; `dmc-hil replay`
//! re-decodes a capture recorded by the bench.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use dmc_core::timing::{LineConfig, Parity};
use dmc_hil::bench::capture::{replay, Capture};
use dmc_hil::bench::{self, BenchOptions};
use dmc_hil::bus::ClockConfig;
use dmc_hil::script::Script;
use dmc_hil::{send_control, DeviceKind, SimConfig, SimHandle};

#[derive(Parser, Debug)]
#[command(
    name = "dmc-hil",
    version,
    about = "Device simulators and hardware-in-the-loop bench for dbus-modbus-client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ParityArg {
    None,
    Even,
    Odd,
}

impl From<ParityArg> for Parity {
    fn from(p: ParityArg) -> Parity {
        match p {
            ParityArg::None => Parity::None,
            ParityArg::Even => Parity::Even,
            ParityArg::Odd => Parity::Odd,
        }
    }
}

/// Serial line options shared by `sim` and `bench`.
#[derive(clap::Args, Debug, Clone)]
struct LineArgs {
    /// Baud rate (a pty ignores it; the simulator paces bytes at this rate itself).
    #[arg(long, default_value_t = 9600)]
    baud: u32,
    /// Parity.
    #[arg(long, value_enum, default_value_t = ParityArg::None)]
    parity: ParityArg,
    /// Stop bits.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    stop_bits: u8,
}

impl LineArgs {
    fn line(&self) -> LineConfig {
        LineConfig { baud: self.baud, data_bits: 8, parity: self.parity.into(), stop_bits: self.stop_bits }
    }
}

/// A Modbus unit address, or 0 / `none` for "not present".
fn parse_unit(s: &str) -> Result<u8, String> {
    if s == "none" {
        return Ok(0);
    }
    s.parse::<u8>()
        .ok()
        .filter(|u| *u <= 247)
        .ok_or_else(|| format!("unit must be 1..247, 0 or none, got {s:?}"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate an RS485 bus: SDM230 (unit 2), Growatt MIN TL-X (unit 1) and Victron VM-3P75CT
    /// (unit 3, with VregLink), on a pty, a serial
    /// port and/or the network (--tcp, --udp, --rtu-over-tcp).
    #[command(after_help = concat!(
        "Control channel (Unix socket, one command per line, reply `ok ...` or `err ...`):\n  ",
        "echo 'fault growatt silent on' | socat - UNIX-CONNECT:/tmp/bus.ctl   or   dmc-hil ctl /tmp/bus.ctl fault growatt silent on\n\n",
        "  help | stats [reset] | faults\n",
        "  fault UNIT|all clear | silent on|off | crc RATE | truncate RATE | garbage RATE | wrong-unit RATE\n",
        "  fault UNIT|all delay MS | exception input|holding|any FIRST LAST CODE | exception off | refuse-writes CODE|off\n",
        "  turnaround UNIT|all MS|auto\n",
        "  set UNIT NAME VALUE   (sdm230: power W|auto, voltage, frequency, import_energy, export_energy, serial;\n",
        "                         growatt: pv W|auto, fault CODE|off, awake on|off|auto, active_rate, on_off, peak_pv;\n",
        "                         vm3p75ct: power W|auto, voltage, description, serial, phase_config, role, position, vreg_fail on|off)\n",
        "  get UNIT NAME | last UNIT NAME | served UNIT NAME\n",
        "UNIT is an address (2) or a device name (sdm230, growatt, vm3p75ct).\n\n",
        "Script file (--script): lines `SECONDS COMMAND`, e.g. `10.0 fault growatt silent on`, `25.0 set sdm230 power -1500`."
    ))]
    Sim {
        /// Create a pseudo-terminal and put a symlink to its client side here.
        #[arg(long, conflicts_with = "port", required_unless_present_any = ["port", "tcp", "udp", "rtu_over_tcp"])]
        pty: Option<PathBuf>,
        /// Serve a real serial port instead (e.g. /dev/ttyUSB0 on an RS485 adapter).
        #[arg(long)]
        port: Option<String>,
        /// Also (or only) serve the bus as Modbus TCP on IP:PORT (e.g. 127.0.0.1:5020).
        #[arg(long, value_name = "IP:PORT")]
        tcp: Option<SocketAddr>,
        /// Also (or only) serve the bus as Modbus UDP on IP:PORT.
        #[arg(long, value_name = "IP:PORT")]
        udp: Option<SocketAddr>,
        /// Also (or only) serve the bus as raw RTU frames over TCP on IP:PORT (a serial device server).
        #[arg(long, value_name = "IP:PORT")]
        rtu_over_tcp: Option<SocketAddr>,
        #[command(flatten)]
        line: LineArgs,
        /// Unit address of the simulated SDM230 (0 or none: absent).
        #[arg(long, default_value = "2", value_parser = parse_unit)]
        sdm230: u8,
        /// Unit address of the simulated Growatt MIN TL-X (0 or none: absent).
        #[arg(long, default_value = "1", value_parser = parse_unit)]
        growatt: u8,
        /// Unit address of the simulated Victron VM-3P75CT energy meter (0 or none: absent).
        #[arg(long, default_value = "3", value_parser = parse_unit)]
        vm3p75ct: u8,
        /// Wall seconds per simulated day (compresses the PV day curve and energy counters).
        #[arg(long, default_value_t = 86_400.0)]
        day_seconds: f64,
        /// Device time of day at start, hours (12 = noon, PV producing; 2 = night, inverter asleep).
        #[arg(long, default_value_t = 12.0)]
        start_hour: f64,
        /// Device turnaround override, UNIT:MS (repeatable); defaults SDM230 6 ms + 0.6 ms/register, Growatt 15 ms.
        #[arg(long, value_name = "UNIT:MS")]
        turnaround: Vec<String>,
        /// Control socket path (default: the --pty path plus `.ctl`, or /tmp/dmc-hil-sim.ctl with --port).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Scenario file of time-stamped control commands.
        #[arg(long)]
        script: Option<PathBuf>,
        /// Seed for the fault probabilities (measurement noise is fixed per device, so values repeat).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print every frame received and sent.
        #[arg(long)]
        trace: bool,
        /// Speak Modbus ASCII instead of RTU on the pty or port.
        #[arg(long)]
        ascii: bool,
    },
    /// Check the devices on a port (real or simulated): identify, read every profile register,
    /// plausibility, latency, error counts, an absent unit; optionally a write test.
    #[command(after_help = "Exit status 0 when every check passes; otherwise 1 and a one-line reason.")]
    Bench {
        /// Serial port or pty.
        #[arg(long)]
        port: String,
        #[command(flatten)]
        line: LineArgs,
        /// Unit of the SDM230 to check (0 or none: skip).
        #[arg(long, default_value = "2", value_parser = parse_unit)]
        sdm230: u8,
        /// Unit of the Growatt MIN to check (0 or none: skip).
        #[arg(long, default_value = "1", value_parser = parse_unit)]
        growatt: u8,
        /// Save every frame sent and received, with times, to this postcard capture.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Write the Growatt active power rate (holding 3), read it back, restore it.
        #[arg(long)]
        write_test: bool,
        /// Reads per device for the latency figures.
        #[arg(long, default_value_t = 20)]
        reads: usize,
        /// Response timeout, ms.
        #[arg(long, default_value_t = 500)]
        timeout_ms: u64,
        /// Unit that must not answer (default: the highest address not configured).
        #[arg(long, value_parser = parse_unit)]
        missing_unit: Option<u8>,
    },
    /// Re-decode a capture made with `bench --record` and report frames that no longer decode the same.
    Replay {
        /// The capture file.
        file: PathBuf,
    },
    /// Send one command to a running simulator's control socket and print the reply.
    Ctl {
        /// The control socket.
        socket: PathBuf,
        /// The command words, e.g. `fault growatt silent on`.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim {
            pty,
            port,
            tcp,
            udp,
            rtu_over_tcp,
            line,
            sdm230,
            growatt,
            vm3p75ct,
            day_seconds,
            start_hour,
            turnaround,
            control,
            script,
            seed,
            trace,
            ascii,
        } => {
            let mut units = Vec::new();
            if growatt != 0 {
                units.push((growatt, DeviceKind::GrowattMin));
            }
            if sdm230 != 0 {
                units.push((sdm230, DeviceKind::Sdm230));
            }
            if vm3p75ct != 0 {
                units.push((vm3p75ct, DeviceKind::Vm3p75ct));
            }
            let sim = SimArgs {
                pty,
                port,
                net: NetArgs { tcp, udp, rtu_over_tcp },
                line: line.line(),
                units,
                day_seconds,
                start_hour,
                turnaround,
                control,
                script,
                seed,
                trace,
                ascii,
            };
            run_sim(sim)
        }
        Command::Bench {
            port,
            line,
            sdm230,
            growatt,
            record,
            write_test,
            reads,
            timeout_ms,
            missing_unit,
        } => {
            let mut devices = Vec::new();
            if sdm230 != 0 {
                devices.push((sdm230, &dmc_core::profile::sdm230::SDM230));
            }
            if growatt != 0 {
                devices.push((growatt, &dmc_core::profile::growatt_min::GROWATT_MIN));
            }
            let options = BenchOptions {
                port,
                line: line.line(),
                devices,
                record,
                write_test,
                reads,
                timeout: Duration::from_millis(timeout_ms.clamp(10, 60_000)),
                missing_unit: missing_unit.filter(|u| *u != 0),
            };
            run_bench(&options)
        }
        Command::Replay { file } => run_replay(&file),
        Command::Ctl { socket, command } => {
            match send_control(&socket, &command.join(" "), Duration::from_secs(2)) {
                Ok(reply) if reply.starts_with("ok") => {
                    println!("{reply}");
                    Ok(())
                }
                Ok(reply) => Err(reply),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("dmc-hil: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run_bench(options: &BenchOptions) -> Result<(), String> {
    let report = bench::run(options)?;
    print!("{}", report.table());
    match report.verdict() {
        Ok(()) => {
            println!("PASS");
            Ok(())
        }
        Err(reason) => Err(format!("bench FAILED: {reason}")),
    }
}

fn run_replay(file: &std::path::Path) -> Result<(), String> {
    let capture = Capture::load(file)?;
    let (count, mismatches) = replay(&capture);
    for m in &mismatches {
        println!(
            "transaction {} (unit {}): recorded {:?}, now {:?}",
            m.index, m.unit, m.recorded, m.replayed
        );
    }
    if mismatches.is_empty() {
        println!("{count} transactions replayed, all decode as recorded");
        Ok(())
    } else {
        Err(format!("{} of {count} transactions decode differently now", mismatches.len()))
    }
}

/// Network listeners of `sim`.
struct NetArgs {
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    rtu_over_tcp: Option<SocketAddr>,
}

struct SimArgs {
    pty: Option<PathBuf>,
    port: Option<String>,
    net: NetArgs,
    line: LineConfig,
    units: Vec<(u8, DeviceKind)>,
    day_seconds: f64,
    start_hour: f64,
    turnaround: Vec<String>,
    control: Option<PathBuf>,
    script: Option<PathBuf>,
    seed: u64,
    trace: bool,
    ascii: bool,
}

fn run_sim(a: SimArgs) -> Result<(), String> {
    if !(a.day_seconds.is_finite() && a.day_seconds >= 1.0) {
        return Err(format!("--day-seconds must be at least 1, got {}", a.day_seconds));
    }
    if a.units.is_empty() {
        return Err("no device to simulate (--sdm230, --growatt and --vm3p75ct are all none)".to_string());
    }
    let script = a.script.as_deref().map(Script::load).transpose()?;
    let config = SimConfig {
        line: a.line,
        units: a.units.clone(),
        clock: ClockConfig { speed: 86_400.0 / a.day_seconds, start_hour: a.start_hour.rem_euclid(24.0) },
        seed: a.seed,
        trace: a.trace,
        plant: None,
        ascii: a.ascii,
    };
    let trace = config.trace;
    let default_control = || a.control.clone().unwrap_or_else(|| PathBuf::from("/tmp/dmc-hil-sim.ctl"));
    let (mut sim, control) = match (&a.pty, &a.port) {
        (Some(link), _) => {
            let sim = SimHandle::spawn_pty_at(config, link).map_err(|e| e.to_string())?;
            let ctl = a.control.clone().unwrap_or_else(|| PathBuf::from(format!("{}.ctl", link.display())));
            (sim, ctl)
        }
        (None, Some(port)) => {
            let sim = SimHandle::spawn_port(config, port).map_err(|e| e.to_string())?;
            (sim, default_control())
        }
        (None, None) if a.net.tcp.is_some() || a.net.udp.is_some() || a.net.rtu_over_tcp.is_some() => {
            (SimHandle::without_transport(&config), default_control())
        }
        (None, None) => {
            return Err("give --pty PATH, --port DEVICE, --tcp, --udp or --rtu-over-tcp ADDR".to_string())
        }
    };
    let mut listening = Vec::new();
    if let Some(addr) = a.net.tcp {
        let bound = sim.serve_tcp(addr, trace).map_err(|e| e.to_string())?;
        listening.push(format!("Modbus TCP on {bound}"));
    }
    if let Some(addr) = a.net.udp {
        let bound = sim.serve_udp(addr, trace).map_err(|e| e.to_string())?;
        listening.push(format!("Modbus UDP on {bound}"));
    }
    if let Some(addr) = a.net.rtu_over_tcp {
        let bound = sim.serve_rtu_over_tcp(addr, trace).map_err(|e| e.to_string())?;
        listening.push(format!("RTU over TCP on {bound}"));
    }
    for t in &a.turnaround {
        let (unit, ms) = t.split_once(':').ok_or_else(|| format!("--turnaround wants UNIT:MS, got {t:?}"))?;
        sim.command(&format!("turnaround {unit} {ms}"))?;
    }
    sim.serve_control(&control).map_err(|e| e.to_string())?;
    if let Some(script) = script {
        sim.run_script(script).map_err(|e| e.to_string())?;
    }
    let units: Vec<String> = a.units.iter().map(|(u, k)| format!("{} at unit {u}", k.name())).collect();
    let serial = a.pty.is_some() || a.port.is_some();
    if serial {
        println!(
            "dmc-hil sim: {} on {} ({}{}{} {} baud), control socket {}",
            units.join(", "),
            sim.path().display(),
            a.line.data_bits,
            match a.line.parity {
                Parity::None => 'N',
                Parity::Even => 'E',
                Parity::Odd => 'O',
            },
            a.line.stop_bits,
            a.line.baud,
            control.display()
        );
    } else {
        println!("dmc-hil sim: {}, control socket {}", units.join(", "), control.display());
    }
    for l in &listening {
        println!("dmc-hil sim: {l}");
    }
    if a.pty.is_some() {
        println!("dmc-hil sim: pty client side {}", sim.device_path().display());
    }
    while sim.is_running() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(if serial { "serial thread stopped" } else { "network listener stopped" }.to_string())
}
