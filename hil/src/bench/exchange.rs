//! One master transaction, decided from timestamped bytes: the part of the bench shared by live runs and replay.
//!
//! An [`Exchange`] holds a request and core's [`RtuReceiver`] set up for its
//! response. Bytes go in with [`Exchange::on_bytes`], the passing of time with
//! [`Exchange::on_time`]; either may settle the [`Outcome`]. Because it never
//! touches a port or a clock, the same code replays a capture and gets the same
//! answer — or reports that core now decodes the bytes differently.
//!
//! STOP-GAP: this drives core's receiver and PDU parser directly. When core's
//! `master` state machine lands it replaces this loop (same inputs: bytes with
//! times, and timeouts).

use std::fmt;

use dmc_core::pdu::{Request, Response};
use dmc_core::rtu::{DropReason, RtuFrame, RtuReceiver, RxEvent, RxTiming};
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;

/// Smallest silence the bench's receiver treats as a gap (see [`Exchange::new`]).
pub const MIN_RX_GAP: Duration = Duration::from_millis(20);

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Registers of a read.
    Registers(Vec<u16>),
    /// A write echoed correctly.
    WriteEcho,
    /// The device answered with an exception.
    Exception(u8),
    /// Nothing usable before the deadline.
    Timeout,
    /// A reply arrived with a bad CRC.
    CrcError,
    /// A reply from another unit.
    WrongUnit(u8),
    /// A reply cut short or overlong, or with bytes that do not fit the request.
    Malformed(String),
    /// The port itself failed (unplugged adapter, closed pty).
    Io(String),
}

impl Outcome {
    /// True for a normal reply.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Registers(_) | Outcome::WriteEcho)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Registers(words) => {
                write!(f, "registers")?;
                for w in words {
                    write!(f, " {w:04X}")?;
                }
                Ok(())
            }
            Outcome::WriteEcho => write!(f, "write echo"),
            Outcome::Exception(code) => write!(f, "exception {code:02X}"),
            Outcome::Timeout => write!(f, "timeout"),
            Outcome::CrcError => write!(f, "crc error"),
            Outcome::WrongUnit(u) => write!(f, "reply from unit {u}"),
            Outcome::Malformed(why) => write!(f, "malformed: {why}"),
            Outcome::Io(why) => write!(f, "port error: {why}"),
        }
    }
}

/// A transaction in progress.
pub struct Exchange<'a> {
    request: Request<'a>,
    receiver: RtuReceiver,
    deadline: Instant,
    outcome: Option<Outcome>,
}

impl<'a> Exchange<'a> {
    /// Waits for the answer of `unit` to `request`, sent completely at `sent_at`,
    /// giving up `timeout` later.
    ///
    /// The receiver's t1.5/t3.5 are widened to at least [`MIN_RX_GAP`]: a
    /// host sees bytes in bursts (USB-serial latency timers, scheduler
    /// wake-ups), so spec-tight silences would split good frames. Responses
    /// still end early at their expected length.
    pub fn new(
        line: &LineConfig,
        unit: u8,
        request: Request<'a>,
        sent_at: Instant,
        timeout: Duration,
    ) -> Self {
        let mut receiver = RtuReceiver::new(RxTiming::from_line(line).widened(MIN_RX_GAP));
        receiver.expect_response(unit, request.function(), request.expected_response_len());
        Exchange { request, receiver, deadline: sent_at + timeout, outcome: None }
    }

    /// When [`Exchange::on_time`] must next be called.
    pub fn next_wakeup(&self) -> Instant {
        self.receiver.poll_timeout().map_or(self.deadline, |t| t.min(self.deadline))
    }

    /// The settled outcome, if any.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Bytes that arrived at `now`.
    pub fn on_bytes(&mut self, now: Instant, mut bytes: &[u8]) -> Option<&Outcome> {
        while self.outcome.is_none() && !bytes.is_empty() {
            let taken = self.receiver.feed(now, bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            let progressed = self.drain(now);
            if taken == 0 && !progressed {
                break;
            }
        }
        // A line that never goes quiet (garbage, wrong baud) must still end at the deadline.
        if self.outcome.is_none() && now >= self.deadline {
            self.outcome = Some(Outcome::Timeout);
        }
        self.outcome.as_ref()
    }

    /// Time passed to `now` without bytes: ends frames at silence, or times out.
    pub fn on_time(&mut self, now: Instant) -> Option<&Outcome> {
        if self.outcome.is_none() {
            self.drain(now);
        }
        if self.outcome.is_none() && now >= self.deadline {
            self.outcome = Some(Outcome::Timeout);
        }
        self.outcome.as_ref()
    }

    fn drain(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        while self.outcome.is_none() {
            let decided = match self.receiver.poll(now) {
                None => break,
                Some(RxEvent::Frame(frame)) => Some(decode(&self.request, &frame)),
                Some(RxEvent::Dropped(reason)) => match reason {
                    DropReason::CrcMismatch => Some(Outcome::CrcError),
                    DropReason::WrongUnit { actual, .. } => Some(Outcome::WrongUnit(actual)),
                    other => Some(Outcome::Malformed(other.to_string())),
                },
            };
            progressed = true;
            self.outcome = decided;
        }
        progressed
    }
}

fn decode(request: &Request<'_>, frame: &RtuFrame<&[u8]>) -> Outcome {
    match Response::parse(request, frame.pdu()) {
        Ok(Ok(response)) => match response.registers() {
            Some(words) => Outcome::Registers(words.iter().collect()),
            None => Outcome::WriteEcho,
        },
        Ok(Err(code)) => Outcome::Exception(code.value()),
        Err(e) => Outcome::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> LineConfig {
        LineConfig::new_8n1(9600)
    }

    #[test]
    fn test_exchange_outcomes() {
        let req = Request::ReadInputRegisters { address: 0x156, quantity: 4 };
        let t0 = Instant::from_millis(100);
        let reply = [0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
        let mut ok = Exchange::new(&line(), 2, req, t0, Duration::from_millis(500));
        let got = ok.on_bytes(t0 + Duration::from_millis(10), &reply).cloned();
        assert_eq!(got, Some(Outcome::Registers(vec![0x4324, 0xE51F, 0x4296, 0x872B])));

        let mut bad = reply;
        bad[12] ^= 1;
        let mut crc = Exchange::new(&line(), 2, req, t0, Duration::from_millis(500));
        assert!(crc.on_bytes(t0 + Duration::from_millis(10), &bad).is_none());
        let got = crc.on_time(t0 + Duration::from_millis(10) + MIN_RX_GAP).cloned();
        assert_eq!(got, Some(Outcome::CrcError));

        let mut silent = Exchange::new(&line(), 2, req, t0, Duration::from_millis(500));
        assert!(silent.on_time(t0 + Duration::from_millis(499)).is_none());
        assert_eq!(silent.next_wakeup(), t0 + Duration::from_millis(500));
        assert_eq!(silent.on_time(t0 + Duration::from_millis(500)).cloned(), Some(Outcome::Timeout));
    }
}
