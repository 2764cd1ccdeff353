//! The floor under the engine's CPU time per transaction on this machine.
//!
//! One RTU transaction against the paced simulator on a pseudo-terminal
//! with the fewest system calls it can take, on a thread that does nothing
//! else: look for stale bytes (one read), write the request, sleep until the
//! answer should be complete, read it (a second sleep and read when it came
//! in parts), sleep through t3.5. No planner, no decoding, no D-Bus. Its
//! CPU time per transaction (`/proc/thread-self/schedstat`, this thread
//! only) is what the kernel and the machine charge for the wake-ups and
//! system calls alone; the engine (`--bench engine`, "own thread") and the
//! whole daemon (`scripts/bench-daemon`) are compared against it.
//!
//! `cargo bench -p dbus-modbus-client --bench wake_floor` prints a table;
//! it asserts nothing.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use dbus_modbus_client::link::{Link, SerialLink};
use dmc_core::timing::LineConfig;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

/// Simulator turnaround (the engine bench uses the same).
const TURNAROUND: StdDuration = StdDuration::from_millis(5);
/// SDM230 unit 2, FC04 read of its power (0x000C, 2 registers).
const REQUEST: [u8; 8] = [0x02, 0x04, 0x00, 0x0C, 0x00, 0x02, 0xB1, 0xFB];
/// Its answer: address, function, byte count, 4 data bytes, CRC.
const ANSWER_LEN: usize = 9;

fn thread_cpu() -> StdDuration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(StdDuration::from_nanos)
        .unwrap_or_default()
}

fn std_duration(d: dmc_core::time::Duration) -> StdDuration {
    StdDuration::from_micros(d.as_micros())
}

/// Runs transactions for `seconds`; returns (transactions, failed, CPU per transaction, wall per transaction).
fn floor(baud: u32, seconds: u64) -> Result<(u64, u64, StdDuration, StdDuration), String> {
    let line = LineConfig::new_8n1(baud);
    let mut config = SimConfig::with_units(&[(2, DeviceKind::Sdm230)]);
    config.line = line;
    let sim = SimHandle::spawn_pty(config).map_err(|e| e.to_string())?;
    sim.command(&format!("turnaround all {}", TURNAROUND.as_millis()))?;
    let mut link = Link::Serial(SerialLink::open(sim.path(), &line).map_err(|e| e.to_string())?);
    let answer_wire = std_duration(line.wire_time(ANSWER_LEN));
    let until_complete = std_duration(line.wire_time(REQUEST.len())) + TURNAROUND + answer_wire;
    let gap = std_duration(line.t35());
    let mut buf = [0u8; 64];
    let (mut done, mut failed) = (0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = StdInstant::now();
    while start.elapsed() < StdDuration::from_secs(seconds) {
        link.drain().map_err(|e| e.to_string())?;
        futures_lite::future::block_on(link.send(&REQUEST)).map_err(|e| e.to_string())?;
        let sent = StdInstant::now();
        std::thread::sleep(until_complete);
        let mut got = 0;
        // The rest of a partly arrived answer, at most for a generous while.
        while got < ANSWER_LEN && sent.elapsed() < until_complete * 4 {
            let n = link.try_recv(&mut buf[got..]).map_err(|e| e.to_string())?;
            got += n;
            if got < ANSWER_LEN {
                std::thread::sleep(std_duration(line.wire_time(ANSWER_LEN - got)).max(answer_wire / 4));
            }
        }
        if got == ANSWER_LEN {
            done += 1;
        } else {
            failed += 1;
        }
        std::thread::sleep(gap);
    }
    let cpu = thread_cpu() - cpu0;
    let n = (done + failed).max(1);
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    Ok((done, failed, cpu / n32, start.elapsed() / n32))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("wake-floor bench: run with `cargo bench -p dbus-modbus-client --bench wake_floor`");
        return;
    }
    println!(
        "Fewest system calls per RTU transaction against the paced simulator (SDM230 power, turnaround 5 ms)"
    );
    println!(
        "| baud | transactions | incomplete | CPU per transaction (this thread) | wall per transaction |"
    );
    println!("|---|---|---|---|---|");
    for (baud, seconds) in [(9600, 10), (115_200, 5)] {
        match floor(baud, seconds) {
            Ok((done, failed, cpu, wall)) => println!(
                "| {baud} | {done} | {failed} | {:.1} us | {:.2} ms |",
                cpu.as_secs_f64() * 1e6,
                wall.as_secs_f64() * 1e3
            ),
            Err(e) => println!("| {baud} | failed: {e} | | | |"),
        }
    }
}
