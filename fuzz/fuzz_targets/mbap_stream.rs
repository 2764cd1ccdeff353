//! Modbus TCP stream decoding (`MbapDecoder`) under arbitrary segmentation,
//! and UDP datagram parsing (`parse_datagram`).
//!
//! Checks:
//! - nothing panics, and `feed` + `poll` always make progress;
//! - the decoder is segmentation-independent: the same bytes cut into
//!   arbitrary chunks give exactly the events of one big read;
//! - every frame it yields is a well-formed ADU (`new_checked`,
//!   `parse_datagram`) and `mbap::emit` of its transaction id, unit and PDU
//!   gives the same bytes back;
//! - a datagram `parse_datagram` accepts re-emits identically and is the
//!   first frame the stream decoder finds in the same bytes.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::mbap::{self, parse_datagram, MbapDecoder, MbapError, MbapFrame, MAX_ADU_LEN};
use dmc_core::pdu::RawPdu;
use dmc_fuzz::chunks;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Lengths of the reads the stream arrives in (the rest in one read).
    cuts: Vec<u8>,
    /// The stream (the rest of the input).
    stream: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(Vec<u8>),
    Error(MbapError),
}

fn check_frame(frame: &MbapFrame<&[u8]>) {
    let bytes = frame.as_bytes();
    assert!(MbapFrame::new_checked(bytes).is_ok(), "decoder yielded a malformed ADU {bytes:02X?}");
    assert_eq!(parse_datagram(bytes).map(MbapFrame::into_inner), Ok(bytes));
    let mut out = [0xA5u8; MAX_ADU_LEN];
    let n = mbap::emit(frame.transaction_id(), frame.unit(), &RawPdu(frame.pdu()), &mut out)
        .expect("a decoded ADU re-emits");
    assert_eq!(&out[..n], bytes);
}

fn decode<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut decoder = MbapDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        let mut rest = chunk;
        loop {
            let taken = decoder.feed(rest);
            rest = &rest[taken..];
            let mut polled = 0;
            while let Some(event) = decoder.poll() {
                polled += 1;
                assert!(polled < 3, "poll keeps reporting events");
                events.push(match event {
                    Ok(frame) => {
                        check_frame(&frame);
                        Event::Frame(frame.as_bytes().to_vec())
                    }
                    Err(e) => Event::Error(e),
                });
            }
            if rest.is_empty() {
                break;
            }
            assert!(taken > 0 || polled > 0, "decoder stalled");
        }
        assert!(decoder.buffered() <= MAX_ADU_LEN);
    }
    events
}

fuzz_target!(|input: Input<'_>| {
    let whole = input.stream;
    let chunked = decode(chunks(&input.cuts, whole).into_iter());
    let at_once = decode(std::iter::once(whole));
    assert_eq!(chunked, at_once, "segmentation changed the decoded events");

    if let Ok(frame) = parse_datagram(whole) {
        check_frame(&frame);
        assert_eq!(at_once.first(), Some(&Event::Frame(whole.to_vec())));
    }
});
