//! Modbus TCP/UDP framing: the 7-byte MBAP header followed by the PDU.
//!
//! Header (Modbus Messaging on TCP/IP V1.0b, 3.1.3): transaction id (2),
//! protocol id (2, always 0), length (2, counting unit + PDU), unit id (1).
//! The length field is at most 254 (unit + a 253-byte PDU) and at least 2
//! (unit + function).
//!
//! [`MbapFrame`] is a view over one ADU; [`emit`] writes one; [`parse_datagram`]
//! checks a UDP datagram that must hold exactly one ADU; [`MbapDecoder`] cuts a
//! TCP byte stream into ADUs whatever the segmentation (partial or several
//! ADUs per read). A bad header on TCP means the stream has lost its framing:
//! the decoder reports it and starts over, and the caller should reconnect.

use crate::pdu::{EmitPdu, PduError, MAX_PDU_LEN};
use core::fmt;

/// Bytes of the MBAP header, unit id included.
pub const HEADER_LEN: usize = 7;
/// Largest length field: unit + 253-byte PDU.
pub const MAX_LENGTH: u16 = 254;
/// Smallest length field: unit + function.
pub const MIN_LENGTH: u16 = 2;
/// Largest ADU: header before the length-counted part (6) + 254.
pub const MAX_ADU_LEN: usize = 6 + MAX_LENGTH as usize;

/// Byte offsets of the header fields.
mod field {
    use core::ops::Range;
    pub(super) const TRANSACTION: Range<usize> = 0..2;
    pub(super) const PROTOCOL: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const UNIT: usize = 6;
    /// Bytes before the part the length field counts.
    pub(super) const COUNTED_FROM: usize = 6;
}

/// Why bytes are not a valid MBAP ADU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MbapError {
    /// Fewer bytes than a header.
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// Protocol id other than 0 (Modbus).
    ProtocolId {
        /// The id received.
        protocol_id: u16,
    },
    /// Length field outside 2..=254.
    LengthOutOfRange {
        /// The field received.
        length: u16,
    },
    /// The datagram is not exactly as long as its length field says.
    LengthMismatch {
        /// Bytes the header announces.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
}

impl fmt::Display for MbapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MbapError::TooShort { len } => write!(f, "MBAP ADU of {len} bytes is shorter than its header"),
            MbapError::ProtocolId { protocol_id } => write!(f, "MBAP protocol id {protocol_id}, expected 0"),
            MbapError::LengthOutOfRange { length } => write!(f, "MBAP length {length} outside 2..=254"),
            MbapError::LengthMismatch { expected, actual } => {
                write!(f, "MBAP ADU of {actual} bytes, header announces {expected}")
            }
        }
    }
}

impl core::error::Error for MbapError {}

/// Big-endian u16 at a field range (0 when out of range).
fn be16(bytes: &[u8], range: core::ops::Range<usize>) -> u16 {
    match bytes.get(range) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// Checks a header's protocol id and length field; returns the ADU length.
fn check_header(header: &[u8]) -> Result<usize, MbapError> {
    if header.len() < HEADER_LEN {
        return Err(MbapError::TooShort { len: header.len() });
    }
    let protocol_id = be16(header, field::PROTOCOL);
    if protocol_id != 0 {
        return Err(MbapError::ProtocolId { protocol_id });
    }
    let length = be16(header, field::LENGTH);
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(MbapError::LengthOutOfRange { length });
    }
    Ok(field::COUNTED_FROM + usize::from(length))
}

/// A view of one MBAP ADU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbapFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MbapFrame<T> {
    /// Wraps a buffer without checking it (accessors still never panic).
    pub const fn new_unchecked(buffer: T) -> Self {
        MbapFrame { buffer }
    }

    /// Wraps a buffer holding exactly one valid ADU.
    pub fn new_checked(buffer: T) -> Result<Self, MbapError> {
        let bytes = buffer.as_ref();
        let expected = check_header(bytes)?;
        if bytes.len() != expected {
            return Err(MbapError::LengthMismatch { expected, actual: bytes.len() });
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Transaction id, echoed by the server.
    pub fn transaction_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TRANSACTION)
    }

    /// Protocol id (0 for Modbus).
    pub fn protocol_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Length field: unit + PDU bytes.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Unit id.
    pub fn unit(&self) -> u8 {
        self.buffer.as_ref().get(field::UNIT).copied().unwrap_or(0)
    }

    /// The PDU.
    pub fn pdu(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }

    /// The whole ADU.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a> MbapFrame<&'a [u8]> {
    /// The PDU, borrowed for as long as the buffer.
    pub fn into_pdu(self) -> &'a [u8] {
        self.buffer.get(HEADER_LEN..).unwrap_or_default()
    }
}

/// Writes header + PDU into `buf`; returns the ADU length.
pub fn emit(transaction_id: u16, unit: u8, pdu: &impl EmitPdu, buf: &mut [u8]) -> Result<usize, PduError> {
    let pdu_len = pdu.pdu_len();
    if pdu_len > MAX_PDU_LEN {
        return Err(PduError::TrailingBytes { expected: MAX_PDU_LEN, actual: pdu_len });
    }
    let len = HEADER_LEN + pdu_len;
    let available = buf.len();
    let out = buf.get_mut(..len).ok_or(PduError::BufferTooSmall { needed: len, available })?;
    let (header, body) = out.split_at_mut(HEADER_LEN);
    let length = u16::try_from(pdu_len + 1).unwrap_or(MAX_LENGTH);
    let [t0, t1] = transaction_id.to_be_bytes();
    let [l0, l1] = length.to_be_bytes();
    header.copy_from_slice(&[t0, t1, 0, 0, l0, l1, unit]);
    let written = pdu.emit(body)?;
    if written != pdu_len {
        return Err(PduError::Truncated { expected: pdu_len, actual: written });
    }
    Ok(len)
}

/// Checks a UDP datagram holding exactly one ADU.
pub fn parse_datagram(datagram: &[u8]) -> Result<MbapFrame<&[u8]>, MbapError> {
    MbapFrame::new_checked(datagram)
}

/// What the decoder has ready for `poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    Nothing,
    Frame,
    Error(MbapError),
}

/// Cuts a TCP byte stream into MBAP ADUs (one 260-byte buffer).
///
/// Call order: [`feed`](Self::feed) bytes (returns how many it took; it stops
/// at the end of an ADU), then [`poll`](Self::poll) until `None`, then feed
/// the rest.
#[derive(Clone, Debug)]
pub struct MbapDecoder {
    buf: [u8; MAX_ADU_LEN],
    len: usize,
    ready: Ready,
    frame_taken: bool,
    frames: u32,
    errors: u32,
}

impl Default for MbapDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl MbapDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        MbapDecoder {
            buf: [0; MAX_ADU_LEN],
            len: 0,
            ready: Ready::Nothing,
            frame_taken: false,
            frames: 0,
            errors: 0,
        }
    }

    /// Takes stream bytes; returns how many. Fewer than offered: an ADU (or an
    /// error) is ready; `poll` it and feed the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        self.release_taken_frame();
        let mut taken = 0;
        while self.ready == Ready::Nothing {
            // Read the header first, then exactly the length it announces.
            let want = if self.len < HEADER_LEN {
                HEADER_LEN
            } else {
                match check_header(self.buf.get(..HEADER_LEN).unwrap_or_default()) {
                    Ok(adu_len) => adu_len,
                    Err(error) => {
                        self.errors = self.errors.saturating_add(1);
                        self.len = 0;
                        self.ready = Ready::Error(error);
                        break;
                    }
                }
            };
            if self.len == want {
                self.frames = self.frames.saturating_add(1);
                self.ready = Ready::Frame;
                break;
            }
            let rest = bytes.get(taken..).unwrap_or_default();
            let n = (want - self.len).min(rest.len());
            if n == 0 {
                break;
            }
            if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.len += n;
            taken += n;
        }
        taken
    }

    /// The next ADU or header error, if one is ready.
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<MbapFrame<&[u8]>, MbapError>> {
        self.release_taken_frame();
        match core::mem::replace(&mut self.ready, Ready::Nothing) {
            Ready::Nothing => None,
            Ready::Error(error) => Some(Err(error)),
            Ready::Frame => {
                self.frame_taken = true;
                Some(Ok(MbapFrame::new_unchecked(self.buf.get(..self.len).unwrap_or_default())))
            }
        }
    }

    /// Forgets a partial ADU (after a reconnect).
    pub fn reset(&mut self) {
        self.len = 0;
        self.ready = Ready::Nothing;
        self.frame_taken = false;
    }

    /// Bytes of an unfinished ADU.
    pub const fn buffered(&self) -> usize {
        if self.frame_taken {
            0
        } else {
            self.len
        }
    }

    /// ADUs decoded so far.
    pub const fn frames(&self) -> u32 {
        self.frames
    }

    /// Header errors so far.
    pub const fn errors(&self) -> u32 {
        self.errors
    }

    fn release_taken_frame(&mut self) {
        if self.frame_taken {
            self.frame_taken = false;
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Request, Response, Words};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// V1.1b3 read holding registers example over TCP, transaction 0x0001, unit 0x11.
    const REQ: [u8; 12] = [0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x11, 0x03, 0x00, 0x6B, 0x00, 0x03];
    const RESP: [u8; 15] =
        [0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x11, 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64];

    fn decode_all(dec: &mut MbapDecoder, mut bytes: &[u8]) -> Vec<Result<Vec<u8>, MbapError>> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            let n = dec.feed(bytes);
            bytes = &bytes[n..];
            match dec.poll() {
                Some(r) => out.push(r.map(|f| f.as_bytes().to_vec())),
                None if bytes.is_empty() => return out,
                None => {}
            }
        }
        panic!("decoder made no progress");
    }

    #[test]
    fn test_emit_and_parse() {
        let req = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
        let mut buf = [0xA5u8; 16];
        let n = emit(1, 0x11, &req, &mut buf).unwrap();
        assert_eq!(buf[..n], REQ);
        assert!(buf[n..].iter().all(|&b| b == 0xA5));
        let resp = Response::ReadHoldingRegisters(Words::from_slice(&[0x022B, 0, 0x64]));
        let n = emit(1, 0x11, &resp, &mut buf).unwrap();
        assert_eq!(buf[..n], RESP);
        let frame = parse_datagram(&RESP).unwrap();
        assert_eq!(
            (frame.transaction_id(), frame.protocol_id(), frame.length(), frame.unit()),
            (1, 0, 9, 0x11)
        );
        assert_eq!(Response::parse(&req, frame.pdu()), Ok(Ok(resp)));
    }

    #[test]
    fn test_datagram_errors() {
        assert_eq!(parse_datagram(&REQ[..6]), Err(MbapError::TooShort { len: 6 }));
        let mut bad = REQ;
        bad[3] = 1;
        assert_eq!(parse_datagram(&bad), Err(MbapError::ProtocolId { protocol_id: 1 }));
        let mut bad = REQ;
        bad[5] = 1;
        assert_eq!(parse_datagram(&bad), Err(MbapError::LengthOutOfRange { length: 1 }));
        bad[5] = 0xFF;
        assert_eq!(parse_datagram(&bad), Err(MbapError::LengthOutOfRange { length: 255 }));
        assert_eq!(parse_datagram(&REQ[..11]), Err(MbapError::LengthMismatch { expected: 12, actual: 11 }));
        let mut long = REQ.to_vec();
        long.push(0);
        assert_eq!(parse_datagram(&long), Err(MbapError::LengthMismatch { expected: 12, actual: 13 }));
        let mut max = [0u8; MAX_ADU_LEN];
        max[5] = 254;
        assert!(parse_datagram(&max).is_ok());
    }

    #[test]
    fn test_stream_partial_and_coalesced() {
        let mut stream = REQ.to_vec();
        stream.extend_from_slice(&RESP);
        stream.extend_from_slice(&REQ);
        // One byte at a time.
        let mut dec = MbapDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            got.extend(decode_all(&mut dec, core::slice::from_ref(b)));
        }
        assert_eq!(got, [Ok(REQ.to_vec()), Ok(RESP.to_vec()), Ok(REQ.to_vec())]);
        // All at once.
        let got = decode_all(&mut dec, &stream);
        assert_eq!(got, [Ok(REQ.to_vec()), Ok(RESP.to_vec()), Ok(REQ.to_vec())]);
        assert_eq!(dec.frames(), 6);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn test_stream_bad_header() {
        let mut dec = MbapDecoder::new();
        let mut bad = REQ;
        bad[4] = 0x01; // length 262
        let got = decode_all(&mut dec, &bad[..7]);
        assert_eq!(got, [Err(MbapError::LengthOutOfRange { length: 262 })]);
        assert_eq!(dec.errors(), 1);
        dec.reset();
        assert_eq!(decode_all(&mut dec, &REQ), [Ok(REQ.to_vec())]);
    }

    proptest! {
        #[test]
        fn prop_stream_any_split(splits in prop::collection::vec(0usize..40, 0..8)) {
            let mut stream = REQ.to_vec();
            stream.extend_from_slice(&RESP);
            let mut dec = MbapDecoder::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            for s in splits {
                let (a, b) = rest.split_at(s.min(rest.len()));
                got.extend(decode_all(&mut dec, a));
                rest = b;
            }
            got.extend(decode_all(&mut dec, rest));
            prop_assert_eq!(got, std::vec![Ok(REQ.to_vec()), Ok(RESP.to_vec())]);
        }

        #[test]
        fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_datagram(&bytes);
            let mut dec = MbapDecoder::new();
            for f in decode_all(&mut dec, &bytes).into_iter().flatten() {
                prop_assert!(parse_datagram(&f).is_ok());
            }
        }
    }
}
