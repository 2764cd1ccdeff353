//! The Modbus master (client) transaction state machine, sans-IO.
//!
//! One transaction at a time over any framing ([`Framing`]: [`RtuFraming`],
//! [`MbapFraming`], [`AsciiFraming`]). The caller owns the port and the clock;
//! [`Master`] owns the bytes and the rules:
//! - matches the answer to the outstanding request (unit, function, MBAP
//!   transaction id, expected length) and validates it ([`Response::parse`]);
//! - keeps device exceptions ([`TransactionError::Exception`]) apart from
//!   protocol failures ([`TransactionError::Pdu`]) and timeouts;
//! - never hands a late answer to a previous request to the next one: the
//!   receiver is cleared when a request starts, RTU bytes that arrive while
//!   our request is still on the wire are discarded, a late RTU answer with
//!   another function or length is dropped by the receiver, and an MBAP answer
//!   must carry the current transaction id (incremented per transaction).
//!   Two RTU answers identical in unit, function and length cannot be told
//!   apart on the wire; the t3.5 and deadline rules are the only guard there.
//! - counts what it threw away ([`Counters`]).

use crate::ascii::{self, AsciiReceiver};
use crate::mbap::{self, MbapDecoder};
use crate::pdu::{FunctionCode, PduError, Request, Response, MAX_PDU_LEN};
use crate::rtu::{self, DropReason, RtuReceiver, RxEvent, RxTiming};
use crate::time::{Duration, Instant};
use crate::timing::LineConfig;
use core::fmt;

/// Room for the longest ADU of any framing (ASCII: 513 characters).
pub const TX_BUF_LEN: usize = ascii::MAX_ADU_CHARS;

/// Why a framing threw bytes away, in categories common to all framings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropKind {
    /// CRC or LRC mismatch.
    Checksum,
    /// A good frame from another unit.
    WrongUnit,
    /// A good frame with another function.
    WrongFunction,
    /// A frame shorter or longer than allowed or expected.
    Length,
    /// An inter-character gap inside a frame.
    Timing,
    /// Anything else malformed (bad hex, bad MBAP header).
    Malformed,
}

/// What a framing hands to the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A frame that passed the framing's own checks.
    Frame {
        /// Unit address.
        unit: u8,
        /// MBAP transaction id; `None` on serial framings.
        transaction_id: Option<u16>,
        /// The PDU.
        pdu: &'a [u8],
    },
    /// Bytes thrown away.
    Dropped(DropKind),
}

/// An ADU framing as the master needs it: encode a request, receive answers.
pub trait Framing {
    /// Writes the ADU for `request` into `buf`; returns its length.
    fn encode_request(
        &mut self,
        unit: u8,
        transaction_id: u16,
        request: &Request<'_>,
        buf: &mut [u8],
    ) -> Result<usize, PduError>;
    /// Forgets buffered input and prepares for the answer to a request.
    fn expect_response(&mut self, unit: u8, function: FunctionCode, pdu_len: usize);
    /// Takes received bytes; returns how many (fewer: an event is ready).
    fn feed(&mut self, now: Instant, bytes: &[u8]) -> usize;
    /// The next frame or drop, if any.
    fn poll_frame(&mut self, now: Instant) -> Option<FrameEvent<'_>>;
    /// When `poll_frame` should next be called (silence timers).
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time `len` bytes take on the wire (zero on TCP/UDP).
    fn wire_time(&self, len: usize) -> Duration;
    /// Earliest moment the next request may start, given when ours ended.
    fn earliest_send(&self, last_tx_end: Option<Instant>) -> Instant;
    /// Forgets everything buffered.
    fn reset(&mut self);
    /// True on serial lines, where unit 0 is a broadcast nobody answers.
    fn has_broadcast(&self) -> bool;
}

/// Modbus RTU on a serial line.
#[derive(Clone, Debug)]
pub struct RtuFraming {
    /// The receiver (its statistics are public through it).
    pub rx: RtuReceiver,
    line: LineConfig,
}

impl RtuFraming {
    /// RTU on `line` with the spec's t1.5/t3.5.
    pub const fn new(line: LineConfig) -> Self {
        RtuFraming { rx: RtuReceiver::for_line(&line), line }
    }

    /// RTU on `line` with receive silences chosen by the host (USB adapters).
    pub const fn with_timing(line: LineConfig, timing: RxTiming) -> Self {
        RtuFraming { rx: RtuReceiver::new(timing), line }
    }
}

impl Framing for RtuFraming {
    fn encode_request(
        &mut self,
        unit: u8,
        _transaction_id: u16,
        request: &Request<'_>,
        buf: &mut [u8],
    ) -> Result<usize, PduError> {
        rtu::emit(unit, request, buf)
    }

    fn expect_response(&mut self, unit: u8, function: FunctionCode, pdu_len: usize) {
        self.rx.reset();
        self.rx.expect_response(unit, function, pdu_len);
    }

    fn feed(&mut self, now: Instant, bytes: &[u8]) -> usize {
        self.rx.feed(now, bytes)
    }

    fn poll_frame(&mut self, now: Instant) -> Option<FrameEvent<'_>> {
        Some(match self.rx.poll(now)? {
            RxEvent::Frame(frame) => {
                FrameEvent::Frame { unit: frame.unit(), transaction_id: None, pdu: frame.into_pdu() }
            }
            RxEvent::Dropped(reason) => FrameEvent::Dropped(match reason {
                DropReason::CrcMismatch => DropKind::Checksum,
                DropReason::WrongUnit { .. } => DropKind::WrongUnit,
                DropReason::WrongFunction { .. } => DropKind::WrongFunction,
                DropReason::TooShort { .. } | DropReason::TooLong { .. } => DropKind::Length,
                DropReason::InterCharGap { .. } => DropKind::Timing,
            }),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.rx.poll_timeout()
    }

    fn wire_time(&self, len: usize) -> Duration {
        self.line.wire_time(len)
    }

    fn earliest_send(&self, last_tx_end: Option<Instant>) -> Instant {
        rtu::earliest_send(self.rx.timing().frame_gap, last_tx_end, self.rx.last_byte_at())
    }

    fn reset(&mut self) {
        self.rx.reset();
    }

    fn has_broadcast(&self) -> bool {
        true
    }
}

/// Modbus TCP (MBAP over a byte stream).
#[derive(Clone, Debug, Default)]
pub struct MbapFraming {
    /// The stream decoder.
    pub decoder: MbapDecoder,
}

impl MbapFraming {
    /// A fresh TCP framing.
    pub const fn new() -> Self {
        MbapFraming { decoder: MbapDecoder::new() }
    }
}

impl Framing for MbapFraming {
    fn encode_request(
        &mut self,
        unit: u8,
        transaction_id: u16,
        request: &Request<'_>,
        buf: &mut [u8],
    ) -> Result<usize, PduError> {
        mbap::emit(transaction_id, unit, request, buf)
    }

    fn expect_response(&mut self, _unit: u8, _function: FunctionCode, _pdu_len: usize) {
        // TCP keeps its framing across transactions: a half-received ADU
        // still has to be consumed, so nothing is cleared here.
    }

    fn feed(&mut self, _now: Instant, bytes: &[u8]) -> usize {
        self.decoder.feed(bytes)
    }

    fn poll_frame(&mut self, _now: Instant) -> Option<FrameEvent<'_>> {
        Some(match self.decoder.poll()? {
            Ok(frame) => {
                let unit = frame.unit();
                let transaction_id = Some(frame.transaction_id());
                FrameEvent::Frame { unit, transaction_id, pdu: frame.into_pdu() }
            }
            Err(_) => FrameEvent::Dropped(DropKind::Malformed),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn wire_time(&self, _len: usize) -> Duration {
        Duration::ZERO
    }

    fn earliest_send(&self, _last_tx_end: Option<Instant>) -> Instant {
        Instant::ZERO
    }

    fn reset(&mut self) {
        self.decoder.reset();
    }

    fn has_broadcast(&self) -> bool {
        false
    }
}

/// Modbus ASCII on a serial line.
#[derive(Clone, Debug, Default)]
pub struct AsciiFraming {
    /// The receiver.
    pub rx: AsciiReceiver,
    line: Option<LineConfig>,
}

impl AsciiFraming {
    /// ASCII framing; `line` (if known) gives wire times.
    pub const fn new(line: Option<LineConfig>) -> Self {
        AsciiFraming { rx: AsciiReceiver::new(), line }
    }
}

impl Framing for AsciiFraming {
    fn encode_request(
        &mut self,
        unit: u8,
        _transaction_id: u16,
        request: &Request<'_>,
        buf: &mut [u8],
    ) -> Result<usize, PduError> {
        ascii::emit(unit, request, buf)
    }

    fn expect_response(&mut self, _unit: u8, _function: FunctionCode, _pdu_len: usize) {
        self.rx.reset();
    }

    fn feed(&mut self, _now: Instant, bytes: &[u8]) -> usize {
        self.rx.feed(bytes)
    }

    fn poll_frame(&mut self, _now: Instant) -> Option<FrameEvent<'_>> {
        Some(match self.rx.poll()? {
            Ok(frame) => FrameEvent::Frame { unit: frame.unit, transaction_id: None, pdu: frame.pdu },
            Err(ascii::AsciiError::LrcMismatch { .. }) => FrameEvent::Dropped(DropKind::Checksum),
            Err(ascii::AsciiError::TooShort { .. } | ascii::AsciiError::TooLong) => {
                FrameEvent::Dropped(DropKind::Length)
            }
            Err(_) => FrameEvent::Dropped(DropKind::Malformed),
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn wire_time(&self, len: usize) -> Duration {
        self.line.map_or(Duration::ZERO, |line| line.wire_time(len))
    }

    fn earliest_send(&self, last_tx_end: Option<Instant>) -> Instant {
        last_tx_end.unwrap_or(Instant::ZERO)
    }

    fn reset(&mut self) {
        self.rx.reset();
    }

    fn has_broadcast(&self) -> bool {
        true
    }
}

/// Why `start` refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StartError {
    /// A transaction is in progress; finish or `cancel` it first.
    Busy,
    /// The request is invalid or does not fit the framing.
    Encode(PduError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Busy => f.write_str("a transaction is already in progress"),
            StartError::Encode(e) => write!(f, "cannot encode request: {e}"),
        }
    }
}

impl core::error::Error for StartError {}

/// How a transaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TransactionError {
    /// No valid answer before the deadline.
    Timeout,
    /// The device answered with an exception.
    Exception(crate::pdu::ExceptionCode),
    /// The device's answer matched the request's unit and function but is malformed.
    Pdu(PduError),
    /// `poll` was called with no transaction started.
    Idle,
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::Timeout => f.write_str("no response before the deadline"),
            TransactionError::Exception(code) => write!(f, "device exception: {code}"),
            TransactionError::Pdu(e) => write!(f, "bad response: {e}"),
            TransactionError::Idle => f.write_str("no transaction in progress"),
        }
    }
}

impl core::error::Error for TransactionError {}

/// What the master has counted since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    /// Transactions started.
    pub started: u32,
    /// Transactions answered with a valid response.
    pub completed: u32,
    /// Transactions that timed out.
    pub timeouts: u32,
    /// Exception responses.
    pub exceptions: u32,
    /// Answers that failed validation.
    pub protocol_errors: u32,
    /// CRC/LRC drops.
    pub checksum_errors: u32,
    /// Frames from another unit.
    pub wrong_unit: u32,
    /// Frames with another function.
    pub wrong_function: u32,
    /// MBAP frames with another transaction id (late answers).
    pub wrong_transaction: u32,
    /// Frames of a wrong length.
    pub length_errors: u32,
    /// Inter-character gap drops.
    pub timing_errors: u32,
    /// Other malformed input.
    pub malformed: u32,
    /// Frames arriving with no transaction waiting.
    pub unexpected_frames: u32,
    /// Bytes discarded because they arrived while our request was on the wire.
    pub stale_bytes: u32,
}

fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

/// Transaction state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// Request encoded, maybe sent, answer awaited.
    Waiting {
        unit: u8,
        deadline: Instant,
    },
    /// Finished; `poll` reports the outcome once.
    Done(Result<(), TransactionError>),
    /// Outcome reported; a successful response stays readable.
    Reported(Result<(), TransactionError>),
}

/// The master transaction state machine; see the module docs.
///
/// Call order for one transaction (time passed in must be monotonic):
/// 1. [`start`](Self::start) with the request and an absolute deadline;
/// 2. [`poll_transmit`](Self::poll_transmit) until it yields the ADU, and
///    write it to the port (it waits for the RTU t3.5 line silence);
/// 3. feed every read with [`handle_rx`](Self::handle_rx);
/// 4. [`poll`](Self::poll): `WouldBlock` means still waiting; sleep until
///    [`poll_timeout`](Self::poll_timeout) or the next read, then repeat 2–4;
/// 5. on `Ok(())` read [`response`](Self::response).
///
/// Spurious `poll` calls are harmless. [`cancel`](Self::cancel) abandons a
/// transaction.
#[derive(Clone, Debug)]
pub struct Master<F: Framing> {
    framing: F,
    state: State,
    transaction_id: u16,
    tx: [u8; TX_BUF_LEN],
    tx_len: usize,
    tx_pending: bool,
    last_tx_end: Option<Instant>,
    /// RTU bytes arriving before this belong to an earlier exchange.
    rx_not_before: Instant,
    request_pdu: [u8; MAX_PDU_LEN],
    request_len: usize,
    response_pdu: [u8; MAX_PDU_LEN],
    response_len: usize,
    counters: Counters,
}

impl<F: Framing> Master<F> {
    /// A master over `framing`.
    pub const fn new(framing: F) -> Self {
        Master {
            framing,
            state: State::Idle,
            transaction_id: 0,
            tx: [0; TX_BUF_LEN],
            tx_len: 0,
            tx_pending: false,
            last_tx_end: None,
            rx_not_before: Instant::ZERO,
            request_pdu: [0; MAX_PDU_LEN],
            request_len: 0,
            response_pdu: [0; MAX_PDU_LEN],
            response_len: 0,
            counters: Counters {
                started: 0,
                completed: 0,
                timeouts: 0,
                exceptions: 0,
                protocol_errors: 0,
                checksum_errors: 0,
                wrong_unit: 0,
                wrong_function: 0,
                wrong_transaction: 0,
                length_errors: 0,
                timing_errors: 0,
                malformed: 0,
                unexpected_frames: 0,
                stale_bytes: 0,
            },
        }
    }

    /// Starts a transaction: encodes `request` for `unit` and arms the
    /// deadline. Unit 0 on a serial line is a broadcast and completes once
    /// transmitted. The request is validated here.
    pub fn start(
        &mut self,
        now: Instant,
        unit: u8,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<(), StartError> {
        if let State::Waiting { .. } | State::Done(_) = self.state {
            return Err(StartError::Busy);
        }
        let _ = now;
        let request_len = request.emit(&mut self.request_pdu).map_err(StartError::Encode)?;
        let transaction_id = self.transaction_id.wrapping_add(1);
        let tx_len = self
            .framing
            .encode_request(unit, transaction_id, request, &mut self.tx)
            .map_err(StartError::Encode)?;
        self.transaction_id = transaction_id;
        self.request_len = request_len;
        self.tx_len = tx_len;
        self.tx_pending = true;
        self.response_len = 0;
        self.framing.expect_response(unit, request.function(), request.expected_response_len());
        self.state = State::Waiting { unit, deadline };
        bump(&mut self.counters.started);
        Ok(())
    }

    /// The request ADU to write now, once the line allows it (t3.5 after the
    /// last byte on an RTU line); `None` if nothing is due. Marks it sent.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        if !self.tx_pending || now < self.framing.earliest_send(self.last_tx_end) {
            return None;
        }
        self.tx_pending = false;
        let tx_end = now + self.framing.wire_time(self.tx_len);
        self.last_tx_end = Some(tx_end);
        self.rx_not_before = tx_end;
        if let State::Waiting { unit: rtu::BROADCAST_UNIT, .. } = self.state {
            if self.framing.has_broadcast() {
                self.state = State::Done(Ok(()));
            }
        }
        self.tx.get(..self.tx_len)
    }

    /// Feeds bytes read from the port at `now`.
    pub fn handle_rx(&mut self, now: Instant, bytes: &[u8]) {
        if now < self.rx_not_before {
            // Still sending our request: these answer something older.
            let stale = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            self.counters.stale_bytes = self.counters.stale_bytes.saturating_add(stale);
            return;
        }
        let mut rest = bytes;
        // Each round takes at least one byte or reports one event, so this ends.
        for _ in 0..=2 * bytes.len() {
            let taken = self.framing.feed(now, rest);
            rest = rest.get(taken..).unwrap_or_default();
            let had_event = self.poll_framing(now);
            if !had_event && rest.is_empty() {
                break;
            }
        }
    }

    /// The outcome: `WouldBlock` while waiting, `Ok(())` once a valid response
    /// is in (read it with [`response`](Self::response)), or the error.
    /// Reports each outcome once; afterwards returns `Idle`. (`nb::Result`
    /// is already `#[must_use]`.)
    pub fn poll(&mut self, now: Instant) -> nb::Result<(), TransactionError> {
        // Silence timers may complete or drop a frame.
        while self.poll_framing(now) {}
        if let State::Waiting { deadline, .. } = self.state {
            if now >= deadline {
                bump(&mut self.counters.timeouts);
                self.state = State::Done(Err(TransactionError::Timeout));
            }
        }
        match self.state {
            State::Waiting { .. } => Err(nb::Error::WouldBlock),
            State::Done(outcome) => {
                self.state = State::Reported(outcome);
                outcome.map_err(nb::Error::Other)
            }
            State::Idle | State::Reported(_) => Err(nb::Error::Other(TransactionError::Idle)),
        }
    }

    /// The next moment `poll` (or `poll_transmit`) has something to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| if t < n { t } else { n }));
            }
        };
        if self.tx_pending {
            consider(Some(self.framing.earliest_send(self.last_tx_end)));
        }
        if let State::Waiting { deadline, .. } = self.state {
            consider(Some(deadline));
            consider(self.framing.poll_timeout());
        }
        if let State::Done(_) = self.state {
            consider(Some(Instant::ZERO));
        }
        next
    }

    /// Abandons the current transaction and clears buffered input. A late
    /// answer will still be rejected by the next transaction.
    pub fn cancel(&mut self) {
        self.state = State::Idle;
        self.tx_pending = false;
        self.response_len = 0;
        self.framing.reset();
    }

    /// The validated response of the last successful transaction.
    pub fn response(&self) -> Option<Response<'_>> {
        if self.state != State::Reported(Ok(())) && self.state != State::Done(Ok(())) {
            return None;
        }
        let request = Request::parse(self.request_pdu.get(..self.request_len)?).ok()?;
        let pdu = self.response_pdu.get(..self.response_len)?;
        Response::parse(&request, pdu).ok()?.ok()
    }

    /// The raw PDU of the last successful response.
    pub fn response_pdu(&self) -> &[u8] {
        self.response_pdu.get(..self.response_len).unwrap_or_default()
    }

    /// The request ADU of the current transaction (also after sending).
    pub fn transmit(&self) -> &[u8] {
        self.tx.get(..self.tx_len).unwrap_or_default()
    }

    /// True between `start` and the reported outcome.
    pub const fn is_busy(&self) -> bool {
        matches!(self.state, State::Waiting { .. } | State::Done(_))
    }

    /// MBAP transaction id of the current (or last) transaction.
    pub const fn transaction_id(&self) -> u16 {
        self.transaction_id
    }

    /// What was counted so far.
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The framing (receiver statistics).
    pub const fn framing(&self) -> &F {
        &self.framing
    }

    /// The framing, mutable (e.g. to widen RTU silences).
    pub fn framing_mut(&mut self) -> &mut F {
        &mut self.framing
    }

    /// Handles one framing event; true if there was one.
    fn poll_framing(&mut self, now: Instant) -> bool {
        let Some(event) = self.framing.poll_frame(now) else {
            return false;
        };
        let (unit, transaction_id, pdu) = match event {
            FrameEvent::Dropped(kind) => {
                let counter = match kind {
                    DropKind::Checksum => &mut self.counters.checksum_errors,
                    DropKind::WrongUnit => &mut self.counters.wrong_unit,
                    DropKind::WrongFunction => &mut self.counters.wrong_function,
                    DropKind::Length => &mut self.counters.length_errors,
                    DropKind::Timing => &mut self.counters.timing_errors,
                    DropKind::Malformed => &mut self.counters.malformed,
                };
                bump(counter);
                return true;
            }
            FrameEvent::Frame { unit, transaction_id, pdu } => (unit, transaction_id, pdu),
        };
        let State::Waiting { unit: expected_unit, .. } = self.state else {
            bump(&mut self.counters.unexpected_frames);
            return true;
        };
        if transaction_id.is_some_and(|id| id != self.transaction_id) {
            bump(&mut self.counters.wrong_transaction);
            return true;
        }
        if unit != expected_unit {
            bump(&mut self.counters.wrong_unit);
            return true;
        }
        let Some(request) = self.request_pdu.get(..self.request_len).and_then(|b| Request::parse(b).ok())
        else {
            return true;
        };
        let outcome = match Response::parse(&request, pdu) {
            Ok(Ok(_)) => {
                let len = pdu.len().min(MAX_PDU_LEN);
                if let (Some(dst), Some(src)) = (self.response_pdu.get_mut(..len), pdu.get(..len)) {
                    dst.copy_from_slice(src);
                }
                self.response_len = len;
                bump(&mut self.counters.completed);
                Ok(())
            }
            Ok(Err(code)) => {
                bump(&mut self.counters.exceptions);
                Err(TransactionError::Exception(code))
            }
            Err(PduError::FunctionMismatch { .. }) if transaction_id.is_none() => {
                // Serial framings filter functions already; on ASCII a stray
                // frame from the right unit is not our answer.
                bump(&mut self.counters.wrong_function);
                return true;
            }
            Err(e) => {
                bump(&mut self.counters.protocol_errors);
                Err(TransactionError::Pdu(e))
            }
        };
        self.state = State::Done(outcome);
        true
    }
}

#[cfg(test)]
mod tests;
