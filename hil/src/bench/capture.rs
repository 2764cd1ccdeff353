//! Wire captures: every frame the bench sent and every byte it received, with times, as postcard.
//!
//! A capture is a list of transactions: the request frame, the received byte
//! chunks with their arrival times (µs since the run started), the deadline
//! used, and the outcome the bench decided at the time. [`replay`] feeds each
//! transaction back through core's master, receiver and decoder (via
//! [`super::exchange::BenchMaster`], as live runs do) and reports every one
//! whose outcome differs now: a regression check of the wire layer against
//! real traffic.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::exchange::BenchMaster;
use dmc_core::pdu::Request;
use dmc_core::rtu::RtuFrame;
use dmc_core::time::Instant;
use dmc_core::timing::{LineConfig, Parity};

/// Identifies the file type (first field of every capture).
pub const MAGIC: &str = "dmc-hil capture";
/// Capture layout version; bumped on incompatible changes.
pub const FORMAT: u16 = 1;

/// Bytes with their arrival (or send) time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Microseconds since the run started.
    pub t_us: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// One request and what came back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedTransaction {
    /// Unit addressed.
    pub unit: u8,
    /// When the master started the transaction, µs since start.
    pub started_us: u64,
    /// The request frame, timed when it was written.
    pub request: Chunk,
    /// Everything read until the outcome was settled.
    pub received: Vec<Chunk>,
    /// The transaction's deadline, µs since start.
    pub deadline_us: u64,
    /// When the outcome was settled, µs since start.
    pub settled_us: u64,
    /// The outcome as the bench printed it.
    pub outcome: String,
}

/// A whole capture file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Always [`MAGIC`].
    pub magic: String,
    /// Always [`FORMAT`].
    pub format: u16,
    /// Line speed.
    pub baud: u32,
    /// Parity: 0 none, 1 even, 2 odd.
    pub parity: u8,
    /// Stop bits.
    pub stop_bits: u8,
    /// Transactions in order.
    pub transactions: Vec<CapturedTransaction>,
}

impl Capture {
    /// An empty capture for `line`.
    pub fn new(line: &LineConfig) -> Self {
        let parity = match line.parity {
            Parity::None => 0,
            Parity::Even => 1,
            Parity::Odd => 2,
        };
        Capture {
            magic: MAGIC.to_string(),
            format: FORMAT,
            baud: line.baud,
            parity,
            stop_bits: line.stop_bits,
            transactions: Vec::new(),
        }
    }

    /// The line the capture was made on.
    pub fn line(&self) -> LineConfig {
        let parity = match self.parity {
            1 => Parity::Even,
            2 => Parity::Odd,
            _ => Parity::None,
        };
        LineConfig { baud: self.baud, data_bits: 8, parity, stop_bits: self.stop_bits }
    }

    /// Writes the capture to `path`.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = postcard::to_stdvec(self).map_err(|e| format!("cannot encode capture: {e}"))?;
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Reads a capture from `path`.
    pub fn load(path: &Path) -> Result<Capture, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let capture: Capture = postcard::from_bytes(&bytes)
            .map_err(|e| format!("{} is not a dmc-hil capture: {e}", path.display()))?;
        if capture.magic != MAGIC || capture.format != FORMAT {
            return Err(format!(
                "{} is not a dmc-hil capture of format {FORMAT} (magic {:?}, format {})",
                path.display(),
                capture.magic,
                capture.format
            ));
        }
        Ok(capture)
    }
}

/// A transaction whose replayed outcome differs from the recorded one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Index in the capture.
    pub index: usize,
    /// Unit addressed.
    pub unit: u8,
    /// Outcome recorded at the time.
    pub recorded: String,
    /// Outcome now.
    pub replayed: String,
}

/// Re-decodes every transaction through one core master, as live; returns the number replayed and the mismatches.
pub fn replay(capture: &Capture) -> (usize, Vec<Mismatch>) {
    let mut master = BenchMaster::new(&capture.line());
    let mut mismatches = Vec::new();
    for (index, t) in capture.transactions.iter().enumerate() {
        let replayed = replay_one(&mut master, t);
        if replayed != t.outcome {
            mismatches.push(Mismatch { index, unit: t.unit, recorded: t.outcome.clone(), replayed });
        }
    }
    (capture.transactions.len(), mismatches)
}

fn replay_one(master: &mut BenchMaster, t: &CapturedTransaction) -> String {
    let frame = match RtuFrame::new_checked(t.request.bytes.as_slice()) {
        Ok(f) => f,
        Err(e) => return format!("request does not parse: {e}"),
    };
    let request = match Request::parse(frame.pdu()) {
        Ok(r) => r,
        Err(e) => return format!("request does not parse: {e}"),
    };
    let deadline = Instant::from_micros(t.deadline_us);
    if let Err(e) = master.start(Instant::from_micros(t.started_us), t.unit, &request, deadline) {
        return format!("master refuses the request: {e}");
    }
    match master.poll_transmit(Instant::from_micros(t.request.t_us)) {
        Some(bytes) if bytes == t.request.bytes => {}
        Some(bytes) => return format!("master now encodes the request as {bytes:02X?}"),
        None => return "master would not send the request at the recorded time".to_string(),
    }
    for chunk in &t.received {
        if master.on_bytes(Instant::from_micros(chunk.t_us), &chunk.bytes).is_some() {
            break;
        }
    }
    // Run out the clock: the moment it settled live, then each wake-up up to the deadline.
    master.on_time(Instant::from_micros(t.settled_us).min(deadline));
    for _ in 0..8 {
        if master.outcome().is_some() {
            break;
        }
        let wake = master.next_wakeup().unwrap_or(deadline).min(deadline);
        master.on_time(wake);
    }
    master.outcome().map_or_else(|| "undecided".to_string(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_round_trip_and_replay() {
        let mut c = Capture::new(&LineConfig::new_8n1(9600));
        let mut nine = vec![0x09, 0x04, 0x00, 0x00, 0x00, 0x02];
        let crc = dmc_core::crc::crc16(&nine).to_le_bytes();
        nine.extend_from_slice(&crc);
        c.transactions.push(CapturedTransaction {
            unit: 2,
            started_us: 1000,
            request: Chunk { t_us: 1000, bytes: vec![0x02, 0x04, 0x01, 0x56, 0x00, 0x04, 0x10, 0x16] },
            received: vec![
                Chunk { t_us: 20_000, bytes: vec![0x02, 0x04, 0x08, 0x43, 0x24] },
                Chunk { t_us: 21_000, bytes: vec![0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22] },
            ],
            deadline_us: 510_000,
            settled_us: 21_000,
            outcome: "registers 4324 E51F 4296 872B".to_string(),
        });
        c.transactions.push(CapturedTransaction {
            unit: 9,
            // After the bench's 50 ms receive gap following the first reply.
            started_us: 100_000,
            request: Chunk { t_us: 100_000, bytes: nine },
            received: vec![],
            deadline_us: 200_000,
            settled_us: 200_000,
            outcome: "timeout".to_string(),
        });
        let path = std::env::temp_dir().join(format!("dmc-hil-capture-test-{}.bin", std::process::id()));
        c.save(&path).ok();
        let back = Capture::load(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(back.as_ref(), Ok(&c));
        let (n, mismatches) = replay(&c);
        assert_eq!(n, 2);
        assert_eq!(mismatches, vec![]);
        c.transactions[0].outcome = "something else".to_string();
        assert_eq!(replay(&c).1.len(), 1);
    }
}
