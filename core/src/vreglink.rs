//! VregLink: Victron's VREG get/set carried by one Modbus FC23 transaction.
//!
//! Protocol (dbus-modbus-client `README.md`, "VregLink"; venus-conventions
//! 7.2): a device exposes a block of holding registers at a device-specific
//! base. Every access is one Read/Write Multiple Registers (FC23) whose write
//! and read halves both start at the base. Bytes are packed into registers
//! MSB first.
//!
//! | direction | offset 0 | offset 1 | offset 2 | offset 3.. |
//! |---|---|---|---|---|
//! | write, GetVreg | VREG id | – | – | – |
//! | write, SetVreg | VREG id | size (bytes) | data… | data… |
//! | read (both) | VREG id echo | status | size (bytes) | data… |
//!
//! The SetVreg size field is the real byte count; an odd count is padded with
//! one zero byte, so it equals 2 × data registers or one less. The read half
//! always asks for `3 + data_registers` registers (the device's data area;
//! 32 for the VM-3P75CT/VM-3P5A, so 35 registers). The device reports the
//! VREG's full size even when the window is too small; the reply is then
//! trimmed to what arrived and flagged [`VregReply::truncated`].
//!
//! Limits, exactly:
//! - read: `3 + data_registers <= 125` (FC23 read limit), so a data area is
//!   at most [`MAX_DATA_REGISTERS`] = 122 registers and a reply carries at
//!   most [`MAX_REPLY_DATA`] = 244 bytes;
//! - write: `2 + ceil(len / 2) <= 121` (FC23 write limit), so SetVreg data is
//!   at most [`MAX_SET_DATA_REGISTERS`] = 119 registers = [`MAX_SET_DATA`] =
//!   238 bytes, and never more than the device's data area
//!   ([`VregLink::max_set_len`]: 64 bytes for the VM meters).
//!
//! Status values are the device's, passed through unchanged. Failures below
//! VregLink (a Modbus exception, a timeout, a bad frame, an id echo that does
//! not match) map to [`STATUS_READ_UNKNOWN`] for a GetVreg and
//! [`STATUS_WRITE_UNKNOWN`] for a SetVreg with empty data, as the upstream
//! client does ([`VregOp::failure_status`], [`VregReply::failure`]). Invalid
//! input to a builder never reaches the wire: it returns the error status at
//! once (oversized SetVreg data: [`STATUS_WRITE_INVALID_DATA`]).
//!
//! The master side is [`VregLink::get`] / [`VregLink::set`] →
//! [`VregRequest::request`] (a [`Request`] borrowing the request's words) →
//! [`VregRequest::parse_reply`]. The slave side (simulator) is
//! [`VregCommand::parse`] → table lookup → [`encode_reply`] (or [`serve`]).
//! [`VregWrite`] / [`VregSupport`] describe which D-Bus paths of a profile
//! are written through VregLink rather than a register write.
//!
//! Every function here is total: any words or bytes yield a value or an
//! error, never a panic.

use core::fmt;
use heapless::Vec;

use crate::pdu::{Request, Words, MAX_READ_REGISTERS, MAX_RW_WRITE_REGISTERS};

/// Success.
pub const STATUS_SUCCESS: u16 = 0x0000;
/// GetVreg: unknown error (also: any transport failure on a GetVreg).
pub const STATUS_READ_UNKNOWN: u16 = 0x8000;
/// GetVreg: the VREG does not exist.
pub const STATUS_READ_NO_VREG: u16 = 0x8001;
/// GetVreg: the VREG is write-only.
pub const STATUS_READ_WRITE_ONLY: u16 = 0x8002;
/// SetVreg: unknown error (also: any transport failure on a SetVreg).
pub const STATUS_WRITE_UNKNOWN: u16 = 0x8100;
/// SetVreg: the VREG does not exist.
pub const STATUS_WRITE_NO_VREG: u16 = 0x8101;
/// SetVreg: the VREG is read-only.
pub const STATUS_WRITE_READ_ONLY: u16 = 0x8102;
/// SetVreg: the data is invalid for the VREG (also: too long for the block).
pub const STATUS_WRITE_INVALID_DATA: u16 = 0x8104;

/// The protocol's name for a status value (`"unknown status"` for others).
pub const fn status_name(status: u16) -> &'static str {
    match status {
        STATUS_SUCCESS => "success",
        STATUS_READ_UNKNOWN => "read: unknown error",
        STATUS_READ_NO_VREG => "read: VREG does not exist",
        STATUS_READ_WRITE_ONLY => "read: VREG is write-only",
        STATUS_WRITE_UNKNOWN => "write: unknown error",
        STATUS_WRITE_NO_VREG => "write: VREG does not exist",
        STATUS_WRITE_READ_ONLY => "write: VREG is read-only",
        STATUS_WRITE_INVALID_DATA => "write: data invalid for VREG",
        _ => "unknown status",
    }
}

/// Registers before the data in the read half: id echo, status, size.
pub const READ_HEADER: u16 = 3;
/// Fewest registers a reply may have: id echo and status (a missing size
/// register reads as size 0).
pub const MIN_READ_QUANTITY: u16 = 2;
/// Registers before the data in a SetVreg write: id, size.
pub const SET_HEADER: u16 = 2;
/// Largest data area a read can cover: 125 − 3.
pub const MAX_DATA_REGISTERS: u16 = MAX_READ_REGISTERS - READ_HEADER;
/// Most data bytes one reply can carry: 2 × 122.
pub const MAX_REPLY_DATA: usize = 2 * MAX_DATA_REGISTERS as usize;
/// Most data registers one SetVreg can carry: 121 − 2.
pub const MAX_SET_DATA_REGISTERS: u16 = MAX_RW_WRITE_REGISTERS - SET_HEADER;
/// Most data bytes one SetVreg can carry: 2 × 119.
pub const MAX_SET_DATA: usize = 2 * MAX_SET_DATA_REGISTERS as usize;
/// Most registers the read half ever has (and so a slave reply).
pub const MAX_READ_WORDS: usize = MAX_READ_REGISTERS as usize;
/// Most registers the write half ever has.
pub const MAX_WRITE_WORDS: usize = MAX_RW_WRITE_REGISTERS as usize;

/// VREG data of a reply (at most [`MAX_REPLY_DATA`] bytes).
pub type VregData = Vec<u8, MAX_REPLY_DATA>;
/// VREG data of a SetVreg (at most [`MAX_SET_DATA`] bytes).
pub type VregSetData = Vec<u8, MAX_SET_DATA>;

/// Which D-Bus call an exchange serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VregOp {
    /// `GetVreg`: write the id, read the value.
    Get,
    /// `SetVreg`: write id, size and data, read the result.
    Set,
}

impl VregOp {
    /// The status upstream reports when the exchange itself failed (Modbus
    /// exception, timeout, id echo mismatch): 0x8000 for a get, 0x8100 for a set.
    pub const fn failure_status(self) -> u16 {
        match self {
            VregOp::Get => STATUS_READ_UNKNOWN,
            VregOp::Set => STATUS_WRITE_UNKNOWN,
        }
    }
}

/// The status for a failed exchange of kind `op` (see [`VregOp::failure_status`]).
pub const fn transport_failure_status(op: VregOp) -> u16 {
    op.failure_status()
}

/// Why a VregLink reply (master side) or command (slave side) was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VregError {
    /// Fewer registers than the fixed header.
    Short {
        /// Registers received.
        registers: usize,
        /// Registers the header needs.
        needed: usize,
    },
    /// The echoed VREG id is not the one asked for.
    IdMismatch {
        /// Id requested.
        expected: u16,
        /// Id echoed.
        actual: u16,
    },
    /// A SetVreg size field that does not fit its data registers (it must be
    /// 2 × registers or one less).
    BadSize {
        /// The VREG id written.
        id: u16,
        /// The size field.
        size: u16,
        /// Data registers written.
        registers: usize,
    },
}

impl VregError {
    /// The status a master reports to D-Bus for this failure of an `op`
    /// exchange (upstream: the op's unknown error).
    pub const fn status(&self, op: VregOp) -> u16 {
        op.failure_status()
    }
}

impl fmt::Display for VregError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            VregError::Short { registers, needed } => {
                write!(f, "VregLink: {registers} registers, header needs {needed}")
            }
            VregError::IdMismatch { expected, actual } => {
                write!(f, "VregLink: asked for VREG {expected:#06x}, device echoed {actual:#06x}")
            }
            VregError::BadSize { id, size, registers } => {
                write!(f, "VregLink: VREG {id:#06x} size {size} does not fit {registers} data registers")
            }
        }
    }
}

impl core::error::Error for VregError {}

/// A device's VregLink block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregLink {
    /// First holding register of the block (both halves of FC23 start here).
    pub base: u16,
    /// Size of the data area in registers, 1..=[`MAX_DATA_REGISTERS`]
    /// (VM-3P75CT/VM-3P5A: 32).
    pub data_registers: u16,
}

impl VregLink {
    /// A block at `base` with a data area of `data_registers` registers.
    /// Not checked here (const tables); every builder checks [`VregLink::is_valid`].
    pub const fn new(base: u16, data_registers: u16) -> Self {
        VregLink { base, data_registers }
    }

    /// Data area within 1..=122 registers and the read window inside the
    /// 16-bit address space.
    pub const fn is_valid(&self) -> bool {
        self.data_registers >= 1
            && self.data_registers <= MAX_DATA_REGISTERS
            && self.base as u32 + self.read_quantity() as u32 <= 0x1_0000
    }

    /// Registers the read half asks for: `3 + data_registers`, saturating.
    pub const fn read_quantity(&self) -> u16 {
        self.data_registers.saturating_add(READ_HEADER)
    }

    /// Most bytes a SetVreg may carry to this device: the data area, capped
    /// by FC23's write limit (238 bytes); 0 for an invalid block.
    pub const fn max_set_len(&self) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let regs = if self.data_registers < MAX_SET_DATA_REGISTERS {
            self.data_registers
        } else {
            MAX_SET_DATA_REGISTERS
        };
        2 * regs as usize
    }

    /// Builds a GetVreg of `id`; `Err(0x8000)` if the block is invalid.
    pub fn get(&self, id: u16) -> Result<VregRequest, u16> {
        if !self.is_valid() {
            return Err(STATUS_READ_UNKNOWN);
        }
        let mut write = Vec::new();
        write.push(id).map_err(|_| STATUS_READ_UNKNOWN)?;
        Ok(VregRequest { op: VregOp::Get, id, base: self.base, read_quantity: self.read_quantity(), write })
    }

    /// Builds a SetVreg of `id` to `data`. `Err(0x8104)` when the data is
    /// longer than [`VregLink::max_set_len`], `Err(0x8100)` if the block is
    /// invalid; nothing is built then. Empty data is allowed (size 0).
    pub fn set(&self, id: u16, data: &[u8]) -> Result<VregRequest, u16> {
        if !self.is_valid() {
            return Err(STATUS_WRITE_UNKNOWN);
        }
        if data.len() > self.max_set_len() {
            return Err(STATUS_WRITE_INVALID_DATA);
        }
        let size = u16::try_from(data.len()).map_err(|_| STATUS_WRITE_INVALID_DATA)?;
        let mut write: Vec<u16, MAX_WRITE_WORDS> = Vec::new();
        write.push(id).map_err(|_| STATUS_WRITE_UNKNOWN)?;
        write.push(size).map_err(|_| STATUS_WRITE_UNKNOWN)?;
        for pair in data.chunks(2) {
            let hi = pair.first().copied().unwrap_or(0);
            let lo = pair.get(1).copied().unwrap_or(0);
            write.push(u16::from_be_bytes([hi, lo])).map_err(|_| STATUS_WRITE_INVALID_DATA)?;
        }
        Ok(VregRequest { op: VregOp::Set, id, base: self.base, read_quantity: self.read_quantity(), write })
    }
}

/// One ready VregLink exchange: owns the registers to write, lends them to
/// the FC23 [`Request`] it produces, and parses the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregRequest {
    op: VregOp,
    id: u16,
    base: u16,
    read_quantity: u16,
    write: Vec<u16, MAX_WRITE_WORDS>,
}

impl VregRequest {
    /// Get or set.
    pub const fn op(&self) -> VregOp {
        self.op
    }

    /// The VREG id.
    pub const fn id(&self) -> u16 {
        self.id
    }

    /// The registers the write half carries.
    pub fn write_words(&self) -> &[u16] {
        &self.write
    }

    /// Registers the read half asks for.
    pub const fn read_quantity(&self) -> u16 {
        self.read_quantity
    }

    /// Overrides how many registers the read half asks for, 2..=125 (the
    /// seed's SetVreg example reads only `[id, status]`). `Err` with the op's
    /// unknown-error status when out of range or past address 0xFFFF.
    pub fn with_read_quantity(mut self, read_quantity: u16) -> Result<Self, u16> {
        let fits = u32::from(self.base) + u32::from(read_quantity) <= 0x1_0000;
        if !(MIN_READ_QUANTITY..=MAX_READ_REGISTERS).contains(&read_quantity) || !fits {
            return Err(self.op.failure_status());
        }
        self.read_quantity = read_quantity;
        Ok(self)
    }

    /// The FC23 request: write and read both at the block base.
    pub fn request(&self) -> Request<'_> {
        Request::ReadWriteMultipleRegisters {
            read_address: self.base,
            read_quantity: self.read_quantity,
            write_address: self.base,
            values: Words::from_slice(&self.write),
        }
    }

    /// Parses the registers the FC23 answer read (see [`parse_reply`]).
    pub fn parse_reply(&self, registers: Words<'_>) -> Result<VregReply, VregError> {
        parse_reply(self.op, self.id, registers)
    }

    /// Like [`VregRequest::parse_reply`] but collapsed as upstream does: a
    /// rejected reply becomes [`VregReply::failure`].
    pub fn reply_or_failure(&self, registers: Words<'_>) -> VregReply {
        self.parse_reply(registers).unwrap_or_else(|_| VregReply::failure(self.op))
    }

    /// The reply to report when the exchange failed below VregLink.
    pub fn failure(&self) -> VregReply {
        VregReply::failure(self.op)
    }
}

/// What GetVreg/SetVreg return on D-Bus: status and data.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregReply {
    /// The device's status (0 = success), or the op's unknown error after a failure.
    pub status: u16,
    /// The VREG data, trimmed to the size field or to what arrived.
    pub data: VregData,
    /// The device reported more bytes than the read window held.
    pub truncated: bool,
}

impl VregReply {
    /// Empty data with the op's unknown-error status (upstream's reply to a
    /// Modbus error, a timeout or an id mismatch).
    pub fn failure(op: VregOp) -> Self {
        VregReply { status: op.failure_status(), data: Vec::new(), truncated: false }
    }

    /// Status is success.
    pub const fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }
}

/// Parses the read half of a VregLink FC23 answer to a `op` of VREG `id`:
/// `[id echo, status, size, data...]`. The echo must match (else an error,
/// never data); status is passed through; data is the first `size` bytes of
/// the data registers, or all of them with `truncated` set when `size` is
/// larger than what arrived (or than [`MAX_REPLY_DATA`]). A two-register
/// reply (`[id, status]`, the seed's SetVreg example) has size 0.
pub fn parse_reply(op: VregOp, id: u16, registers: Words<'_>) -> Result<VregReply, VregError> {
    let _ = op; // the layout is the same for both; kept for symmetry and logs.
    let (Some(echo), Some(status)) = (registers.get(0), registers.get(1)) else {
        return Err(VregError::Short { registers: registers.len(), needed: usize::from(MIN_READ_QUANTITY) });
    };
    let size = registers.get(2).unwrap_or(0);
    if echo != id {
        return Err(VregError::IdMismatch { expected: id, actual: echo });
    }
    let size = usize::from(size);
    let mut data = VregData::new();
    'words: for word in registers.iter().skip(usize::from(READ_HEADER)) {
        for byte in word.to_be_bytes() {
            if data.len() >= size || data.push(byte).is_err() {
                break 'words;
            }
        }
    }
    let truncated = size > data.len();
    Ok(VregReply { status, data, truncated })
}

/// A VregLink command as a slave sees it in the write half of an FC23.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregCommand {
    /// Get (only the id written) or set.
    pub op: VregOp,
    /// The VREG id.
    pub id: u16,
    /// SetVreg data (empty for a get).
    pub data: VregSetData,
}

impl VregCommand {
    /// Parses the written registers: `[id]` is a GetVreg, `[id, size,
    /// data...]` a SetVreg whose size must be 2 × data registers or one less.
    pub fn parse(written: Words<'_>) -> Result<Self, VregError> {
        let Some(id) = written.get(0) else {
            return Err(VregError::Short { registers: 0, needed: 1 });
        };
        let Some(size) = written.get(1) else {
            return Ok(VregCommand { op: VregOp::Get, id, data: Vec::new() });
        };
        let registers = written.len().saturating_sub(usize::from(SET_HEADER));
        let full = registers.saturating_mul(2);
        let size_ok = usize::from(size) == full || (registers > 0 && usize::from(size) + 1 == full);
        if !size_ok || usize::from(size) > MAX_SET_DATA {
            return Err(VregError::BadSize { id, size, registers });
        }
        let mut data = VregSetData::new();
        'words: for word in written.iter().skip(usize::from(SET_HEADER)) {
            for byte in word.to_be_bytes() {
                if data.len() >= usize::from(size) || data.push(byte).is_err() {
                    break 'words;
                }
            }
        }
        Ok(VregCommand { op: VregOp::Set, id, data })
    }
}

/// Registers of a slave's VregLink answer (at most 125).
pub type VregReplyWords = Vec<u16, MAX_READ_WORDS>;

/// The read-back registers a slave returns for VREG `id`: `[id, status,
/// size, data...]`, exactly `read_quantity` of them (clamped to 0..=125),
/// zero-padded. `size` is the full `data.len()` even when the window cuts
/// the data, as the protocol demands.
pub fn encode_reply(id: u16, status: u16, data: &[u8], read_quantity: u16) -> VregReplyWords {
    let n = usize::from(read_quantity).min(MAX_READ_WORDS);
    let size = u16::try_from(data.len()).unwrap_or(u16::MAX);
    let mut out = VregReplyWords::new();
    let mut chunks = data.chunks(2);
    for i in 0..n {
        let word = match i {
            0 => id,
            1 => status,
            2 => size,
            _ => match chunks.next() {
                Some(pair) => u16::from_be_bytes([
                    pair.first().copied().unwrap_or(0),
                    pair.get(1).copied().unwrap_or(0),
                ]),
                None => 0,
            },
        };
        if out.push(word).is_err() {
            break;
        }
    }
    out
}

/// The whole slave side of one VregLink FC23: parses `written`, asks
/// `lookup` for the status (filling `data` for a get, or consuming the
/// command's data for a set), and encodes `read_quantity` registers. A set
/// with an inconsistent size field is answered with 0x8104 without calling
/// `lookup`; an empty write (impossible in a valid FC23) with 0x8000 and id 0.
pub fn serve<F>(written: Words<'_>, read_quantity: u16, lookup: F) -> VregReplyWords
where
    F: FnOnce(&VregCommand, &mut VregData) -> u16,
{
    match VregCommand::parse(written) {
        Ok(command) => {
            let mut data = VregData::new();
            let status = lookup(&command, &mut data);
            encode_reply(command.id, status, &data, read_quantity)
        }
        Err(VregError::BadSize { id, .. }) => encode_reply(id, STATUS_WRITE_INVALID_DATA, &[], read_quantity),
        Err(_) => encode_reply(0, STATUS_READ_UNKNOWN, &[], read_quantity),
    }
}

/// How a D-Bus value becomes VREG bytes for a write routed through VregLink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VregEncoding {
    /// A string as its UTF-8 bytes (no terminator), as upstream's custom name.
    Utf8,
    /// A number 0..=255 as one byte (upstream truncates toward zero like
    /// Python's `int()`), as the N2K system instance.
    U8,
}

/// A value handed to [`VregWrite::encode`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum VregValue<'a> {
    /// A D-Bus string.
    Text(&'a str),
    /// A D-Bus number.
    Number(f64),
}

/// A D-Bus path whose writes go to a VREG instead of a register (the
/// register behind the path stays read-only and shows the result).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregWrite {
    /// The D-Bus path (`/CustomName`).
    pub path: &'static str,
    /// The VREG (`0x010C`).
    pub id: u16,
    /// How the value is encoded.
    pub encoding: VregEncoding,
}

impl VregWrite {
    /// Encodes `value` for a SetVreg; `Err(0x8104)` when the value does not
    /// fit the encoding or `max_len` bytes (pass [`VregLink::max_set_len`]).
    pub fn encode(&self, value: VregValue<'_>, max_len: usize) -> Result<VregSetData, u16> {
        let mut out = VregSetData::new();
        match (self.encoding, value) {
            (VregEncoding::Utf8, VregValue::Text(s)) => {
                if s.len() > max_len {
                    return Err(STATUS_WRITE_INVALID_DATA);
                }
                out.extend_from_slice(s.as_bytes()).map_err(|_| STATUS_WRITE_INVALID_DATA)?;
            }
            (VregEncoding::U8, VregValue::Number(x)) => {
                if !(x.is_finite() && x > -1.0 && x < 256.0) || max_len < 1 {
                    return Err(STATUS_WRITE_INVALID_DATA);
                }
                // In (-1, 256) and truncated toward zero: 0..=255.
                let byte = u8::try_from(x as i32).map_err(|_| STATUS_WRITE_INVALID_DATA)?;
                out.push(byte).map_err(|_| STATUS_WRITE_INVALID_DATA)?;
            }
            _ => return Err(STATUS_WRITE_INVALID_DATA),
        }
        Ok(out)
    }
}

/// A profile's VregLink support: the block, and which D-Bus writes the host
/// must route through it (checked before any register write policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VregSupport {
    /// The block.
    pub link: VregLink,
    /// Paths written through VregLink.
    pub writes: &'static [VregWrite],
}

impl VregSupport {
    /// The VregLink route for a write to `path`, if it has one.
    pub fn write_for(&self, path: &str) -> Option<&'static VregWrite> {
        self.writes.iter().find(|w| w.path == path)
    }

    /// Builds the SetVreg for a D-Bus write of `value` to `path`: `None` when
    /// the path is not routed through VregLink, `Some(Err(status))` when the
    /// value cannot be sent (0x8104) or the block is invalid (0x8100).
    pub fn set_request(&self, path: &str, value: VregValue<'_>) -> Option<Result<VregRequest, u16>> {
        let route = self.write_for(path)?;
        Some(route.encode(value, self.link.max_set_len()).and_then(|data| self.link.set(route.id, &data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: VregLink = VregLink::new(0x4000, 32);

    #[test]
    fn test_limits_are_exact() {
        assert_eq!(MAX_DATA_REGISTERS, 122);
        assert_eq!(MAX_REPLY_DATA, 244);
        assert_eq!(MAX_SET_DATA_REGISTERS, 119);
        assert_eq!(MAX_SET_DATA, 238);
        assert_eq!(VM.read_quantity(), 35);
        assert_eq!(VM.max_set_len(), 64);
        assert_eq!(VregLink::new(0, 122).max_set_len(), 238);
        assert!(VregLink::new(0, 122).is_valid());
        assert!(!VregLink::new(0, 123).is_valid());
        assert!(!VregLink::new(0, 0).is_valid());
        assert!(!VregLink::new(0xFFE0, 32).is_valid());
        assert!(VregLink::new(0x10000u32.wrapping_sub(35) as u16, 32).is_valid());
    }

    #[test]
    fn test_get_request_words() {
        let r = VM.get(0x0100).unwrap();
        assert_eq!(
            (r.op(), r.id(), r.write_words(), r.read_quantity()),
            (VregOp::Get, 0x100, &[0x100][..], 35)
        );
        assert!(r.request().validate().is_ok());
    }

    #[test]
    fn test_set_pads_odd_length_and_checks_size() {
        let r = VM.set(0x010C, b"abc").unwrap();
        assert_eq!(r.write_words(), &[0x010C, 3, 0x6162, 0x6300]);
        let r = VM.set(0x0112, &[]).unwrap();
        assert_eq!(r.write_words(), &[0x0112, 0]);
        assert_eq!(VM.set(1, &[0; 64]).map(|r| r.write_words().len()), Ok(34));
        assert_eq!(VM.set(1, &[0; 65]), Err(STATUS_WRITE_INVALID_DATA));
        let big = VregLink::new(0, 122);
        assert!(big.set(1, &[0; 238]).unwrap().request().validate().is_ok());
        assert_eq!(big.set(1, &[0; 239]), Err(STATUS_WRITE_INVALID_DATA));
        let bad = VregLink::new(0, 0);
        assert_eq!(bad.get(1), Err(STATUS_READ_UNKNOWN));
        assert_eq!(bad.set(1, &[]), Err(STATUS_WRITE_UNKNOWN));
    }

    #[test]
    fn test_parse_reply_trims_truncates_and_rejects() {
        let w = |s: &'static [u16]| Words::from_slice(s);
        let ok = parse_reply(VregOp::Get, 0x100, w(&[0x100, 0, 4, 0x0012, 0x34FE, 0xAAAA])).unwrap();
        assert_eq!((ok.status, ok.data.as_slice(), ok.truncated), (0, &[0x00, 0x12, 0x34, 0xFE][..], false));
        // Odd size: the pad byte is dropped.
        let odd = parse_reply(VregOp::Get, 7, w(&[7, 0, 3, 0x4142, 0x4300])).unwrap();
        assert_eq!(odd.data.as_slice(), b"ABC");
        // Size larger than the window: trimmed to what arrived, flagged.
        let cut = parse_reply(VregOp::Get, 7, w(&[7, 0, 100, 0x4142])).unwrap();
        assert_eq!((cut.data.as_slice(), cut.truncated), (&b"AB"[..], true));
        // Status passed through, with whatever data the device sent.
        let err = parse_reply(VregOp::Set, 9, w(&[9, STATUS_WRITE_READ_ONLY, 0])).unwrap();
        assert_eq!((err.status, err.data.len()), (0x8102, 0));
        assert_eq!(
            parse_reply(VregOp::Get, 9, w(&[8, 0, 0])),
            Err(VregError::IdMismatch { expected: 9, actual: 8 })
        );
        assert_eq!(parse_reply(VregOp::Get, 9, w(&[9])), Err(VregError::Short { registers: 1, needed: 2 }));
        let two = parse_reply(VregOp::Set, 9, w(&[9, 0])).unwrap();
        assert_eq!((two.status, two.data.len(), two.truncated), (0, 0, false));
        let r = VM.set(9, b"x").unwrap();
        assert_eq!(r.clone().with_read_quantity(2).map(|r| r.read_quantity()), Ok(2));
        assert_eq!(r.clone().with_read_quantity(1), Err(0x8100));
        assert_eq!(r.with_read_quantity(126), Err(0x8100));
        let edge = VregLink::new(0xFFDD, 32).get(1).unwrap();
        assert_eq!(edge.with_read_quantity(36), Err(0x8000));
        let req = VM.set(9, b"x").unwrap();
        assert_eq!(req.reply_or_failure(w(&[8, 0, 0])), VregReply::failure(VregOp::Set));
        assert_eq!(VregReply::failure(VregOp::Get).status, 0x8000);
        assert_eq!(transport_failure_status(VregOp::Set), 0x8100);
    }

    #[test]
    fn test_seed_examples_through_the_builders() {
        // Seed 001 "VregLink" examples, built with the builders (a block whose read window is
        // the example's 5 registers) and emitted byte for byte.
        let seed_block = VregLink::new(0x4000, 2);
        let get = seed_block.get(0x0100).unwrap();
        let mut buf = [0u8; 256];
        let n = get.request().emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x17, 0x40, 0x00, 0x00, 0x05, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00]);
        let answer = [0x17, 0x0A, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x12, 0x34, 0xFE];
        let Ok(Ok(crate::pdu::Response::ReadWriteMultipleRegisters(words))) =
            crate::pdu::Response::parse(&get.request(), &answer)
        else {
            panic!("seed answer does not parse");
        };
        let reply = get.parse_reply(words).unwrap();
        assert_eq!((reply.status, reply.data.as_slice()), (0, &[0x00, 0x12, 0x34, 0xFE][..]));

        let set = VM.set(0x010C, b"My Precious").unwrap().with_read_quantity(2).unwrap();
        let n = set.request().emit(&mut buf).unwrap();
        let seed = [
            0x17, 0x40, 0x00, 0x00, 0x02, 0x40, 0x00, 0x00, 0x08, 0x10, 0x01, 0x0C, 0x00, 0x0B, 0x4D, 0x79,
            0x20, 0x50, 0x72, 0x65, 0x63, 0x69, 0x6f, 0x75, 0x73, 0x00,
        ];
        assert_eq!(&buf[..n], &seed[..]);
        let answer = [0x17, 0x04, 0x01, 0x0C, 0x00, 0x00];
        let Ok(Ok(crate::pdu::Response::ReadWriteMultipleRegisters(words))) =
            crate::pdu::Response::parse(&set.request(), &answer)
        else {
            panic!("seed answer does not parse");
        };
        assert_eq!(set.parse_reply(words).map(|r| r.status), Ok(STATUS_SUCCESS));
    }

    #[test]
    fn test_status_names() {
        assert_eq!(status_name(0), "success");
        assert_eq!(status_name(0x8002), "read: VREG is write-only");
        assert_eq!(status_name(0x8104), "write: data invalid for VREG");
        assert_eq!(status_name(0x8103), "unknown status");
    }

    #[test]
    fn test_slave_roundtrip() {
        let req = VM.set(0x010C, b"My Precious").unwrap();
        let cmd = VregCommand::parse(Words::from_slice(req.write_words())).unwrap();
        assert_eq!((cmd.op, cmd.id, cmd.data.as_slice()), (VregOp::Set, 0x010C, &b"My Precious"[..]));
        let get = VregCommand::parse(Words::from_slice(&[0x100])).unwrap();
        assert_eq!((get.op, get.id, get.data.len()), (VregOp::Get, 0x100, 0));
        // Size must be 2n or 2n - 1.
        assert_eq!(
            VregCommand::parse(Words::from_slice(&[1, 5, 0, 0])),
            Err(VregError::BadSize { id: 1, size: 5, registers: 2 })
        );
        assert!(VregCommand::parse(Words::from_slice(&[1, 1])).is_err());
        assert!(VregCommand::parse(Words::from_slice(&[])).is_err());
        // Served reply parses back on the master side.
        let words = serve(Words::from_slice(&[0x100]), 35, |c, data| {
            assert_eq!(c.id, 0x100);
            data.extend_from_slice(&[0x00, 0x12, 0x34, 0xFE]).unwrap();
            STATUS_SUCCESS
        });
        assert_eq!(words.len(), 35);
        assert_eq!(&words[..5], &[0x100, 0, 4, 0x0012, 0x34FE]);
        let reply = VM.get(0x100).unwrap().parse_reply(Words::from_slice(&words)).unwrap();
        assert_eq!(reply.data.as_slice(), &[0x00, 0x12, 0x34, 0xFE]);
        // A window too small still reports the full size.
        assert_eq!(encode_reply(1, 0, &[1, 2, 3, 4, 5], 4).as_slice(), &[1, 0, 5, 0x0102]);
        let bad = serve(Words::from_slice(&[3, 9, 0]), 5, |_, _| unreachable!());
        assert_eq!(bad.as_slice(), &[3, STATUS_WRITE_INVALID_DATA, 0, 0, 0]);
    }

    #[test]
    fn test_vreg_write_routes() {
        const WRITES: [VregWrite; 2] = [
            VregWrite { path: "/CustomName", id: 0x010C, encoding: VregEncoding::Utf8 },
            VregWrite { path: "/N2kSystemInstance", id: 0x0112, encoding: VregEncoding::U8 },
        ];
        let s = VregSupport { link: VM, writes: &WRITES };
        let r = s.set_request("/CustomName", VregValue::Text("Ké")).unwrap().unwrap();
        assert_eq!(r.write_words(), &[0x010C, 3, 0x4BC3, 0xA900]);
        let r = s.set_request("/N2kSystemInstance", VregValue::Number(3.0)).unwrap().unwrap();
        assert_eq!(r.write_words(), &[0x0112, 1, 0x0300]);
        assert_eq!(s.set_request("/N2kSystemInstance", VregValue::Number(256.0)), Some(Err(0x8104)));
        assert_eq!(s.set_request("/N2kSystemInstance", VregValue::Number(-1.0)), Some(Err(0x8104)));
        assert_eq!(s.set_request("/N2kSystemInstance", VregValue::Number(f64::NAN)), Some(Err(0x8104)));
        assert_eq!(s.set_request("/N2kSystemInstance", VregValue::Text("1")), Some(Err(0x8104)));
        let long = "x".repeat(65);
        assert_eq!(s.set_request("/CustomName", VregValue::Text(&long)), Some(Err(0x8104)));
        assert!(s.set_request("/Serial", VregValue::Text("a")).is_none());
    }
}
