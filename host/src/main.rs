//! dbus-modbus-client: the GX daemon (command line entry point).
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use dbus_modbus_client::dbus::{BusChoice, Spawner};
use dbus_modbus_client::settings::standin::SettingsStandin;

/// Reads Modbus energy devices and publishes them on the Victron D-Bus.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Use the system bus (default: session bus if DBUS_SESSION_BUS_ADDRESS is set, else system).
    #[arg(long, global = true, conflicts_with = "session")]
    system: bool,
    /// Use the session bus.
    #[arg(long, global = true)]
    session: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a stand-in for com.victronenergy.settings (for PCs and tests without localsettings).
    SettingsService {
        /// Where settings persist (created if missing).
        #[arg(long)]
        file: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let bus = match (cli.system, cli.session) {
        (true, _) => BusChoice::System,
        (_, true) => BusChoice::Session,
        _ => BusChoice::Auto,
    };
    match cli.command {
        Some(Command::SettingsService { file }) => {
            let spawner: Spawner = Arc::new(async_executor::Executor::new());
            let result = async_io::block_on(spawner.run(async {
                let standin = SettingsStandin::start(file, &bus, &spawner).await?;
                // Serve until killed; every change is already on disk.
                std::future::pending::<()>().await;
                drop(standin);
                Ok::<(), Box<dyn std::error::Error>>(())
            }));
            if let Err(e) = result {
                eprintln!("dbus-modbus-client settings-service: {e}");
                std::process::exit(1);
            }
        }
        None => {
            eprintln!("dbus-modbus-client: the daemon is not implemented yet (see README Status)");
            std::process::exit(1);
        }
    }
}
