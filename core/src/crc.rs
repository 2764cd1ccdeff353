//! Checksums of the Modbus serial line: CRC-16/MODBUS for RTU and LRC for ASCII.
//!
//! CRC-16/MODBUS is the reflected polynomial 0xA001 (0x8005 reversed) with
//! initial value 0xFFFF and no final XOR; on the wire the **low byte goes
//! first** (Modbus over Serial Line V1.02, 6.2.2). The table is computed at
//! compile time, so the per-byte cost is one lookup and one shift.

/// The 256-entry lookup table for the reflected polynomial 0xA001.
const CRC_TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// An incremental CRC-16/MODBUS computation, for bytes that arrive in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc16 {
    state: u16,
}

impl Default for Crc16 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc16 {
    /// A fresh computation (state 0xFFFF).
    pub const fn new() -> Self {
        Crc16 { state: 0xFFFF }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.state;
        for &b in bytes {
            crc = (crc >> 8) ^ CRC_TABLE[usize::from((crc ^ u16::from(b)) & 0xFF)];
        }
        self.state = crc;
    }

    /// The CRC of everything fed so far.
    pub const fn value(&self) -> u16 {
        self.state
    }
}

/// CRC-16/MODBUS of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = Crc16::new();
    crc.update(bytes);
    crc.value()
}

/// True when the last two bytes of `frame` are the CRC (low byte first) of the rest.
///
/// # Fuzzing
/// Under `cfg(fuzzing)` this always returns true for frames of at least two
/// bytes, so a fuzzer can reach the parsers behind the checksum.
pub fn check_crc_trailer(frame: &[u8]) -> bool {
    let Some(split) = frame.len().checked_sub(2) else {
        return false;
    };
    if cfg!(fuzzing) {
        return true;
    }
    let (body, trailer) = frame.split_at(split);
    let crc = crc16(body);
    trailer == crc.to_le_bytes()
}

/// Longitudinal redundancy check of Modbus ASCII (V1.02, 6.2.2): the two's
/// complement of the 8-bit sum of the binary bytes (address, PDU).
pub fn lrc(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b)).wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_crc_known_answer() {
        // The CRC catalogue's check value for CRC-16/MODBUS.
        assert_eq!(crc16(b"123456789"), 0x4B37);
        assert_eq!(crc16(&[]), 0xFFFF);
    }

    #[test]
    fn test_crc_of_real_frames() {
        // devices.md 3.2: SDM230 voltage/current/power read `02 04 00 00 00 0E 71 FD`.
        assert_eq!(crc16(&[0x02, 0x04, 0x00, 0x00, 0x00, 0x0E]).to_le_bytes(), [0x71, 0xFD]);
        // devices.md 2.10: Growatt read `01 04 00 23 00 05 C1 C3`.
        assert_eq!(crc16(&[0x01, 0x04, 0x00, 0x23, 0x00, 0x05]).to_le_bytes(), [0xC1, 0xC3]);
        // devices.md 2.8: write holding 3 = 100 %: `01 06 00 03 00 64 78 21`.
        assert!(check_crc_trailer(&[0x01, 0x06, 0x00, 0x03, 0x00, 0x64, 0x78, 0x21]));
        // The fork's broadcast diagnostics frame `00 08 00 00 55 55 1E B5`.
        assert!(check_crc_trailer(&[0x00, 0x08, 0x00, 0x00, 0x55, 0x55, 0x1E, 0xB5]));
    }

    #[test]
    fn test_crc_trailer_rejects_damage_and_short_input() {
        assert!(!check_crc_trailer(&[0x01, 0x06, 0x00, 0x03, 0x00, 0x65, 0x78, 0x21]));
        assert!(!check_crc_trailer(&[0x01]));
        assert!(!check_crc_trailer(&[]));
    }

    #[test]
    fn test_incremental_equals_one_shot() {
        let data: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];
        let mut c = Crc16::new();
        c.update(&data[..3]);
        c.update(&data[3..]);
        assert_eq!(c.value(), crc16(&data));
    }

    #[test]
    fn test_lrc() {
        // Modbus over Serial Line V1.02, 6.2.2 style: read holding registers
        // unit 0x11, fc 03, start 0x006B, count 3 -> LRC 0x7E.
        assert_eq!(lrc(&[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]), 0x7E);
        assert_eq!(lrc(&[]), 0);
    }
}
