//! Engine benchmark: the polling engine against the paced hil simulator on a
//! real pseudo-terminal, compared with the physical line limit of
//! `docs/modbus-timing.md`. Prints a table; asserts nothing (figures only).
//!
//! `cargo bench -p dbus-modbus-client --bench engine` runs the line-limit
//! figures at 9600 and 115200 baud; `BENCH_SOAK_TX=1000000` adds the memory
//! soak (Growatt silent, faults on) with that many transactions.
//!
//! CPU time is the engine thread's own (`/proc/thread-self/schedstat`): the
//! simulator runs on other threads of this process and is not counted. Each
//! baud rate runs twice: with the bus's waits through the shared async-io
//! reactor, and on a thread of its own (`Bus::on_own_thread`, as the daemon
//! runs it). In the first, the reactor's helper thread that hands over every
//! wake-up is not counted either: compare the daemon-wide figures of
//! `scripts/bench-daemon` for the whole cost.

use std::time::{Duration as StdDuration, Instant as StdInstant};

use dbus_modbus_client::engine::{Bus, BusConfig, Clock, Device, Observer, PresenceChange};
use dbus_modbus_client::spec::DeviceSpec;
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;
use dmc_hil::model::DeviceKind;
use dmc_hil::serve::{SimConfig, SimHandle};

/// Fixed simulator turnaround for the line-limit arithmetic.
const TURNAROUND_MS: u64 = 5;

struct Counter {
    stop_at: StdInstant,
    ready: usize,
    fast_reads: Vec<Instant>,
}

impl Observer for Counter {
    fn presence(&mut self, _i: usize, _d: &Device, change: PresenceChange, _now: Instant) {
        if change == PresenceChange::Ready {
            self.ready += 1;
        }
    }
    fn values(&mut self, i: usize, d: &Device, now: Instant) {
        // The SDM230's power register changes on every read of its fast block.
        if d.profile.is_some_and(|p| p.name == "sdm230") && d.changed.contains(&2) {
            let _ = i;
            self.fast_reads.push(now);
        }
    }
    fn stop_requested(&mut self) -> bool {
        StdInstant::now() >= self.stop_at
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> StdDuration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .map(StdDuration::from_nanos)
        .unwrap_or_default()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn sim(baud: u32, units: &[(u8, DeviceKind)]) -> SimHandle {
    let mut config = SimConfig::with_units(units);
    config.line = LineConfig::new_8n1(baud);
    let sim = SimHandle::spawn_pty(config).expect("simulator");
    sim.command(&format!("turnaround all {TURNAROUND_MS}")).expect("turnaround");
    sim
}

fn bus(sim: &SimHandle, baud: u32, units: &[u8], fastest: Option<Duration>) -> Bus {
    let specs: Vec<DeviceSpec> = units
        .iter()
        .map(|u| DeviceSpec::parse(&format!("rtu:{}:{baud}:{u}", sim.path().display())).expect("spec"))
        .collect();
    let mut config = BusConfig::for_spec(&specs[0]);
    config.fastest_period = fastest;
    Bus::new(config, specs, Clock::new()).expect("bus")
}

fn run(bus: &mut Bus, obs: &mut Counter) {
    async_io::block_on(bus.run(obs));
}

fn line_limit_figures(baud: u32, seconds: u64, own_thread: bool) {
    let s = sim(baud, &[(2, DeviceKind::Sdm230)]);
    let mut b = bus(&s, baud, &[2], Some(Duration::ZERO));
    if own_thread {
        b.on_own_thread();
    }
    // Start-up: identification and identity reads.
    let mut warm =
        Counter { stop_at: StdInstant::now() + StdDuration::from_secs(5), ready: 0, fast_reads: vec![] };
    let t0 = StdInstant::now();
    while warm.ready == 0 && StdInstant::now() < warm.stop_at {
        let until = StdInstant::now() + StdDuration::from_millis(50);
        let mut step = Counter { stop_at: until, ready: 0, fast_reads: vec![] };
        run(&mut b, &mut step);
        warm.ready += step.ready;
    }
    let first_ready = t0.elapsed();

    let before = b.stats();
    let cpu0 = thread_cpu();
    let started = StdInstant::now();
    let mut obs = Counter {
        stop_at: StdInstant::now() + StdDuration::from_secs(seconds),
        ready: 0,
        fast_reads: vec![],
    };
    run(&mut b, &mut obs);
    let elapsed = started.elapsed();
    let cpu = thread_cpu() - cpu0;
    let after = b.stats();
    let n = after.transactions - before.transactions;
    let wire = after.wire_busy.saturating_sub(before.wire_busy);
    let line = LineConfig::new_8n1(baud);
    // Line limit of what was actually read: wire time plus the device's
    // turnaround and the t3.5 gap per transaction.
    let per_tx_fixed = Duration::from_millis(TURNAROUND_MS) + line.t35();
    let limit = wire + per_tx_fixed.saturating_mul(n);
    let secs = elapsed.as_secs_f64();
    let tps = n as f64 / secs;
    let limit_tps = n as f64 / (limit.as_micros() as f64 / 1e6);
    let measured_per_tx = secs * 1e6 / n as f64;
    let limit_per_tx = limit.as_micros() as f64 / n as f64;
    // The fast block (active power, 2 registers): measured refresh interval vs its line-limit transaction.
    let fast_limit = line.transaction_time(8, 9, Duration::from_millis(TURNAROUND_MS));
    let intervals: Vec<u64> =
        obs.fast_reads.windows(2).map(|w| w[1].saturating_since(w[0]).as_micros()).collect();
    let mut sorted = intervals.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let c = b.master_counters();
    println!(
        "| {baud:>6} | {} | {n:>6} | {tps:>7.1} | {limit_tps:>7.1} | {:>5.1} % | {:>5.1} % | {:>8.0} | {:>8.0} | {:>6.0} | {:>7.1} | {:>7.1} | {:>5.1} % | {:>6.2} | {} |",
        if own_thread { "own thread" } else { "reactor" },
        100.0 * wire.as_micros() as f64 / 1e6 / secs,
        100.0 * wire.as_micros() as f64 / limit.as_micros() as f64,
        measured_per_tx,
        limit_per_tx,
        measured_per_tx - limit_per_tx,
        median as f64 / 1000.0,
        fast_limit.as_micros() as f64 / 1000.0,
        100.0 * (median as f64 / fast_limit.as_micros() as f64 - 1.0),
        cpu.as_secs_f64() * 1e6 / n as f64,
        format_args!("{:.0} ms, timeouts {}", first_ready.as_secs_f64() * 1000.0, c.timeouts),
    );
}

fn soak(transactions: u64) {
    // As fast as a pty allows: 1 Mbaud pacing, no turnaround; the Growatt is
    // silent (asleep) and the meter's line sees CRC and garbage faults.
    let baud = 1_000_000;
    let s = sim(baud, &[(1, DeviceKind::GrowattMin), (2, DeviceKind::Sdm230)]);
    s.command("turnaround all 0").expect("turnaround");
    let mut b = bus(&s, baud, &[1, 2], Some(Duration::ZERO));
    let mut warm =
        Counter { stop_at: StdInstant::now() + StdDuration::from_secs(10), ready: 0, fast_reads: vec![] };
    run(&mut b, &mut warm);
    s.fault("growatt", "silent on").expect("fault");
    s.fault("sdm230", "crc 0.02").expect("fault");
    s.fault("sdm230", "garbage 0.02").expect("fault");
    let mut settle =
        Counter { stop_at: StdInstant::now() + StdDuration::from_secs(5), ready: 0, fast_reads: vec![] };
    run(&mut b, &mut settle);
    let rss0 = rss_kib();
    let start = StdInstant::now();
    let cpu0 = thread_cpu();
    let mut done = 0u64;
    let mut last_report = StdInstant::now();
    while done < transactions {
        let chunk = (transactions - done).min(10_000);
        let mut obs = Counter {
            stop_at: StdInstant::now() + StdDuration::from_secs(3600),
            ready: 0,
            fast_reads: vec![],
        };
        async_io::block_on(b.run_for(&mut obs, chunk));
        done += chunk;
        if last_report.elapsed() > StdDuration::from_secs(60) {
            eprintln!("soak: {done} transactions, RSS {} KiB", rss_kib());
            last_report = StdInstant::now();
        }
    }
    let cpu = thread_cpu() - cpu0;
    let rss1 = rss_kib();
    let c = b.master_counters();
    println!(
        "soak: {done} transactions in {:.0} s, engine CPU {:.1} us/tx, RSS before {rss0} KiB after {rss1} KiB (growth {} KiB); \
         timeouts {}, CRC errors {}, growatt requests {}",
        start.elapsed().as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / done as f64,
        rss1 as i64 - rss0 as i64,
        c.timeouts,
        c.checksum_errors,
        b.devices[0].stats.requests,
    );
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` the
    // benchmark only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine bench: run with `cargo bench -p dbus-modbus-client --bench engine`");
        return;
    }
    println!("Engine against the paced simulator (SDM230 only, fast class as fast as the line allows, sim turnaround {TURNAROUND_MS} ms)");
    println!(
        "| baud | waits | transactions | tx/s | line-limit tx/s | wire busy | of line limit | us/tx measured | us/tx line limit | host overhead us/tx | fast block interval ms (median) | its line limit ms | above limit | engine CPU us/tx | first ready, timeouts |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for own_thread in [false, true] {
        line_limit_figures(9600, 10, own_thread);
        line_limit_figures(115_200, 5, own_thread);
    }
    if let Some(n) = std::env::var("BENCH_SOAK_TX").ok().and_then(|v| v.parse().ok()) {
        soak(n);
    }
}
