//! Serving the simulated bus over the network: Modbus TCP, Modbus UDP and RTU over TCP.
//!
//! [`Bus::handle_frame`](crate::bus::Bus::handle_frame) stays the one
//! implementation of what a device answers: an MBAP request is turned into the
//! RTU frame a TCP-to-RS485 gateway would put on the line (unit + PDU, CRC by
//! core's [`rtu::emit`](dmc_core::rtu::emit)), and each RTU emission back into an MBAP ADU carrying
//! the request's transaction id. RTU over TCP hands the raw frames through.
//! Faults, counters and the served log live in the shared bus, so the control
//! channel steers every transport (and the pty) at once.
//!
//! Timing: a network has no baud rate, so replies are written in one piece;
//! the device turnaround (and any `delay` fault) is still waited out, counted
//! from the arrival of the request.
//!
//! What MBAP cannot carry: Modbus TCP has no CRC, so an emission whose CRC does
//! not check (the `crc`, `truncate` and `garbage` faults) is not forwarded, as
//! a gateway drops what it cannot verify; the master sees a timeout. RTU over
//! TCP forwards such bytes unchanged, like a transparent serial server.
//!
//! Threads: one accept loop per TCP listener, one thread per TCP connection
//! (so several clients are served independently), one thread for the UDP
//! socket. Each request is answered on the connection, or to the sender, it
//! came from. All of them stop within [`STOP_POLL`] of the handle's drop and
//! close their sockets before it returns.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bus::Emission;
use crate::frame::rtu_frame;
use crate::serve::{hex, sleep_until, Shared, SimConfig, SimHandle, STOP_POLL};
use dmc_core::mbap::{self, MbapDecoder, MbapFrame};
use dmc_core::pdu::RawPdu;
use dmc_core::rtu::{DropReason, RtuFrame, RtuReceiver, RxEvent, RxTiming};
use dmc_core::time::{Duration as CoreDuration, Instant as CoreInstant};

/// Silence that ends an RTU-over-TCP request whose length its function code
/// does not tell (the receiver predicts the length of every common request).
const RTU_OVER_TCP_FALLBACK_GAP_MS: u64 = 5;

/// Addresses the network listeners of a simulator are bound to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetAddrs {
    /// Modbus TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Modbus UDP socket.
    pub udp: Option<SocketAddr>,
    /// RTU-over-TCP listener.
    pub rtu_over_tcp: Option<SocketAddr>,
}

/// The RTU frame a gateway puts on the line for an MBAP request: `(transaction id, frame)`.
/// `None` if the PDU does not fit an RTU frame.
pub fn mbap_request_to_rtu(request: &MbapFrame<&[u8]>) -> Option<(u16, Vec<u8>)> {
    let frame = rtu_frame(request.unit(), &RawPdu(request.pdu()))?;
    Some((request.transaction_id(), frame))
}

/// The MBAP ADU carrying an RTU reply frame, with the request's transaction id.
/// `None` if the frame is too short or its CRC does not check (nothing to forward).
pub fn rtu_reply_to_mbap(transaction_id: u16, reply: &[u8]) -> Option<Vec<u8>> {
    let frame = RtuFrame::new_checked(reply).ok()?;
    frame.check_crc().ok()?;
    let mut out = vec![0u8; mbap::MAX_ADU_LEN];
    let len = mbap::emit(transaction_id, frame.unit(), &RawPdu(frame.pdu()), &mut out).ok()?;
    out.truncate(len);
    Some(out)
}

impl SimHandle {
    /// Starts a simulator serving Modbus TCP on `addr` (`127.0.0.1:0` picks a
    /// free port; see [`SimHandle::tcp_addr`]).
    pub fn spawn_tcp(config: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
        let mut handle = SimHandle::without_transport(&config);
        handle.serve_tcp(addr, config.trace)?;
        Ok(handle)
    }

    /// Starts a simulator serving Modbus UDP on `addr` (see [`SimHandle::udp_addr`]).
    pub fn spawn_udp(config: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
        let mut handle = SimHandle::without_transport(&config);
        handle.serve_udp(addr, config.trace)?;
        Ok(handle)
    }

    /// Starts a simulator serving RTU frames over TCP on `addr` (see [`SimHandle::rtu_over_tcp_addr`]).
    pub fn spawn_rtu_over_tcp(config: SimConfig, addr: SocketAddr) -> io::Result<SimHandle> {
        let mut handle = SimHandle::without_transport(&config);
        handle.serve_rtu_over_tcp(addr, config.trace)?;
        Ok(handle)
    }

    /// Also serves this simulator's bus as Modbus TCP on `addr`; returns the bound address.
    pub fn serve_tcp(&mut self, addr: SocketAddr, trace: bool) -> io::Result<SocketAddr> {
        let bound = self.listen(addr, "sim-tcp", trace, StreamKind::Mbap)?;
        self.net.tcp = Some(bound);
        Ok(bound)
    }

    /// Also serves this simulator's bus as RTU over TCP on `addr`; returns the bound address.
    pub fn serve_rtu_over_tcp(&mut self, addr: SocketAddr, trace: bool) -> io::Result<SocketAddr> {
        let bound = self.listen(addr, "sim-rtu-tcp", trace, StreamKind::Rtu)?;
        self.net.rtu_over_tcp = Some(bound);
        Ok(bound)
    }

    /// Also serves this simulator's bus as Modbus UDP on `addr`; returns the bound address.
    pub fn serve_udp(&mut self, addr: SocketAddr, trace: bool) -> io::Result<SocketAddr> {
        let socket = UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
        socket.set_read_timeout(Some(STOP_POLL))?;
        let bound = socket.local_addr()?;
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name("sim-udp".to_string())
            .spawn(move || udp_loop(&shared, &socket, trace))?;
        self.threads.push(thread);
        self.net.udp = Some(bound);
        Ok(bound)
    }

    /// The Modbus TCP listener's address, if serving TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.net.tcp
    }

    /// The Modbus UDP socket's address, if serving UDP.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.net.udp
    }

    /// The RTU-over-TCP listener's address, if serving it.
    pub fn rtu_over_tcp_addr(&self) -> Option<SocketAddr> {
        self.net.rtu_over_tcp
    }

    fn listen(
        &mut self,
        addr: SocketAddr,
        name: &str,
        trace: bool,
        kind: StreamKind,
    ) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))?;
        // Non-blocking so the accept loop sees the stop flag.
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let shared = Arc::clone(&self.shared);
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || accept_loop(&shared, &listener, trace, kind))?;
        self.threads.push(thread);
        Ok(bound)
    }
}

/// How bytes on a TCP connection are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamKind {
    /// Modbus TCP: MBAP ADUs.
    Mbap,
    /// Raw RTU frames (CRC included), as a serial device server passes them.
    Rtu,
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, trace: bool, kind: StreamKind) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopped() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if trace {
                    eprintln!("dmc-hil sim: {kind:?} client {peer} connected");
                }
                let s = Arc::clone(shared);
                let spawned = thread::Builder::new().name("sim-tcp-conn".to_string()).spawn(move || {
                    let result = match kind {
                        StreamKind::Mbap => mbap_connection(&s, stream, trace),
                        StreamKind::Rtu => rtu_connection(&s, stream, trace),
                    };
                    if let Err(e) = result {
                        if trace {
                            eprintln!("dmc-hil sim: client {peer}: {e}");
                        }
                    }
                });
                match spawned {
                    Ok(t) => connections.push(t),
                    Err(e) => eprintln!("dmc-hil sim: cannot serve {peer}: {e}"),
                }
                connections.retain(|t| !t.is_finished());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(STOP_POLL),
            Err(e) => {
                eprintln!("dmc-hil sim: accept: {e}");
                thread::sleep(STOP_POLL);
            }
        }
    }
    // The handle's drop returns only once every client socket is closed.
    for t in connections {
        let _ = t.join();
    }
}

/// Prepares an accepted stream: blocking reads that wake for the stop flag, no Nagle delay.
fn setup_stream(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(STOP_POLL))?;
    stream.set_nodelay(true)
}

/// Reads what is there; `Ok(None)` on timeout, `Ok(Some(0))` when the peer closed.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match stream.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn mbap_connection(shared: &Shared, mut stream: TcpStream, trace: bool) -> io::Result<()> {
    setup_stream(&stream)?;
    let mut decoder = MbapDecoder::new();
    let mut buf = [0u8; 512];
    while !shared.stopped() {
        let Some(n) = read_some(&mut stream, &mut buf)? else { continue };
        if n == 0 {
            return Ok(());
        }
        let arrived = Instant::now();
        let mut rest = buf.get(..n).unwrap_or_default();
        // Requests cut out of this read (a client may pipeline several).
        let mut requests: Vec<(u16, Vec<u8>)> = Vec::new();
        loop {
            let taken = decoder.feed(rest);
            rest = rest.get(taken..).unwrap_or_default();
            let mut progressed = false;
            while let Some(event) = decoder.poll() {
                progressed = true;
                match event {
                    Ok(adu) => match mbap_request_to_rtu(&adu) {
                        Some(request) => requests.push(request),
                        None => shared.bus().note_dropped(DropReason::TooLong { len: adu.as_bytes().len() }),
                    },
                    Err(e) => {
                        // A bad header means the stream lost its framing: a
                        // server can only hang up, and the client reconnects.
                        shared.bus().note_dropped(DropReason::TooShort { len: 0 });
                        return Err(io::Error::new(ErrorKind::InvalidData, e.to_string()));
                    }
                }
            }
            if rest.is_empty() || (taken == 0 && !progressed) {
                break;
            }
        }
        for (transaction_id, request) in requests {
            let emissions = handle(shared, &request, arrived, trace);
            let mut cursor = arrived;
            for e in emissions {
                cursor += Duration::from_micros(e.gap_us);
                sleep_until(cursor);
                match rtu_reply_to_mbap(transaction_id, &e.bytes) {
                    Some(adu) => {
                        if trace {
                            eprintln!("dmc-hil sim: {:9.3} tcp tx {}", shared.wall_s(), hex(&adu));
                        }
                        stream.write_all(&adu)?;
                    }
                    None if trace => eprintln!("dmc-hil sim: not forwarded (bad CRC): {}", hex(&e.bytes)),
                    None => {}
                }
            }
        }
    }
    Ok(())
}

fn rtu_connection(shared: &Shared, mut stream: TcpStream, trace: bool) -> io::Result<()> {
    setup_stream(&stream)?;
    let timing = RxTiming { inter_char_timeout: CoreDuration::ZERO, frame_gap: CoreDuration::ZERO }
        .widened(CoreDuration::from_millis(RTU_OVER_TCP_FALLBACK_GAP_MS));
    // Requests end at the length their function code predicts, not at a
    // silence: a network delivers a frame in one piece or in arbitrary segments.
    let mut receiver = RtuReceiver::new(timing);
    receiver.expect_requests();
    let core_now = |t: Instant| CoreInstant::from_micros(t.duration_since(shared.start).as_micros() as u64);
    let mut buf = [0u8; 512];
    while !shared.stopped() {
        let wait = receiver
            .poll_timeout()
            .map_or(STOP_POLL, |due| {
                Duration::from_micros(due.saturating_since(core_now(Instant::now())).as_micros())
            })
            .clamp(Duration::from_millis(1), STOP_POLL);
        stream.set_read_timeout(Some(wait))?;
        let received = match read_some(&mut stream, &mut buf)? {
            Some(0) => return Ok(()),
            Some(n) => n,
            None => 0,
        };
        let arrived = Instant::now();
        let mut rest = buf.get(..received).unwrap_or_default();
        let mut requests: Vec<Vec<u8>> = Vec::new();
        loop {
            let taken = receiver.feed(core_now(arrived), rest);
            rest = rest.get(taken..).unwrap_or_default();
            let mut progressed = false;
            while let Some(event) = receiver.poll(core_now(Instant::now())) {
                progressed = true;
                match event {
                    RxEvent::Frame(frame) => requests.push(frame.as_bytes().to_vec()),
                    RxEvent::Dropped(reason) => {
                        if trace {
                            eprintln!("dmc-hil sim: rtu-over-tcp dropped frame: {reason}");
                        }
                        shared.bus().note_dropped(reason);
                    }
                }
            }
            if rest.is_empty() || (taken == 0 && !progressed) {
                break;
            }
        }
        for request in requests {
            let emissions = handle(shared, &request, arrived, trace);
            let mut cursor = arrived;
            for e in emissions {
                cursor += Duration::from_micros(e.gap_us);
                sleep_until(cursor);
                if trace {
                    eprintln!("dmc-hil sim: {:9.3} rtu-over-tcp tx {}", shared.wall_s(), hex(&e.bytes));
                }
                stream.write_all(&e.bytes)?;
            }
        }
    }
    Ok(())
}

fn udp_loop(shared: &Shared, socket: &UdpSocket, trace: bool) {
    // Room for any datagram, so an overlong one is seen whole and refused.
    let mut buf = [0u8; 2048];
    while !shared.stopped() {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // E.g. ECONNREFUSED left over from an ICMP error for an earlier reply.
                if trace {
                    eprintln!("dmc-hil sim: udp: {e}");
                }
                continue;
            }
        };
        let arrived = Instant::now();
        let datagram = buf.get(..n).unwrap_or_default();
        // One datagram is one whole ADU; anything else is dropped unanswered.
        let request = match mbap::parse_datagram(datagram) {
            Ok(adu) => mbap_request_to_rtu(&adu),
            Err(e) => {
                if trace {
                    eprintln!("dmc-hil sim: udp from {peer}: {e}");
                }
                None
            }
        };
        let Some((transaction_id, request)) = request else {
            shared.bus().note_dropped(DropReason::TooShort { len: n });
            continue;
        };
        let emissions = handle(shared, &request, arrived, trace);
        let mut cursor = arrived;
        for e in emissions {
            cursor += Duration::from_micros(e.gap_us);
            sleep_until(cursor);
            if let Some(adu) = rtu_reply_to_mbap(transaction_id, &e.bytes) {
                if trace {
                    eprintln!("dmc-hil sim: {:9.3} udp tx {peer} {}", shared.wall_s(), hex(&adu));
                }
                if let Err(e) = socket.send_to(&adu, peer) {
                    eprintln!("dmc-hil sim: udp reply to {peer}: {e}");
                }
            }
        }
    }
}

/// Hands one RTU request to the bus; the lock is held only for that, so other
/// connections are served while this one waits out its turnaround.
fn handle(shared: &Shared, request: &[u8], arrived: Instant, trace: bool) -> Vec<Emission> {
    let wall_s = arrived.duration_since(shared.start).as_secs_f64();
    if trace {
        eprintln!("dmc-hil sim: {wall_s:9.3} rx {}", hex(request));
    }
    shared.bus().handle_frame(request, wall_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_request;
    use crate::model::{Bank, ModelRequest};

    fn mbap(transaction_id: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; mbap::MAX_ADU_LEN];
        let len = mbap::emit(transaction_id, unit, &RawPdu(pdu), &mut out).unwrap_or(0);
        out.truncate(len);
        out
    }

    #[test]
    fn test_mbap_request_becomes_the_rtu_frame_a_gateway_sends() {
        // devices.md 1.6: read 18 input registers of unit 2 is `02 04 00 00 00 12 70 34` on RS485.
        let adu = mbap(0x1234, 2, &[0x04, 0x00, 0x00, 0x00, 0x12]);
        assert_eq!(adu, [0x12, 0x34, 0, 0, 0, 6, 2, 0x04, 0x00, 0x00, 0x00, 0x12]);
        let frame = mbap::parse_datagram(&adu).map(|f| mbap_request_to_rtu(&f));
        let expect = vec![0x02, 0x04, 0x00, 0x00, 0x00, 0x12, 0x70, 0x34];
        assert_eq!(frame, Ok(Some((0x1234, expect))));
    }

    #[test]
    fn test_rtu_reply_becomes_mbap_with_the_request_transaction() {
        // devices.md 1.6 reply: `02 04 08 43 24 E5 1F 42 96 87 2B 5F 22`.
        let rtu = [0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
        let adu = rtu_reply_to_mbap(7, &rtu).unwrap_or_default();
        assert_eq!(adu.get(..7), Some(&[0, 7, 0, 0, 0, 11, 2][..]));
        assert_eq!(adu.get(7..), rtu.get(1..rtu.len() - 2));
        // Exceptions pass through as they are.
        let exc = crate::frame::rtu_frame(1, &RawPdu(&[0x84, 0x02])).unwrap_or_default();
        assert_eq!(rtu_reply_to_mbap(0xFFFF, &exc), Some(vec![0xFF, 0xFF, 0, 0, 0, 3, 1, 0x84, 0x02]));
    }

    #[test]
    fn test_damaged_rtu_reply_is_not_forwarded() {
        let mut rtu = vec![0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
        assert_eq!(rtu_reply_to_mbap(1, &rtu[..6]), None, "truncated");
        if let Some(last) = rtu.last_mut() {
            *last ^= 0x5A;
        }
        assert_eq!(rtu_reply_to_mbap(1, &rtu), None, "bad CRC");
        assert_eq!(rtu_reply_to_mbap(1, &[0x02, 0x04]), None, "shorter than a frame");
    }

    #[test]
    fn test_round_trip_through_the_bus() {
        let config = SimConfig::default();
        let mut bus = crate::bus::Bus::new(config.line, config.clock, 1);
        bus.add(2, crate::model::DeviceKind::Sdm230);
        let rtu_request = encode_request(2, &ModelRequest::Read { bank: Bank::Input, start: 0, count: 2 })
            .unwrap_or_default();
        let adu = mbap(42, 2, rtu_request.get(1..rtu_request.len() - 2).unwrap_or_default());
        let (tid, request) =
            mbap::parse_datagram(&adu).ok().and_then(|f| mbap_request_to_rtu(&f)).unwrap_or_default();
        assert_eq!((tid, &request), (42, &rtu_request));
        let out = bus.handle_frame(&request, 0.1);
        let reply = out.first().and_then(|e| rtu_reply_to_mbap(tid, &e.bytes)).unwrap_or_default();
        let frame = mbap::parse_datagram(&reply);
        assert_eq!(frame.map(|f| (f.transaction_id(), f.unit(), f.pdu().len())), Ok((42, 2, 6)));
        assert_eq!(bus.served(2, "voltage").len(), 1);
    }

    #[test]
    fn test_tcp_udp_and_rtu_over_tcp_answer_on_loopback() {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut sim = SimHandle::spawn_tcp(SimConfig::default(), any).expect("tcp");
        let udp = sim.serve_udp(any, false).expect("udp");
        let rtu_tcp = sim.serve_rtu_over_tcp(any, false).expect("rtu over tcp");
        let tcp = sim.tcp_addr().expect("tcp address");
        let pdu = [0x04, 0x00, 0x00, 0x00, 0x02];
        let timeout = Some(Duration::from_secs(2));

        let mut stream = TcpStream::connect(tcp).expect("connect");
        stream.set_read_timeout(timeout).expect("timeout");
        // Two requests in one write: both answered, in order, on this connection.
        let mut two = mbap(1, 2, &pdu);
        two.extend(mbap(2, 2, &pdu));
        stream.write_all(&two).expect("write");
        let mut reply = [0u8; 2 * 13];
        stream.read_exact(&mut reply).expect("tcp replies");
        assert_eq!((reply[1], reply[6], reply[7], reply[14], reply[19]), (1, 2, 0x04, 2, 2));

        let socket = UdpSocket::bind(any).expect("bind");
        socket.set_read_timeout(timeout).expect("timeout");
        socket.send_to(&mbap(9, 2, &pdu), udp).expect("send");
        let mut dgram = [0u8; 300];
        let (n, from) = socket.recv_from(&mut dgram).expect("udp reply");
        assert_eq!((n, from, dgram[1], dgram[6]), (13, udp, 9, 2));

        let mut raw = TcpStream::connect(rtu_tcp).expect("connect");
        raw.set_read_timeout(timeout).expect("timeout");
        let request = encode_request(2, &ModelRequest::Read { bank: Bank::Input, start: 0, count: 2 });
        raw.write_all(&request.unwrap_or_default()).expect("write");
        let mut reply = [0u8; 9];
        raw.read_exact(&mut reply).expect("rtu reply");
        assert!(dmc_core::crc::check_crc_trailer(&reply));

        // Faults set once apply to every transport.
        sim.fault("sdm230", "silent on").expect("fault");
        socket.send_to(&mbap(10, 2, &pdu), udp).expect("send");
        socket.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        assert!(socket.recv_from(&mut dgram).is_err(), "silent unit answered");
        let c = sim.stats().unit(2).unwrap_or_default();
        assert_eq!((c.requests, c.responses, c.unanswered), (5, 4, 1));
        assert_eq!(sim.served(2, "voltage").len(), 4);
    }
}
