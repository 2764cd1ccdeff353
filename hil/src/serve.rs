//! Serving a [`Bus`] on a pseudo-terminal or a real serial port, with real-line timing.
//!
//! The serial thread delimits request frames by the t3.5 silence, hands each
//! to [`Bus::handle_frame`], then waits out the device turnaround and writes the
//! reply **paced at the configured character time** — a pty moves bytes
//! instantly and ignores the baud rate, so without pacing every timing figure
//! measured against the simulator would be meaningless.
//!
//! On a pty the master's request also arrives instantly, so the end of the
//! request is modelled as `first byte + wire time of the frame` (what a real
//! line would take), and the turnaround is counted from there.
//!
//! A pty's client side is `/dev/pts/N`; the simulator keeps that side open
//! itself (otherwise reads on the master fail with EIO whenever no client is
//! attached) and can put a symlink to it at a stable path.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use crate::bus::{Bus, ClockConfig, Stats};
use crate::control;
use crate::model::DeviceKind;
use crate::script::Script;
use dmc_core::rtu::{RtuReceiver, RxEvent, RxTiming};
use dmc_core::time::{Duration as CoreDuration, Instant as CoreInstant};
use dmc_core::timing::{LineConfig, Parity};

/// Smallest frame-ending silence on a real port (USB-serial adapters deliver bytes in bursts).
const REAL_PORT_MIN_GAP_MS: u64 = 5;
/// How often idle threads look at the stop flag.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(20);

/// What to simulate and how.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Line speed and character format (sets pacing and t3.5; a pty itself ignores it).
    pub line: LineConfig,
    /// Devices by Modbus address.
    pub units: Vec<(u8, DeviceKind)>,
    /// Device clock (day compression, start hour).
    pub clock: ClockConfig,
    /// Seed for the fault generator (model noise is seeded per device and repeats).
    pub seed: u64,
    /// Print every frame received and sent on stderr.
    pub trace: bool,
    /// Simulate a household around the devices ([`crate::model::plant`]).
    pub plant: Option<crate::model::plant::PlantConfig>,
    /// Modbus ASCII instead of RTU on the serial line (see [`crate::ascii_line`]).
    pub ascii: bool,
}

impl Default for SimConfig {
    /// The fork's bus: Growatt MIN at 1, SDM230 at 2, 9600 8N1, noon.
    fn default() -> Self {
        SimConfig {
            line: LineConfig::new_8n1(9600),
            units: vec![(1, DeviceKind::GrowattMin), (2, DeviceKind::Sdm230)],
            clock: ClockConfig::default(),
            seed: 1,
            trace: false,
            plant: None,
            ascii: false,
        }
    }
}

impl SimConfig {
    /// Only the given devices.
    pub fn with_units(units: &[(u8, DeviceKind)]) -> Self {
        SimConfig { units: units.to_vec(), ..SimConfig::default() }
    }

    /// Adds (or replaces) the device at `unit`: `SimConfig::default().with_unit(3,
    /// DeviceKind::Vm3p75ct)` is the `dmc-hil sim` default bus with the VregLink meter.
    pub fn with_unit(mut self, unit: u8, kind: DeviceKind) -> Self {
        self.units.retain(|(u, _)| *u != unit);
        self.units.push((unit, kind));
        self
    }
}

/// State shared by the serial, control and script threads.
pub struct Shared {
    bus: Mutex<Bus>,
    /// Wall time zero of the simulation (frame times and scripts count from here).
    pub(crate) start: Instant,
    stop: AtomicBool,
}

impl Shared {
    fn new(config: &SimConfig) -> Self {
        let mut bus = Bus::new(config.line, config.clock, config.seed);
        for (addr, kind) in &config.units {
            bus.add(*addr, *kind);
        }
        if let Some(plant) = config.plant {
            bus.set_plant(plant);
        }
        Shared { bus: Mutex::new(bus), start: Instant::now(), stop: AtomicBool::new(false) }
    }

    /// The bus, even if a thread panicked while holding it (its state is still usable for reports).
    pub fn bus(&self) -> MutexGuard<'_, Bus> {
        self.bus.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds since the simulator started.
    pub fn wall_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Runs a control command now.
    pub fn execute(&self, line: &str) -> Result<String, String> {
        let now = self.wall_s();
        control::execute(&mut self.bus(), line, now)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A running simulator. Dropping it stops every thread and removes the symlink and socket it made.
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
    path: PathBuf,
    symlink: Option<PathBuf>,
    control_path: Option<PathBuf>,
    /// The serial thread (if any) first, then listeners, control and script threads.
    pub(crate) threads: Vec<JoinHandle<()>>,
    /// Bound addresses of the network listeners ([`crate::net`]).
    pub(crate) net: crate::net::NetAddrs,
}

impl SimHandle {
    /// Starts a simulator on a new pseudo-terminal; [`SimHandle::path`] is the client side (`/dev/pts/N`).
    pub fn spawn_pty(config: SimConfig) -> io::Result<SimHandle> {
        let (master, slave) =
            TTYPort::pair().map_err(|e| io_error(format!("cannot create a pty pair: {e}")))?;
        // `pair()` opens both sides without close-on-exec: every process the host spawns
        // afterwards (the daemon under test) would inherit the master and keep the pty alive
        // after the simulator stops. Close-on-exec duplicates replace them.
        let cloexec = |port: &TTYPort| {
            port.try_clone_native().map_err(|e| io_error(format!("cannot duplicate the pty: {e}")))
        };
        let (master, slave) = (cloexec(&master)?, cloexec(&slave)?);
        let name = slave.name().ok_or_else(|| io_error("pty without a name".to_string()))?;
        Self::start(config, master, Some(slave), PathBuf::from(name))
    }

    /// Like [`SimHandle::spawn_pty`], plus a symlink to the client side at `link`
    /// (an existing symlink there is replaced; any other file is an error).
    pub fn spawn_pty_at(config: SimConfig, link: &Path) -> io::Result<SimHandle> {
        let mut handle = Self::spawn_pty(config)?;
        if let Ok(meta) = std::fs::symlink_metadata(link) {
            if !meta.file_type().is_symlink() {
                return Err(io_error(format!(
                    "{} exists and is not a symlink; not replacing it",
                    link.display()
                )));
            }
            std::fs::remove_file(link)
                .map_err(|e| io_error(format!("cannot remove old symlink {}: {e}", link.display())))?;
        }
        std::os::unix::fs::symlink(&handle.path, link)
            .map_err(|e| io_error(format!("cannot create symlink {}: {e}", link.display())))?;
        handle.symlink = Some(link.to_path_buf());
        Ok(handle)
    }

    /// Starts a simulator answering on a real serial port (e.g. `/dev/ttyUSB0` on an RS485 adapter).
    pub fn spawn_port(config: SimConfig, port: &str) -> io::Result<SimHandle> {
        let parity = match config.line.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        };
        let stop_bits =
            if config.line.stop_bits == 2 { serialport::StopBits::Two } else { serialport::StopBits::One };
        let tty = serialport::new(port, config.line.baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(parity)
            .stop_bits(stop_bits)
            .timeout(STOP_POLL)
            .open_native()
            .map_err(|e| io_error(format!("cannot open {port}: {e}")))?;
        Self::start(config, tty, None, PathBuf::from(port))
    }

    fn start(
        config: SimConfig,
        port: TTYPort,
        keep_open: Option<TTYPort>,
        path: PathBuf,
    ) -> io::Result<SimHandle> {
        let shared = Arc::new(Shared::new(&config));
        let s = Arc::clone(&shared);
        let line = config.line;
        let trace = config.trace;
        let ascii = config.ascii;
        let thread = thread::Builder::new().name("sim-serial".to_string()).spawn(move || {
            if ascii {
                // Holding the pty's other side open keeps reads from failing with EIO.
                let _keep_open = keep_open;
                crate::ascii_line::ascii_loop(&s, port, line, trace)
            } else {
                serial_loop(&s, port, keep_open, line, trace)
            }
        })?;
        Ok(SimHandle {
            shared,
            path,
            symlink: None,
            control_path: None,
            threads: vec![thread],
            net: crate::net::NetAddrs::default(),
        })
    }

    /// A simulator with no transport yet: add network listeners with
    /// [`SimHandle::serve_tcp`], [`SimHandle::serve_udp`], [`SimHandle::serve_rtu_over_tcp`].
    /// [`SimHandle::path`] is empty (there is no port).
    pub fn without_transport(config: &SimConfig) -> SimHandle {
        SimHandle {
            shared: Arc::new(Shared::new(config)),
            path: PathBuf::new(),
            symlink: None,
            control_path: None,
            threads: Vec::new(),
            net: crate::net::NetAddrs::default(),
        }
    }

    /// The path a master opens: the pty client side, the symlink if one was made, or the real port.
    pub fn path(&self) -> &Path {
        self.symlink.as_deref().unwrap_or(&self.path)
    }

    /// The pty client side (`/dev/pts/N`) or the real port, ignoring any symlink.
    pub fn device_path(&self) -> &Path {
        &self.path
    }

    /// Runs one control-channel command (see [`crate::control`]) and returns its reply.
    pub fn command(&self, line: &str) -> Result<String, String> {
        self.shared.execute(line)
    }

    /// `set UNIT NAME VALUE`, e.g. `set("sdm230", "power", "-1500")`.
    pub fn set(&self, unit: &str, name: &str, value: &str) -> Result<String, String> {
        self.command(&format!("set {unit} {name} {value}"))
    }

    /// `fault UNIT ...`, e.g. `fault("growatt", "silent on")`.
    pub fn fault(&self, unit: &str, fault: &str) -> Result<String, String> {
        self.command(&format!("fault {unit} {fault}"))
    }

    /// The household's state and tallies, stepped to now (`None` without a plant).
    pub fn plant(&self) -> Option<crate::model::plant::PlantState> {
        let mut bus = self.shared.bus();
        bus.advance(self.shared.wall_s());
        bus.plant()
    }

    /// Every counter.
    pub fn stats(&self) -> Stats {
        self.shared.bus().stats()
    }

    /// The model's current value of a quantity (not necessarily served yet).
    pub fn value(&self, unit: &str, quantity: &str) -> Result<f64, String> {
        let now = self.shared.wall_s();
        self.shared.bus().value(unit, quantity, now)
    }

    /// The value of `quantity` last put on the wire intact by unit `addr` (e.g. `(2, "power")`).
    pub fn last_served(&self, addr: u8, quantity: &str) -> Option<f64> {
        self.shared.bus().served(addr, quantity).last().copied()
    }

    /// Every value of `quantity` served intact by unit `addr` (up to the last 4096), oldest first.
    pub fn served(&self, addr: u8, quantity: &str) -> Vec<f64> {
        self.shared.bus().served(addr, quantity)
    }

    /// Starts the control socket at `path` (a stale socket file there is replaced).
    pub fn serve_control(&mut self, path: &Path) -> io::Result<()> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io_error(format!("{} exists and is not a socket", path.display())));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| io_error(format!("cannot listen on {}: {e}", path.display())))?;
        listener.set_nonblocking(true)?;
        let s = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name("sim-control".to_string())
            .spawn(move || control_loop(&s, &listener))?;
        self.threads.push(thread);
        self.control_path = Some(path.to_path_buf());
        Ok(())
    }

    /// Plays a scenario in the background, times counted from the simulator's start.
    pub fn run_script(&mut self, script: Script) -> io::Result<()> {
        let s = Arc::clone(&self.shared);
        let thread = thread::Builder::new().name("sim-script".to_string()).spawn(move || {
            for step in script.steps {
                loop {
                    let due = step.at_s - s.wall_s();
                    if s.stopped() {
                        return;
                    }
                    if due <= 0.0 {
                        break;
                    }
                    thread::sleep(Duration::from_secs_f64(due).min(STOP_POLL));
                }
                if let Err(e) = s.execute(&step.command) {
                    eprintln!("dmc-hil: script line {}: {e}", step.line);
                }
            }
        })?;
        self.threads.push(thread);
        Ok(())
    }

    /// True until the serial thread (or, without one, the first listener) ends;
    /// they only end on stop or a port error.
    pub fn is_running(&self) -> bool {
        self.threads.first().is_some_and(|t| !t.is_finished())
    }

    /// Stops the simulator and waits for its threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for p in [self.symlink.take(), self.control_path.take()].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn io_error(msg: String) -> io::Error {
    io::Error::other(msg)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}

fn serial_loop(
    shared: &Shared,
    mut port: TTYPort,
    keep_open: Option<TTYPort>,
    line: LineConfig,
    trace: bool,
) {
    // A pty delivers a master's frame in one piece: the spec's silences apply.
    // A real port behind a USB adapter delivers bursts; widen so frames are not split.
    let rx_timing = match keep_open {
        Some(_) => RxTiming::from_line(&line),
        None => RxTiming::from_line(&line).widened(CoreDuration::from_millis(REAL_PORT_MIN_GAP_MS)),
    };
    let char_time = Duration::from_micros(line.char_time().as_micros());
    // Core's receiver ends a request at the t3.5 silence, like a spec-abiding slave;
    // bad-CRC frames come out as drops, and the bus stays silent for them.
    let mut receiver = RtuReceiver::new(rx_timing);
    receiver.expect_silence();
    let core_now = |t: Instant| CoreInstant::from_micros(t.duration_since(shared.start).as_micros() as u64);
    let mut buf = [0u8; 512];
    let mut first_at: Option<Instant> = None;
    while !shared.stopped() {
        let now = Instant::now();
        let wait = receiver
            .poll_timeout()
            .map_or(STOP_POLL, |due| Duration::from_micros(due.saturating_since(core_now(now)).as_micros()))
            .clamp(Duration::from_micros(50), STOP_POLL);
        let mut received: &[u8] = &[];
        if port.set_timeout(wait).is_ok() {
            match port.read(&mut buf) {
                Ok(n) => received = buf.get(..n).unwrap_or_default(),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) => {
                    // EIO while a pty has no client on some kernels: wait and retry rather than die.
                    if trace {
                        eprintln!("dmc-hil sim: read error: {e}");
                    }
                    thread::sleep(STOP_POLL);
                }
            }
        }
        let at = Instant::now();
        if !received.is_empty() && receiver.buffered() == 0 {
            first_at = Some(at);
        }
        let mut frames: Vec<(Vec<u8>, Instant)> = Vec::new();
        loop {
            let taken = receiver.feed(core_now(at), received);
            received = received.get(taken..).unwrap_or_default();
            let mut progressed = false;
            while let Some(event) = receiver.poll(core_now(Instant::now())) {
                progressed = true;
                match event {
                    RxEvent::Frame(frame) => {
                        frames.push((frame.as_bytes().to_vec(), first_at.take().unwrap_or(at)));
                    }
                    RxEvent::Dropped(reason) => {
                        first_at = None;
                        if trace {
                            eprintln!("dmc-hil sim: dropped frame: {reason}");
                        }
                        shared.bus().note_dropped(reason);
                    }
                }
            }
            if received.is_empty() || (taken == 0 && !progressed) {
                break;
            }
            if receiver.buffered() == 0 {
                first_at = Some(at);
            }
        }
        for (frame, started) in frames {
            let last_at =
                receiver.last_byte_at().map_or(at, |t| shared.start + Duration::from_micros(t.as_micros()));
            respond(shared, &mut port, &frame, started, last_at, char_time, trace);
        }
    }
}

/// Answers one request frame whose first byte arrived at `first_at`.
fn respond(
    shared: &Shared,
    port: &mut TTYPort,
    frame: &[u8],
    first_at: Instant,
    last_at: Instant,
    char_time: Duration,
    trace: bool,
) {
    // On a pty the request arrives at once; a real line takes its wire time.
    let modelled_end = first_at + char_time * (frame.len().saturating_sub(1) as u32);
    let request_end = modelled_end.max(last_at.min(first_at + Duration::from_secs(1)));
    let wall_s = first_at.duration_since(shared.start).as_secs_f64();
    if trace {
        eprintln!("dmc-hil sim: {wall_s:9.3} rx {}", hex(frame));
    }
    let emissions = shared.bus().handle_frame(frame, wall_s);
    let mut cursor = request_end;
    for e in emissions {
        cursor += Duration::from_micros(e.gap_us);
        sleep_until(cursor);
        if trace {
            eprintln!("dmc-hil sim: {:9.3} tx {}", shared.wall_s(), hex(&e.bytes));
        }
        cursor = write_paced(port, &e.bytes, char_time);
    }
}

pub(crate) fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

/// Writes `bytes` no faster than one per `char_time`; returns when the last byte has left the line.
pub(crate) fn write_paced(port: &mut TTYPort, bytes: &[u8], char_time: Duration) -> Instant {
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < bytes.len() {
        let elapsed = start.elapsed();
        let due = ((elapsed.as_nanos() / char_time.as_nanos().max(1)) as usize + 1).min(bytes.len());
        if due > sent {
            match port.write(bytes.get(sent..due).unwrap_or_default()) {
                Ok(n) => sent += n,
                // The master is not reading (pty buffer full) or went away: the rest is lost, as on a real line.
                Err(_) => break,
            }
        }
        sleep_until(start + char_time * (sent as u32));
    }
    let done = start + char_time * (bytes.len() as u32);
    sleep_until(done);
    done
}

fn control_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = Arc::clone(shared);
                let _ = thread::Builder::new().name("sim-control-conn".to_string()).spawn(move || {
                    if let Err(e) = control_connection(&s, stream) {
                        eprintln!("dmc-hil sim: control connection: {e}");
                    }
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(STOP_POLL),
            Err(e) => {
                eprintln!("dmc-hil sim: control socket: {e}");
                thread::sleep(STOP_POLL);
            }
        }
    }
}

fn control_connection(shared: &Shared, stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !shared.stopped() {
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                let cmd = line.trim();
                if !cmd.is_empty() {
                    let reply = match shared.execute(cmd) {
                        Ok(text) => format!("ok {text}\n"),
                        Err(text) => format!("err {text}\n"),
                    };
                    writer.write_all(reply.as_bytes())?;
                }
                line.clear();
            }
            // Partial line stays in `line`; keep reading after checking the stop flag.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends one command to a running simulator's control socket and returns the reply line.
pub fn send_control(socket: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| io_error(format!("cannot connect to {}: {e}", socket.display())))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(command.trim().as_bytes())?;
    stream.write_all(b"\n")?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => reply.push(byte[0]),
            Err(e) => return Err(io_error(format!("no reply from {}: {e}", socket.display()))),
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
