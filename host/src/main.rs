//! dbus-modbus-client: the GX daemon (command line entry point).
use clap::Parser;

/// Reads Modbus energy devices and publishes them on the Victron D-Bus.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("dbus-modbus-client: the daemon is not implemented yet (see README Status)");
    std::process::exit(1);
}
