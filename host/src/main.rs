//! dbus-modbus-client: the GX daemon (command line entry point).
//!
//! Flags follow the upstream Python client where they overlap
//! (venus-conventions 5.1): `-s`, `-r`, `-m`, `-x`, `-f`, `-P`, `--models`,
//! `-d`; plus `-F/--force-devices`, `--properties-changed`,
//! `--system`/`--session`, and the subcommands `demo` and `settings-service`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use dbus_modbus_client::daemon::{self, DaemonOptions, StopFlag};
use dbus_modbus_client::dbus::{BusChoice, Spawner};
use dbus_modbus_client::logging;
use dbus_modbus_client::settings::standin::SettingsStandin;
use dbus_modbus_client::spec::{DeviceSpec, SpecError};

/// Reads Modbus energy devices and publishes them on the Victron D-Bus.
#[derive(Parser, Debug)]
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    /// Serial mode on DEV (e.g. /dev/ttyUSB0); the client is named after its basename.
    #[arg(short = 's', long = "serial", value_name = "DEV")]
    serial: Option<String>,
    /// Baud rate of the serial bus (repeatable: rates to probe).
    #[arg(short = 'r', long = "rate", value_name = "BAUD")]
    rate: Vec<u32>,
    /// Serial framing.
    #[arg(short = 'm', long = "mode", value_enum, default_value_t = Mode::Rtu)]
    mode: Mode,
    /// Exit with status 1 when a device fails (for serial-starter and supervise).
    #[arg(short = 'x', long = "exit")]
    exit: bool,
    /// Scan units 1..247 on the serial port (at every -r rate) at start.
    #[arg(short = 'f', long = "force-scan")]
    force_scan: bool,
    /// Units a scan asks (-f, and /Scan on the control service).
    #[arg(long, value_name = "A-B", value_parser = parse_units)]
    scan_units: Option<(u8, u8)>,
    /// Devices to use, method:target:rate_or_port:unit[:profile], comma separated.
    #[arg(short = 'F', long = "force-devices", value_name = "SPEC[,SPEC...]", value_parser = parse_spec_list)]
    force_devices: Vec<Vec<DeviceSpec>>,
    /// Identify SPEC, print its identity and every register value, exit (repeatable).
    #[arg(short = 'P', long = "probe", value_name = "SPEC", value_parser = DeviceSpec::parse)]
    probe: Vec<DeviceSpec>,
    /// Print the supported models and exit.
    #[arg(long)]
    models: bool,
    /// Frame-level hex trace (SEND/RECV lines) and debug logging.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Also send a PropertiesChanged per path with every update (old consumers).
    #[arg(long)]
    properties_changed: bool,
    /// Period of each device's fastest poll class in ms (0: as fast as the line allows).
    #[arg(long, value_name = "MS")]
    fastest_period_ms: Option<u64>,
    /// Use the system bus (default: session bus if DBUS_SESSION_BUS_ADDRESS is set, else system).
    #[arg(long, global = true, conflicts_with = "session")]
    system: bool,
    /// Use the session bus.
    #[arg(long, global = true)]
    session: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

const EXAMPLES: &str = "Examples:
  dbus-modbus-client demo
  dbus-modbus-client -x -s /dev/ttyUSB0 -r 9600 -F rtu:ttyUSB0:9600:1,rtu:ttyUSB0:9600:2
  dbus-modbus-client --models";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Rtu,
    Ascii,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask every unit of a range on a serial port and list what answered.
    Scan {
        /// The serial port (e.g. /dev/ttyUSB0).
        #[arg(short = 's', long = "serial", value_name = "PORT")]
        serial: String,
        /// Baud rate.
        #[arg(short = 'r', long = "rate", value_name = "BAUD", default_value_t = 9600)]
        rate: u32,
        /// Units to ask, e.g. 1-247 or 2.
        #[arg(long, default_value = "1-247", value_parser = parse_units)]
        units: (u8, u8),
        /// Serial framing.
        #[arg(short = 'm', long = "mode", value_enum, default_value_t = Mode::Rtu)]
        mode: Mode,
    },
    /// Simulated meter and inverter, a private D-Bus and live values: the product in one command.
    Demo {
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
    },
    /// Run a stand-in for com.victronenergy.settings (for PCs and tests without localsettings).
    SettingsService {
        /// Where settings persist (created if missing).
        #[arg(long)]
        file: PathBuf,
    },
}

fn parse_units(s: &str) -> Result<(u8, u8), String> {
    dbus_modbus_client::probe::parse_units(s)
}

fn parse_spec_list(s: &str) -> Result<Vec<DeviceSpec>, SpecError> {
    DeviceSpec::parse_list(s)
}

fn stop_flag() -> StopFlag {
    let stop: StopFlag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once; the first asks for a clean stop.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    stop
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.debug);
    let bus = match (cli.system, cli.session) {
        (true, _) => BusChoice::System,
        (_, true) => BusChoice::Session,
        _ => BusChoice::Auto,
    };
    if cli.models {
        print!("{}", daemon::models_table());
        return ExitCode::SUCCESS;
    }
    if !cli.probe.is_empty() {
        let code = dbus_modbus_client::probe::probe(cli.probe);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match cli.command {
        Some(Command::Demo { duration }) => {
            #[cfg(feature = "demo")]
            {
                let code = dbus_modbus_client::demo::run(duration, stop_flag());
                ExitCode::from(u8::try_from(code).unwrap_or(1))
            }
            #[cfg(not(feature = "demo"))]
            {
                let _ = duration;
                eprintln!("dbus-modbus-client: this build has no demo (built without the 'demo' feature)");
                ExitCode::from(2)
            }
        }
        Some(Command::Scan { serial, rate, units: (first, last), mode }) => {
            let code = dbus_modbus_client::probe::scan(&serial, rate, mode == Mode::Ascii, first, last);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Some(Command::SettingsService { file }) => {
            let spawner: Spawner = Arc::new(async_executor::Executor::new());
            let stop = stop_flag();
            let result = async_io::block_on(spawner.run(async {
                let standin = SettingsStandin::start(file, &bus, &spawner).await?;
                // Serve until a signal; every change is already on disk.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    async_io::Timer::after(std::time::Duration::from_millis(100)).await;
                }
                drop(standin);
                Ok::<(), Box<dyn std::error::Error>>(())
            }));
            if let Err(e) = result {
                eprintln!("dbus-modbus-client settings-service: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        None => {
            let options = DaemonOptions {
                bus,
                devices: cli.force_devices.into_iter().flatten().collect(),
                serial: cli.serial,
                rates: cli.rate,
                ascii: cli.mode == Mode::Ascii,
                exit_on_failure: cli.exit,
                properties_changed: cli.properties_changed,
                fastest_period_ms: cli.fastest_period_ms,
                force_scan: cli.force_scan,
                scan_units: cli.scan_units,
                ..DaemonOptions::default()
            };
            let code = daemon::run(options, stop_flag());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
