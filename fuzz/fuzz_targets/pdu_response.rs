//! PDU parsers: arbitrary bytes as a request and as the answer to an
//! arbitrary valid request of every kind.
//!
//! Checks:
//! - nothing panics;
//! - `Request::parse` accepts only valid requests, and emitting one gives the
//!   same bytes back (and parses again to the same value); `request_pdu_len`
//!   predicts the length of every accepted request;
//! - `Response::parse(request, bytes)` accepts only answers of the request's
//!   function, and emitting an accepted response (or exception) gives the
//!   same bytes back; `response_pdu_len` and `expected_response_len` predict
//!   the length of every accepted answer;
//! - a valid request always emits, with `buffer_len` bytes, and parses back.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::pdu::{request_pdu_len, response_pdu_len, ExceptionResponse, Request};
use dmc_fuzz::{check_request_round_trip, check_response_round_trip, emit_request, ArbRequest};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    request: ArbRequest,
    /// Candidate answer, and also a candidate request PDU (the rest of the input).
    pdu: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let pdu = input.pdu;

    // The bytes as a request (slave side).
    check_request_round_trip(pdu);
    if Request::parse(pdu).is_ok() {
        assert_eq!(request_pdu_len(pdu), Ok(Some(pdu.len())));
    }
    let _ = ExceptionResponse::parse(pdu);

    // A valid request round-trips.
    let request = input.request.request();
    let (buf, n) = emit_request(&request);
    assert_eq!(n, request.buffer_len());
    assert_eq!(Request::parse(&buf[..n]), Ok(request));
    assert_eq!(request_pdu_len(&buf[..n]), Ok(Some(n)));

    // The bytes as its answer (master side).
    match check_response_round_trip(&request, pdu) {
        Some(Ok(())) => {
            assert_eq!(pdu.len(), request.expected_response_len());
            assert_eq!(response_pdu_len(pdu), Ok(Some(pdu.len())));
        }
        Some(Err(_)) => {
            assert_eq!(pdu.len(), ExceptionResponse::LEN);
            assert_eq!(response_pdu_len(pdu), Ok(Some(ExceptionResponse::LEN)));
        }
        None => {}
    }
    // And as the answer to the request the bytes themselves encode, if any:
    // a device echoing a write request back is its normal answer.
    if let Ok(own) = Request::parse(pdu) {
        if matches!(own, Request::WriteSingleCoil { .. } | Request::WriteSingleRegister { .. }) {
            assert_eq!(check_response_round_trip(&own, pdu), Some(Ok(())), "FC05/06 echo refused");
        } else {
            let _ = check_response_round_trip(&own, pdu);
        }
    }
});
