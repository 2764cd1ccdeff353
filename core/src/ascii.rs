//! Modbus ASCII framing: `:` + hex of (unit, PDU, LRC) + CR LF.
//!
//! Modbus over Serial Line V1.02, 2.5.2: each byte is sent as two hex
//! characters (this crate emits upper case and accepts both cases), the LRC
//! ([`crate::crc::lrc`]) covers unit and PDU, and a frame is at most 513
//! characters. [`AsciiReceiver`] hunts for `:`, collects up to CR LF, and
//! restarts on a new `:` (the spec's resynchronisation rule); bad hex, an odd
//! number of digits, an LRC mismatch or an overlong frame drop the frame.

use crate::crc::lrc;
use crate::pdu::{EmitPdu, PduError, MAX_PDU_LEN};
use core::fmt;

/// Longest ASCII ADU in characters (V1.02, 2.5.2.1).
pub const MAX_ADU_CHARS: usize = 513;
/// Binary bytes of the longest frame: unit + 253-byte PDU + LRC.
const MAX_BINARY: usize = 1 + MAX_PDU_LEN + 1;
/// Frame start character.
const START: u8 = b':';
/// Upper-case hex digits for emit.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Why a received ASCII frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AsciiError {
    /// A character that is not a hex digit inside a frame.
    BadHex {
        /// The character.
        byte: u8,
    },
    /// An odd number of hex digits.
    OddLength,
    /// CR not followed by LF.
    MissingLineFeed,
    /// Fewer bytes than unit + function + LRC.
    TooShort {
        /// Binary bytes received.
        len: usize,
    },
    /// More than 513 characters.
    TooLong,
    /// The LRC does not match.
    LrcMismatch {
        /// LRC computed over unit and PDU.
        computed: u8,
        /// LRC received.
        received: u8,
    },
    /// A new `:` arrived before the frame ended; the old frame is dropped.
    Restarted,
}

impl fmt::Display for AsciiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AsciiError::BadHex { byte } => write!(f, "byte 0x{byte:02X} is not a hex digit"),
            AsciiError::OddLength => f.write_str("odd number of hex digits"),
            AsciiError::MissingLineFeed => f.write_str("CR not followed by LF"),
            AsciiError::TooShort { len } => write!(f, "ASCII frame of {len} bytes is too short"),
            AsciiError::TooLong => f.write_str("ASCII frame longer than 513 characters"),
            AsciiError::LrcMismatch { computed, received } => {
                write!(f, "LRC 0x{received:02X} received, 0x{computed:02X} computed")
            }
            AsciiError::Restarted => f.write_str("frame restarted by a new ':'"),
        }
    }
}

impl core::error::Error for AsciiError {}

/// Writes `:` + hex + CR LF for `unit` and `pdu` into `buf`; returns the length.
pub fn emit(unit: u8, pdu: &impl EmitPdu, buf: &mut [u8]) -> Result<usize, PduError> {
    let mut binary = [0u8; MAX_BINARY];
    let pdu_len = pdu.pdu_len();
    if pdu_len > MAX_PDU_LEN {
        return Err(PduError::TrailingBytes { expected: MAX_PDU_LEN, actual: pdu_len });
    }
    let len = 1 + 2 * (pdu_len + 2) + 2;
    let available = buf.len();
    let out = buf.get_mut(..len).ok_or(PduError::BufferTooSmall { needed: len, available })?;
    binary[0] = unit;
    let written = pdu.emit(binary.get_mut(1..1 + pdu_len).unwrap_or_default())?;
    if written != pdu_len {
        return Err(PduError::Truncated { expected: pdu_len, actual: written });
    }
    let body_len = 1 + pdu_len;
    binary[body_len] = lrc(binary.get(..body_len).unwrap_or_default());
    let (head, rest) = out.split_at_mut(1);
    head[0] = START;
    let (hex, tail) = rest.split_at_mut(2 * (body_len + 1));
    for (pair, &byte) in hex.chunks_exact_mut(2).zip(binary.iter()) {
        pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0F)]]);
    }
    tail.copy_from_slice(b"\r\n");
    Ok(len)
}

/// Value of a hex digit, either case.
const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A received ASCII frame, decoded to binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsciiFrame<'a> {
    /// Unit address.
    pub unit: u8,
    /// The PDU (without LRC).
    pub pdu: &'a [u8],
}

/// Receiver position in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for `:`.
    Hunting,
    /// Collecting hex digits.
    InFrame,
    /// CR seen, LF expected.
    GotCr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    Nothing,
    Frame,
    Error(AsciiError),
}

/// Streaming ASCII receiver (binary buffer of 255 bytes).
///
/// Call order: [`feed`](Self::feed) (returns bytes taken; stops when an
/// event is ready), [`poll`](Self::poll) until `None`, feed the rest.
#[derive(Clone, Debug)]
pub struct AsciiReceiver {
    bin: [u8; MAX_BINARY],
    len: usize,
    high_nibble: Option<u8>,
    phase: Phase,
    ready: Ready,
    frame_taken: bool,
    garbage: u32,
}

impl Default for AsciiReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl AsciiReceiver {
    /// An idle receiver.
    pub const fn new() -> Self {
        AsciiReceiver {
            bin: [0; MAX_BINARY],
            len: 0,
            high_nibble: None,
            phase: Phase::Hunting,
            ready: Ready::Nothing,
            frame_taken: false,
            garbage: 0,
        }
    }

    /// Takes received characters; returns how many.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        self.release_taken_frame();
        let mut taken = 0;
        for &c in bytes {
            if self.ready != Ready::Nothing {
                break;
            }
            taken += 1;
            self.take(c);
        }
        taken
    }

    /// The next frame or drop reason.
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<AsciiFrame<'_>, AsciiError>> {
        self.release_taken_frame();
        match core::mem::replace(&mut self.ready, Ready::Nothing) {
            Ready::Nothing => None,
            Ready::Error(e) => Some(Err(e)),
            Ready::Frame => {
                self.frame_taken = true;
                let body = self.bin.get(..self.len.saturating_sub(1)).unwrap_or_default();
                let (unit, pdu) = body.split_first().map_or((0, &[][..]), |(u, p)| (*u, p));
                Some(Ok(AsciiFrame { unit, pdu }))
            }
        }
    }

    /// Forgets a partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.high_nibble = None;
        self.phase = Phase::Hunting;
        self.ready = Ready::Nothing;
        self.frame_taken = false;
    }

    /// Characters skipped while hunting for `:`.
    pub const fn garbage(&self) -> u32 {
        self.garbage
    }

    fn release_taken_frame(&mut self) {
        if self.frame_taken {
            self.frame_taken = false;
            self.len = 0;
        }
    }

    fn fail(&mut self, error: AsciiError) {
        self.len = 0;
        self.high_nibble = None;
        self.phase = Phase::Hunting;
        self.ready = Ready::Error(error);
    }

    fn take(&mut self, c: u8) {
        if c == START {
            let interrupted = self.phase != Phase::Hunting;
            self.len = 0;
            self.high_nibble = None;
            self.phase = Phase::InFrame;
            if interrupted {
                self.ready = Ready::Error(AsciiError::Restarted);
            }
            return;
        }
        match self.phase {
            Phase::Hunting => self.garbage = self.garbage.saturating_add(1),
            Phase::InFrame if c == b'\r' => self.phase = Phase::GotCr,
            Phase::InFrame => {
                let Some(nibble) = hex_value(c) else {
                    return self.fail(AsciiError::BadHex { byte: c });
                };
                let Some(high) = self.high_nibble.take() else {
                    self.high_nibble = Some(nibble);
                    return;
                };
                let Some(slot) = self.bin.get_mut(self.len) else {
                    return self.fail(AsciiError::TooLong);
                };
                *slot = (high << 4) | nibble;
                self.len += 1;
            }
            Phase::GotCr if c == b'\n' => self.finish(),
            Phase::GotCr => self.fail(AsciiError::MissingLineFeed),
        }
    }

    fn finish(&mut self) {
        if self.high_nibble.is_some() {
            return self.fail(AsciiError::OddLength);
        }
        if self.len < 3 {
            return self.fail(AsciiError::TooShort { len: self.len });
        }
        let body = self.bin.get(..self.len - 1).unwrap_or_default();
        let received = self.bin.get(self.len - 1).copied().unwrap_or(0);
        let computed = lrc(body);
        if computed != received {
            return self.fail(AsciiError::LrcMismatch { computed, received });
        }
        self.phase = Phase::Hunting;
        self.ready = Ready::Frame;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Request, Response, Words};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// V1.02 2.5.2 style example: unit 0x11 reads 3 holding registers at 0x6B.
    const REQ: &[u8] = b":1103006B00037E\r\n";

    type Got = Result<(u8, Vec<u8>), AsciiError>;

    fn receive(rx: &mut AsciiReceiver, mut bytes: &[u8]) -> Vec<Got> {
        let mut out = Vec::new();
        for _ in 0..2000 {
            let n = rx.feed(bytes);
            bytes = &bytes[n..];
            match rx.poll() {
                Some(r) => out.push(r.map(|f| (f.unit, f.pdu.to_vec()))),
                None if bytes.is_empty() => return out,
                None => {}
            }
        }
        panic!("no progress");
    }

    #[test]
    fn test_emit() {
        let mut buf = [0xA5u8; 24];
        let n = emit(0x11, &Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 }, &mut buf).unwrap();
        assert_eq!(&buf[..n], REQ);
        assert!(buf[n..].iter().all(|&b| b == 0xA5));
        let mut small = [0u8; 16];
        assert_eq!(
            emit(0x11, &Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 }, &mut small),
            Err(PduError::BufferTooSmall { needed: 17, available: 16 })
        );
    }

    #[test]
    fn test_receive_with_garbage_and_lower_case() {
        let mut rx = AsciiReceiver::new();
        let got = receive(&mut rx, b"xx\r\n:1103006b00037e\r\n");
        assert_eq!(got, [Ok((0x11, std::vec![0x03, 0x00, 0x6B, 0x00, 0x03]))]);
        assert_eq!(rx.garbage(), 4);
    }

    #[test]
    fn test_receive_errors_and_resync() {
        let mut rx = AsciiReceiver::new();
        assert_eq!(
            receive(&mut rx, b":1103006B00037F\r\n"),
            [Err(AsciiError::LrcMismatch { computed: 0x7E, received: 0x7F })]
        );
        assert_eq!(receive(&mut rx, b":1103006B00037\r\n"), [Err(AsciiError::OddLength)]);
        assert_eq!(receive(&mut rx, b":11G3\r\n"), [Err(AsciiError::BadHex { byte: b'G' })]);
        assert_eq!(receive(&mut rx, b":11EF\r\n"), [Err(AsciiError::TooShort { len: 2 })]);
        assert_eq!(receive(&mut rx, b":1103\rX"), [Err(AsciiError::MissingLineFeed)]);
        // A new ':' restarts: the broken frame is reported, the next one received.
        let mut both = b":1103".to_vec();
        both.extend_from_slice(REQ);
        assert_eq!(
            receive(&mut rx, &both),
            [Err(AsciiError::Restarted), Ok((0x11, std::vec![3, 0, 0x6B, 0, 3]))]
        );
        let mut long = std::vec![b':'];
        long.extend(std::iter::repeat_n(b'0', 600));
        assert_eq!(receive(&mut rx, &long), [Err(AsciiError::TooLong)]);
    }

    #[test]
    fn test_round_trip_response() {
        let resp = Response::ReadHoldingRegisters(Words::from_slice(&[0x022B, 0, 0x64]));
        let mut buf = [0u8; 40];
        let n = emit(0x11, &resp, &mut buf).unwrap();
        let mut rx = AsciiReceiver::new();
        let got = receive(&mut rx, &buf[..n]);
        let req = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
        let Ok((unit, pdu)) = &got[0] else { panic!("{got:?}") };
        assert_eq!(*unit, 0x11);
        assert_eq!(Response::parse(&req, pdu), Ok(Ok(resp)));
    }

    proptest! {
        #[test]
        fn prop_emit_receive_identity(unit in any::<u8>(), pdu in prop::collection::vec(any::<u8>(), 1..=253)) {
            let mut buf = [0u8; MAX_ADU_CHARS];
            let n = emit(unit, &crate::pdu::RawPdu(&pdu), &mut buf).unwrap();
            prop_assert!(n <= MAX_ADU_CHARS);
            let mut rx = AsciiReceiver::new();
            prop_assert_eq!(receive(&mut rx, &buf[..n]), std::vec![Ok((unit, pdu))]);
        }

        #[test]
        fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let mut rx = AsciiReceiver::new();
            let _ = receive(&mut rx, &bytes);
        }
    }
}
