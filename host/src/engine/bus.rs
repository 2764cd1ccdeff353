//! One bus: a serial port or a socket, the devices on it, and the loop that
//! reads them one transaction at a time.
//!
//! Each pass of [`Bus::run`] does the most useful single thing:
//! 1. (re)open the link if it is down (every second, logging the cause once);
//! 2. serve a queued command (a write from D-Bus, a raw exchange);
//! 3. probe a device that is not identified yet and may be asked now;
//! 4. otherwise read the block the core scheduler says is due, or sleep
//!    until it is (waking early for commands).
//!
//! A transaction waits for the t3.5 line silence, drains stale input, sends
//! the request, and feeds what arrives into the core [`Master`] until it
//! completes or its deadline passes. The deadline is the response's own wire
//! time plus the device's adaptive timeout, so a silent device costs one
//! bounded timeout per back-off period and never starves the others.

use std::time::Duration as StdDuration;

use async_io::Timer;
use dmc_core::master::{AsciiFraming, Counters, Master, MbapFraming, RtuFraming, TransactionError};
use dmc_core::mbap;
use dmc_core::pdu::{Request, Response};
use dmc_core::plan::Transport;
use dmc_core::profile::Profile;
use dmc_core::register::{PollClass, RegisterBank};
use dmc_core::rtu::RxTiming;
use dmc_core::schedule::{DeviceId, Next, Scheduler};
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;
use futures_lite::future;

use super::clock::Clock;
use super::device::{Device, Failure, Presence, PresenceChange};
use super::line_timer::LineTimer;
use super::shared::SharedBus;
use crate::link::{Link, LinkError, SerialLink, TcpLink, UdpLink};
use crate::spec::{DeviceSpec, Method};

mod scan;

/// Devices one bus can hold (Modbus serial allows 247; a GX bus has a handful).
pub const MAX_DEVICES: usize = 16;
/// Read blocks over all devices of one bus.
pub const MAX_SLOTS: usize = 128;
/// How often a missing serial port is looked for again.
pub const REOPEN_INTERVAL: StdDuration = StdDuration::from_secs(1);
/// Smallest silence the receiver accepts inside a frame on a real serial
/// port: USB adapters deliver bytes in bursts (an FTDI latency timer can
/// split a frame with a 16 ms pause, other chips and a busy host more). Only
/// the inside-of-a-frame limit is widened; requests keep the spec's t3.5.
pub const USB_BURST_GAP: Duration = Duration::from_millis(50);
/// Longest single sleep of the loop.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// How much earlier than its learned turnaround a device is read back: lets
/// the latency filter see a device getting faster.
///
/// An answer found complete by the first read after that sleep may have
/// arrived any time during it: its turnaround is only an upper bound and may
/// lower the learned value, never raise it. Counting our own oversleep (a
/// late wake-up on a busy host) as device latency ratchets the learned
/// turnaround up without limit: a loaded machine once took a 1 Mbaud meter
/// from 190 to 3 reads a second that way. (Sleeping to the full prediction
/// on most transactions saved a wake-up each, but on a busy host the line
/// then ran 15-140 % below its limit.)
const PREDICTION_MARGIN: Duration = Duration::from_millis(2);

/// How a bus is reached and framed; built from the first device spec on it.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Transport.
    pub method: Method,
    /// Port or host.
    pub target: String,
    /// Baud rate or TCP/UDP port.
    pub rate_or_port: u32,
    /// Serial framing (ignored on networks).
    pub line: LineConfig,
    /// Overrides the period of each device's fastest poll class; zero means
    /// "as fast as the line allows" (`None`: the profile's periods).
    pub fastest_period: Option<Duration>,
}

impl BusConfig {
    /// The bus a spec lives on, with 8N1 framing.
    pub fn for_spec(spec: &DeviceSpec) -> BusConfig {
        // Over a network the "line" only sets how long a request occupies the
        // master's receive window; a fast nominal rate keeps that negligible.
        let baud = if spec.method.is_serial() { spec.rate_or_port } else { 115_200 };
        BusConfig {
            method: spec.method,
            target: spec.target.clone(),
            rate_or_port: spec.rate_or_port,
            line: LineConfig::new_8n1(baud),
            fastest_period: None,
        }
    }

    /// ADU length on this bus for a PDU of `pdu_len` bytes.
    fn adu_len(&self, pdu_len: usize) -> usize {
        match self.method {
            Method::Rtu | Method::RtuOverTcp => pdu_len + 3,
            // ':' + hex of unit, PDU and LRC + CR LF.
            Method::Ascii => 1 + 2 * (pdu_len + 2) + 2,
            Method::Tcp | Method::Udp => pdu_len + 7,
        }
    }

    /// Wire time of `len` bytes (zero on networks).
    fn wire_time(&self, len: usize) -> Duration {
        if self.method.is_serial() {
            self.line.wire_time(len)
        } else {
            Duration::ZERO
        }
    }

    /// How the planner should cost reads on this bus.
    pub fn transport(&self) -> Transport {
        match self.method {
            Method::Rtu | Method::Ascii | Method::RtuOverTcp => Transport::Rtu(self.line),
            Method::Tcp | Method::Udp => Transport::Mbap,
        }
    }

    /// A display name: the tty or `host:port`.
    pub fn name(&self) -> String {
        match self.method {
            Method::Rtu | Method::Ascii => self.target.clone(),
            _ => format!("{}:{}", self.target, self.rate_or_port),
        }
    }
}

/// What the bus tells the outside world. Calls are synchronous and must be
/// quick: they run between two transactions.
pub trait Observer {
    /// A device's presence changed (identified, ready, lost, returned).
    fn presence(&mut self, device_index: usize, device: &Device, change: PresenceChange, now: Instant);
    /// A read completed; `device.changed` lists the registers whose value changed.
    fn values(&mut self, device_index: usize, device: &Device, now: Instant);
    /// The link went down (with the reason) or came back (`None`).
    fn link(&mut self, _bus: &str, _error: Option<&LinkError>) {}
    /// Checked once per pass; `true` ends [`Bus::run`].
    fn stop_requested(&mut self) -> bool {
        false
    }
    /// Called once per pass of the loop (the daemon's watchdog counts these).
    fn progress(&mut self) {}
}

/// Bus-level counters, for benchmarks and the control service.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusStats {
    /// Transactions attempted.
    pub transactions: u64,
    /// Request plus response bytes on the wire (successful transactions).
    pub wire_bytes: u64,
    /// Time the line carried our bytes (wire time of requests and responses).
    pub wire_busy: Duration,
    /// Times the link was (re)opened.
    pub opens: u64,
    /// Reads from the link during transactions (each a system call): a few
    /// per transaction; a busy loop would show here first.
    pub reads: u64,
}

/// The master over whichever framing the bus uses.
enum AnyMaster {
    Rtu(Box<Master<RtuFraming>>),
    Ascii(Box<Master<AsciiFraming>>),
    Mbap(Box<Master<MbapFraming>>),
}

macro_rules! with_master {
    ($m:expr, $v:ident => $body:expr) => {
        match $m {
            AnyMaster::Rtu($v) => $body,
            AnyMaster::Ascii($v) => $body,
            AnyMaster::Mbap($v) => $body,
        }
    };
}

/// Outcome of one transaction, with the bytes that crossed the wire.
struct Exchange {
    result: Result<(), TransactionError>,
    /// When the request finished on the wire.
    sent_at: Instant,
    /// When the outcome was known.
    done_at: Instant,
    /// `done_at - sent_at` only bounds the turnaround from above: the answer
    /// was complete when a sleep of ours ended.
    upper_bound: bool,
}

impl Exchange {
    /// Feeds the measured turnaround to the device's filter (see [`PREDICTION_MARGIN`]).
    fn record_latency(&self, dev: &mut Device) {
        let sample = self.done_at.saturating_since(self.sent_at);
        if !self.upper_bound || sample < dev.stats.latency_filtered {
            dev.record_latency(sample);
        }
    }
}

/// A queued request from outside the poll loop (D-Bus writes, VregLink).
pub struct Command {
    /// Index of the device on this bus.
    pub device: usize,
    /// The request PDU bytes (validated when parsed).
    pub pdu: Vec<u8>,
    /// Where the response PDU (or the error text) goes.
    pub reply: async_channel::Sender<Result<Vec<u8>, CommandError>>,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The request bytes were not a valid Modbus request.
    BadRequest(String),
    /// The device is not answering or the link is down.
    Unavailable,
    /// The transaction failed (timeout, exception, bad answer).
    Failed(String),
}

/// One bus and its devices.
pub struct Bus {
    config: BusConfig,
    clock: Clock,
    link: Option<Link>,
    link_error: Option<String>,
    master: AnyMaster,
    /// The devices on this bus.
    pub devices: Vec<Device>,
    scheduled: Vec<Option<DeviceId>>,
    scheduler: Scheduler<MAX_DEVICES, MAX_SLOTS>,
    stats: BusStats,
    commands: async_channel::Receiver<Command>,
    command_tx: async_channel::Sender<Command>,
    /// A command that woke the loop from its sleep, served next.
    pending: Option<Command>,
    rx_buf: Vec<u8>,
    words: Vec<u16>,
    /// Statistics out, enable flags and scan requests in (the control service).
    shared: std::sync::Arc<SharedBus>,
    /// Every sleep of the loop (one timerfd, re-armed, not a timer per wait).
    timer: LineTimer,
    /// A unit scan under way ([`scan`]).
    scan: Option<scan::UnitScan>,
}

impl Bus {
    /// A bus for `config` with the given devices (all on it).
    pub fn new(config: BusConfig, specs: Vec<DeviceSpec>, clock: Clock) -> Result<Bus, String> {
        let now = clock.now();
        let devices = specs.into_iter().map(|s| Device::new(s, now)).collect::<Result<Vec<_>, _>>()?;
        if devices.len() > MAX_DEVICES {
            return Err(format!("{}: at most {MAX_DEVICES} devices per bus", config.name()));
        }
        let master = match config.method {
            Method::Rtu | Method::RtuOverTcp => {
                let mut timing = RxTiming::from_line(&config.line);
                if config.method == Method::Rtu {
                    // Only the inside-a-frame limit is widened; the frame gap
                    // that paces our requests stays the spec's t3.5.
                    timing.inter_char_timeout = timing.inter_char_timeout.max(USB_BURST_GAP);
                } else {
                    // A TCP gateway forwards in packets; byte timing means nothing.
                    timing = timing.widened(USB_BURST_GAP);
                }
                AnyMaster::Rtu(Box::new(Master::new(RtuFraming::with_timing(config.line, timing))))
            }
            Method::Ascii => AnyMaster::Ascii(Box::new(Master::new(AsciiFraming::new(Some(config.line))))),
            Method::Tcp | Method::Udp => AnyMaster::Mbap(Box::new(Master::new(MbapFraming::new()))),
        };
        let (command_tx, commands) = async_channel::bounded(16);
        let n = devices.len();
        let mut bus = Bus {
            config,
            clock,
            link: None,
            link_error: None,
            master,
            devices,
            scheduled: vec![None; n],
            scheduler: Scheduler::new(),
            stats: BusStats::default(),
            commands,
            command_tx,
            pending: None,
            rx_buf: vec![0; 512],
            words: Vec::with_capacity(125),
            shared: SharedBus::new(n),
            timer: LineTimer::new(),
            scan: None,
        };
        for i in 0..n {
            // Devices whose spec names the profile are planned right away.
            bus.schedule_device(i)?;
        }
        Ok(bus)
    }

    /// A handle to queue commands for this bus.
    pub fn commands(&self) -> async_channel::Sender<Command> {
        self.command_tx.clone()
    }

    /// The state this bus shares with the control service.
    pub fn shared(&self) -> std::sync::Arc<SharedBus> {
        self.shared.clone()
    }

    /// Bus counters.
    pub fn stats(&self) -> BusStats {
        self.stats
    }

    /// Core master counters (CRC errors, wrong units, late answers...).
    pub fn master_counters(&self) -> Counters {
        *with_master!(&self.master, m => m.counters())
    }

    /// The bus configuration.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Plans and registers device `i` with the scheduler once its profile is known.
    fn schedule_device(&mut self, i: usize) -> Result<(), String> {
        let transport = self.config.transport();
        let Some(dev) = self.devices.get_mut(i) else { return Ok(()) };
        let Some(profile) = dev.profile else { return Ok(()) };
        if self.scheduled.get(i).copied().flatten().is_some() {
            return Ok(());
        }
        dev.prepare(&transport)?;
        let fastest = dev
            .blocks()
            .iter()
            .filter_map(|b| match b.class {
                PollClass::Every(p) => Some(p),
                PollClass::Once => None,
            })
            .min();
        let class_of = |class: PollClass| match (class, fastest, self.config.fastest_period) {
            (PollClass::Every(p), Some(f), Some(over)) if p == f => PollClass::Every(over),
            _ => class,
        };
        let costs: Vec<(PollClass, Duration)> = dev
            .blocks()
            .iter()
            .map(|b| (class_of(b.class), profile.read_time(&transport, b.count)))
            .collect();
        let id = self.scheduler.add_device(costs).map_err(|e| format!("{}: {e:?}", dev.spec))?;
        let _ = self.scheduler.set_min_interval(id, profile.min_command_interval);
        if let Some(slot) = self.scheduled.get_mut(i) {
            *slot = Some(id);
        }
        Ok(())
    }

    /// Has this bus's waits block the thread instead of going through the
    /// shared reactor: for a bus loop that runs alone on a thread of its own
    /// (as the daemon runs each bus). A sleep is then one `nanosleep` and a
    /// wait for the answer one `poll`, with no reactor thread handing each
    /// wake-up over, which was most of a transaction's CPU time. The idle
    /// sleep between reads still goes through the reactor, so a command
    /// (a D-Bus write) wakes it at once.
    pub fn on_own_thread(&mut self) {
        self.timer = LineTimer::blocking();
    }

    /// Runs until the observer asks to stop or the command channel is closed
    /// (`Sender::close` on any [`Bus::commands`] handle: how the daemon stops
    /// a bus running on its own thread, an idle sleep included). Link
    /// failures never end it.
    pub async fn run(&mut self, observer: &mut (dyn Observer + Send)) {
        loop {
            if observer.stop_requested() || self.commands.is_closed() {
                return;
            }
            observer.progress();
            if self.link.is_none() && !self.open_link(observer).await {
                Timer::after(REOPEN_INTERVAL).await;
                continue;
            }
            self.step(observer).await;
            self.exchange_shared();
        }
    }

    /// Runs at most `transactions` transactions (benchmarks and tests).
    pub async fn run_for(&mut self, observer: &mut (dyn Observer + Send), transactions: u64) {
        let until = self.stats.transactions + transactions;
        while self.stats.transactions < until && !observer.stop_requested() {
            if self.link.is_none() && !self.open_link(observer).await {
                Timer::after(REOPEN_INTERVAL).await;
                continue;
            }
            self.step(observer).await;
            self.exchange_shared();
        }
    }

    /// Copies the device counters out and takes a scan request in (once per pass).
    fn exchange_shared(&mut self) {
        for (d, s) in self.devices.iter().zip(&self.shared.devices) {
            s.store_stats(&d.stats);
            s.identified.store(d.profile.is_some(), std::sync::atomic::Ordering::Relaxed);
        }
        if self.shared.scan_requested.load(std::sync::atomic::Ordering::Relaxed) {
            let now = self.clock.now();
            self.devices.iter_mut().for_each(|d| d.retry_now(now));
            self.start_unit_scan();
            self.shared.scan_requested.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn open_link(&mut self, observer: &mut (dyn Observer + Send)) -> bool {
        let c = &self.config;
        let opened = match c.method {
            Method::Rtu | Method::Ascii => {
                let path = if c.target.starts_with('/') {
                    std::path::PathBuf::from(&c.target)
                } else {
                    std::path::Path::new("/dev").join(&c.target)
                };
                SerialLink::open(&path, &c.line).map(Link::Serial)
            }
            Method::Tcp | Method::RtuOverTcp => {
                let port = u16::try_from(c.rate_or_port).unwrap_or(502);
                TcpLink::connect(&c.target, port, StdDuration::from_secs(3)).await.map(Link::Tcp)
            }
            Method::Udp => {
                let port = u16::try_from(c.rate_or_port).unwrap_or(502);
                UdpLink::connect(&c.target, port).map(Link::Udp)
            }
        };
        match opened {
            Ok(link) => {
                log::info!("{}: opened", link.name());
                self.link = Some(link);
                self.link_error = None;
                self.stats.opens += 1;
                with_master!(&mut self.master, m => m.cancel());
                let now = self.clock.now();
                for d in &mut self.devices {
                    d.retry_now(now);
                }
                observer.link(&self.config.name(), None);
                true
            }
            Err(e) => {
                let text = e.to_string();
                if self.link_error.as_deref() != Some(text.as_str()) {
                    log::error!("{text}; retrying every {} s", REOPEN_INTERVAL.as_secs());
                    observer.link(&self.config.name(), Some(&e));
                    self.link_error = Some(text);
                }
                false
            }
        }
    }

    fn drop_link(&mut self, e: &LinkError, observer: &mut (dyn Observer + Send)) {
        let text = e.to_string();
        log::error!("{text}; closing and reopening");
        observer.link(&self.config.name(), Some(e));
        self.link_error = Some(text);
        self.link = None;
        with_master!(&mut self.master, m => m.cancel());
    }

    /// One pass: a command, a probe, a due read, or a sleep.
    async fn step(&mut self, observer: &mut (dyn Observer + Send)) {
        if let Some(cmd) = self.pending.take().or_else(|| self.commands.try_recv().ok()) {
            self.serve_command(cmd, observer).await;
            return;
        }
        if self.scan_turn() && self.scan_step(observer).await {
            return;
        }
        let now = self.clock.now();
        if let Some(i) = self.probe_candidate(now) {
            self.probe(i, observer).await;
            if let Some(s) = self.shared.devices.get(i) {
                s.probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        }
        self.sync_not_before();
        match self.scheduler.next(now) {
            Next::Read { device, block } => {
                if let Some(i) = self.scheduled.iter().position(|s| *s == Some(device)) {
                    self.read_block(i, device, block, observer).await;
                }
            }
            // Time the line would stand idle goes to a scan under way.
            Next::Wait { until } if self.scan_fits(until) && self.scan_step(observer).await => {}
            Next::Idle if self.scan_step(observer).await => {}
            Next::Wait { until } => self.sleep_until(Some(until)).await,
            Next::Idle => self.sleep_until(None).await,
        }
    }

    /// Sleeps until `until` (or the next probe/back-off moment), waking early for a command.
    async fn sleep_until(&mut self, until: Option<Instant>) {
        let wake = self
            .devices
            .iter()
            .filter(|d| d.profile.is_none())
            .filter_map(|d| d.not_before())
            .chain(until)
            .min()
            .unwrap_or_else(|| self.clock.now() + Duration::from_secs(1))
            // Wake at least every few seconds so the loop shows it is alive
            // (the watchdog) even while every device backs off for a minute.
            .min(self.clock.now() + MAX_SLEEP);
        let until = self.clock.to_std(wake);
        let (timer, commands) = (&self.timer, &self.commands);
        let woken_by = future::or(
            async {
                // A blocking timer would not let the command below wake us.
                if timer.is_blocking() {
                    Timer::at(until).await;
                } else {
                    timer.sleep_until(until).await;
                }
                None
            },
            async { commands.recv().await.ok() },
        )
        .await;
        if woken_by.is_some() {
            self.pending = woken_by;
        }
    }

    /// The scheduler must not pick devices that are backing off.
    fn sync_not_before(&mut self) {
        // A disabled device is parked an hour ahead, re-checked every pass.
        let parked = self.clock.now() + Duration::from_secs(3600);
        for (i, (d, id)) in self.devices.iter().zip(&self.scheduled).enumerate() {
            if let Some(id) = id {
                let not_before =
                    if self.shared.is_enabled(i) { d.not_before().unwrap_or(Instant::ZERO) } else { parked };
                let _ = self.scheduler.set_not_before(*id, not_before);
            }
        }
    }

    fn probe_candidate(&self, now: Instant) -> Option<usize> {
        self.devices.iter().enumerate().position(|(i, d)| {
            d.profile.is_none()
                && d.next_probe().is_some()
                && d.not_before().is_none_or(|t| t <= now)
                && self.shared.is_enabled(i)
        })
    }

    async fn probe(&mut self, i: usize, observer: &mut (dyn Observer + Send)) {
        let Some((bank, address, count)) = self.devices.get(i).and_then(Device::next_probe) else { return };
        let request = read_request(bank, address, count);
        let Some(ex) = self.transact_for(i, &request, observer).await else { return };
        let now = ex.done_at;
        fill_words(&self.master, &mut self.words);
        let words = self.words.as_slice();
        let Some(dev) = self.devices.get_mut(i) else { return };
        let change = match ex.result {
            Ok(()) => {
                ex.record_latency(dev);
                dev.probe_result(Some(words), now)
            }
            Err(TransactionError::Exception(_)) => dev.probe_result(None, now),
            Err(e) => {
                let c = dev.failed(failure_of(&e), now);
                if c == Some(PresenceChange::Lost) {
                    log::info!("{}: no answer to identification; retrying with back-off", dev.spec);
                }
                c
            }
        };
        if dev.unidentified() {
            log::warn!("{}: answers but matches no known profile (see --models)", dev.spec);
        }
        if let Some(change) = change {
            if change == PresenceChange::Identified {
                log::info!(
                    "{}: identified as {}",
                    dev.spec,
                    dev.profile.map_or("?", |p: &Profile| p.product_name)
                );
                if let Err(e) = self.schedule_device(i) {
                    log::error!("{e}");
                }
            }
            if let Some(dev) = self.devices.get(i) {
                observer.presence(i, dev, change, now);
            }
        }
    }

    async fn read_block(
        &mut self,
        i: usize,
        id: DeviceId,
        block: usize,
        observer: &mut (dyn Observer + Send),
    ) {
        let Some(b) = self.devices.get(i).and_then(|d| d.blocks().get(block).copied()) else { return };
        let request = read_request(b.bank, b.start, b.count);
        let started = self.clock.now();
        let Some(ex) = self.transact_for(i, &request, observer).await else { return };
        let now = ex.done_at;
        // Identity blocks count as read only once they succeed (or are refused).
        let mark = b.class != PollClass::Once || !matches!(ex.result, Err(TransactionError::Timeout));
        if mark {
            let _ = self.scheduler.mark_read(id, block, started);
        }
        fill_words(&self.master, &mut self.words);
        let words = self.words.as_slice();
        let Some(dev) = self.devices.get_mut(i) else { return };
        let change = match ex.result {
            Ok(()) => {
                ex.record_latency(dev);
                // The measured transaction time replaces the profile's estimate.
                let _ = self.scheduler.set_cost(id, block, now.saturating_since(started));
                dev.block_read(block, words, now)
            }
            Err(TransactionError::Exception(code)) => {
                log::debug!("{}: block {:?} {} x{} refused: {code}", dev.spec, b.bank, b.start, b.count);
                let c = dev.failed(Failure::Exception, now);
                dev.block_unreadable(block, now);
                c
            }
            Err(e) => dev.failed(failure_of(&e), now),
        };
        let Some(dev) = self.devices.get(i) else { return };
        if let Some(change) = change {
            match change {
                PresenceChange::Lost => log::warn!("{}: not answering; retrying with back-off", dev.spec),
                PresenceChange::Returned => log::info!("{}: answering again", dev.spec),
                PresenceChange::Ready => log::info!("{}: ready", dev.spec),
                PresenceChange::Identified => {}
            }
            observer.presence(i, dev, change, now);
        }
        if !dev.changed.is_empty() {
            observer.values(i, dev, now);
        }
    }

    async fn serve_command(&mut self, cmd: Command, observer: &mut (dyn Observer + Send)) {
        let request = match Request::parse(&cmd.pdu) {
            Ok(r) => r,
            Err(e) => {
                let _ = cmd.reply.try_send(Err(CommandError::BadRequest(e.to_string())));
                return;
            }
        };
        let answering = self
            .devices
            .get(cmd.device)
            .is_some_and(|d| !matches!(d.presence, Presence::NotAnswering { .. }));
        if self.link.is_none() || !answering {
            let _ = cmd.reply.try_send(Err(CommandError::Unavailable));
            return;
        }
        let Some(ex) = self.transact_for(cmd.device, &request, observer).await else { return };
        let reply = match ex.result {
            Ok(()) => Ok(with_master!(&self.master, m => m.response_pdu().to_vec())),
            Err(e) => Err(CommandError::Failed(e.to_string())),
        };
        if let Some(dev) = self.devices.get_mut(cmd.device) {
            match &ex.result {
                Ok(()) => dev.stats.responses += 1,
                Err(TransactionError::Exception(_)) => dev.stats.exceptions += 1,
                Err(TransactionError::Timeout) => dev.stats.timeouts += 1,
                Err(_) => dev.stats.protocol_errors += 1,
            }
        }
        let _ = cmd.reply.try_send(reply);
    }

    /// One transaction for device `i`, with its adaptive timeout and learned
    /// turnaround; counts the request. `None`: no such device.
    async fn transact_for(
        &mut self,
        i: usize,
        request: &Request<'_>,
        observer: &mut (dyn Observer + Send),
    ) -> Option<Exchange> {
        let dev = self.devices.get(i)?;
        let (unit, timeout, turnaround) = (dev.spec.unit, dev.timeout(), dev.expected_turnaround());
        let ex = self.transact(unit, request, timeout, turnaround, observer).await;
        if let Some(dev) = self.devices.get_mut(i) {
            dev.stats.requests += 1;
        }
        Some(ex)
    }

    /// One transaction on the link: wait for the line, send, collect the answer.
    async fn transact(
        &mut self,
        unit: u8,
        request: &Request<'_>,
        timeout: Duration,
        expected_turnaround: Option<Duration>,
        observer: &mut (dyn Observer + Send),
    ) -> Exchange {
        self.stats.transactions += 1;
        let start = self.clock.now();
        let Some(link) = self.link.as_mut() else {
            return Exchange {
                upper_bound: false,
                result: Err(TransactionError::Timeout),
                sent_at: start,
                done_at: start,
            };
        };
        // Stale bytes (a late answer to an earlier request, noise) must not
        // be taken for this answer.
        if let Err(e) = link.drain() {
            self.drop_link(&e, observer);
            return Exchange {
                upper_bound: false,
                result: Err(TransactionError::Timeout),
                sent_at: start,
                done_at: start,
            };
        }
        let req_len = self.config.adu_len(request.buffer_len());
        let resp_len = self.config.adu_len(request.expected_response_len());
        let wire = self.config.wire_time(req_len) + self.config.wire_time(resp_len);
        let gap = if self.config.method.is_serial() { self.config.line.t35() } else { Duration::ZERO };
        let deadline = start + gap + wire + timeout;
        let started = with_master!(&mut self.master, m => m.start(start, unit, request, deadline));
        if let Err(e) = started {
            log::error!("{}: cannot send request to unit {unit}: {e}", self.config.name());
            return Exchange {
                upper_bound: false,
                result: Err(TransactionError::Timeout),
                sent_at: start,
                done_at: start,
            };
        }
        let mut sent_at = start;
        // Whether the request is on the wire yet.
        let mut sent = false;
        // A turnaround sleep just ended (no empty read since); the first
        // bytes came from the read right after it; reads that brought bytes.
        let mut fresh_from_sleep = false;
        let mut found_on_wake = false;
        let mut reads_with_data = 0u32;
        let debug = log::log_enabled!(target: "dmc::frame", log::Level::Debug);
        // Bytes of the answer seen so far, to sleep through the rest of it.
        let mut received = 0usize;
        let mut exception = false;
        // Whether the next read should wait for readiness (after a read found nothing).
        let mut nothing_waiting = true;
        loop {
            let now = self.clock.now();
            // Send once the line has been quiet for t3.5.
            let tx = with_master!(&mut self.master, m => m.poll_transmit(now).map(<[u8]>::to_vec));
            if let Some(frame) = tx {
                if debug {
                    log::debug!(target: "dmc::frame", "{} SEND: {}", link_name(&self.link), hex(&frame));
                }
                let Some(link) = self.link.as_mut() else { break };
                if let Err(e) = link.send(&frame).await {
                    self.drop_link(&e, observer);
                    with_master!(&mut self.master, m => m.cancel());
                    let now = self.clock.now();
                    return Exchange {
                        upper_bound: false,
                        result: Err(TransactionError::Timeout),
                        sent_at: now,
                        done_at: now,
                    };
                }
                sent_at = now + self.config.wire_time(frame.len());
                sent = true;
                // A device whose turnaround is known answers no sooner than
                // that: sleep until its answer should be complete and read it
                // in one go, instead of waking for every byte.
                if let Some(turnaround) = expected_turnaround.filter(|_| self.config.method.is_serial()) {
                    let early = turnaround.saturating_sub(PREDICTION_MARGIN);
                    fresh_from_sleep = true;
                    let until = (sent_at + early + self.config.wire_time(resp_len)).min(deadline);
                    self.timer.sleep_until(self.clock.to_std(until)).await;
                    nothing_waiting = false;
                }
            }
            match with_master!(&mut self.master, m => m.poll(now)) {
                Ok(()) => {
                    self.stats.wire_bytes += (req_len + resp_len) as u64;
                    self.stats.wire_busy = self.stats.wire_busy + wire;
                    let done_at = self.clock.now();
                    if debug {
                        let pdu = with_master!(&self.master, m => hex(m.response_pdu()));
                        log::debug!(target: "dmc::frame", "{} RECV: unit {unit} pdu {pdu}", link_name(&self.link));
                    }
                    // Latency excludes the response's own wire time.
                    let resp_wire = self.config.wire_time(resp_len);
                    let upper_bound = found_on_wake && reads_with_data <= 1;
                    return Exchange { result: Ok(()), sent_at: sent_at + resp_wire, done_at, upper_bound };
                }
                Err(nb::Error::Other(e)) => {
                    if debug {
                        let c = with_master!(&self.master, m => *m.counters());
                        log::debug!(target: "dmc::frame", "{} unit {unit}: {e} ({c:?})", link_name(&self.link));
                    }
                    return Exchange {
                        upper_bound: false,
                        result: Err(e),
                        sent_at,
                        done_at: self.clock.now(),
                    };
                }
                Err(nb::Error::WouldBlock) => {}
            }
            let wake = with_master!(&self.master, m => m.poll_timeout()).unwrap_or(deadline);
            if received > 0 {
                // Only a real sleep makes an immediate read worth it; with
                // nothing more expected (a full-length answer the master did
                // not take: wrong unit, bad CRC, garbage after it) the next
                // read must wait, or this loop spins until the deadline.
                if self.wait_for_rest(received, resp_len, exception, wake).await {
                    nothing_waiting = false;
                }
            } else if !sent {
                // The t3.5 gap before the request: sleep through it, then
                // look once for bytes that arrived meanwhile (noise), which
                // the master stamps now and so waits a full t3.5 after them.
                // Watching the port here would leave it armed in the reactor
                // and wake the turnaround sleep below for nothing.
                self.timer.sleep_until(self.clock.to_std(wake)).await;
                nothing_waiting = false;
            }
            let Some(link) = self.link.as_mut() else { break };
            self.stats.reads += 1;
            let read = if nothing_waiting {
                link.recv(&mut self.rx_buf, self.clock.to_std(wake), &self.timer).await
            } else {
                link.try_recv(&mut self.rx_buf)
            };
            nothing_waiting = matches!(read, Ok(0));
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.drop_link(&e, observer);
                    let now = self.clock.now();
                    return Exchange {
                        upper_bound: false,
                        result: Err(TransactionError::Timeout),
                        sent_at,
                        done_at: now,
                    };
                }
            };
            if n == 0 {
                fresh_from_sleep = false;
            } else {
                found_on_wake |= reads_with_data == 0 && fresh_from_sleep;
                reads_with_data += 1;
                let now = self.clock.now();
                let bytes = self.rx_buf.get(..n).unwrap_or_default();
                if received < 2 {
                    // Byte 1 of an RTU answer is the function; 0x80 set means
                    // a 5-byte exception frame.
                    exception |= bytes.get(1 - received).is_some_and(|f| f & 0x80 != 0);
                }
                received += n;
                if debug && log::log_enabled!(target: "dmc::rx", log::Level::Trace) {
                    log::trace!(target: "dmc::rx", "{} RX: {}", link_name(&self.link), hex(bytes));
                }
                if let AnyMaster::Mbap(m) = &mut self.master {
                    if self.config.method == Method::Udp && !take_datagram(m, bytes) {
                        log::debug!(target: "dmc::frame", "{} unit {unit}: datagram is not one MBAP ADU, ignored", link_name(&self.link));
                        continue;
                    }
                }
                with_master!(&mut self.master, m => m.handle_rx(now, bytes));
            }
        }
        let now = self.clock.now();
        Exchange { upper_bound: false, result: Err(TransactionError::Timeout), sent_at, done_at: now }
    }
}

impl Bus {
    /// Once an answer has started arriving on a serial line, sleeps while the
    /// rest of it is still on the wire instead of waking for every byte (a
    /// 9600-baud line delivers one byte per millisecond). The sleep stays
    /// below the inter-character limit, so the receiver's gap check still sees
    /// real pauses, and never passes `wake`.
    /// Returns whether it slept.
    async fn wait_for_rest(&self, received: usize, resp_len: usize, exception: bool, wake: Instant) -> bool {
        if !self.config.method.is_serial() {
            return false;
        }
        let expected = if exception { 5 } else { resp_len };
        let remaining = expected.saturating_sub(received);
        if remaining == 0 {
            return false;
        }
        let limit = USB_BURST_GAP.saturating_sub(Duration::from_millis(2));
        let now = self.clock.now();
        let until = (now + self.config.wire_time(remaining).min(limit)).min(wake);
        if until <= now {
            return false;
        }
        self.timer.sleep_until(self.clock.to_std(until)).await;
        true
    }
}

/// Modbus UDP: one datagram is one whole ADU. The MBAP decoder is a stream
/// decoder, so a short datagram would leave half an ADU that swallows the
/// start of the next datagram, and bytes after an ADU would start a new one.
/// Forgets any earlier datagram's leftovers; false if this one is not exactly
/// one ADU (it is then not fed).
fn take_datagram(master: &mut Master<MbapFraming>, datagram: &[u8]) -> bool {
    master.framing_mut().decoder.reset();
    mbap::parse_datagram(datagram).is_ok()
}

/// Copies the registers of the last successful read response (none otherwise).
fn fill_words(master: &AnyMaster, words: &mut Vec<u16>) {
    words.clear();
    with_master!(master, m => {
        if let Some(regs) = m.response().as_ref().and_then(Response::registers) {
            words.extend(regs.iter());
        }
    });
}

fn link_name(link: &Option<Link>) -> &str {
    link.as_ref().map_or("-", Link::name)
}

fn failure_of(e: &TransactionError) -> Failure {
    match e {
        TransactionError::Exception(_) => Failure::Exception,
        TransactionError::Pdu(_) => Failure::Protocol,
        TransactionError::Timeout | TransactionError::Idle => Failure::Timeout,
    }
}

/// The read request for a bank.
pub fn read_request(bank: RegisterBank, address: u16, quantity: u16) -> Request<'static> {
    match bank {
        RegisterBank::Holding => Request::ReadHoldingRegisters { address, quantity },
        RegisterBank::Input => Request::ReadInputRegisters { address, quantity },
    }
}

/// `0x01 0x04 ...` style hex, as the pymodbus debug log users know.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 5);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("0x{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(turnaround_ms: u64, upper_bound: bool) -> Exchange {
        let sent_at = Instant::from_millis(1000);
        Exchange {
            result: Ok(()),
            sent_at,
            done_at: sent_at + Duration::from_millis(turnaround_ms),
            upper_bound,
        }
    }

    #[test]
    fn an_answer_found_complete_after_a_sleep_never_raises_the_learned_turnaround() {
        let spec = DeviceSpec::parse("rtu:ttyUSB0:9600:2:sdm230").unwrap();
        let mut dev = Device::new(spec, Instant::ZERO).unwrap();
        // The first sample is taken as it is; later ones are filtered.
        dev.stats.responses = 1;
        exchange(10, false).record_latency(&mut dev);
        assert_eq!(dev.stats.latency_filtered, Duration::from_millis(10));
        dev.stats.responses = 10;
        // Our own late wake-ups: ignored, however many.
        for _ in 0..100 {
            exchange(40, true).record_latency(&mut dev);
        }
        assert_eq!(dev.stats.latency_filtered, Duration::from_millis(10));
        // A bound below the learned value still teaches that the device got faster.
        exchange(2, true).record_latency(&mut dev);
        assert!(dev.stats.latency_filtered < Duration::from_millis(10));
        // A real sample of a slower device raises it.
        let before = dev.stats.latency_filtered;
        exchange(30, false).record_latency(&mut dev);
        assert!(dev.stats.latency_filtered > before);
    }
}
