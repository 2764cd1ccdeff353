//! RTU receiver and RTU master under an arbitrary script of byte chunks,
//! time gaps, polls and new expectations.
//!
//! Checks, for `RtuReceiver` in each mode (response expected, requests,
//! silence only) and for a `Master<RtuFraming>` running transactions:
//! - nothing panics, `feed` + `poll` always make progress, and a final
//!   silence leaves nothing buffered;
//! - every frame delivered is 4..=256 bytes; while a response is expected
//!   the delivered frame has the expected unit and the function (or its
//!   exception form); when its PDU parses (as that response, or as a
//!   request on the slave side) `rtu::emit` of the parsed value gives the
//!   frame back byte for byte. The CRC check is bypassed in fuzzing builds
//!   (`crc::check_crc_trailer`), so the CRC bytes are compared only in
//!   ordinary builds;
//! - the master transmits exactly `rtu::emit` of its request, never reports
//!   `WouldBlock` at or after the deadline, and a success always comes with a
//!   response of the request's function that re-emits to `response_pdu()`.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::master::{Master, RtuFraming, StartError};
use dmc_core::pdu::{ExceptionResponse, Request, MAX_PDU_LEN};
use dmc_core::rtu::{self, RtuFrame, RtuReceiver, RxEvent, RxTiming, MAX_ADU_LEN, MIN_ADU_LEN};
use dmc_core::time::{Duration, Instant};
use dmc_core::timing::LineConfig;
use dmc_fuzz::{check_request_round_trip, check_response_round_trip, ArbRequest};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Step {
    /// Time passes (in units of 10 µs, up to ~655 ms).
    Wait(u16),
    /// The next `n` bytes of `Script::wire` arrive now (0: all the rest).
    Bytes(u8),
    /// `poll` without new bytes (silence timers).
    Poll,
    /// Receiver: expect this response. Master: start this transaction.
    Expect { unit: u8, request: ArbRequest, deadline_ms: u16 },
    /// Receiver: `reset`. Master: `cancel`.
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Script<'a> {
    /// t1.5 in µs.
    inter_char_us: u16,
    /// t3.5 in µs.
    frame_gap_us: u16,
    /// Baud rate index for the master's wire times.
    baud: u8,
    steps: Vec<Step>,
    /// The bytes on the line, handed out by `Step::Bytes` in order.
    wire: &'a [u8],
}

const BAUDS: [u32; 6] = [1200, 4800, 9600, 19200, 38400, 115_200];
/// More events than one feed could ever cause: a stall guard.
const MAX_EVENTS: usize = 4 * MAX_ADU_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Response,
    Requests,
    Silence,
}

/// What the receiver is currently waiting for, as the harness sees it.
enum Expecting<'a> {
    Nothing,
    Requests,
    Response { unit: u8, request: Request<'a> },
}

fn check_frame(frame: &RtuFrame<&[u8]>, expecting: &mut Expecting<'_>) {
    let bytes = frame.as_bytes();
    assert!((MIN_ADU_LEN..=MAX_ADU_LEN).contains(&bytes.len()), "frame of {} bytes", bytes.len());
    if !cfg!(fuzzing) {
        assert!(frame.check_crc().is_ok(), "delivered a frame with a bad CRC: {bytes:02X?}");
    }
    let unit = frame.unit();
    let pdu = frame.pdu();
    let mut out = [0xA5u8; MAX_ADU_LEN];
    let compared = if cfg!(fuzzing) { bytes.len() - 2 } else { bytes.len() };
    match *expecting {
        Expecting::Response { unit: want_unit, request } => {
            let function = request.function().value();
            assert_eq!(unit, want_unit, "response from the wrong unit delivered");
            assert!(
                frame.function() == function || frame.function() == function | 0x80,
                "function {:02X} delivered while {function:02X} was expected",
                frame.function()
            );
            match check_response_round_trip(&request, pdu) {
                Some(Ok(())) => {
                    let response = dmc_core::pdu::Response::parse(&request, pdu).unwrap().unwrap();
                    let n =
                        rtu::emit(unit, &response, &mut out).expect("an accepted response re-emits as RTU");
                    assert_eq!(&out[..compared], &bytes[..compared]);
                    assert_eq!(n, bytes.len());
                }
                Some(Err(code)) => {
                    let exception = ExceptionResponse { function: request.function(), code };
                    let n = rtu::emit(unit, &exception, &mut out).expect("an exception re-emits as RTU");
                    assert_eq!(&out[..compared], &bytes[..compared]);
                    assert_eq!(n, bytes.len());
                }
                None => {}
            }
            // Delivering the response ends the expectation.
            *expecting = Expecting::Nothing;
        }
        Expecting::Requests => {
            check_request_round_trip(pdu);
            if let Ok(request) = Request::parse(pdu) {
                let n = rtu::emit(unit, &request, &mut out).expect("a parsed request re-emits as RTU");
                assert_eq!(&out[..compared], &bytes[..compared]);
                assert_eq!(n, bytes.len());
            }
        }
        Expecting::Nothing => {}
    }
}

/// Polls until the receiver has nothing more to say.
fn drain(rx: &mut RtuReceiver, now: Instant, expecting: &mut Expecting<'_>) -> usize {
    let mut events = 0;
    while let Some(event) = rx.poll(now) {
        if let RxEvent::Frame(frame) = event {
            check_frame(&frame, expecting);
        }
        events += 1;
        assert!(events < MAX_EVENTS, "poll keeps reporting events");
    }
    events
}

fn run_receiver(script: &Script<'_>, timing: RxTiming, mode: Mode) {
    let mut rx = RtuReceiver::new(timing);
    let mut expecting = Expecting::Nothing;
    match mode {
        Mode::Requests => {
            rx.expect_requests();
            expecting = Expecting::Requests;
        }
        Mode::Silence | Mode::Response => rx.expect_silence(),
    }
    let mut now = Instant::ZERO;
    let mut wire = script.wire;
    for step in &script.steps {
        match step {
            Step::Wait(t) => now += Duration::from_micros(u64::from(*t) * 10),
            Step::Bytes(n) => {
                let bytes = take(&mut wire, *n);
                let mut rest = bytes;
                let mut rounds = 0;
                while !rest.is_empty() {
                    let taken = rx.feed(now, rest);
                    rest = &rest[taken..];
                    let events = drain(&mut rx, now, &mut expecting);
                    assert!(taken > 0 || events > 0, "feed took nothing and nothing was ready");
                    rounds += 1;
                    assert!(rounds <= 2 * bytes.len() + 2, "feed loop does not end");
                }
                assert!(rx.buffered() <= MAX_ADU_LEN);
            }
            Step::Poll => {
                drain(&mut rx, now, &mut expecting);
            }
            Step::Expect { unit, request, .. } if mode == Mode::Response => {
                let request = request.request();
                rx.reset();
                rx.expect_response(*unit, request.function(), request.expected_response_len());
                expecting = Expecting::Response { unit: *unit, request };
            }
            Step::Expect { .. } => {}
            Step::Reset => rx.reset(),
        }
    }
    // A long silence ends whatever is buffered.
    now += Duration::from_secs(10);
    drain(&mut rx, now, &mut expecting);
    assert_eq!(rx.buffered(), 0, "bytes left after a long silence");
    assert_eq!(rx.poll_timeout(), None);
}

fn run_master(script: &Script<'_>, timing: RxTiming) {
    let line = LineConfig::new_8n1(BAUDS[usize::from(script.baud) % BAUDS.len()]);
    let mut master = Master::new(RtuFraming::with_timing(line, timing));
    let mut now = Instant::ZERO;
    // The current transaction: request and deadline.
    let mut current: Option<(u8, Request<'_>, Instant)> = None;
    let mut outcomes = 0u32;
    let mut wire = script.wire;
    for step in &script.steps {
        match step {
            Step::Wait(t) => now += Duration::from_micros(u64::from(*t) * 10),
            Step::Bytes(n) => master.handle_rx(now, take(&mut wire, *n)),
            Step::Poll => {}
            Step::Expect { unit, request, deadline_ms } => {
                let request = request.request();
                let deadline = now + Duration::from_millis(u64::from(*deadline_ms));
                match master.start(now, *unit, &request, deadline) {
                    Ok(()) => {
                        current = Some((*unit, request, deadline));
                        let mut want = [0u8; MAX_PDU_LEN + 3];
                        let n = rtu::emit(*unit, &request, &mut want).unwrap();
                        assert_eq!(master.transmit(), &want[..n]);
                    }
                    Err(StartError::Busy) => assert!(master.is_busy()),
                    Err(StartError::Encode(e)) => panic!("valid request {request:?} refused: {e}"),
                }
            }
            Step::Reset => {
                master.cancel();
                current = None;
            }
        }
        if let Some(sent) = master.poll_transmit(now) {
            assert!(!sent.is_empty());
        }
        match master.poll(now) {
            Err(nb::Error::WouldBlock) => {
                let (_, _, deadline) = current.expect("waiting without a transaction");
                assert!(now < deadline, "still waiting at or after the deadline");
            }
            Ok(()) => {
                outcomes += 1;
                let (unit, request, _) = current.take().expect("success without a transaction");
                let Some(response) = master.response() else {
                    // A broadcast completes once sent, with nothing to read.
                    assert_eq!(unit, rtu::BROADCAST_UNIT, "success without a readable response");
                    continue;
                };
                assert_eq!(response.function(), request.function());
                let mut buf = [0u8; MAX_PDU_LEN];
                let n = response.emit(&mut buf).expect("the stored response re-emits");
                assert_eq!(&buf[..n], master.response_pdu());
            }
            Err(nb::Error::Other(dmc_core::master::TransactionError::Idle)) => {
                assert!(!master.is_busy());
            }
            Err(nb::Error::Other(_)) => {
                outcomes += 1;
                current = None;
                assert!(master.response().is_none());
            }
        }
        assert!(outcomes <= master.counters().started);
    }
}

/// Splits the next `n` bytes (0: all) off the front of `wire`.
fn take<'a>(wire: &mut &'a [u8], n: u8) -> &'a [u8] {
    let n = if n == 0 { wire.len() } else { usize::from(n).min(wire.len()) };
    let (now, rest) = wire.split_at(n);
    *wire = rest;
    now
}

fuzz_target!(|script: Script<'_>| {
    let timing = RxTiming {
        inter_char_timeout: Duration::from_micros(u64::from(script.inter_char_us)),
        frame_gap: Duration::from_micros(u64::from(script.frame_gap_us)),
    };
    for mode in [Mode::Response, Mode::Requests, Mode::Silence] {
        run_receiver(&script, timing, mode);
    }
    run_master(&script, timing);
});
