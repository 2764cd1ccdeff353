//! Modbus RTU framing: `[unit][PDU][CRC lo][CRC hi]`, and a streaming receiver.
//!
//! [`RtuFrame`] is a smoltcp-style view over a buffer. Guarantees: once
//! [`RtuFrame::check_len`] (or `new_checked`) succeeds no accessor panics, and
//! the accessors never panic even on an unchecked buffer (they return empty or
//! zero values instead). [`emit`] writes a whole ADU from any [`EmitPdu`].
//!
//! [`RtuReceiver`] turns timestamped chunks of bytes into frames. It is sans-IO
//! and bounded (one 256-byte buffer, no loops longer than the buffer):
//! - when a response is expected ([`RtuReceiver::expect_response`]) it ends the
//!   frame as soon as the expected number of bytes with a good CRC has arrived
//!   (or the 5-byte exception form), which is what makes a master fast;
//! - when listening for requests ([`RtuReceiver::expect_requests`]) it predicts
//!   the request length from the function code and byte count the same way;
//! - otherwise, and as a fallback, a silence of `frame_gap` (t3.5) ends a
//!   frame, noticed by [`RtuReceiver::poll`] or when the next byte arrives late.
//!
//! Bytes before a frame are skipped (counted as garbage). A frame is dropped,
//! with the reason reported as [`DropReason`], for a bad CRC, another unit or
//! function, a wrong length, or a gap above `inter_char_timeout` (t1.5) before
//! the frame was complete. USB-serial adapters deliver bytes in bursts (an
//! FTDI latency timer can split a frame with a 16 ms pause), so both limits
//! are per receiver ([`RxTiming`]); the host widens them.

use crate::crc::{check_crc_trailer, crc16};
use crate::pdu::{request_pdu_len, EmitPdu, FunctionCode, PduError, MAX_PDU_LEN};
use crate::time::{Duration, Instant};
use crate::timing::LineConfig;
use core::fmt;

/// Largest RTU ADU: "the maximum size of a Modbus RTU frame is 256 bytes"
/// (Modbus over Serial Line V1.02, 2.5.1.1, p. 13).
pub const MAX_ADU_LEN: usize = 256;
/// Smallest RTU ADU: unit, function, CRC.
pub const MIN_ADU_LEN: usize = 4;
/// Length of an exception ADU: unit, function | 0x80, code, CRC.
pub const EXCEPTION_ADU_LEN: usize = 5;
/// Unit address of a broadcast (no device answers).
pub const BROADCAST_UNIT: u8 = 0;
/// Unit + CRC bytes around the PDU.
const OVERHEAD: usize = 3;

/// Byte offsets of the RTU frame fields.
mod field {
    /// Unit (slave) address.
    pub(super) const UNIT: usize = 0;
    /// Function code, the first PDU byte.
    pub(super) const FUNCTION: usize = 1;
    /// Length of the CRC trailer.
    pub(super) const CRC_LEN: usize = 2;
}

/// Why a buffer is not a well-formed RTU frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// Shorter than unit + function + CRC.
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// Longer than [`MAX_ADU_LEN`].
    TooLong {
        /// Bytes present.
        len: usize,
    },
    /// The trailer is not the CRC of the frame.
    CrcMismatch {
        /// CRC computed over unit and PDU.
        computed: u16,
        /// CRC found in the trailer.
        received: u16,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::TooShort { len } => write!(f, "RTU frame of {len} bytes is too short"),
            FrameError::TooLong { len } => write!(f, "RTU frame of {len} bytes exceeds 256"),
            FrameError::CrcMismatch { computed, received } => {
                write!(f, "CRC 0x{received:04X} received, 0x{computed:04X} computed")
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// A view of an RTU ADU in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtuFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtuFrame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        RtuFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len). The CRC is checked
    /// separately ([`check_crc`](Self::check_crc)); do not use this on a
    /// buffer about to be emitted into.
    pub fn new_checked(buffer: T) -> Result<Self, FrameError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks `MIN_ADU_LEN <= len <= MAX_ADU_LEN`.
    pub fn check_len(&self) -> Result<(), FrameError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_ADU_LEN {
            Err(FrameError::TooShort { len })
        } else if len > MAX_ADU_LEN {
            Err(FrameError::TooLong { len })
        } else {
            Ok(())
        }
    }

    /// Checks the CRC trailer (always passes under `cfg(fuzzing)`).
    pub fn check_crc(&self) -> Result<(), FrameError> {
        let bytes = self.buffer.as_ref();
        if check_crc_trailer(bytes) {
            return Ok(());
        }
        let body_len = bytes.len().saturating_sub(field::CRC_LEN);
        Err(FrameError::CrcMismatch {
            computed: crc16(bytes.get(..body_len).unwrap_or_default()),
            received: self.crc(),
        })
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole ADU.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Unit address (0 on an empty buffer).
    pub fn unit(&self) -> u8 {
        self.buffer.as_ref().get(field::UNIT).copied().unwrap_or(0)
    }

    /// Function byte as received, exception flag included (0 if absent).
    pub fn function(&self) -> u8 {
        self.buffer.as_ref().get(field::FUNCTION).copied().unwrap_or(0)
    }

    /// The PDU: everything between unit and CRC (empty if too short).
    pub fn pdu(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        let end = bytes.len().saturating_sub(field::CRC_LEN);
        bytes.get(field::FUNCTION..end).unwrap_or_default()
    }

    /// The CRC trailer as received (0 if too short).
    pub fn crc(&self) -> u16 {
        let bytes = self.buffer.as_ref();
        match bytes.len().checked_sub(field::CRC_LEN).and_then(|at| bytes.get(at..)) {
            Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
            _ => 0,
        }
    }
}

impl<'a> RtuFrame<&'a [u8]> {
    /// The PDU, borrowed for as long as the buffer.
    pub fn into_pdu(self) -> &'a [u8] {
        let end = self.buffer.len().saturating_sub(field::CRC_LEN);
        self.buffer.get(field::FUNCTION..end).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtuFrame<T> {
    /// Sets the unit address (no-op on an empty buffer).
    pub fn set_unit(&mut self, unit: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(field::UNIT) {
            *byte = unit;
        }
    }

    /// The PDU, mutable.
    pub fn pdu_mut(&mut self) -> &mut [u8] {
        let bytes = self.buffer.as_mut();
        let end = bytes.len().saturating_sub(field::CRC_LEN);
        bytes.get_mut(field::FUNCTION..end).unwrap_or_default()
    }

    /// Computes the CRC of unit + PDU and writes the trailer.
    pub fn fill_crc(&mut self) {
        let bytes = self.buffer.as_mut();
        let Some(body_len) = bytes.len().checked_sub(field::CRC_LEN) else {
            return;
        };
        let (body, trailer) = bytes.split_at_mut(body_len);
        trailer.copy_from_slice(&crc16(body).to_le_bytes());
    }
}

/// Length of the ADU carrying a `pdu_len`-byte PDU.
pub const fn adu_len(pdu_len: usize) -> usize {
    pdu_len + OVERHEAD
}

/// Writes `[unit][pdu][crc]` into `buf`; returns the ADU length.
pub fn emit(unit: u8, pdu: &impl EmitPdu, buf: &mut [u8]) -> Result<usize, PduError> {
    let pdu_len = pdu.pdu_len();
    if pdu_len > MAX_PDU_LEN {
        return Err(PduError::TrailingBytes { expected: MAX_PDU_LEN, actual: pdu_len });
    }
    let len = adu_len(pdu_len);
    let available = buf.len();
    let out = buf.get_mut(..len).ok_or(PduError::BufferTooSmall { needed: len, available })?;
    let mut frame = RtuFrame::new_unchecked(out);
    frame.set_unit(unit);
    let written = pdu.emit(frame.pdu_mut())?;
    if written != pdu_len {
        return Err(PduError::Truncated { expected: pdu_len, actual: written });
    }
    frame.fill_crc();
    Ok(len)
}

/// Earliest moment a master may start the next request: t3.5 (`frame_gap`)
/// after the last byte seen on the line, sent or received.
pub fn earliest_send(frame_gap: Duration, last_tx_end: Option<Instant>, last_rx: Option<Instant>) -> Instant {
    let last = match (last_tx_end, last_rx) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Instant::ZERO,
    };
    last + frame_gap
}

/// Silences the receiver works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RxTiming {
    /// Longest gap between two bytes of one frame (spec: t1.5). A frame not
    /// yet complete when a longer gap occurs is dropped.
    pub inter_char_timeout: Duration,
    /// Silence that ends a frame (spec: t3.5).
    pub frame_gap: Duration,
}

impl RxTiming {
    /// The spec's t1.5 and t3.5 for a line.
    pub const fn from_line(line: &LineConfig) -> Self {
        RxTiming { inter_char_timeout: line.t15(), frame_gap: line.t35() }
    }

    /// Both limits raised to at least `min` (host with a bursty USB adapter).
    pub const fn widened(self, min: Duration) -> Self {
        RxTiming { inter_char_timeout: self.inter_char_timeout.max(min), frame_gap: self.frame_gap.max(min) }
    }
}

/// Why the receiver threw bytes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropReason {
    /// The bytes between two silences do not end in their CRC.
    CrcMismatch,
    /// A good frame from a unit other than the one expected.
    WrongUnit {
        /// Unit expected.
        expected: u8,
        /// Unit received.
        actual: u8,
    },
    /// A good frame from the right unit with another function.
    WrongFunction {
        /// Function expected.
        expected: u8,
        /// Function byte received.
        actual: u8,
    },
    /// Fewer bytes than a frame (or the expected frame) needs.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// More bytes than a frame (or the expected frame) may have.
    TooLong {
        /// Bytes received (capped at the buffer size).
        len: usize,
    },
    /// A gap longer than `inter_char_timeout` inside an incomplete frame.
    InterCharGap {
        /// The gap.
        gap: Duration,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DropReason::CrcMismatch => f.write_str("CRC mismatch"),
            DropReason::WrongUnit { expected, actual } => write!(f, "unit {actual}, expected {expected}"),
            DropReason::WrongFunction { expected, actual } => {
                write!(f, "function 0x{actual:02X}, expected 0x{expected:02X}")
            }
            DropReason::TooShort { len } => write!(f, "frame too short ({len} bytes)"),
            DropReason::TooLong { len } => write!(f, "frame too long ({len} bytes)"),
            DropReason::InterCharGap { gap } => write!(f, "gap of {gap} inside a frame"),
        }
    }
}

/// Counters of what the receiver saw, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RxStats {
    /// Frames delivered.
    pub frames: u32,
    /// Drops for a bad CRC.
    pub crc_errors: u32,
    /// Good frames from another unit.
    pub wrong_unit: u32,
    /// Good frames with another function.
    pub wrong_function: u32,
    /// Drops for a short frame.
    pub too_short: u32,
    /// Drops for an overlong frame.
    pub too_long: u32,
    /// Drops for an inter-character gap.
    pub inter_char_gaps: u32,
    /// Bytes skipped before a delivered frame.
    pub garbage_bytes: u32,
}

impl RxStats {
    fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::CrcMismatch => &mut self.crc_errors,
            DropReason::WrongUnit { .. } => &mut self.wrong_unit,
            DropReason::WrongFunction { .. } => &mut self.wrong_function,
            DropReason::TooShort { .. } => &mut self.too_short,
            DropReason::TooLong { .. } => &mut self.too_long,
            DropReason::InterCharGap { .. } => &mut self.inter_char_gaps,
        };
        *counter = counter.saturating_add(1);
    }
}

/// What [`RtuReceiver::poll`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxEvent<'a> {
    /// A frame with a good CRC (and, when a response is expected, the right
    /// unit and function). Valid until the next `feed`/`poll`.
    Frame(RtuFrame<&'a [u8]>),
    /// Bytes were thrown away.
    Dropped(DropReason),
}

/// What the receiver is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Frames end at silence only.
    Silence,
    /// One response: ends at `pdu_len` (or the exception length) with a good CRC.
    Response { unit: u8, function: u8, pdu_len: usize },
    /// Requests, length predicted from their header; silence as a fallback.
    Requests,
}

/// An event waiting to be handed out by `poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    Nothing,
    /// A frame at `buf[start..len]`.
    Frame {
        start: usize,
    },
    Dropped(DropReason),
}

/// Streaming RTU receiver; see the module docs.
///
/// Call order: [`feed`](Self::feed) received bytes (it returns how many it
/// took; it stops early when an event is ready), then [`poll`](Self::poll)
/// until it returns `None`, then feed the rest. Call `poll(now)` also when
/// [`poll_timeout`](Self::poll_timeout) passes, to end frames at silence.
/// Time must not go backwards.
#[derive(Clone, Debug)]
pub struct RtuReceiver {
    buf: [u8; MAX_ADU_LEN],
    len: usize,
    last_byte_at: Option<Instant>,
    timing: RxTiming,
    expect: Expect,
    ready: Ready,
    /// A delivered frame is still in `buf`; cleared at the next call.
    frame_taken: bool,
    /// The rest of an overlong burst is skipped until silence.
    discarding: bool,
    stats: RxStats,
}

impl RtuReceiver {
    /// A receiver with the given silences, ending frames at silence only.
    pub const fn new(timing: RxTiming) -> Self {
        RtuReceiver {
            buf: [0; MAX_ADU_LEN],
            len: 0,
            last_byte_at: None,
            timing,
            expect: Expect::Silence,
            ready: Ready::Nothing,
            frame_taken: false,
            discarding: false,
            stats: RxStats {
                frames: 0,
                crc_errors: 0,
                wrong_unit: 0,
                wrong_function: 0,
                too_short: 0,
                too_long: 0,
                inter_char_gaps: 0,
                garbage_bytes: 0,
            },
        }
    }

    /// A receiver with the spec's t1.5/t3.5 for `line`.
    pub const fn for_line(line: &LineConfig) -> Self {
        Self::new(RxTiming::from_line(line))
    }

    /// Waits for one response from `unit` to `function`, whose normal PDU is
    /// `pdu_len` bytes ([`crate::pdu::Request::expected_response_len`]). The
    /// expectation ends when the frame is delivered. Does not clear bytes
    /// already buffered; call [`reset`](Self::reset) before sending a request.
    pub fn expect_response(&mut self, unit: u8, function: FunctionCode, pdu_len: usize) {
        self.expect = Expect::Response { unit, function: function.value(), pdu_len };
    }

    /// Slave side: end request frames at their predicted length.
    pub fn expect_requests(&mut self) {
        self.expect = Expect::Requests;
    }

    /// End frames at silence only.
    pub fn expect_silence(&mut self) {
        self.expect = Expect::Silence;
    }

    /// Forgets buffered bytes and any pending event (not the statistics, the
    /// expectation or the time of the last byte, which still matters for t3.5).
    pub fn reset(&mut self) {
        self.len = 0;
        self.ready = Ready::Nothing;
        self.frame_taken = false;
        self.discarding = false;
    }

    /// Changes the silences (e.g. widened for a USB adapter).
    pub fn set_timing(&mut self, timing: RxTiming) {
        self.timing = timing;
    }

    /// Takes bytes that arrived at `now`; returns how many were taken. Fewer
    /// than `bytes.len()` means an event is ready: `poll` it, then feed the rest.
    pub fn feed(&mut self, now: Instant, bytes: &[u8]) -> usize {
        self.release_taken_frame();
        let mut taken = 0;
        for &byte in bytes {
            if self.ready != Ready::Nothing {
                break;
            }
            if self.check_gap_before(now) {
                break;
            }
            self.last_byte_at = Some(now);
            taken += 1;
            if self.discarding {
                continue;
            }
            self.push(byte);
            if self.ready == Ready::Nothing {
                self.try_complete();
            }
        }
        taken
    }

    /// Reports the next event; ends a frame if `frame_gap` has passed since
    /// the last byte. `None`: nothing to report now.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Option<RxEvent<'_>> {
        self.release_taken_frame();
        if self.ready == Ready::Nothing && (self.len > 0 || self.discarding) {
            if let Some(last) = self.last_byte_at {
                if now.saturating_since(last) >= self.end_silence() {
                    self.end_of_burst();
                }
            }
        }
        match core::mem::replace(&mut self.ready, Ready::Nothing) {
            Ready::Nothing => None,
            Ready::Dropped(reason) => Some(RxEvent::Dropped(reason)),
            Ready::Frame { start } => {
                self.frame_taken = true;
                let bytes = self.buf.get(start..self.len).unwrap_or_default();
                Some(RxEvent::Frame(RtuFrame::new_unchecked(bytes)))
            }
        }
    }

    /// When `poll` should next be called to end a frame at silence; `None`
    /// when no bytes are waiting for one.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ready != Ready::Nothing {
            return self.last_byte_at.or(Some(Instant::ZERO));
        }
        if self.len > 0 || self.discarding {
            self.last_byte_at.map(|last| last + self.end_silence())
        } else {
            None
        }
    }

    /// Silence after which buffered bytes are ended as a frame (or dropped).
    ///
    /// While a response of known length is awaited, a pause shorter than the
    /// inter-character limit is a USB adapter's burst boundary, not the end of
    /// the frame; the host widens that limit while the frame gap that paces
    /// requests keeps the spec's t3.5.
    fn end_silence(&self) -> Duration {
        match self.expect {
            Expect::Response { .. } => self.timing.frame_gap.max(self.timing.inter_char_timeout),
            _ => self.timing.frame_gap,
        }
    }

    /// Arrival time of the last byte taken.
    pub const fn last_byte_at(&self) -> Option<Instant> {
        self.last_byte_at
    }

    /// The silences in use.
    pub const fn timing(&self) -> RxTiming {
        self.timing
    }

    /// What the receiver has seen so far.
    pub const fn stats(&self) -> &RxStats {
        &self.stats
    }

    /// Bytes of an unfinished frame in the buffer.
    pub const fn buffered(&self) -> usize {
        if self.frame_taken {
            0
        } else {
            self.len
        }
    }

    /// Clears a frame handed out by the previous `poll`.
    fn release_taken_frame(&mut self) {
        if self.frame_taken {
            self.frame_taken = false;
            self.len = 0;
        }
    }

    /// Applies the gap rules before taking a byte at `now`. True when an
    /// event became ready and the byte must wait.
    fn check_gap_before(&mut self, now: Instant) -> bool {
        let Some(last) = self.last_byte_at else {
            return false;
        };
        let gap = now.saturating_since(last);
        if gap >= self.end_silence() && (self.len > 0 || self.discarding) {
            self.end_of_burst();
        } else if gap > self.timing.inter_char_timeout && self.len > 0 {
            // A frame already whole is delivered, not dropped: only an
            // incomplete frame breaks the t1.5 rule.
            if !self.deliver_if_whole() {
                self.drop_burst(DropReason::InterCharGap { gap });
            }
        }
        self.ready != Ready::Nothing
    }

    /// Appends a byte; a full buffer slides when a response is expected
    /// (older bytes were garbage) and otherwise drops the burst.
    fn push(&mut self, byte: u8) {
        if self.len == MAX_ADU_LEN {
            if let Expect::Response { .. } = self.expect {
                self.buf.copy_within(1.., 0);
                self.len -= 1;
                self.stats.garbage_bytes = self.stats.garbage_bytes.saturating_add(1);
            } else {
                self.drop_burst(DropReason::TooLong { len: MAX_ADU_LEN + 1 });
                self.discarding = true;
                return;
            }
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// Fast path: is there a complete frame ending at the last byte?
    fn try_complete(&mut self) {
        match self.expect {
            Expect::Silence => {}
            Expect::Response { unit, function, pdu_len } => {
                let forms = [(adu_len(pdu_len), function), (EXCEPTION_ADU_LEN, function | 0x80)];
                for (needed, function) in forms {
                    let Some(start) = self.len.checked_sub(needed) else { continue };
                    if self.response_at(start, unit, function) {
                        self.deliver(start);
                        return;
                    }
                }
            }
            Expect::Requests => {
                for start in 0..self.len.saturating_sub(MIN_ADU_LEN - 1) {
                    let candidate = self.buf.get(start..self.len).unwrap_or_default();
                    let pdu = candidate.get(1..).unwrap_or_default();
                    if let Ok(Some(pdu_len)) = request_pdu_len(pdu) {
                        if adu_len(pdu_len) == candidate.len() && check_crc_trailer(candidate) {
                            self.deliver(start);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Is `buf[start..len]` a good frame from `unit` with `function`?
    fn response_at(&self, start: usize, unit: u8, function: u8) -> bool {
        let candidate = self.buf.get(start..self.len).unwrap_or_default();
        candidate.get(field::UNIT) == Some(&unit)
            && candidate.get(field::FUNCTION) == Some(&function)
            && check_crc_trailer(candidate)
    }

    /// Delivers the whole buffer if it is a good frame fitting the expectation.
    fn deliver_if_whole(&mut self) -> bool {
        let bytes = self.buf.get(..self.len).unwrap_or_default();
        let fits = match self.expect {
            Expect::Response { unit, function, pdu_len } => {
                (self.len == adu_len(pdu_len) && self.response_at(0, unit, function))
                    || (self.len == EXCEPTION_ADU_LEN && self.response_at(0, unit, function | 0x80))
            }
            Expect::Silence | Expect::Requests => self.len >= MIN_ADU_LEN && check_crc_trailer(bytes),
        };
        if fits {
            self.deliver(0);
        }
        fits
    }

    /// Silence after a burst: classify what the buffer holds.
    fn end_of_burst(&mut self) {
        if self.discarding {
            self.discarding = false;
            self.len = 0;
            return;
        }
        if self.len == 0 || self.deliver_if_whole() {
            return;
        }
        let bytes = self.buf.get(..self.len).unwrap_or_default();
        if self.len < MIN_ADU_LEN {
            return self.drop_burst(DropReason::TooShort { len: self.len });
        }
        if check_crc_trailer(bytes) {
            // A good frame that does not fit the expected response.
            if let Expect::Response { unit, function, pdu_len } = self.expect {
                let (got_unit, got_function) = (self.buf[field::UNIT], self.buf[field::FUNCTION]);
                let reason = if got_unit != unit {
                    DropReason::WrongUnit { expected: unit, actual: got_unit }
                } else if got_function & 0x7F != function {
                    DropReason::WrongFunction { expected: function, actual: got_function }
                } else if self.len < adu_len(pdu_len) {
                    DropReason::TooShort { len: self.len }
                } else {
                    DropReason::TooLong { len: self.len }
                };
                return self.drop_burst(reason);
            }
        }
        // Resynchronise: a good frame may follow noise within the burst.
        // Bounded: at most one CRC per buffered byte.
        for start in 1..=self.len - MIN_ADU_LEN {
            let found = match self.expect {
                Expect::Response { unit, function, .. } => {
                    self.response_at(start, unit, function) || self.response_at(start, unit, function | 0x80)
                }
                Expect::Silence | Expect::Requests => {
                    check_crc_trailer(self.buf.get(start..self.len).unwrap_or_default())
                }
            };
            if found {
                return self.deliver(start);
            }
        }
        // The start of the expected response cut short by silence.
        if let Expect::Response { unit, function, pdu_len } = self.expect {
            if self.len < adu_len(pdu_len)
                && self.buf[field::UNIT] == unit
                && self.buf[field::FUNCTION] == function
            {
                return self.drop_burst(DropReason::TooShort { len: self.len });
            }
        }
        self.drop_burst(DropReason::CrcMismatch);
    }

    /// Marks `buf[start..len]` as a delivered frame.
    fn deliver(&mut self, start: usize) {
        self.stats.frames = self.stats.frames.saturating_add(1);
        let skipped = u32::try_from(start).unwrap_or(u32::MAX);
        self.stats.garbage_bytes = self.stats.garbage_bytes.saturating_add(skipped);
        self.ready = Ready::Frame { start };
        if let Expect::Response { .. } = self.expect {
            self.expect = Expect::Silence;
        }
    }

    /// Throws the buffer away and reports why.
    fn drop_burst(&mut self, reason: DropReason) {
        self.stats.count(reason);
        self.len = 0;
        self.ready = Ready::Dropped(reason);
    }
}

#[cfg(test)]
mod tests;
