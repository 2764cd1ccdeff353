//! Slave-side RTU codec: request frames in, response frames out, through `dmc-core`'s wire layer.
//!
//! Frames and PDUs are parsed and emitted by core ([`dmc_core::rtu`],
//! [`dmc_core::pdu`]), so the simulator exercises the same code as the
//! daemon; this module only maps core's request types to the models'
//! [`ModelRequest`] and back. Two gaps in core are filled here: FC08 diagnostics (not
//! in core's function table; the SDM230 supports it) and the slave's duty to
//! answer a request whose quantity is outside the spec's limits with an
//! exception (core's parser just rejects it).

use crate::model::{Bank, ModelReply, ModelRequest};
use dmc_core::pdu::{
    EmitPdu, ExceptionCode, ExceptionResponse, FunctionCode, PduError, RawPdu, Request, Response, Words,
};

use dmc_core::rtu::{self, RtuFrame, MAX_ADU_LEN};
/// FC08 diagnostics, which core's function table does not list.
const FC_DIAGNOSTICS: u8 = 0x08;

/// Why a received frame is not a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than unit + function + CRC.
    TooShort,
    /// CRC trailer does not match.
    BadCrc,
    /// The PDU does not fit its function code.
    Malformed(PduError),
}

/// Parses one RTU request frame (CRC included): unit and request.
pub fn parse_request(adu: &[u8]) -> Result<(u8, ModelRequest), FrameError> {
    let frame = RtuFrame::new_checked(adu).map_err(|_| FrameError::TooShort)?;
    frame.check_crc().map_err(|_| FrameError::BadCrc)?;
    let (unit, pdu, function) = (frame.unit(), frame.pdu(), frame.function());
    let request = match Request::parse(pdu) {
        Ok(Request::ReadHoldingRegisters { address, quantity }) => {
            ModelRequest::Read { bank: Bank::Holding, start: address, count: quantity }
        }
        Ok(Request::ReadInputRegisters { address, quantity }) => {
            ModelRequest::Read { bank: Bank::Input, start: address, count: quantity }
        }
        Ok(Request::WriteSingleRegister { address, value }) => {
            ModelRequest::WriteSingle { addr: address, value }
        }
        Ok(Request::WriteMultipleRegisters { address, values }) => {
            ModelRequest::WriteMultiple { start: address, values: values.iter().collect() }
        }
        Ok(Request::ReadWriteMultipleRegisters { read_address, read_quantity, write_address, values }) => {
            ModelRequest::ReadWrite {
                read_start: read_address,
                read_count: read_quantity,
                write_start: write_address,
                values: values.iter().collect(),
            }
        }
        Ok(other) => ModelRequest::Other { function: other.function().value() },
        Err(PduError::UnsupportedFunction { function: FC_DIAGNOSTICS }) if pdu.len() == 5 => {
            let word = |i: usize| u16::from_be_bytes([pdu[i], pdu[i + 1]]);
            ModelRequest::Diagnostics { sub_function: word(1), data: word(3) }
        }
        Err(PduError::UnsupportedFunction { function }) => ModelRequest::Other { function },
        // Modbus Application Protocol 6.3/6.4: bad quantity → 03, range past 0xFFFF → 02.
        Err(PduError::QuantityOutOfRange { .. }) => ModelRequest::Invalid { function, code: 0x03 },
        Err(PduError::AddressOverflow { .. }) => ModelRequest::Invalid { function, code: 0x02 },
        Err(e) => return Err(FrameError::Malformed(e)),
    };
    Ok((unit, request))
}

/// Wraps a PDU into an RTU frame: unit, PDU, CRC (low byte first).
pub fn rtu_frame(unit: u8, pdu: &dyn EmitPdu) -> Option<Vec<u8>> {
    let mut out = vec![0u8; MAX_ADU_LEN];
    let len = rtu::emit(unit, &PduRef(pdu), &mut out).ok()?;
    out.truncate(len);
    Some(out)
}

/// Lets a `&dyn EmitPdu` go where core wants `&impl EmitPdu`.
struct PduRef<'a>(&'a dyn EmitPdu);

impl EmitPdu for PduRef<'_> {
    fn pdu_len(&self) -> usize {
        self.0.pdu_len()
    }
    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        self.0.emit(buf)
    }
}

/// Emits the RTU response frame (CRC included) for `reply`; `None` for [`ModelReply::Silence`].
pub fn encode_response(unit: u8, function: u8, reply: &ModelReply) -> Option<Vec<u8>> {
    match reply {
        ModelReply::Silence => None,
        ModelReply::Registers(words) => {
            let words = Words::from_slice(words);
            let response = if function == FunctionCode::ReadHoldingRegisters.value() {
                Response::ReadHoldingRegisters(words)
            } else if function == FunctionCode::ReadWriteMultipleRegisters.value() {
                Response::ReadWriteMultipleRegisters(words)
            } else {
                Response::ReadInputRegisters(words)
            };
            rtu_frame(unit, &response)
        }
        ModelReply::WriteSingle { addr, value } => {
            rtu_frame(unit, &Response::WriteSingleRegister { address: *addr, value: *value })
        }
        ModelReply::WriteMultiple { start, count } => {
            rtu_frame(unit, &Response::WriteMultipleRegisters { address: *start, quantity: *count })
        }
        ModelReply::Diagnostics { sub_function, data } => {
            let [s0, s1] = sub_function.to_be_bytes();
            let [d0, d1] = data.to_be_bytes();
            rtu_frame(unit, &RawPdu(&[FC_DIAGNOSTICS, s0, s1, d0, d1]))
        }
        ModelReply::Exception(code) => rtu_frame(
            unit,
            &ExceptionResponse {
                function: FunctionCode::from_u8(function),
                code: ExceptionCode::from_u8(*code),
            },
        ),
    }
}

/// Builds a request frame with core's encoder (tests, bench).
pub fn encode_request(unit: u8, request: &ModelRequest) -> Option<Vec<u8>> {
    let values;
    let req = match request {
        ModelRequest::Read { bank: Bank::Holding, start, count } => {
            Request::ReadHoldingRegisters { address: *start, quantity: *count }
        }
        ModelRequest::Read { bank: Bank::Input, start, count } => {
            Request::ReadInputRegisters { address: *start, quantity: *count }
        }
        ModelRequest::WriteSingle { addr, value } => {
            Request::WriteSingleRegister { address: *addr, value: *value }
        }
        ModelRequest::WriteMultiple { start, values: v } => {
            values = v.clone();
            Request::WriteMultipleRegisters { address: *start, values: Words::from_slice(&values) }
        }
        ModelRequest::ReadWrite { read_start, read_count, write_start, values: v } => {
            values = v.clone();
            Request::ReadWriteMultipleRegisters {
                read_address: *read_start,
                read_quantity: *read_count,
                write_address: *write_start,
                values: Words::from_slice(&values),
            }
        }
        ModelRequest::Diagnostics { sub_function, data } => {
            let [s0, s1] = sub_function.to_be_bytes();
            let [d0, d1] = data.to_be_bytes();
            return rtu_frame(unit, &RawPdu(&[FC_DIAGNOSTICS, s0, s1, d0, d1]));
        }
        ModelRequest::Other { function } | ModelRequest::Invalid { function, .. } => {
            return rtu_frame(unit, &RawPdu(&[*function]));
        }
    };
    rtu_frame(unit, &req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_real_frames() {
        // devices.md 1.6 and 2.8.
        let r = parse_request(&[0x02, 0x04, 0x00, 0x00, 0x00, 0x12, 0x70, 0x34]);
        assert_eq!(r, Ok((2, ModelRequest::Read { bank: Bank::Input, start: 0, count: 18 })));
        let w = parse_request(&[0x01, 0x06, 0x00, 0x03, 0x00, 0x64, 0x78, 0x21]);
        assert_eq!(w, Ok((1, ModelRequest::WriteSingle { addr: 3, value: 100 })));
        assert_eq!(parse_request(&[0x01, 0x06, 0x00, 0x03, 0x00, 0x65, 0x78, 0x21]), Err(FrameError::BadCrc));
        // The fork's broadcast diagnostics frame.
        let d = parse_request(&[0x00, 0x08, 0x00, 0x00, 0x55, 0x55, 0x1E, 0xB5]);
        assert_eq!(d, Ok((0, ModelRequest::Diagnostics { sub_function: 0, data: 0x5555 })));
        // Core refuses to emit a 126-register read, so build it by hand.
        let big = rtu_frame(1, &RawPdu(&[0x04, 0x00, 0x00, 0x00, 126])).unwrap_or_default();
        assert_eq!(parse_request(&big), Ok((1, ModelRequest::Invalid { function: 4, code: 3 })));
    }

    #[test]
    fn test_emit_worked_example() {
        // devices.md 1.6: `02 04 08 43 24 E5 1F 42 96 87 2B 5F 22`.
        let reply = ModelReply::Registers(vec![0x4324, 0xE51F, 0x4296, 0x872B]);
        let bytes = encode_response(2, 0x04, &reply);
        let expect = [0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
        assert_eq!(bytes.as_deref(), Some(&expect[..]));
        let echo = encode_response(1, 0x06, &ModelReply::WriteSingle { addr: 3, value: 100 });
        assert_eq!(echo.as_deref(), Some(&[0x01, 0x06, 0x00, 0x03, 0x00, 0x64, 0x78, 0x21][..]));
        let exc = encode_response(2, 0x06, &ModelReply::Exception(1));
        assert_eq!(exc.as_deref().map(|b| &b[..3]), Some(&[0x02, 0x86, 0x01][..]));
    }
}
