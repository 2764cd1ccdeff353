//! Serial-line timing: character time, the t1.5 and t3.5 silences, wire time.
//!
//! One RTU character is start + data + parity + stop bits (8N1 = 10 bits,
//! 8E1/8O1/8N2 = 11). Above 19200 baud the Modbus serial-line spec (V1.02,
//! 2.5.1.1) fixes t1.5 at 750 us and t3.5 at 1750 us instead of scaling them
//! with the baud rate. Figures in `docs/modbus-timing.md`.

use crate::time::{Duration, Instant};

/// Parity bit setting of a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Character framing and speed of a serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LineConfig {
    /// Bits per second.
    pub baud: u32,
    /// Data bits per character (7 or 8; RTU uses 8).
    pub data_bits: u8,
    /// Parity bit.
    pub parity: Parity,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
}

/// Baud rates above this use the fixed t1.5/t3.5 of the spec.
const FIXED_TIMING_ABOVE_BAUD: u32 = 19_200;
/// t1.5 above 19200 baud.
const FIXED_T15: Duration = Duration::from_micros(750);
/// t3.5 above 19200 baud.
const FIXED_T35: Duration = Duration::from_micros(1750);

impl LineConfig {
    /// 8 data bits, no parity, one stop bit: what the SDM230 and Growatt default to.
    pub const fn new_8n1(baud: u32) -> Self {
        LineConfig { baud, data_bits: 8, parity: Parity::None, stop_bits: 1 }
    }

    /// Bits on the wire per character: start + data + parity + stop.
    pub const fn bits_per_char(&self) -> u32 {
        let parity = match self.parity {
            Parity::None => 0,
            Parity::Even | Parity::Odd => 1,
        };
        1 + self.data_bits as u32 + parity + self.stop_bits as u32
    }

    /// Time to send `chars` characters back to back, rounded up to the microsecond.
    ///
    /// A baud rate of 0 is treated as 1 so a bad configuration never divides by zero.
    pub const fn chars_time(&self, chars: u32) -> Duration {
        let baud = if self.baud == 0 { 1 } else { self.baud as u64 };
        let bits = self.bits_per_char() as u64 * chars as u64;
        Duration::from_micros((bits * 1_000_000).div_ceil(baud))
    }

    /// Time of one character.
    pub const fn char_time(&self) -> Duration {
        self.chars_time(1)
    }

    /// Longest silence allowed between two characters of one frame.
    pub const fn t15(&self) -> Duration {
        if self.baud > FIXED_TIMING_ABOVE_BAUD {
            FIXED_T15
        } else {
            let baud = if self.baud == 0 { 1 } else { self.baud as u64 };
            let bits = self.bits_per_char() as u64 * 3;
            Duration::from_micros((bits * 1_000_000).div_ceil(2 * baud))
        }
    }

    /// Silence that ends a frame and must separate two frames.
    pub const fn t35(&self) -> Duration {
        if self.baud > FIXED_TIMING_ABOVE_BAUD {
            FIXED_T35
        } else {
            let baud = if self.baud == 0 { 1 } else { self.baud as u64 };
            let bits = self.bits_per_char() as u64 * 7;
            Duration::from_micros((bits * 1_000_000).div_ceil(2 * baud))
        }
    }

    /// Time a frame of `len` bytes occupies the wire.
    pub const fn wire_time(&self, len: usize) -> Duration {
        self.chars_time(len as u32)
    }

    /// Earliest moment a new request may start, given when the last byte on
    /// the line (sent or received) finished: t3.5 later.
    pub fn earliest_next_send(&self, last_byte_end: Instant) -> Instant {
        last_byte_end + self.t35()
    }

    /// Line-limit time of one transaction (`docs/modbus-timing.md`): request,
    /// device turnaround, response and the t3.5 gap before the next request.
    pub fn transaction_time(
        &self,
        request_len: usize,
        response_len: usize,
        turnaround: Duration,
    ) -> Duration {
        self.wire_time(request_len) + turnaround + self.wire_time(response_len) + self.t35()
    }
}

impl Default for LineConfig {
    fn default() -> Self {
        LineConfig::new_8n1(9600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_bits_per_char() {
        assert_eq!(LineConfig::new_8n1(9600).bits_per_char(), 10);
        let e = LineConfig { parity: Parity::Even, ..LineConfig::new_8n1(9600) };
        assert_eq!(e.bits_per_char(), 11);
        let n2 = LineConfig { stop_bits: 2, ..LineConfig::new_8n1(9600) };
        assert_eq!(n2.bits_per_char(), 11);
    }

    #[test]
    fn test_char_times_from_timing_doc() {
        // modbus-timing.md: 1.0417 ms (10 bits) and 1.1458 ms (11 bits) at 9600.
        assert_eq!(LineConfig::new_8n1(9600).char_time(), Duration::from_micros(1042));
        let e = LineConfig { parity: Parity::Even, ..LineConfig::new_8n1(9600) };
        assert_eq!(e.char_time(), Duration::from_micros(1146));
        assert_eq!(LineConfig::new_8n1(115_200).char_time(), Duration::from_micros(87));
    }

    #[test]
    fn test_silences() {
        let l = LineConfig::new_8n1(9600);
        // 3.5 * 1.0417 ms = 3.646 ms; 1.5 * 1.0417 = 1.5625 ms.
        assert_eq!(l.t35(), Duration::from_micros(3646));
        assert_eq!(l.t15(), Duration::from_micros(1563));
        // 19200 still scales; above it the spec's fixed values apply.
        assert_eq!(LineConfig::new_8n1(19_200).t35(), Duration::from_micros(1823));
        assert_eq!(LineConfig::new_8n1(38_400).t35(), Duration::from_micros(1750));
        assert_eq!(LineConfig::new_8n1(38_400).t15(), Duration::from_micros(750));
    }

    #[test]
    fn test_transaction_time_matches_doc_example() {
        // SDM230 V/I/P: 8 + 33 characters = 42.7 ms on the wire, 50.0 ms as the
        // doc's "min" (the slave's own t3.5 turnaround plus the t3.5 gap).
        let l = LineConfig::new_8n1(9600);
        assert_eq!(l.wire_time(41), Duration::from_micros(42_709));
        let t = l.transaction_time(8, 33, l.t35());
        assert!((49_900..50_100).contains(&t.as_micros()), "{t}");
    }

    #[test]
    fn test_zero_baud_does_not_divide_by_zero() {
        let l = LineConfig::new_8n1(0);
        assert!(l.char_time() > Duration::from_secs(1));
        assert!(l.t35() > Duration::ZERO);
    }
}
