//! D-Bus cost of publishing: CPU time of the publishing thread per `ItemsChanged` and the
//! message size on the bus, for a meter service with the SDM230's paths, on a private
//! dbus-daemon with one subscribed consumer (as on a GX, where systemcalc and the GUI listen).
//! Prints a table; asserts nothing (figures only).
//!
//! `cargo bench -p dbus-modbus-client --bench items_changed`. The 4 Hz figures multiply the
//! per-signal cost by the signals a 4 Hz meter sends (`scripts/bench-daemon` measures those on
//! the whole daemon).
//!
//! CPU time is the publishing thread's own (`/proc/thread-self/schedstat`): set the values,
//! build the signal, write it to the socket. The consumer runs on another thread.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dbus_modbus_client::dbus::{BusChoice, Item, ServiceBuilder, Spawner};
use futures_lite::StreamExt;

const FLUSHES: u32 = 2000;

fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// The SDM230 grid service's paths (generic and measured), as the daemon publishes them.
const PATHS: [&str; 26] = [
    "/Mgmt/ProcessName",
    "/Mgmt/ProcessVersion",
    "/Mgmt/Connection",
    "/DeviceInstance",
    "/ProductId",
    "/ProductName",
    "/Model",
    "/Serial",
    "/Connected",
    "/CustomName",
    "/Role",
    "/IsGenericEnergyMeter",
    "/NrOfPhases",
    "/FirmwareVersion",
    "/HardwareVersion",
    "/ErrorCode",
    "/Ac/Power",
    "/Ac/L1/Voltage",
    "/Ac/L1/Current",
    "/Ac/L1/Power",
    "/Ac/L1/PowerFactor",
    "/Ac/Frequency",
    "/Ac/Energy/Forward",
    "/Ac/Energy/Reverse",
    "/Ac/L1/Energy/Forward",
    "/Ac/L1/Energy/Reverse",
];

fn main() {
    let mut daemon = match Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED: dbus-daemon not available: {e}");
            return;
        }
    };
    let mut address = String::new();
    if let Some(out) = daemon.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut address);
    }
    let bus = BusChoice::Address(address.trim().to_string());

    // The consumer: its own thread and executor, counting ItemsChanged and their bytes.
    let consumer_bus = bus.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stats_tx, stats_rx) = async_channel::unbounded::<usize>();
    std::thread::spawn(move || {
        let spawner: Spawner = Arc::new(async_executor::Executor::new());
        let ex = spawner.clone();
        async_io::block_on(ex.run(async move {
            let Ok(conn) = dbus_modbus_client::dbus::connect(&consumer_bus, &spawner).await else { return };
            let rule = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .interface("com.victronenergy.BusItem")
                .and_then(|b| b.member("ItemsChanged"))
                .map(|b| b.build());
            let Ok(rule) = rule else { return };
            let Ok(mut stream) = zbus::MessageStream::for_match_rule(rule, &conn.conn, None).await else {
                return;
            };
            let _ = ready_tx.send(());
            while let Some(Ok(msg)) = stream.next().await {
                let _ = stats_tx.send(msg.data().len()).await;
            }
        }));
    });
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        eprintln!("consumer did not start");
        let _ = daemon.kill();
        return;
    }

    let spawner: Spawner = Arc::new(async_executor::Executor::new());
    let ex = spawner.clone();
    let rows = async_io::block_on(ex.run(async move {
        let mut b = ServiceBuilder::new("com.victronenergy.grid.eastron_1900123456");
        for (i, path) in PATHS.iter().enumerate() {
            let _ = b.add(path, Item::new(i as f64).with_text(format!("{i} W")));
        }
        let Ok(service) = b.register(&bus, &spawner).await else { return Vec::new() };
        let mut rows = Vec::new();
        // Changed paths per cycle: power only; power block (total + L1); everything measured.
        for changed in [1usize, 2, 10] {
            let measured = &PATHS[16..16 + changed];
            let cpu0 = thread_cpu();
            for n in 0..FLUSHES {
                for (k, path) in measured.iter().enumerate() {
                    let v = f64::from(n) + k as f64 * 0.1;
                    let _ = service.set(path, v, format!("{v:.1} W"));
                }
                let _ = service.flush().await;
            }
            let cpu = thread_cpu() - cpu0;
            // Every signal reaches the consumer before the next row starts.
            let mut bytes = 0usize;
            for _ in 0..FLUSHES {
                match futures_lite::future::or(async { stats_rx.recv().await.ok() }, async {
                    async_io::Timer::after(Duration::from_secs(10)).await;
                    None
                })
                .await
                {
                    Some(size) => bytes += size,
                    None => break,
                }
            }
            rows.push((changed, cpu / FLUSHES, bytes / FLUSHES as usize));
        }
        rows
    }));
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!("| paths per ItemsChanged | publishing thread CPU per ItemsChanged | message bytes | at 4 signals/s |");
    println!("|---|---|---|---|");
    for (changed, cpu, bytes) in rows {
        println!(
            "| {changed} | {:.1} us | {bytes} B | {} B/s, {:.2} ms CPU/s |",
            cpu.as_secs_f64() * 1e6,
            bytes * 4,
            cpu.as_secs_f64() * 4e3
        );
    }
}
