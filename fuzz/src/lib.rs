//! Shared pieces of the `dmc-core` fuzz targets: structured inputs that
//! always build *valid* values (so the fuzzer spends its time past the
//! validation it would otherwise keep hitting) and small checking helpers.
//!
//! The targets live in `fuzz_targets/`, one per parser or state machine; see
//! `run.sh` for how they are run.

use arbitrary::Arbitrary;
use dmc_core::pdu::{
    Bits, ExceptionCode, ExceptionResponse, Request, Response, Words, MAX_PDU_LEN, MAX_READ_BITS,
    MAX_READ_REGISTERS, MAX_RW_WRITE_REGISTERS, MAX_WRITE_COILS, MAX_WRITE_REGISTERS,
};

/// An arbitrary request, clamped into validity by [`ArbRequest::request`]
/// (quantities in range, `address + quantity` inside the address space).
/// The payload vectors are owned here; the [`Request`] borrows them.
#[derive(Arbitrary, Clone, Debug)]
pub enum ArbRequest {
    /// FC01.
    ReadCoils { address: u16, quantity: u16 },
    /// FC02.
    ReadDiscreteInputs { address: u16, quantity: u16 },
    /// FC03.
    ReadHoldingRegisters { address: u16, quantity: u16 },
    /// FC04.
    ReadInputRegisters { address: u16, quantity: u16 },
    /// FC05.
    WriteSingleCoil { address: u16, value: bool },
    /// FC06.
    WriteSingleRegister { address: u16, value: u16 },
    /// FC15.
    WriteMultipleCoils { address: u16, values: Vec<bool> },
    /// FC16.
    WriteMultipleRegisters { address: u16, values: Vec<u16> },
    /// FC23.
    ReadWriteMultipleRegisters { read_address: u16, read_quantity: u16, write_address: u16, values: Vec<u16> },
}

/// `1..=max` from any u16.
fn quantity(raw: u16, max: u16) -> u16 {
    raw % max + 1
}

/// The highest address at which `quantity` items still fit below 0x10000.
fn address(raw: u16, quantity: usize) -> u16 {
    let last = 0x1_0000usize.saturating_sub(quantity);
    u16::try_from(usize::from(raw).min(last)).unwrap_or(u16::MAX)
}

/// `1..=max` leading elements of `values`, or `fallback` when it is empty.
fn leading<'a, T>(values: &'a [T], max: u16, fallback: &'a [T]) -> &'a [T] {
    let n = values.len().min(usize::from(max));
    if n == 0 {
        fallback
    } else {
        &values[..n]
    }
}

impl ArbRequest {
    /// The valid request this input stands for.
    pub fn request(&self) -> Request<'_> {
        let request = match *self {
            ArbRequest::ReadCoils { address: a, quantity: q } => {
                let quantity = quantity(q, MAX_READ_BITS);
                Request::ReadCoils { address: address(a, quantity.into()), quantity }
            }
            ArbRequest::ReadDiscreteInputs { address: a, quantity: q } => {
                let quantity = quantity(q, MAX_READ_BITS);
                Request::ReadDiscreteInputs { address: address(a, quantity.into()), quantity }
            }
            ArbRequest::ReadHoldingRegisters { address: a, quantity: q } => {
                let quantity = quantity(q, MAX_READ_REGISTERS);
                Request::ReadHoldingRegisters { address: address(a, quantity.into()), quantity }
            }
            ArbRequest::ReadInputRegisters { address: a, quantity: q } => {
                let quantity = quantity(q, MAX_READ_REGISTERS);
                Request::ReadInputRegisters { address: address(a, quantity.into()), quantity }
            }
            ArbRequest::WriteSingleCoil { address, value } => Request::WriteSingleCoil { address, value },
            ArbRequest::WriteSingleRegister { address, value } => {
                Request::WriteSingleRegister { address, value }
            }
            ArbRequest::WriteMultipleCoils { address: a, ref values } => {
                let values = leading(values, MAX_WRITE_COILS, &[false]);
                Request::WriteMultipleCoils {
                    address: address(a, values.len()),
                    values: Bits::from_bools(values),
                }
            }
            ArbRequest::WriteMultipleRegisters { address: a, ref values } => {
                let values = leading(values, MAX_WRITE_REGISTERS, &[0]);
                Request::WriteMultipleRegisters {
                    address: address(a, values.len()),
                    values: Words::from_slice(values),
                }
            }
            ArbRequest::ReadWriteMultipleRegisters {
                read_address,
                read_quantity,
                write_address,
                ref values,
            } => {
                let read_quantity = quantity(read_quantity, MAX_READ_REGISTERS);
                let values = leading(values, MAX_RW_WRITE_REGISTERS, &[0]);
                Request::ReadWriteMultipleRegisters {
                    read_address: address(read_address, read_quantity.into()),
                    read_quantity,
                    write_address: address(write_address, values.len()),
                    values: Words::from_slice(values),
                }
            }
        };
        // A generator bug, not a core bug: every input must be valid.
        assert_eq!(request.validate(), Ok(()), "ArbRequest built an invalid request: {request:?}");
        request
    }
}

/// Emits a request PDU into a fresh buffer; the request must be valid.
pub fn emit_request(request: &Request<'_>) -> ([u8; MAX_PDU_LEN], usize) {
    let mut buf = [0xA5; MAX_PDU_LEN];
    let n = request.emit(&mut buf).expect("a valid request emits");
    (buf, n)
}

/// Parses `pdu` as a request and, when accepted, checks that emitting the
/// parsed value gives back exactly `pdu` (and that it validates).
pub fn check_request_round_trip(pdu: &[u8]) {
    let Ok(request) = Request::parse(pdu) else { return };
    assert_eq!(request.validate(), Ok(()), "parse accepted an invalid request {request:?}");
    assert_eq!(request.buffer_len(), pdu.len());
    let mut buf = [0xA5u8; 300];
    let n = request.emit(&mut buf).expect("a parsed request re-emits");
    assert_eq!(&buf[..n], pdu, "request {request:?} re-emits differently");
    assert_eq!(Request::parse(&buf[..n]), Ok(request));
}

/// Parses `pdu` as the answer to `request`; when accepted (a response or a
/// well-formed exception), checks that emitting the parsed value gives back
/// exactly `pdu`. Returns what was accepted, `None` for a rejected PDU.
pub fn check_response_round_trip(request: &Request<'_>, pdu: &[u8]) -> Option<Result<(), ExceptionCode>> {
    let mut buf = [0xA5u8; 300];
    match Response::parse(request, pdu) {
        Ok(Ok(response)) => {
            assert_eq!(response.function(), request.function());
            assert_eq!(response.buffer_len(), pdu.len());
            let n = response.emit(&mut buf).expect("an accepted response re-emits");
            assert_eq!(&buf[..n], pdu, "response {response:?} re-emits differently");
            assert_eq!(Response::parse(request, &buf[..n]), Ok(Ok(response)));
            Some(Ok(()))
        }
        Ok(Err(code)) => {
            let exception = ExceptionResponse { function: request.function(), code };
            let n = exception.emit(&mut buf).expect("an exception re-emits");
            assert_eq!(&buf[..n], pdu, "exception {exception:?} re-emits differently");
            Some(Err(code))
        }
        Err(_) => None,
    }
}

/// Cuts `stream` into reads of the lengths in `cuts` (a zero length is an
/// empty read); whatever is left arrives as one last read.
pub fn chunks<'a>(cuts: &[u8], mut stream: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    for &cut in cuts {
        let (now, rest) = stream.split_at(usize::from(cut).min(stream.len()));
        out.push(now);
        stream = rest;
    }
    out.push(stream);
    out
}
