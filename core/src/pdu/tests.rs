//! PDU tests: spec vectors (Modbus Application Protocol V1.1b3), VregLink
//! FC23 examples, validation limits and proptest round trips.

use super::*;
use proptest::prelude::*;
use std::vec::Vec;

/// Emits into a buffer pre-filled with 0xA5 so unwritten bytes show up.
fn emit_req(request: &Request<'_>) -> Vec<u8> {
    let mut buf = [0xA5u8; MAX_PDU_LEN + 8];
    let len = request.emit(&mut buf).expect("emit");
    assert_eq!(len, request.buffer_len());
    assert!(buf[len..].iter().all(|&b| b == 0xA5), "emit wrote past its length");
    buf[..len].to_vec()
}

fn emit_resp(response: &Response<'_>) -> Vec<u8> {
    let mut buf = [0xA5u8; MAX_PDU_LEN + 8];
    let len = response.emit(&mut buf).expect("emit");
    assert_eq!(len, response.buffer_len());
    assert!(buf[len..].iter().all(|&b| b == 0xA5));
    buf[..len].to_vec()
}

/// Checks a spec request/response pair in both directions.
fn check_pair(request: Request<'_>, req_bytes: &[u8], response: Response<'_>, resp_bytes: &[u8]) {
    assert_eq!(emit_req(&request), req_bytes);
    assert_eq!(Request::parse(req_bytes), Ok(request));
    assert_eq!(request.expected_response_len(), resp_bytes.len());
    assert_eq!(request_pdu_len(req_bytes), Ok(Some(req_bytes.len())));
    assert_eq!(response_pdu_len(resp_bytes), Ok(Some(resp_bytes.len())));
    assert_eq!(emit_resp(&response), resp_bytes);
    assert_eq!(Response::parse(&request, resp_bytes), Ok(Ok(response)));
}

#[test]
fn test_function_code_round_trip_all_bytes() {
    for byte in 0..=255u8 {
        let code = FunctionCode::from_u8(byte);
        assert_eq!(code.value(), byte);
        let known = FunctionCode::KNOWN.contains(&code);
        assert_eq!(known, !matches!(code, FunctionCode::Unknown(_)), "{byte:#04x}");
    }
    assert_eq!(FunctionCode::KNOWN.len(), 9);
    assert_eq!(FunctionCode::ReadWriteMultipleRegisters.value(), 23);
}

#[test]
fn test_exception_code_round_trip_all_bytes() {
    for byte in 0..=255u8 {
        let code = ExceptionCode::from_u8(byte);
        assert_eq!(code.value(), byte);
        assert_eq!(ExceptionCode::KNOWN.contains(&code), !matches!(code, ExceptionCode::Unknown(_)));
    }
    let known: Vec<u8> = ExceptionCode::KNOWN.iter().map(|c| c.value()).collect();
    assert_eq!(known, [1, 2, 3, 4, 5, 6, 0x0A, 0x0B]);
    assert_eq!(ExceptionCode::IllegalDataAddress.name(), "illegal data address");
    assert_eq!(ExceptionCode::GatewayTargetDeviceFailedToRespond.value(), 0x0B);
    assert_eq!(std::format!("{}", ExceptionCode::IllegalFunction), "illegal function (0x01)");
}

#[test]
fn test_spec_read_coils() {
    // V1.1b3 6.1: coils 20-38 (0x13, 19 coils) -> CD 6B 05.
    let req = Request::ReadCoils { address: 0x13, quantity: 0x13 };
    let bits: [bool; 19] = core::array::from_fn(|i| (0x05_6B_CDu32 >> i) & 1 == 1);
    check_pair(
        req,
        &[0x01, 0x00, 0x13, 0x00, 0x13],
        Response::ReadCoils(Bits::from_bools(&bits)),
        &[0x01, 0x03, 0xCD, 0x6B, 0x05],
    );
    let resp = Response::parse(&req, &[0x01, 0x03, 0xCD, 0x6B, 0x05]).unwrap().unwrap();
    assert_eq!(resp.len(), 19);
    assert_eq!(resp.bit(0), Some(true)); // coil 20 = bit 0 of 0xCD
    assert_eq!(resp.bit(1), Some(false));
    assert_eq!(resp.bit(18), Some(true));
    assert_eq!(resp.bit(19), None);
    assert_eq!(resp.register(0), None);
}

#[test]
fn test_spec_read_discrete_inputs() {
    // V1.1b3 6.2: inputs 197-218 -> AC DB 35.
    let req = Request::ReadDiscreteInputs { address: 0xC4, quantity: 0x16 };
    let packed = [0xAC, 0xDB, 0x35];
    check_pair(
        req,
        &[0x02, 0x00, 0xC4, 0x00, 0x16],
        Response::ReadDiscreteInputs(Bits::from_packed(&packed, 22).unwrap()),
        &[0x02, 0x03, 0xAC, 0xDB, 0x35],
    );
}

#[test]
fn test_spec_read_holding_registers() {
    let req = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
    check_pair(
        req,
        &[0x03, 0x00, 0x6B, 0x00, 0x03],
        Response::ReadHoldingRegisters(Words::from_slice(&[0x022B, 0x0000, 0x0064])),
        &[0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64],
    );
    let bytes = [0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64];
    let resp = Response::parse(&req, &bytes).unwrap().unwrap();
    assert_eq!(resp.register(0), Some(555));
    assert_eq!(resp.register(2), Some(100));
    assert_eq!(resp.register(3), None);
    assert_eq!(resp.registers().unwrap().iter().collect::<Vec<_>>(), [555, 0, 100]);
}

#[test]
fn test_spec_read_input_registers() {
    check_pair(
        Request::ReadInputRegisters { address: 8, quantity: 1 },
        &[0x04, 0x00, 0x08, 0x00, 0x01],
        Response::ReadInputRegisters(Words::from_slice(&[10])),
        &[0x04, 0x02, 0x00, 0x0A],
    );
}

#[test]
fn test_spec_write_single_coil() {
    let bytes = [0x05, 0x00, 0xAC, 0xFF, 0x00];
    check_pair(
        Request::WriteSingleCoil { address: 0xAC, value: true },
        &bytes,
        Response::WriteSingleCoil { address: 0xAC, value: true },
        &bytes,
    );
}

#[test]
fn test_spec_write_single_register() {
    let bytes = [0x06, 0x00, 0x01, 0x00, 0x03];
    check_pair(
        Request::WriteSingleRegister { address: 1, value: 3 },
        &bytes,
        Response::WriteSingleRegister { address: 1, value: 3 },
        &bytes,
    );
}

#[test]
fn test_spec_write_multiple_coils() {
    // V1.1b3 6.11: 10 coils from 20: CD 01.
    let bits = [true, false, true, true, false, false, true, true, true, false];
    check_pair(
        Request::WriteMultipleCoils { address: 0x13, values: Bits::from_bools(&bits) },
        &[0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01],
        Response::WriteMultipleCoils { address: 0x13, quantity: 10 },
        &[0x0F, 0x00, 0x13, 0x00, 0x0A],
    );
}

#[test]
fn test_spec_write_multiple_registers() {
    check_pair(
        Request::WriteMultipleRegisters { address: 1, values: Words::from_slice(&[0x000A, 0x0102]) },
        &[0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02],
        Response::WriteMultipleRegisters { address: 1, quantity: 2 },
        &[0x10, 0x00, 0x01, 0x00, 0x02],
    );
}

#[test]
fn test_spec_read_write_multiple_registers() {
    check_pair(
        Request::ReadWriteMultipleRegisters {
            read_address: 3,
            read_quantity: 6,
            write_address: 0x0E,
            values: Words::from_slice(&[0x00FF, 0x00FF, 0x00FF]),
        },
        &[0x17, 0x00, 0x03, 0x00, 0x06, 0x00, 0x0E, 0x00, 0x03, 0x06, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF],
        Response::ReadWriteMultipleRegisters(Words::from_slice(&[
            0x00FE, 0x0ACD, 0x0001, 0x0003, 0x000D, 0x00FF,
        ])),
        &[0x17, 0x0C, 0x00, 0xFE, 0x0A, 0xCD, 0x00, 0x01, 0x00, 0x03, 0x00, 0x0D, 0x00, 0xFF],
    );
}

#[test]
fn test_vreglink_read_product_id() {
    // Seed doc, VregLink "read VREG 0x100": block at 0x4000, read 5, write 1.
    let req = Request::ReadWriteMultipleRegisters {
        read_address: 0x4000,
        read_quantity: 5,
        write_address: 0x4000,
        values: Words::from_slice(&[0x0100]),
    };
    let resp = [0x17, 0x0A, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x12, 0x34, 0xFE];
    check_pair(
        req,
        &[0x17, 0x40, 0x00, 0x00, 0x05, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00],
        Response::ReadWriteMultipleRegisters(Words::from_slice(&[0x0100, 0, 4, 0x0012, 0x34FE])),
        &resp,
    );
}

#[test]
fn test_vreglink_write_description() {
    // Seed doc, VregLink "set VREG 0x10C": "My Precious" (11 bytes) + padding.
    let text = b"My Precious\0";
    let mut words = [0x010C, 0x000B, 0, 0, 0, 0, 0, 0];
    for (w, pair) in words[2..].iter_mut().zip(text.chunks_exact(2)) {
        *w = u16::from_be_bytes([pair[0], pair[1]]);
    }
    let req = Request::ReadWriteMultipleRegisters {
        read_address: 0x4000,
        read_quantity: 2,
        write_address: 0x4000,
        values: Words::from_slice(&words),
    };
    let req_bytes = [
        0x17, 0x40, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x08, 0x10, 0x01, 0x0C, 0x00, 0x0B, 0x4D, 0x79, 0x20,
        0x50, 0x72, 0x65, 0x63, 0x69, 0x6f, 0x75, 0x73, 0x00,
    ];
    check_pair(
        req,
        &req_bytes,
        Response::ReadWriteMultipleRegisters(Words::from_slice(&[0x010C, 0x0000])),
        &[0x17, 0x04, 0x01, 0x0C, 0x00, 0x00],
    );
}

#[test]
fn test_exception_responses() {
    let req = Request::ReadCoils { address: 0x13, quantity: 0x13 };
    assert_eq!(Response::parse(&req, &[0x81, 0x02]), Ok(Err(ExceptionCode::IllegalDataAddress)));
    assert_eq!(
        Response::parse(&req, &[0x81, 0x0B]),
        Ok(Err(ExceptionCode::GatewayTargetDeviceFailedToRespond))
    );
    assert_eq!(Response::parse(&req, &[0x81, 0x42]), Ok(Err(ExceptionCode::Unknown(0x42))));
    assert_eq!(Response::parse(&req, &[0x81]), Err(PduError::Truncated { expected: 2, actual: 1 }));
    assert_eq!(Response::parse(&req, &[0x81, 2, 0]), Err(PduError::TrailingBytes { expected: 2, actual: 3 }));
    // The exception form of another function is a mismatch, not an exception.
    assert_eq!(
        Response::parse(&req, &[0x83, 0x02]),
        Err(PduError::FunctionMismatch { expected: 0x01, actual: 0x83 })
    );
    let exc = ExceptionResponse {
        function: FunctionCode::ReadHoldingRegisters,
        code: ExceptionCode::ServerDeviceBusy,
    };
    let mut buf = [0xA5u8; 4];
    assert_eq!(exc.emit(&mut buf), Ok(2));
    assert_eq!(buf, [0x83, 0x06, 0xA5, 0xA5]);
    assert_eq!(ExceptionResponse::parse(&buf[..2]), Ok(exc));
    assert_eq!(ExceptionResponse::parse(&[0x03, 0x06]), Err(PduError::ResponseKindMismatch));
    assert_eq!(response_pdu_len(&[0x83]), Ok(Some(2)));
}

#[test]
fn test_quantity_limits() {
    let rd = |quantity| Request::ReadHoldingRegisters { address: 0, quantity }.validate();
    assert_eq!(rd(0), Err(PduError::QuantityOutOfRange { quantity: 0, max: 125 }));
    assert_eq!(rd(125), Ok(()));
    assert_eq!(rd(126), Err(PduError::QuantityOutOfRange { quantity: 126, max: 125 }));
    let coils = |quantity| Request::ReadCoils { address: 0, quantity }.validate();
    assert_eq!(coils(2000), Ok(()));
    assert_eq!(coils(2001), Err(PduError::QuantityOutOfRange { quantity: 2001, max: 2000 }));
    let regs = [0u16; 124];
    let wr = |n: usize| Request::WriteMultipleRegisters { address: 0, values: Words::from_slice(&regs[..n]) };
    assert_eq!(wr(123).validate(), Ok(()));
    assert_eq!(wr(124).validate(), Err(PduError::QuantityOutOfRange { quantity: 124, max: 123 }));
    assert_eq!(wr(0).validate(), Err(PduError::QuantityOutOfRange { quantity: 0, max: 123 }));
    let rw = |n: usize, r| Request::ReadWriteMultipleRegisters {
        read_address: 0,
        read_quantity: r,
        write_address: 0,
        values: Words::from_slice(&regs[..n]),
    };
    assert_eq!(rw(121, 125).validate(), Ok(()));
    assert_eq!(rw(122, 1).validate(), Err(PduError::QuantityOutOfRange { quantity: 122, max: 121 }));
    assert_eq!(rw(1, 126).validate(), Err(PduError::QuantityOutOfRange { quantity: 126, max: 125 }));
    let bits = [false; 1969];
    let wc = |n: usize| Request::WriteMultipleCoils { address: 0, values: Bits::from_bools(&bits[..n]) };
    assert_eq!(wc(1968).validate(), Ok(()));
    assert_eq!(wc(1969).validate(), Err(PduError::QuantityOutOfRange { quantity: 1969, max: 1968 }));
    // The largest legal requests fit one PDU.
    assert_eq!(wr(123).buffer_len(), 252);
    assert_eq!(rw(121, 1).buffer_len(), 252);
    assert_eq!(wc(1968).buffer_len(), 252);
    assert!(
        Request::ReadHoldingRegisters { address: 0, quantity: 125 }.expected_response_len() <= MAX_PDU_LEN
    );
}

#[test]
fn test_address_overflow() {
    let req = |address, quantity| Request::ReadInputRegisters { address, quantity };
    assert_eq!(req(0xFFFF, 1).validate(), Ok(()));
    assert_eq!(req(0xFF83, 125).validate(), Ok(()));
    assert_eq!(
        req(0xFF84, 125).validate(),
        Err(PduError::AddressOverflow { address: 0xFF84, quantity: 125 })
    );
    assert_eq!(
        Request::parse(&[0x04, 0xFF, 0xFF, 0x00, 0x02]),
        Err(PduError::AddressOverflow { address: 0xFFFF, quantity: 2 })
    );
    let mut buf = [0u8; 8];
    assert_eq!(
        req(0xFFFF, 2).emit(&mut buf),
        Err(PduError::AddressOverflow { address: 0xFFFF, quantity: 2 })
    );
}

#[test]
fn test_parse_rejects_malformed_requests() {
    assert_eq!(Request::parse(&[]), Err(PduError::Truncated { expected: 1, actual: 0 }));
    assert_eq!(Request::parse(&[0x2B, 0x0E]), Err(PduError::UnsupportedFunction { function: 0x2B }));
    assert_eq!(Request::parse(&[0x03, 0, 0, 0]), Err(PduError::Truncated { expected: 5, actual: 4 }));
    assert_eq!(
        Request::parse(&[0x03, 0, 0, 0, 1, 0]),
        Err(PduError::TrailingBytes { expected: 5, actual: 6 })
    );
    assert_eq!(Request::parse(&[0x05, 0, 1, 0x12, 0x34]), Err(PduError::InvalidCoilValue { value: 0x1234 }));
    assert_eq!(
        Request::parse(&[0x05, 0, 1, 0, 0]),
        Ok(Request::WriteSingleCoil { address: 1, value: false })
    );
    // Byte count disagreeing with the quantity.
    assert_eq!(
        Request::parse(&[0x10, 0, 1, 0, 2, 3, 0, 0, 0]),
        Err(PduError::ByteCountMismatch { expected: 4, actual: 3 })
    );
    assert_eq!(
        Request::parse(&[0x0F, 0, 1, 0, 9, 1, 0xFF]),
        Err(PduError::ByteCountMismatch { expected: 2, actual: 1 })
    );
    assert_eq!(
        Request::parse(&[0x10, 0, 1, 0, 2, 4, 0, 0, 0]),
        Err(PduError::Truncated { expected: 10, actual: 9 })
    );
    assert_eq!(request_pdu_len(&[0x10, 0, 1, 0]), Ok(None));
    assert_eq!(request_pdu_len(&[0x17, 0, 0, 0, 1, 0, 0, 0, 1]), Ok(None));
    assert_eq!(request_pdu_len(&[0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2]), Ok(Some(12)));
    assert_eq!(request_pdu_len(&[0x99]), Err(PduError::UnsupportedFunction { function: 0x99 }));
}

#[test]
fn test_response_validation_against_request() {
    let req = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
    // Byte count for 2 registers answering a 3-register read.
    assert_eq!(
        Response::parse(&req, &[0x03, 0x04, 0, 1, 0, 2]),
        Err(PduError::ByteCountMismatch { expected: 6, actual: 4 })
    );
    assert_eq!(
        Response::parse(&req, &[0x03, 0x06, 0, 1, 0, 2]),
        Err(PduError::Truncated { expected: 8, actual: 6 })
    );
    assert_eq!(
        Response::parse(&req, &[0x04, 0x06, 0, 1, 0, 2, 0, 3]),
        Err(PduError::FunctionMismatch { expected: 3, actual: 4 })
    );
    let write = Request::WriteSingleRegister { address: 3, value: 100 };
    assert_eq!(Response::parse(&write, &[0x06, 0, 3, 0, 101]), Err(PduError::EchoMismatch));
    assert_eq!(Response::parse(&write, &[0x06, 0, 4, 0, 100]), Err(PduError::EchoMismatch));
    let regs = [1u16, 2];
    let multi = Request::WriteMultipleRegisters { address: 1, values: Words::from_slice(&regs) };
    assert_eq!(Response::parse(&multi, &[0x10, 0, 1, 0, 3]), Err(PduError::EchoMismatch));
    let coil = Request::WriteSingleCoil { address: 0xAC, value: true };
    assert_eq!(Response::parse(&coil, &[0x05, 0, 0xAC, 0, 0]), Err(PduError::EchoMismatch));
    assert_eq!(Response::parse(&coil, &[0x05, 0, 0xAC, 0, 1]), Err(PduError::InvalidCoilValue { value: 1 }));
}

#[test]
fn test_emit_buffer_too_small() {
    let req = Request::ReadHoldingRegisters { address: 0, quantity: 1 };
    let mut buf = [0xA5u8; 4];
    assert_eq!(req.emit(&mut buf), Err(PduError::BufferTooSmall { needed: 5, available: 4 }));
    let resp = Response::ReadHoldingRegisters(Words::from_slice(&[1, 2]));
    assert_eq!(resp.emit(&mut buf), Err(PduError::BufferTooSmall { needed: 6, available: 4 }));
    assert_eq!(
        RawPdu(&[1, 2, 3, 4, 5]).emit(&mut buf),
        Err(PduError::BufferTooSmall { needed: 5, available: 4 })
    );
}

#[test]
fn test_words_and_bits_views() {
    assert!(Words::from_be_bytes(&[1, 2, 3]).is_none());
    let w = Words::from_be_bytes(&[0x12, 0x34, 0xAB, 0xCD]).unwrap();
    assert_eq!(w, Words::from_slice(&[0x1234, 0xABCD]));
    assert_eq!(w.iter().len(), 2);
    assert_eq!(w.get(usize::MAX), None);
    assert!(Bits::from_packed(&[0xFF], 9).is_none());
    let b = Bits::from_packed(&[0x01, 0x01], 9).unwrap();
    assert_eq!(b.iter().filter(|&x| x).count(), 2);
    assert_eq!(b.get(8), Some(true));
    assert_eq!(b.get(9), None);
    assert_ne!(b, Bits::from_bools(&[true; 9]));
}

fn arb_words(max: usize) -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(any::<u16>(), 1..=max)
}

/// Requests that are valid by construction, as owned parts.
#[derive(Clone, Debug)]
enum ReqSpec {
    Read(u8, u16, u16),
    Coil(u16, bool),
    Reg(u16, u16),
    Coils(u16, Vec<bool>),
    Regs(u16, Vec<u16>),
    ReadWrite(u16, u16, u16, Vec<u16>),
}

fn fit(address: u16, quantity: usize) -> u16 {
    address.min(u16::try_from(0x1_0000 - quantity).unwrap_or(u16::MAX))
}

fn arb_request() -> impl Strategy<Value = ReqSpec> {
    prop_oneof![
        (1u8..=4, any::<u16>(), 1u16..=2000).prop_map(|(f, a, q)| {
            let q = if f >= 3 { q % 125 + 1 } else { q };
            ReqSpec::Read(f, fit(a, usize::from(q)), q)
        }),
        (any::<u16>(), any::<bool>()).prop_map(|(a, v)| ReqSpec::Coil(a, v)),
        (any::<u16>(), any::<u16>()).prop_map(|(a, v)| ReqSpec::Reg(a, v)),
        (any::<u16>(), prop::collection::vec(any::<bool>(), 1..=1968))
            .prop_map(|(a, v)| ReqSpec::Coils(fit(a, v.len()), v)),
        (any::<u16>(), arb_words(123)).prop_map(|(a, v)| ReqSpec::Regs(fit(a, v.len()), v)),
        (any::<u16>(), 1u16..=125, any::<u16>(), arb_words(121)).prop_map(|(ra, rq, wa, v)| {
            ReqSpec::ReadWrite(fit(ra, usize::from(rq)), rq, fit(wa, v.len()), v)
        }),
    ]
}

fn build(spec: &ReqSpec) -> Request<'_> {
    match spec {
        &ReqSpec::Read(1, address, quantity) => Request::ReadCoils { address, quantity },
        &ReqSpec::Read(2, address, quantity) => Request::ReadDiscreteInputs { address, quantity },
        &ReqSpec::Read(3, address, quantity) => Request::ReadHoldingRegisters { address, quantity },
        &ReqSpec::Read(_, address, quantity) => Request::ReadInputRegisters { address, quantity },
        &ReqSpec::Coil(address, value) => Request::WriteSingleCoil { address, value },
        &ReqSpec::Reg(address, value) => Request::WriteSingleRegister { address, value },
        ReqSpec::Coils(address, v) => {
            Request::WriteMultipleCoils { address: *address, values: Bits::from_bools(v) }
        }
        ReqSpec::Regs(address, v) => {
            Request::WriteMultipleRegisters { address: *address, values: Words::from_slice(v) }
        }
        ReqSpec::ReadWrite(ra, rq, wa, v) => Request::ReadWriteMultipleRegisters {
            read_address: *ra,
            read_quantity: *rq,
            write_address: *wa,
            values: Words::from_slice(v),
        },
    }
}

proptest! {
    #[test]
    fn prop_request_parse_emit_identity(spec in arb_request()) {
        let req = build(&spec);
        let bytes = emit_req(&req);
        prop_assert_eq!(request_pdu_len(&bytes), Ok(Some(bytes.len())));
        let parsed = Request::parse(&bytes);
        prop_assert_eq!(parsed, Ok(req));
        // And emit of the parsed view reproduces the bytes.
        prop_assert_eq!(emit_req(&parsed.unwrap()), bytes);
    }

    #[test]
    fn prop_response_parse_emit_identity(spec in arb_request(), seed in any::<u64>()) {
        let req = build(&spec);
        // Simulator side: fabricate data of the requested size.
        let n = req.expected_response_len();
        let regs: Vec<u16> = (0..125u64).map(|i| (seed.wrapping_mul(i + 1) >> 16) as u16).collect();
        let bools: Vec<bool> = (0..2000u64).map(|i| (seed >> (i % 64)) & 1 == 1).collect();
        let resp = match req {
            Request::ReadCoils { quantity, .. } => Response::ReadCoils(Bits::from_bools(&bools[..usize::from(quantity)])),
            Request::ReadDiscreteInputs { quantity, .. } => {
                Response::ReadDiscreteInputs(Bits::from_bools(&bools[..usize::from(quantity)]))
            }
            Request::ReadHoldingRegisters { quantity, .. } => {
                Response::ReadHoldingRegisters(Words::from_slice(&regs[..usize::from(quantity)]))
            }
            Request::ReadInputRegisters { quantity, .. } => {
                Response::ReadInputRegisters(Words::from_slice(&regs[..usize::from(quantity)]))
            }
            Request::ReadWriteMultipleRegisters { read_quantity, .. } => {
                Response::ReadWriteMultipleRegisters(Words::from_slice(&regs[..usize::from(read_quantity)]))
            }
            _ => Response::echo(&req).unwrap(),
        };
        let bytes = emit_resp(&resp);
        prop_assert_eq!(bytes.len(), n);
        prop_assert_eq!(response_pdu_len(&bytes), Ok(Some(n)));
        prop_assert_eq!(Response::parse(&req, &bytes), Ok(Ok(resp)));
    }

    #[test]
    fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), spec in arb_request()) {
        let _ = Request::parse(&bytes);
        let _ = request_pdu_len(&bytes);
        let _ = response_pdu_len(&bytes);
        let _ = ExceptionResponse::parse(&bytes);
        let req = build(&spec);
        if let Ok(Ok(resp)) = Response::parse(&req, &bytes) {
            // Whatever parsed must re-emit to the same bytes.
            prop_assert_eq!(emit_resp(&resp), bytes.clone());
            let _ = resp.registers().map(|w| w.iter().fold(0u32, |a, v| a + u32::from(v)));
        }
        if let Ok(parsed) = Request::parse(&bytes) {
            prop_assert_eq!(emit_req(&parsed), bytes);
        }
    }
}
