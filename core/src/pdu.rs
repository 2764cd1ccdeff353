//! Modbus PDUs: requests, responses and exceptions as typed views over bytes.
//!
//! The PDU is the framing-independent part of a Modbus message: function code
//! plus data (Modbus Application Protocol V1.1b3, section 4.1). The RTU, ASCII
//! and MBAP modules wrap it; this module knows nothing about units, CRCs or
//! transaction ids.
//!
//! Two levels, smoltcp style:
//! - [`Request`], [`Response`] and [`ExceptionResponse`] are small `Copy`
//!   values that borrow their payload ([`Words`], [`Bits`]) from the parsed
//!   bytes or from the caller's slices; nothing is copied.
//! - `parse` turns bytes into a value and validates everything the spec
//!   constrains (quantity limits, address range, byte counts, coil values);
//!   `emit` writes a value into a caller buffer and returns the length.
//!   `emit` never panics: a short buffer gives [`PduError::BufferTooSmall`].
//!   For every valid value `v`, `parse(emit(v)) == v`.
//!
//! Responses are validated against the request they answer
//! ([`Response::parse`]), and the result is nested so a device exception is
//! never confused with a broken frame: `Ok(Ok(response))`,
//! `Ok(Err(exception_code))` or `Err(protocol_error)`.

use core::fmt;

/// Largest PDU: 256-byte RTU ADU minus unit and CRC (V1.1b3, 4.1).
pub const MAX_PDU_LEN: usize = 253;

/// Most registers one FC03/FC04 read may ask for (V1.1b3, 6.3/6.4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most registers one FC16 write may carry (V1.1b3, 6.12).
pub const MAX_WRITE_REGISTERS: u16 = 123;
/// Most registers the write half of FC23 may carry (V1.1b3, 6.17).
pub const MAX_RW_WRITE_REGISTERS: u16 = 121;
/// Most coils or discrete inputs one FC01/FC02 read may ask for (V1.1b3, 6.1/6.2).
pub const MAX_READ_BITS: u16 = 2000;
/// Most coils one FC15 write may carry (V1.1b3, 6.11).
pub const MAX_WRITE_COILS: u16 = 1968;

/// FC05 value meaning "coil on".
const COIL_ON: u16 = 0xFF00;
/// FC05 value meaning "coil off".
const COIL_OFF: u16 = 0x0000;
/// Bit set in the function code of an exception response.
const EXCEPTION_FLAG: u8 = 0x80;

/// Declares a code table once: the enum with explicit discriminants, a total
/// `from_u8`, `value` and the spec's name for each code. Being the only place
/// a code is written down is the point (rmodbus mapped its exceptions three
/// times, inconsistently).
macro_rules! code_table {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
            /// A code this crate does not know, kept as received.
            Unknown(u8),
        }

        impl $name {
            /// Every known code, in numeric order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The code for a byte; never fails (unknown bytes become `Unknown`).
            pub const fn from_u8(value: u8) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }

            /// The byte on the wire.
            pub const fn value(self) -> u8 {
                match self {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }

            /// The name the Modbus specification gives this code.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Unknown(_) => "unknown",
                }
            }
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                $name::from_u8(value)
            }
        }

        impl From<$name> for u8 {
            fn from(code: $name) -> u8 {
                code.value()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} (0x{:02X})", self.name(), self.value())
            }
        }
    };
}

code_table! {
    /// Modbus function codes supported by this crate (V1.1b3, 5.1).
    pub enum FunctionCode {
        /// FC01.
        ReadCoils = 0x01 => "read coils",
        /// FC02.
        ReadDiscreteInputs = 0x02 => "read discrete inputs",
        /// FC03.
        ReadHoldingRegisters = 0x03 => "read holding registers",
        /// FC04.
        ReadInputRegisters = 0x04 => "read input registers",
        /// FC05.
        WriteSingleCoil = 0x05 => "write single coil",
        /// FC06.
        WriteSingleRegister = 0x06 => "write single register",
        /// FC15.
        WriteMultipleCoils = 0x0F => "write multiple coils",
        /// FC16.
        WriteMultipleRegisters = 0x10 => "write multiple registers",
        /// FC23.
        ReadWriteMultipleRegisters = 0x17 => "read/write multiple registers",
    }
}

code_table! {
    /// Exception codes a device may answer with (V1.1b3, 7).
    pub enum ExceptionCode {
        /// 01.
        IllegalFunction = 0x01 => "illegal function",
        /// 02.
        IllegalDataAddress = 0x02 => "illegal data address",
        /// 03.
        IllegalDataValue = 0x03 => "illegal data value",
        /// 04.
        ServerDeviceFailure = 0x04 => "server device failure",
        /// 05.
        Acknowledge = 0x05 => "acknowledge",
        /// 06.
        ServerDeviceBusy = 0x06 => "server device busy",
        /// 0A.
        GatewayPathUnavailable = 0x0A => "gateway path unavailable",
        /// 0B.
        GatewayTargetDeviceFailedToRespond = 0x0B => "gateway target device failed to respond",
    }
}

impl core::error::Error for ExceptionCode {}

/// What was wrong with a PDU, or why one could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PduError {
    /// The output buffer cannot hold the PDU.
    BufferTooSmall {
        /// Bytes the PDU needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The PDU ends before its fields do.
    Truncated {
        /// Length the fields require.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The PDU has bytes after its last field.
    TrailingBytes {
        /// Length the fields require.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The function code is not one this crate handles.
    UnsupportedFunction {
        /// The function byte received.
        function: u8,
    },
    /// A quantity is zero or above the spec's limit for the function.
    QuantityOutOfRange {
        /// The quantity given.
        quantity: u16,
        /// The largest allowed.
        max: u16,
    },
    /// `address + quantity` passes the end of the 16-bit address space.
    AddressOverflow {
        /// First address.
        address: u16,
        /// Number of items.
        quantity: u16,
    },
    /// A byte count field disagrees with the quantity it describes.
    ByteCountMismatch {
        /// Byte count the quantity implies.
        expected: usize,
        /// Byte count found.
        actual: usize,
    },
    /// An FC05 value other than 0xFF00 or 0x0000.
    InvalidCoilValue {
        /// The value received.
        value: u16,
    },
    /// The response's function code is neither the request's nor its exception form.
    FunctionMismatch {
        /// The request's function code.
        expected: u8,
        /// The function byte received.
        actual: u8,
    },
    /// A write response does not echo the request (FC05, FC06, FC15, FC16).
    EchoMismatch,
    /// The response does not fit the request (e.g. a register response for a coil read).
    ResponseKindMismatch,
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PduError::BufferTooSmall { needed, available } => {
                write!(f, "buffer too small: need {needed} bytes, have {available}")
            }
            PduError::Truncated { expected, actual } => {
                write!(f, "PDU truncated: {actual} bytes, fields need {expected}")
            }
            PduError::TrailingBytes { expected, actual } => {
                write!(f, "PDU too long: {actual} bytes, fields need {expected}")
            }
            PduError::UnsupportedFunction { function } => {
                write!(f, "unsupported function code 0x{function:02X}")
            }
            PduError::QuantityOutOfRange { quantity, max } => {
                write!(f, "quantity {quantity} outside 1..={max}")
            }
            PduError::AddressOverflow { address, quantity } => {
                write!(f, "address {address} + quantity {quantity} passes 0xFFFF")
            }
            PduError::ByteCountMismatch { expected, actual } => {
                write!(f, "byte count {actual}, expected {expected}")
            }
            PduError::InvalidCoilValue { value } => {
                write!(f, "coil value 0x{value:04X} is neither 0xFF00 nor 0x0000")
            }
            PduError::FunctionMismatch { expected, actual } => {
                write!(f, "response function 0x{actual:02X} for request 0x{expected:02X}")
            }
            PduError::EchoMismatch => f.write_str("write response does not echo the request"),
            PduError::ResponseKindMismatch => f.write_str("response kind does not fit the request"),
        }
    }
}

impl core::error::Error for PduError {}

/// Something that can be written as a PDU: implemented by [`Request`],
/// [`Response`], [`ExceptionResponse`] and [`RawPdu`], so the ADU encoders
/// take any of them.
pub trait EmitPdu {
    /// Length of the PDU `emit` writes.
    fn pdu_len(&self) -> usize;
    /// Writes the PDU to the start of `buf`, returning its length.
    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError>;
}

/// Already-encoded PDU bytes, passed through unchanged (tests, gateways).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawPdu<'a>(pub &'a [u8]);

impl EmitPdu for RawPdu<'_> {
    fn pdu_len(&self) -> usize {
        self.0.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        let out = out_slice(buf, self.0.len())?;
        out.copy_from_slice(self.0);
        Ok(self.0.len())
    }
}

/// A run of 16-bit register values: either big-endian bytes from a parsed
/// PDU or a caller's `&[u16]` to be written. Compares by value.
#[derive(Clone, Copy, Debug)]
pub struct Words<'a>(WordsRepr<'a>);

#[derive(Clone, Copy, Debug)]
enum WordsRepr<'a> {
    /// Invariant: even length.
    BigEndian(&'a [u8]),
    Native(&'a [u16]),
}

impl<'a> Words<'a> {
    /// A view of big-endian register bytes; `None` for an odd length.
    pub const fn from_be_bytes(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len().is_multiple_of(2) {
            Some(Words(WordsRepr::BigEndian(bytes)))
        } else {
            None
        }
    }

    /// Registers given as native values.
    pub const fn from_slice(values: &'a [u16]) -> Self {
        Words(WordsRepr::Native(values))
    }

    /// Number of registers.
    pub const fn len(&self) -> usize {
        match self.0 {
            WordsRepr::BigEndian(b) => b.len() / 2,
            WordsRepr::Native(v) => v.len(),
        }
    }

    /// True when there are no registers.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Register `index`, if present.
    pub fn get(&self, index: usize) -> Option<u16> {
        match self.0 {
            WordsRepr::BigEndian(b) => {
                let start = index.checked_mul(2)?;
                let pair = b.get(start..start.checked_add(2)?)?;
                Some(u16::from_be_bytes([*pair.first()?, *pair.get(1)?]))
            }
            WordsRepr::Native(v) => v.get(index).copied(),
        }
    }

    /// The registers in order.
    pub fn iter(&self) -> WordsIter<'a> {
        WordsIter { view: *self, next: 0 }
    }

    /// Writes the registers big-endian into `out`, which must be exactly `2 * len()` long.
    fn write_be(&self, out: &mut [u8]) {
        for (pair, value) in out.chunks_exact_mut(2).zip(self.iter()) {
            pair.copy_from_slice(&value.to_be_bytes());
        }
    }
}

/// Value equality, `IntoIterator` and an exact-size iterator for an indexed
/// view (`len()` + `get(i)`): one definition for [`Words`] and [`Bits`].
macro_rules! indexed_view {
    ($view:ident, $iter:ident, $item:ty) => {
        impl PartialEq for $view<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.len() == other.len() && self.iter().eq(other.iter())
            }
        }

        impl Eq for $view<'_> {}

        impl<'a> IntoIterator for $view<'a> {
            type Item = $item;
            type IntoIter = $iter<'a>;
            fn into_iter(self) -> $iter<'a> {
                self.iter()
            }
        }

        #[doc = concat!("Iterator over [`", stringify!($view), "`].")]
        #[derive(Clone, Debug)]
        pub struct $iter<'a> {
            view: $view<'a>,
            next: usize,
        }

        impl Iterator for $iter<'_> {
            type Item = $item;
            fn next(&mut self) -> Option<$item> {
                let value = self.view.get(self.next)?;
                self.next += 1;
                Some(value)
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                let left = self.view.len().saturating_sub(self.next);
                (left, Some(left))
            }
        }

        impl ExactSizeIterator for $iter<'_> {}
    };
}

indexed_view!(Words, WordsIter, u16);

/// A run of bits (coils, discrete inputs): either packed LSB-first bytes from
/// a parsed PDU or a caller's `&[bool]`. Compares by value.
#[derive(Clone, Copy, Debug)]
pub struct Bits<'a>(BitsRepr<'a>);

#[derive(Clone, Copy, Debug)]
enum BitsRepr<'a> {
    /// Invariant: `bytes.len() == packed_len(len)`.
    Packed {
        bytes: &'a [u8],
        len: u16,
    },
    Bools(&'a [bool]),
}

/// Bytes needed to pack `bits` bits.
const fn packed_len(bits: usize) -> usize {
    bits.div_ceil(8)
}

impl<'a> Bits<'a> {
    /// A view of `len` bits packed LSB first (V1.1b3, 6.1); `None` unless
    /// `bytes` is exactly the packed length.
    pub const fn from_packed(bytes: &'a [u8], len: u16) -> Option<Self> {
        if bytes.len() == packed_len(len as usize) {
            Some(Bits(BitsRepr::Packed { bytes, len }))
        } else {
            None
        }
    }

    /// Bits given as booleans.
    pub const fn from_bools(values: &'a [bool]) -> Self {
        Bits(BitsRepr::Bools(values))
    }

    /// Number of bits.
    pub const fn len(&self) -> usize {
        match self.0 {
            BitsRepr::Packed { len, .. } => len as usize,
            BitsRepr::Bools(v) => v.len(),
        }
    }

    /// True when there are no bits.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bit `index`, if present.
    pub fn get(&self, index: usize) -> Option<bool> {
        match self.0 {
            BitsRepr::Packed { bytes, len } => {
                if index >= usize::from(len) {
                    return None;
                }
                let byte = bytes.get(index / 8)?;
                Some(byte >> (index % 8) & 1 == 1)
            }
            BitsRepr::Bools(v) => v.get(index).copied(),
        }
    }

    /// The bits in order.
    pub fn iter(&self) -> BitsIter<'a> {
        BitsIter { view: *self, next: 0 }
    }

    /// Packs the bits LSB first into `out`, which must be `packed_len(len())` long.
    fn write_packed(&self, out: &mut [u8]) {
        match self.0 {
            BitsRepr::Packed { bytes, .. } => {
                for (dst, src) in out.iter_mut().zip(bytes) {
                    *dst = *src;
                }
            }
            BitsRepr::Bools(values) => {
                for (dst, chunk) in out.iter_mut().zip(values.chunks(8)) {
                    *dst = chunk.iter().enumerate().fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i));
                }
            }
        }
    }
}

indexed_view!(Bits, BitsIter, bool);

/// A Modbus request PDU. Payloads borrow from the parsed bytes or the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// FC01.
    ReadCoils {
        /// First coil.
        address: u16,
        /// Number of coils, 1..=2000.
        quantity: u16,
    },
    /// FC02.
    ReadDiscreteInputs {
        /// First input.
        address: u16,
        /// Number of inputs, 1..=2000.
        quantity: u16,
    },
    /// FC03.
    ReadHoldingRegisters {
        /// First register.
        address: u16,
        /// Number of registers, 1..=125.
        quantity: u16,
    },
    /// FC04.
    ReadInputRegisters {
        /// First register.
        address: u16,
        /// Number of registers, 1..=125.
        quantity: u16,
    },
    /// FC05.
    WriteSingleCoil {
        /// The coil.
        address: u16,
        /// On (0xFF00 on the wire) or off (0x0000).
        value: bool,
    },
    /// FC06.
    WriteSingleRegister {
        /// The register.
        address: u16,
        /// Its new value.
        value: u16,
    },
    /// FC15.
    WriteMultipleCoils {
        /// First coil.
        address: u16,
        /// New values, 1..=1968 of them.
        values: Bits<'a>,
    },
    /// FC16.
    WriteMultipleRegisters {
        /// First register.
        address: u16,
        /// New values, 1..=123 of them.
        values: Words<'a>,
    },
    /// FC23: write first, then read, in one transaction.
    ReadWriteMultipleRegisters {
        /// First register to read.
        read_address: u16,
        /// Registers to read, 1..=125.
        read_quantity: u16,
        /// First register to write.
        write_address: u16,
        /// New values, 1..=121 of them.
        values: Words<'a>,
    },
}

/// Big-endian u16 at `offset`, or `Truncated`.
fn be16(pdu: &[u8], offset: usize) -> Result<u16, PduError> {
    match pdu.get(offset..offset + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(PduError::Truncated { expected: offset + 2, actual: pdu.len() }),
    }
}

/// Byte at `offset`, or `Truncated`.
fn byte_at(pdu: &[u8], offset: usize) -> Result<u8, PduError> {
    pdu.get(offset).copied().ok_or(PduError::Truncated { expected: offset + 1, actual: pdu.len() })
}

/// Requires `pdu` to be exactly `expected` bytes long.
fn exact_len(pdu: &[u8], expected: usize) -> Result<(), PduError> {
    let actual = pdu.len();
    match actual.cmp(&expected) {
        core::cmp::Ordering::Less => Err(PduError::Truncated { expected, actual }),
        core::cmp::Ordering::Greater => Err(PduError::TrailingBytes { expected, actual }),
        core::cmp::Ordering::Equal => Ok(()),
    }
}

/// Checks `1 <= quantity <= max`.
fn check_quantity(quantity: usize, max: u16) -> Result<u16, PduError> {
    let clipped = u16::try_from(quantity).unwrap_or(u16::MAX);
    if clipped == 0 || clipped > max {
        Err(PduError::QuantityOutOfRange { quantity: clipped, max })
    } else {
        Ok(clipped)
    }
}

/// Checks that `address + quantity <= 0x10000`.
fn check_range(address: u16, quantity: u16) -> Result<(), PduError> {
    if u32::from(address) + u32::from(quantity) > 0x1_0000 {
        Err(PduError::AddressOverflow { address, quantity })
    } else {
        Ok(())
    }
}

/// Checks a byte count field against the count the quantity implies.
fn check_byte_count(actual: u8, expected: usize) -> Result<(), PduError> {
    if usize::from(actual) == expected {
        Ok(())
    } else {
        Err(PduError::ByteCountMismatch { expected, actual: usize::from(actual) })
    }
}

/// The first `len` bytes of `buf`, or `BufferTooSmall`.
fn out_slice(buf: &mut [u8], len: usize) -> Result<&mut [u8], PduError> {
    let available = buf.len();
    buf.get_mut(..len).ok_or(PduError::BufferTooSmall { needed: len, available })
}

/// A u8 byte count for `len` bytes; callers validated `len <= 250` already.
fn byte_count(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

impl<'a> Request<'a> {
    /// The function code.
    pub const fn function(&self) -> FunctionCode {
        match self {
            Request::ReadCoils { .. } => FunctionCode::ReadCoils,
            Request::ReadDiscreteInputs { .. } => FunctionCode::ReadDiscreteInputs,
            Request::ReadHoldingRegisters { .. } => FunctionCode::ReadHoldingRegisters,
            Request::ReadInputRegisters { .. } => FunctionCode::ReadInputRegisters,
            Request::WriteSingleCoil { .. } => FunctionCode::WriteSingleCoil,
            Request::WriteSingleRegister { .. } => FunctionCode::WriteSingleRegister,
            Request::WriteMultipleCoils { .. } => FunctionCode::WriteMultipleCoils,
            Request::WriteMultipleRegisters { .. } => FunctionCode::WriteMultipleRegisters,
            Request::ReadWriteMultipleRegisters { .. } => FunctionCode::ReadWriteMultipleRegisters,
        }
    }

    /// Length of the PDU `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Request::WriteMultipleCoils { values, .. } => 6 + packed_len(values.len()),
            Request::WriteMultipleRegisters { values, .. } => 6 + 2 * values.len(),
            Request::ReadWriteMultipleRegisters { values, .. } => 10 + 2 * values.len(),
            _ => 5,
        }
    }

    /// PDU length of a normal (non-exception) response to this request; an
    /// exception response is always 2. The RTU receiver waits for exactly this.
    pub const fn expected_response_len(&self) -> usize {
        match *self {
            Request::ReadCoils { quantity, .. } | Request::ReadDiscreteInputs { quantity, .. } => {
                2 + packed_len(quantity as usize)
            }
            Request::ReadHoldingRegisters { quantity, .. }
            | Request::ReadInputRegisters { quantity, .. }
            | Request::ReadWriteMultipleRegisters { read_quantity: quantity, .. } => {
                2 + 2 * quantity as usize
            }
            _ => 5,
        }
    }

    /// Checks every limit the spec puts on this request.
    pub fn validate(&self) -> Result<(), PduError> {
        match *self {
            Request::ReadCoils { address, quantity } | Request::ReadDiscreteInputs { address, quantity } => {
                check_quantity(usize::from(quantity), MAX_READ_BITS)?;
                check_range(address, quantity)
            }
            Request::ReadHoldingRegisters { address, quantity }
            | Request::ReadInputRegisters { address, quantity } => {
                check_quantity(usize::from(quantity), MAX_READ_REGISTERS)?;
                check_range(address, quantity)
            }
            Request::WriteSingleCoil { .. } | Request::WriteSingleRegister { .. } => Ok(()),
            Request::WriteMultipleCoils { address, values } => {
                let quantity = check_quantity(values.len(), MAX_WRITE_COILS)?;
                check_range(address, quantity)
            }
            Request::WriteMultipleRegisters { address, values } => {
                let quantity = check_quantity(values.len(), MAX_WRITE_REGISTERS)?;
                check_range(address, quantity)
            }
            Request::ReadWriteMultipleRegisters { read_address, read_quantity, write_address, values } => {
                check_quantity(usize::from(read_quantity), MAX_READ_REGISTERS)?;
                check_range(read_address, read_quantity)?;
                let write_quantity = check_quantity(values.len(), MAX_RW_WRITE_REGISTERS)?;
                check_range(write_address, write_quantity)
            }
        }
    }

    /// Parses and validates a request PDU (the slave side). The PDU must be
    /// exactly as long as its fields.
    pub fn parse(pdu: &'a [u8]) -> Result<Self, PduError> {
        let function = byte_at(pdu, 0)?;
        let request = match FunctionCode::from_u8(function) {
            FunctionCode::ReadCoils
            | FunctionCode::ReadDiscreteInputs
            | FunctionCode::ReadHoldingRegisters
            | FunctionCode::ReadInputRegisters => {
                exact_len(pdu, 5)?;
                let address = be16(pdu, 1)?;
                let quantity = be16(pdu, 3)?;
                match FunctionCode::from_u8(function) {
                    FunctionCode::ReadCoils => Request::ReadCoils { address, quantity },
                    FunctionCode::ReadDiscreteInputs => Request::ReadDiscreteInputs { address, quantity },
                    FunctionCode::ReadHoldingRegisters => Request::ReadHoldingRegisters { address, quantity },
                    _ => Request::ReadInputRegisters { address, quantity },
                }
            }
            FunctionCode::WriteSingleCoil => {
                exact_len(pdu, 5)?;
                let address = be16(pdu, 1)?;
                let value = parse_coil_value(be16(pdu, 3)?)?;
                Request::WriteSingleCoil { address, value }
            }
            FunctionCode::WriteSingleRegister => {
                exact_len(pdu, 5)?;
                Request::WriteSingleRegister { address: be16(pdu, 1)?, value: be16(pdu, 3)? }
            }
            FunctionCode::WriteMultipleCoils => {
                let address = be16(pdu, 1)?;
                let quantity = check_quantity(usize::from(be16(pdu, 3)?), MAX_WRITE_COILS)?;
                let count = byte_at(pdu, 5)?;
                check_byte_count(count, packed_len(usize::from(quantity)))?;
                exact_len(pdu, 6 + usize::from(count))?;
                let data = pdu.get(6..).unwrap_or_default();
                let values = Bits::from_packed(data, quantity).ok_or(PduError::ByteCountMismatch {
                    expected: usize::from(count),
                    actual: data.len(),
                })?;
                Request::WriteMultipleCoils { address, values }
            }
            FunctionCode::WriteMultipleRegisters => {
                let address = be16(pdu, 1)?;
                let quantity = check_quantity(usize::from(be16(pdu, 3)?), MAX_WRITE_REGISTERS)?;
                let count = byte_at(pdu, 5)?;
                check_byte_count(count, 2 * usize::from(quantity))?;
                exact_len(pdu, 6 + usize::from(count))?;
                Request::WriteMultipleRegisters { address, values: words_at(pdu, 6)? }
            }
            FunctionCode::ReadWriteMultipleRegisters => {
                let read_address = be16(pdu, 1)?;
                let read_quantity = be16(pdu, 3)?;
                let write_address = be16(pdu, 5)?;
                let write_quantity = check_quantity(usize::from(be16(pdu, 7)?), MAX_RW_WRITE_REGISTERS)?;
                let count = byte_at(pdu, 9)?;
                check_byte_count(count, 2 * usize::from(write_quantity))?;
                exact_len(pdu, 10 + usize::from(count))?;
                let values = words_at(pdu, 10)?;
                Request::ReadWriteMultipleRegisters { read_address, read_quantity, write_address, values }
            }
            FunctionCode::Unknown(function) => return Err(PduError::UnsupportedFunction { function }),
        };
        request.validate()?;
        Ok(request)
    }

    /// Writes the request PDU into `buf` after validating it; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        self.validate()?;
        let len = self.buffer_len();
        let out = out_slice(buf, len)?;
        out[0] = self.function().value();
        match *self {
            Request::ReadCoils { address, quantity }
            | Request::ReadDiscreteInputs { address, quantity }
            | Request::ReadHoldingRegisters { address, quantity }
            | Request::ReadInputRegisters { address, quantity } => put_pair(out, address, quantity),
            Request::WriteSingleCoil { address, value } => {
                put_pair(out, address, if value { COIL_ON } else { COIL_OFF })
            }
            Request::WriteSingleRegister { address, value } => put_pair(out, address, value),
            Request::WriteMultipleCoils { address, values } => {
                put_pair(out, address, u16::try_from(values.len()).unwrap_or(u16::MAX));
                out[5] = byte_count(len - 6);
                values.write_packed(&mut out[6..]);
            }
            Request::WriteMultipleRegisters { address, values } => {
                put_pair(out, address, u16::try_from(values.len()).unwrap_or(u16::MAX));
                out[5] = byte_count(len - 6);
                values.write_be(&mut out[6..]);
            }
            Request::ReadWriteMultipleRegisters { read_address, read_quantity, write_address, values } => {
                put_pair(out, read_address, read_quantity);
                out[5..7].copy_from_slice(&write_address.to_be_bytes());
                out[7..9].copy_from_slice(&u16::try_from(values.len()).unwrap_or(u16::MAX).to_be_bytes());
                out[9] = byte_count(len - 10);
                values.write_be(&mut out[10..]);
            }
        }
        Ok(len)
    }
}

impl EmitPdu for Request<'_> {
    fn pdu_len(&self) -> usize {
        self.buffer_len()
    }
    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        Request::emit(self, buf)
    }
}

/// Writes two big-endian u16 at offsets 1 and 3 of a buffer at least 5 long.
fn put_pair(out: &mut [u8], first: u16, second: u16) {
    if let Some(dst) = out.get_mut(1..5) {
        let [a, b] = first.to_be_bytes();
        let [c, d] = second.to_be_bytes();
        dst.copy_from_slice(&[a, b, c, d]);
    }
}

/// FC05's value field as a bool.
fn parse_coil_value(value: u16) -> Result<bool, PduError> {
    match value {
        COIL_ON => Ok(true),
        COIL_OFF => Ok(false),
        value => Err(PduError::InvalidCoilValue { value }),
    }
}

/// The registers from `offset` to the end of `pdu`.
fn words_at(pdu: &[u8], offset: usize) -> Result<Words<'_>, PduError> {
    let data = pdu.get(offset..).ok_or(PduError::Truncated { expected: offset, actual: pdu.len() })?;
    Words::from_be_bytes(data)
        .ok_or(PduError::ByteCountMismatch { expected: data.len() + 1, actual: data.len() })
}

/// Total length of a request PDU from its first bytes, for receivers that
/// want to end a frame without waiting for silence. `Ok(None)`: need more
/// bytes (at most 10 are ever needed).
pub fn request_pdu_len(prefix: &[u8]) -> Result<Option<usize>, PduError> {
    let Some(&function) = prefix.first() else {
        return Ok(None);
    };
    let count_at = |offset: usize, fixed: usize| prefix.get(offset).map(|&count| fixed + usize::from(count));
    Ok(match FunctionCode::from_u8(function) {
        FunctionCode::WriteMultipleCoils | FunctionCode::WriteMultipleRegisters => count_at(5, 6),
        FunctionCode::ReadWriteMultipleRegisters => count_at(9, 10),
        FunctionCode::Unknown(function) => return Err(PduError::UnsupportedFunction { function }),
        _ => Some(5),
    })
}

/// Total length of a response PDU from its first bytes, when the request is
/// not known (a bus sniffer). `Ok(None)`: need more bytes.
pub fn response_pdu_len(prefix: &[u8]) -> Result<Option<usize>, PduError> {
    let Some(&function) = prefix.first() else {
        return Ok(None);
    };
    if function & EXCEPTION_FLAG != 0 {
        return Ok(Some(2));
    }
    Ok(match FunctionCode::from_u8(function) {
        FunctionCode::ReadCoils
        | FunctionCode::ReadDiscreteInputs
        | FunctionCode::ReadHoldingRegisters
        | FunctionCode::ReadInputRegisters
        | FunctionCode::ReadWriteMultipleRegisters => prefix.get(1).map(|&count| 2 + usize::from(count)),
        FunctionCode::Unknown(function) => return Err(PduError::UnsupportedFunction { function }),
        _ => Some(5),
    })
}

/// A normal (non-exception) response PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// FC01 answer.
    ReadCoils(Bits<'a>),
    /// FC02 answer.
    ReadDiscreteInputs(Bits<'a>),
    /// FC03 answer.
    ReadHoldingRegisters(Words<'a>),
    /// FC04 answer.
    ReadInputRegisters(Words<'a>),
    /// FC05 echo.
    WriteSingleCoil {
        /// The coil.
        address: u16,
        /// Its new state.
        value: bool,
    },
    /// FC06 echo.
    WriteSingleRegister {
        /// The register.
        address: u16,
        /// Its new value.
        value: u16,
    },
    /// FC15 echo.
    WriteMultipleCoils {
        /// First coil written.
        address: u16,
        /// Number written.
        quantity: u16,
    },
    /// FC16 echo.
    WriteMultipleRegisters {
        /// First register written.
        address: u16,
        /// Number written.
        quantity: u16,
    },
    /// FC23 answer: the registers read.
    ReadWriteMultipleRegisters(Words<'a>),
}

impl<'a> Response<'a> {
    /// Parses `pdu` as the answer to `request` and checks it fits: same
    /// function, byte count matching the requested quantity, exact echo for
    /// writes. `Ok(Err(code))` is a well-formed exception response.
    pub fn parse(request: &Request<'_>, pdu: &'a [u8]) -> Result<Result<Self, ExceptionCode>, PduError> {
        let function = byte_at(pdu, 0)?;
        let expected = request.function().value();
        if function == expected | EXCEPTION_FLAG {
            return ExceptionResponse::parse(pdu).map(|exception| Err(exception.code));
        }
        if function != expected {
            return Err(PduError::FunctionMismatch { expected, actual: function });
        }
        let response = match *request {
            Request::ReadCoils { quantity, .. } | Request::ReadDiscreteInputs { quantity, .. } => {
                let data = counted_data(pdu, packed_len(usize::from(quantity)))?;
                let bits = Bits::from_packed(data, quantity).ok_or(PduError::ResponseKindMismatch)?;
                if matches!(request, Request::ReadCoils { .. }) {
                    Response::ReadCoils(bits)
                } else {
                    Response::ReadDiscreteInputs(bits)
                }
            }
            Request::ReadHoldingRegisters { quantity, .. }
            | Request::ReadInputRegisters { quantity, .. }
            | Request::ReadWriteMultipleRegisters { read_quantity: quantity, .. } => {
                let data = counted_data(pdu, 2 * usize::from(quantity))?;
                let words = Words::from_be_bytes(data).ok_or(PduError::ResponseKindMismatch)?;
                match request {
                    Request::ReadHoldingRegisters { .. } => Response::ReadHoldingRegisters(words),
                    Request::ReadInputRegisters { .. } => Response::ReadInputRegisters(words),
                    _ => Response::ReadWriteMultipleRegisters(words),
                }
            }
            Request::WriteSingleCoil { .. }
            | Request::WriteSingleRegister { .. }
            | Request::WriteMultipleCoils { .. }
            | Request::WriteMultipleRegisters { .. } => {
                exact_len(pdu, 5)?;
                let address = be16(pdu, 1)?;
                let second = be16(pdu, 3)?;
                let echo = match request {
                    Request::WriteSingleCoil { .. } => {
                        Response::WriteSingleCoil { address, value: parse_coil_value(second)? }
                    }
                    Request::WriteSingleRegister { .. } => {
                        Response::WriteSingleRegister { address, value: second }
                    }
                    Request::WriteMultipleCoils { .. } => {
                        Response::WriteMultipleCoils { address, quantity: second }
                    }
                    _ => Response::WriteMultipleRegisters { address, quantity: second },
                };
                if Response::echo(request) != Some(echo) {
                    return Err(PduError::EchoMismatch);
                }
                echo
            }
        };
        Ok(Ok(response))
    }

    /// The echo a device sends for a write request; `None` for reads.
    pub fn echo(request: &Request<'_>) -> Option<Response<'static>> {
        let quantity = |len: usize| u16::try_from(len).unwrap_or(u16::MAX);
        match *request {
            Request::WriteSingleCoil { address, value } => Some(Response::WriteSingleCoil { address, value }),
            Request::WriteSingleRegister { address, value } => {
                Some(Response::WriteSingleRegister { address, value })
            }
            Request::WriteMultipleCoils { address, values } => {
                Some(Response::WriteMultipleCoils { address, quantity: quantity(values.len()) })
            }
            Request::WriteMultipleRegisters { address, values } => {
                Some(Response::WriteMultipleRegisters { address, quantity: quantity(values.len()) })
            }
            _ => None,
        }
    }

    /// The function code.
    pub const fn function(&self) -> FunctionCode {
        match self {
            Response::ReadCoils(_) => FunctionCode::ReadCoils,
            Response::ReadDiscreteInputs(_) => FunctionCode::ReadDiscreteInputs,
            Response::ReadHoldingRegisters(_) => FunctionCode::ReadHoldingRegisters,
            Response::ReadInputRegisters(_) => FunctionCode::ReadInputRegisters,
            Response::WriteSingleCoil { .. } => FunctionCode::WriteSingleCoil,
            Response::WriteSingleRegister { .. } => FunctionCode::WriteSingleRegister,
            Response::WriteMultipleCoils { .. } => FunctionCode::WriteMultipleCoils,
            Response::WriteMultipleRegisters { .. } => FunctionCode::WriteMultipleRegisters,
            Response::ReadWriteMultipleRegisters(_) => FunctionCode::ReadWriteMultipleRegisters,
        }
    }

    /// The registers of an FC03, FC04 or FC23 answer.
    pub const fn registers(&self) -> Option<Words<'a>> {
        match *self {
            Response::ReadHoldingRegisters(words)
            | Response::ReadInputRegisters(words)
            | Response::ReadWriteMultipleRegisters(words) => Some(words),
            _ => None,
        }
    }

    /// The bits of an FC01 or FC02 answer.
    pub const fn bits(&self) -> Option<Bits<'a>> {
        match *self {
            Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => Some(bits),
            _ => None,
        }
    }

    /// Register `index` of a register answer.
    pub fn register(&self, index: usize) -> Option<u16> {
        self.registers()?.get(index)
    }

    /// Bit `index` of a bit answer.
    pub fn bit(&self, index: usize) -> Option<bool> {
        self.bits()?.get(index)
    }

    /// Number of registers or bits carried; 0 for write echoes.
    pub const fn len(&self) -> usize {
        match (self.registers(), self.bits()) {
            (Some(words), _) => words.len(),
            (_, Some(bits)) => bits.len(),
            _ => 0,
        }
    }

    /// True when no registers or bits are carried.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the PDU `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        match (self.registers(), self.bits()) {
            (Some(words), _) => 2 + 2 * words.len(),
            (_, Some(bits)) => 2 + packed_len(bits.len()),
            _ => 5,
        }
    }

    /// Writes the response PDU (the simulator side); returns the length.
    /// Fails when the payload does not fit one PDU.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        let len = self.buffer_len();
        match (self.registers(), self.bits()) {
            (Some(words), _) => {
                check_quantity(words.len(), MAX_READ_REGISTERS)?;
            }
            (_, Some(bits)) => {
                check_quantity(bits.len(), MAX_READ_BITS)?;
            }
            _ => {}
        }
        let out = out_slice(buf, len)?;
        out[0] = self.function().value();
        match *self {
            Response::ReadCoils(bits) | Response::ReadDiscreteInputs(bits) => {
                out[1] = byte_count(len - 2);
                bits.write_packed(&mut out[2..]);
            }
            Response::ReadHoldingRegisters(words)
            | Response::ReadInputRegisters(words)
            | Response::ReadWriteMultipleRegisters(words) => {
                out[1] = byte_count(len - 2);
                words.write_be(&mut out[2..]);
            }
            Response::WriteSingleCoil { address, value } => {
                put_pair(out, address, if value { COIL_ON } else { COIL_OFF })
            }
            Response::WriteSingleRegister { address, value } => put_pair(out, address, value),
            Response::WriteMultipleCoils { address, quantity }
            | Response::WriteMultipleRegisters { address, quantity } => put_pair(out, address, quantity),
        }
        Ok(len)
    }
}

impl EmitPdu for Response<'_> {
    fn pdu_len(&self) -> usize {
        self.buffer_len()
    }
    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        Response::emit(self, buf)
    }
}

/// The data of a read response: byte count at offset 1 must equal `expected`
/// and the PDU must end right after the data.
fn counted_data(pdu: &[u8], expected: usize) -> Result<&[u8], PduError> {
    let count = byte_at(pdu, 1)?;
    check_byte_count(count, expected)?;
    exact_len(pdu, 2 + expected)?;
    Ok(pdu.get(2..).unwrap_or_default())
}

/// An exception response: the request's function with bit 7 set, and a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ExceptionResponse {
    /// The function of the request refused (without the 0x80 flag).
    pub function: FunctionCode,
    /// Why.
    pub code: ExceptionCode,
}

impl ExceptionResponse {
    /// Length of an exception PDU.
    pub const LEN: usize = 2;

    /// Parses a 2-byte exception PDU (function byte must have bit 7 set).
    pub fn parse(pdu: &[u8]) -> Result<Self, PduError> {
        exact_len(pdu, Self::LEN)?;
        let function = byte_at(pdu, 0)?;
        if function & EXCEPTION_FLAG == 0 {
            return Err(PduError::ResponseKindMismatch);
        }
        Ok(ExceptionResponse {
            function: FunctionCode::from_u8(function & !EXCEPTION_FLAG),
            code: ExceptionCode::from_u8(byte_at(pdu, 1)?),
        })
    }

    /// Writes the exception PDU; returns 2.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        let out = out_slice(buf, Self::LEN)?;
        out.copy_from_slice(&[self.function.value() | EXCEPTION_FLAG, self.code.value()]);
        Ok(Self::LEN)
    }
}

impl EmitPdu for ExceptionResponse {
    fn pdu_len(&self) -> usize {
        Self::LEN
    }
    fn emit(&self, buf: &mut [u8]) -> Result<usize, PduError> {
        ExceptionResponse::emit(self, buf)
    }
}

#[cfg(test)]
mod tests;
