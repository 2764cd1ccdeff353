//! Byte links to a bus: a serial port, a TCP stream or a UDP socket.
//!
//! A link only moves bytes and reports clear errors; framing, timing and
//! matching live in `dmc_core`. Serial ports are configured with `serialport`
//! and then driven non-blocking through `async_io::Async`, so one executor
//! thread serves every bus and every D-Bus connection without blocking.

use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use dmc_core::timing::{LineConfig, Parity};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};

use crate::engine::line_timer::LineTimer;

/// Why a link could not be opened or used; `Display` is one line naming the port.
#[derive(Debug)]
pub enum LinkError {
    /// The device node does not exist (adapter unplugged, wrong name).
    Missing { port: String },
    /// The device node exists but we may not open it.
    PermissionDenied { port: String },
    /// Another program holds the port (e.g. serial-starter's driver).
    Busy { port: String },
    /// The port refused the line settings (e.g. an unsupported baud rate).
    Settings { port: String, detail: String },
    /// The remote host name did not resolve.
    Resolve { target: String, detail: String },
    /// Any other I/O failure, with the OS error.
    Io { port: String, source: io::Error },
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Missing { port } => {
                write!(f, "{port}: no such device (adapter unplugged or wrong name?)")
            }
            LinkError::PermissionDenied { port } => {
                write!(f, "{port}: permission denied (run as root or add the user to group dialout)")
            }
            LinkError::Busy { port } => write!(
                f,
                "{port}: port is in use by another program (stop serial-starter on it: stop-tty.sh)"
            ),
            LinkError::Settings { port, detail } => write!(
                f,
                "{port}: line settings refused: {detail} (use a standard rate, e.g. -r 9600 or -r 19200, 8N1)"
            ),
            LinkError::Resolve { target, detail } => write!(f, "{target}: cannot resolve address: {detail}"),
            LinkError::Io { port, source } => write!(f, "{port}: {source}"),
        }
    }
}

impl std::error::Error for LinkError {}

impl LinkError {
    /// Classifies an OS error on `port`.
    pub fn from_io(port: &str, e: io::Error) -> LinkError {
        match e.kind() {
            io::ErrorKind::NotFound => LinkError::Missing { port: port.into() },
            io::ErrorKind::PermissionDenied => LinkError::PermissionDenied { port: port.into() },
            io::ErrorKind::ResourceBusy | io::ErrorKind::WouldBlock => LinkError::Busy { port: port.into() },
            _ => match e.raw_os_error() {
                // ENXIO/ENODEV: the node is there but the device behind it is gone.
                Some(6) | Some(19) => LinkError::Missing { port: port.into() },
                Some(16) => LinkError::Busy { port: port.into() },
                _ => LinkError::Io { port: port.into(), source: e },
            },
        }
    }

    /// True when the device vanished (unplugged adapter): the caller retries opening.
    pub fn is_gone(&self) -> bool {
        matches!(self, LinkError::Missing { .. })
            || matches!(self, LinkError::Io { source, .. } if is_gone_errno(source))
    }
}

/// EIO, ENXIO, ENODEV, EBADF: what reads and writes return once a USB adapter is pulled.
fn is_gone_errno(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(5) | Some(6) | Some(19) | Some(9))
}

/// A serial port in non-blocking mode.
pub struct SerialLink {
    port: String,
    io: Async<File>,
}

impl SerialLink {
    /// Opens and configures `path` (exclusive, raw mode, the given framing).
    pub fn open(path: &Path, line: &LineConfig) -> Result<SerialLink, LinkError> {
        let port = path.display().to_string();
        if !path.exists() {
            return Err(LinkError::Missing { port });
        }
        let builder = serialport::new(port.clone(), line.baud)
            .data_bits(match line.data_bits {
                5 => serialport::DataBits::Five,
                6 => serialport::DataBits::Six,
                7 => serialport::DataBits::Seven,
                _ => serialport::DataBits::Eight,
            })
            .parity(match line.parity {
                Parity::None => serialport::Parity::None,
                Parity::Even => serialport::Parity::Even,
                Parity::Odd => serialport::Parity::Odd,
            })
            .stop_bits(if line.stop_bits >= 2 {
                serialport::StopBits::Two
            } else {
                serialport::StopBits::One
            })
            .flow_control(serialport::FlowControl::None);
        let tty = serialport::TTYPort::open(&builder).map_err(|e| serial_error(&port, e))?;
        // SAFETY: `into_raw_fd` hands over sole ownership of an open descriptor;
        // the TTYPort is consumed, so the File is its only owner and closes it once.
        let file = unsafe { File::from_raw_fd(tty.into_raw_fd()) };
        let io = Async::new(file).map_err(|e| LinkError::from_io(&port, e))?;
        Ok(SerialLink { port, io })
    }

    /// Opens an already-open descriptor (tests and the simulator's pty pairs).
    pub fn from_file(port: String, file: File) -> Result<SerialLink, LinkError> {
        let io = Async::new(file).map_err(|e| LinkError::from_io(&port, e))?;
        Ok(SerialLink { port, io })
    }
}

fn serial_error(port: &str, e: serialport::Error) -> LinkError {
    match e.kind() {
        serialport::ErrorKind::NoDevice => LinkError::Missing { port: port.into() },
        serialport::ErrorKind::InvalidInput => {
            LinkError::Settings { port: port.into(), detail: e.description }
        }
        serialport::ErrorKind::Io(kind) => LinkError::from_io(port, io::Error::new(kind, e.description)),
        serialport::ErrorKind::Unknown => {
            if e.description.contains("EBUSY") || e.description.contains("busy") {
                LinkError::Busy { port: port.into() }
            } else {
                LinkError::Settings { port: port.into(), detail: e.description }
            }
        }
    }
}

/// A TCP stream to a Modbus TCP server or an RTU-over-TCP gateway.
pub struct TcpLink {
    peer: String,
    io: Async<TcpStream>,
}

impl TcpLink {
    /// Connects with a bounded wait.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpLink, LinkError> {
        let peer = format!("{host}:{port}");
        let addr = resolve(host, port)?;
        let connect = Async::<TcpStream>::connect(addr);
        let io = future::or(async { Some(connect.await) }, async {
            Timer::after(timeout).await;
            None
        })
        .await
        .ok_or_else(|| LinkError::Io { port: peer.clone(), source: io::ErrorKind::TimedOut.into() })?
        .map_err(|e| LinkError::from_io(&peer, e))?;
        // Modbus requests are tiny and latency-bound.
        let _ = io.get_ref().set_nodelay(true);
        Ok(TcpLink { peer, io })
    }
}

/// A connected UDP socket to a Modbus UDP server.
pub struct UdpLink {
    peer: String,
    io: Async<UdpSocket>,
}

impl UdpLink {
    /// Binds an ephemeral local port and connects it to the peer.
    pub fn connect(host: &str, port: u16) -> Result<UdpLink, LinkError> {
        let peer = format!("{host}:{port}");
        let addr = resolve(host, port)?;
        let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let io = Async::<UdpSocket>::bind(local).map_err(|e| LinkError::from_io(&peer, e))?;
        io.get_ref().connect(addr).map_err(|e| LinkError::from_io(&peer, e))?;
        Ok(UdpLink { peer, io })
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, LinkError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| LinkError::Resolve { target: host.into(), detail: e.to_string() })?
        .next()
        .ok_or_else(|| LinkError::Resolve { target: host.into(), detail: "no address".into() })
}

/// Any link; the bus runner does not care which.
pub enum Link {
    /// Serial port.
    Serial(SerialLink),
    /// TCP stream.
    Tcp(TcpLink),
    /// UDP socket (one datagram per frame).
    Udp(UdpLink),
}

impl Link {
    /// The port or peer name, for logs.
    pub fn name(&self) -> &str {
        match self {
            Link::Serial(l) => &l.port,
            Link::Tcp(l) => &l.peer,
            Link::Udp(l) => &l.peer,
        }
    }

    /// Writes a whole frame.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        let name = self.name().to_string();
        let r = match self {
            Link::Serial(l) => l.io.write_all(frame).await,
            Link::Tcp(l) => l.io.write_all(frame).await,
            Link::Udp(l) => l.io.send(frame).await.map(|_| ()),
        };
        r.map_err(|e| LinkError::from_io(&name, e))
    }

    /// Reads what is available, waiting at most until `deadline`.
    /// `Ok(0)` means the deadline passed with nothing received.
    pub async fn recv(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        timer: &LineTimer,
    ) -> Result<usize, LinkError> {
        if timer.is_blocking() {
            return self.recv_blocking(buf, deadline);
        }
        let name = self.name().to_string();
        let read = async {
            let r = match self {
                Link::Serial(l) => l.io.read(buf).await,
                Link::Tcp(l) => l.io.read(buf).await,
                Link::Udp(l) => l.io.recv(buf).await,
            };
            Some(r)
        };
        let timeout = async {
            timer.sleep_until(deadline).await;
            None
        };
        match future::or(read, timeout).await {
            None => Ok(0),
            // A stream that reports end-of-file is closed: a pty whose other
            // side went away or a TCP peer that hung up.
            Some(Ok(0)) if !buf.is_empty() => {
                Err(LinkError::Io { port: name, source: io::ErrorKind::UnexpectedEof.into() })
            }
            Some(Ok(n)) => Ok(n),
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Some(Err(e)) => Err(LinkError::from_io(&name, e)),
        }
    }

    /// [`Link::recv`] on a bus thread of its own: waits in `poll(2)` on the
    /// descriptor, one system call and no other thread involved.
    fn recv_blocking(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, LinkError> {
        use rustix::event::{poll, PollFd, PollFlags};
        loop {
            let n = self.try_recv(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let now = Instant::now();
            if deadline <= now {
                return Ok(0);
            }
            let wait = deadline - now;
            let timeout = rustix::time::Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            let fd = match self {
                Link::Serial(l) => l.io.as_fd(),
                Link::Tcp(l) => l.io.as_fd(),
                Link::Udp(l) => l.io.as_fd(),
            };
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    let hung_up =
                        fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
                    // Readable: the loop reads it. Hung up with nothing to
                    // read: the other side is gone (a read would say so too,
                    // but must not be skipped into a busy loop).
                    if hung_up && self.try_recv(buf)? == 0 {
                        let source = io::ErrorKind::UnexpectedEof.into();
                        return Err(LinkError::Io { port: self.name().to_string(), source });
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(LinkError::from_io(self.name(), e.into())),
            }
        }
    }

    /// Reads what is already waiting without waiting or arming the reactor
    /// (`Ok(0)`: nothing there). One syscall: the hot path of a transaction
    /// whose answer is expected to be complete.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let r = match self {
            Link::Serial(l) => l.io.get_ref().read(buf),
            Link::Tcp(l) => l.io.get_ref().read(buf),
            Link::Udp(l) => l.io.get_ref().recv(buf),
        };
        match r {
            Ok(0) if !buf.is_empty() && !matches!(self, Link::Udp(_)) => Err(LinkError::Io {
                port: self.name().to_string(),
                source: io::ErrorKind::UnexpectedEof.into(),
            }),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                Ok(0)
            }
            Err(e) => Err(LinkError::from_io(self.name(), e)),
        }
    }

    /// Discards whatever is already waiting (stale replies, line noise) without
    /// blocking; returns how many bytes were dropped.
    pub fn drain(&mut self) -> Result<usize, LinkError> {
        let mut scratch = [0u8; 256];
        let mut dropped = 0usize;
        // Bounded: a babbling line cannot keep us here forever.
        for _ in 0..64 {
            let r = match self {
                Link::Serial(l) => l.io.get_ref().read(&mut scratch),
                Link::Tcp(l) => l.io.get_ref().read(&mut scratch),
                Link::Udp(l) => l.io.get_ref().recv(&mut scratch),
            };
            match r {
                Ok(0) => break,
                Ok(n) => dropped += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LinkError::from_io(self.name(), e)),
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_naming_the_port_and_the_cause() {
        let cases = [
            (LinkError::from_io("/dev/ttyUSB0", io::ErrorKind::NotFound.into()), "no such device"),
            (LinkError::from_io("/dev/ttyUSB0", io::ErrorKind::PermissionDenied.into()), "permission denied"),
            (
                LinkError::from_io("/dev/ttyUSB0", io::Error::from_raw_os_error(16)),
                "in use by another program",
            ),
            (LinkError::from_io("/dev/ttyUSB0", io::Error::from_raw_os_error(6)), "no such device"),
            (LinkError::Settings { port: "/dev/ttyUSB0".into(), detail: "bad baud".into() }, "e.g. -r 9600"),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert!(
                text.starts_with("/dev/ttyUSB0: ") && text.contains(want) && !text.contains('\n'),
                "{text}"
            );
        }
        assert!(LinkError::from_io("p", io::Error::from_raw_os_error(5)).is_gone());
        assert!(!LinkError::from_io("p", io::ErrorKind::PermissionDenied.into()).is_gone());
    }

    #[test]
    fn a_missing_serial_port_is_reported_before_opening() {
        let e =
            SerialLink::open(Path::new("/dev/ttyDOESNOTEXIST"), &LineConfig::new_8n1(9600)).err().unwrap();
        assert!(matches!(e, LinkError::Missing { .. }), "{e}");
    }
}
