//! Modbus ASCII receiving (`AsciiReceiver`) of arbitrary bytes in arbitrary
//! chunks.
//!
//! Checks:
//! - nothing panics, and `feed` + `poll` always make progress;
//! - the receiver is segmentation-independent (chunks give the events of
//!   one big read);
//! - every accepted frame re-emits with `ascii::emit` to exactly the
//!   characters it was received as, modulo the case of the hex digits (the
//!   receiver accepts both, `emit` writes upper case), and its LRC is right;
//! - a frame `ascii::emit` writes is received back unchanged.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::ascii::{self, AsciiError, AsciiReceiver, MAX_ADU_CHARS};
use dmc_core::crc::lrc;
use dmc_core::pdu::RawPdu;
use dmc_fuzz::chunks;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Lengths of the reads the characters arrive in (the rest in one read).
    cuts: Vec<u8>,
    /// The characters (the rest of the input); also, as binary unit + PDU,
    /// a frame to emit and receive back.
    stream: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame { unit: u8, pdu: Vec<u8> },
    Error(AsciiError),
}

fn receive<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut rx = AsciiReceiver::new();
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            let taken = rx.feed(rest);
            rest = &rest[taken..];
            let mut polled = 0;
            while let Some(event) = rx.poll() {
                polled += 1;
                assert!(polled < 3, "poll keeps reporting events");
                events.push(match event {
                    Ok(frame) => Event::Frame { unit: frame.unit, pdu: frame.pdu.to_vec() },
                    Err(e) => Event::Error(e),
                });
            }
            if rest.is_empty() {
                break;
            }
            assert!(taken > 0 || polled > 0, "receiver stalled");
        }
    }
    events
}

/// Emits `unit` + `pdu` as an ASCII frame.
fn emit(unit: u8, pdu: &[u8]) -> Option<Vec<u8>> {
    let mut out = [0u8; MAX_ADU_CHARS + 8];
    let n = ascii::emit(unit, &RawPdu(pdu), &mut out).ok()?;
    Some(out[..n].to_vec())
}

fuzz_target!(|input: Input<'_>| {
    let whole = input.stream;
    let chunked = receive(chunks(&input.cuts, whole).into_iter());
    let at_once = receive(std::iter::once(whole));
    assert_eq!(chunked, at_once, "segmentation changed the received events");

    // Each accepted frame is a `:` ... CR LF run of the input, upper-cased.
    let upper = whole.to_ascii_uppercase();
    let mut search_from = 0;
    for event in &at_once {
        let Event::Frame { unit, pdu } = event else { continue };
        assert!(!pdu.is_empty(), "frame without a function code");
        let chars = emit(*unit, pdu).expect("an accepted frame re-emits");
        assert!(chars.len() <= MAX_ADU_CHARS);
        let found = upper[search_from..]
            .windows(chars.len())
            .position(|w| w == &chars[..])
            .unwrap_or_else(|| panic!("frame {chars:?} does not re-emit to received characters"));
        search_from += found + chars.len();
        let mut body = vec![*unit];
        body.extend_from_slice(pdu);
        // The LRC byte sits before CR LF; re-derive it from the hex.
        let hex = &chars[chars.len() - 4..chars.len() - 2];
        let received = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert_eq!(lrc(&body), received);
    }

    // Emit -> receive round trip.
    let (&unit, pdu) = whole.split_first().unwrap_or((&0, &[]));
    if let Some(chars) = emit(unit, pdu) {
        let events = receive(std::iter::once(&chars[..]));
        if pdu.is_empty() {
            assert!(matches!(events[..], [Event::Error(AsciiError::TooShort { .. })]), "{events:?}");
        } else {
            assert_eq!(events, vec![Event::Frame { unit, pdu: pdu.to_vec() }]);
        }
    }
});
