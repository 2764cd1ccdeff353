//! The bench's master: `dmc-core`'s [`Master`] state machine over RTU, plus outcome bookkeeping.
//!
//! [`BenchMaster`] is shared by live runs and replay. It never touches a port
//! or a clock: bytes go in with [`BenchMaster::on_bytes`], the passing of time
//! with [`BenchMaster::on_time`]; either may settle an [`Outcome`]. So replaying
//! a capture through it gives the same answer — or shows that core now decodes
//! the bytes differently.
//!
//! Core's master keeps waiting after a damaged frame (a later good frame could
//! still come), so a CRC error ends as a timeout there; the outcome here names
//! the cause from the master's counters (checksum, wrong unit, length, timing).

use std::fmt;

use dmc_core::master::{Counters, Master, RtuFraming, TransactionError};
use dmc_core::pdu::Request;
use dmc_core::rtu::RxTiming;
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;

/// Smallest silence the bench's receiver treats as a gap: a host sees bytes
/// in bursts (USB-serial latency timers, scheduler wake-ups), so spec-tight
/// t1.5/t3.5 would split good frames (50 ms, as the daemon: a loaded host
/// running the simulator too was seen pausing 20+ ms inside a frame).
/// Responses still end early at their
/// expected length.
pub const MIN_RX_GAP: Duration = Duration::from_millis(50);

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Registers of a read.
    Registers(Vec<u16>),
    /// A write echoed correctly.
    WriteEcho,
    /// The device answered with an exception.
    Exception(u8),
    /// Nothing arrived before the deadline.
    Timeout,
    /// Only replies with a bad CRC arrived.
    CrcError,
    /// Only replies from another unit arrived.
    WrongUnit,
    /// A reply cut short or overlong, gapped, or with content that does not fit the request.
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
            Outcome::WrongUnit => write!(f, "reply from another unit"),
            Outcome::Malformed(why) => write!(f, "malformed: {why}"),
            Outcome::Io(why) => write!(f, "port error: {why}"),
        }
    }
}

/// Core's master plus what the bench needs around it.
pub struct BenchMaster {
    master: Master<RtuFraming>,
    /// Counters when the current transaction started.
    before: Counters,
    outcome: Option<Outcome>,
}

impl BenchMaster {
    /// A master on `line` (receive silences widened to [`MIN_RX_GAP`]).
    pub fn new(line: &LineConfig) -> Self {
        let timing = RxTiming::from_line(line).widened(MIN_RX_GAP);
        BenchMaster {
            master: Master::new(RtuFraming::with_timing(*line, timing)),
            before: Counters::default(),
            outcome: None,
        }
    }

    /// Starts a transaction at `now`, giving up at `deadline`.
    pub fn start(
        &mut self,
        now: Instant,
        unit: u8,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<(), String> {
        if self.master.is_busy() {
            self.master.cancel();
        }
        self.before = *self.master.counters();
        self.outcome = None;
        self.master.start(now, unit, request, deadline).map_err(|e| e.to_string())
    }

    /// The request ADU, once the line allows sending it.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.master.poll_transmit(now).map(<[u8]>::to_vec)
    }

    /// When [`BenchMaster::on_time`] (or `poll_transmit`) must next be called.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.master.poll_timeout()
    }

    /// The settled outcome, if any.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Bytes read at `now`.
    pub fn on_bytes(&mut self, now: Instant, bytes: &[u8]) -> Option<&Outcome> {
        if self.outcome.is_none() {
            self.master.handle_rx(now, bytes);
        }
        self.on_time(now)
    }

    /// Time passed to `now`: ends frames at silence, or reaches the deadline.
    pub fn on_time(&mut self, now: Instant) -> Option<&Outcome> {
        if self.outcome.is_none() {
            self.outcome = match self.master.poll(now) {
                Err(nb::Error::WouldBlock) => None,
                Ok(()) => Some(match self.master.response().and_then(|r| r.registers()) {
                    Some(words) => Outcome::Registers(words.iter().collect()),
                    None => Outcome::WriteEcho,
                }),
                Err(nb::Error::Other(TransactionError::Exception(code))) => {
                    Some(Outcome::Exception(code.value()))
                }
                Err(nb::Error::Other(TransactionError::Pdu(e))) => Some(Outcome::Malformed(e.to_string())),
                Err(nb::Error::Other(TransactionError::Timeout | TransactionError::Idle)) => {
                    Some(self.why_timeout())
                }
            };
        }
        self.outcome.as_ref()
    }

    /// What the master threw away during this transaction, as the cause of its timeout.
    fn why_timeout(&self) -> Outcome {
        let now = self.master.counters();
        let b = &self.before;
        if now.checksum_errors > b.checksum_errors {
            Outcome::CrcError
        } else if now.wrong_unit > b.wrong_unit {
            Outcome::WrongUnit
        } else if now.length_errors > b.length_errors {
            Outcome::Malformed("frame of the wrong length".to_string())
        } else if now.timing_errors > b.timing_errors {
            Outcome::Malformed("gap inside a frame".to_string())
        } else if now.malformed + now.wrong_function > b.malformed + b.wrong_function {
            Outcome::Malformed("unexpected frame".to_string())
        } else {
            Outcome::Timeout
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> LineConfig {
        LineConfig::new_8n1(9600)
    }

    fn run(reply: Option<&[u8]>) -> Outcome {
        let mut m = BenchMaster::new(&line());
        let req = Request::ReadInputRegisters { address: 0x156, quantity: 4 };
        let t0 = Instant::from_millis(100);
        let deadline = t0 + Duration::from_millis(500);
        assert!(m.start(t0, 2, &req, deadline).is_ok());
        assert_eq!(
            m.poll_transmit(t0).as_deref(),
            Some(&[0x02, 0x04, 0x01, 0x56, 0x00, 0x04, 0x10, 0x16][..])
        );
        if let Some(bytes) = reply {
            m.on_bytes(t0 + Duration::from_millis(30), bytes);
        }
        for _ in 0..8 {
            if let Some(o) = m.outcome() {
                return o.clone();
            }
            let wake = m.next_wakeup().unwrap_or(deadline);
            m.on_time(wake);
        }
        m.outcome().cloned().unwrap_or(Outcome::Malformed("undecided".to_string()))
    }

    #[test]
    fn test_outcomes() {
        // devices.md 1.6.
        let reply = [0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
        assert_eq!(run(Some(&reply)), Outcome::Registers(vec![0x4324, 0xE51F, 0x4296, 0x872B]));
        let mut bad = reply;
        bad[12] ^= 1;
        assert_eq!(run(Some(&bad)), Outcome::CrcError);
        assert_eq!(run(None), Outcome::Timeout);
        let mut exception = vec![0x02, 0x84, 0x02];
        let crc = dmc_core::crc::crc16(&exception).to_le_bytes();
        exception.extend_from_slice(&crc);
        assert_eq!(run(Some(&exception)), Outcome::Exception(2));
    }
}
