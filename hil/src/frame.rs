//! Slave-side RTU codec: request frames in, response frames out.
//!
//! STOP-GAP: until `dmc-core`'s `pdu`/`rtu` land (branch `wire`), this module
//! parses and emits the handful of PDUs the simulator needs by hand. It is
//! replaced by calls into core once they exist, so the bench and the
//! simulator exercise the same framing code as the daemon.

use crate::model::{Bank, ModelReply, ModelRequest};
use dmc_core::crc::{check_crc_trailer, crc16};

/// Why a received frame is not a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than unit + function + CRC.
    TooShort,
    /// CRC trailer does not match.
    BadCrc,
    /// The PDU length does not fit its function code.
    Malformed,
}

/// Parses one RTU request frame (CRC included): unit and request.
pub fn parse_request(adu: &[u8]) -> Result<(u8, ModelRequest), FrameError> {
    if adu.len() < 4 {
        return Err(FrameError::TooShort);
    }
    if !check_crc_trailer(adu) {
        return Err(FrameError::BadCrc);
    }
    let unit = adu[0];
    let pdu = &adu[1..adu.len() - 2];
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*pdu.get(i)?, *pdu.get(i + 1)?])) };
    let function = pdu[0];
    let request = match function {
        0x03 | 0x04 => {
            if pdu.len() != 5 {
                return Err(FrameError::Malformed);
            }
            let bank = if function == 0x03 { Bank::Holding } else { Bank::Input };
            ModelRequest::Read {
                bank,
                start: word(1).ok_or(FrameError::Malformed)?,
                count: word(3).ok_or(FrameError::Malformed)?,
            }
        }
        0x06 => {
            if pdu.len() != 5 {
                return Err(FrameError::Malformed);
            }
            ModelRequest::WriteSingle {
                addr: word(1).ok_or(FrameError::Malformed)?,
                value: word(3).ok_or(FrameError::Malformed)?,
            }
        }
        0x08 => {
            if pdu.len() != 5 {
                return Err(FrameError::Malformed);
            }
            ModelRequest::Diagnostics {
                sub_function: word(1).ok_or(FrameError::Malformed)?,
                data: word(3).ok_or(FrameError::Malformed)?,
            }
        }
        0x10 => {
            let start = word(1).ok_or(FrameError::Malformed)?;
            let count = word(3).ok_or(FrameError::Malformed)?;
            let bytes = usize::from(*pdu.get(5).ok_or(FrameError::Malformed)?);
            if bytes != usize::from(count) * 2 || pdu.len() != 6 + bytes {
                return Err(FrameError::Malformed);
            }
            let values = pdu[6..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            ModelRequest::WriteMultiple { start, values }
        }
        other => ModelRequest::Other { function: other },
    };
    Ok((unit, request))
}

/// Emits the RTU response frame (CRC included) for `reply`; `None` for [`ModelReply::Silence`].
pub fn encode_response(unit: u8, function: u8, reply: &ModelReply) -> Option<Vec<u8>> {
    let mut out = vec![unit];
    match reply {
        ModelReply::Silence => return None,
        ModelReply::Registers(words) => {
            out.push(function);
            out.push(u8::try_from(words.len() * 2).ok()?);
            for w in words {
                out.extend_from_slice(&w.to_be_bytes());
            }
        }
        ModelReply::WriteSingle { addr, value } => {
            out.push(function);
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        ModelReply::WriteMultiple { start, count } => {
            out.push(function);
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        ModelReply::Diagnostics { sub_function, data } => {
            out.push(function);
            out.extend_from_slice(&sub_function.to_be_bytes());
            out.extend_from_slice(&data.to_be_bytes());
        }
        ModelReply::Exception(code) => {
            out.push(function | 0x80);
            out.push(*code);
        }
    }
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Builds a request frame (for tests and the stop-gap master).
pub fn encode_request(unit: u8, request: &ModelRequest) -> Vec<u8> {
    let mut out = vec![unit, request.function()];
    match request {
        ModelRequest::Read { start, count, .. } => {
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        ModelRequest::WriteSingle { addr, value } => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        ModelRequest::Diagnostics { sub_function, data } => {
            out.extend_from_slice(&sub_function.to_be_bytes());
            out.extend_from_slice(&data.to_be_bytes());
        }
        ModelRequest::WriteMultiple { start, values } => {
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&(values.len() as u16).to_be_bytes());
            out.push((values.len() * 2) as u8);
            for v in values {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        ModelRequest::Other { .. } => {}
    }
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
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
    }
}
