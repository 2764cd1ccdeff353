//! Faults a simulated unit can be told to show on the wire.
//!
//! Each unit carries one [`Faults`] value; the bus consults it for every
//! request addressed to that unit. Rates are probabilities per response in
//! 0..=1, drawn from the bus's seeded generator so a run repeats.

use crate::model::Bank;

/// An exception forced for a register range.
#[derive(Clone, Debug, PartialEq)]
pub struct ExceptionRange {
    /// Register space, or `None` for both.
    pub bank: Option<Bank>,
    /// First register (inclusive).
    pub first: u16,
    /// Last register (inclusive).
    pub last: u16,
    /// Exception code returned.
    pub code: u8,
}

impl ExceptionRange {
    /// True when a request touching `count` registers from `start` in `bank` overlaps the range.
    pub fn hits(&self, bank: Bank, start: u16, count: u16) -> bool {
        if self.bank.is_some_and(|b| b != bank) || count == 0 {
            return false;
        }
        let end = u32::from(start) + u32::from(count) - 1;
        u32::from(start) <= u32::from(self.last) && end >= u32::from(self.first)
    }
}

/// The fault switches of one unit. `Faults::default()` is a healthy device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Answer nothing at all (an inverter asleep, a cut cable).
    pub silent: bool,
    /// Probability that a response's CRC is damaged.
    pub crc_rate: f64,
    /// Probability that a response is cut short.
    pub truncate_rate: f64,
    /// Probability that a burst of garbage bytes follows a response (after a t3.5 gap).
    pub garbage_rate: f64,
    /// Probability that a response carries another unit's address (valid CRC).
    pub wrong_unit_rate: f64,
    /// Extra delay before the reply on top of the device turnaround, µs.
    pub extra_delay_us: u64,
    /// Forced exceptions for register ranges.
    pub exceptions: Vec<ExceptionRange>,
    /// Refuse every write with this exception code.
    pub refuse_writes: Option<u8>,
}

impl Faults {
    /// One-line summary for `faults` on the control channel.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.silent {
            parts.push("silent".to_string());
        }
        for (name, rate) in [
            ("crc", self.crc_rate),
            ("truncate", self.truncate_rate),
            ("garbage", self.garbage_rate),
            ("wrong-unit", self.wrong_unit_rate),
        ] {
            if rate > 0.0 {
                parts.push(format!("{name}={rate}"));
            }
        }
        if self.extra_delay_us > 0 {
            parts.push(format!("delay={}ms", self.extra_delay_us as f64 / 1000.0));
        }
        for e in &self.exceptions {
            let bank = e.bank.map_or("any", Bank::name);
            parts.push(format!("exception={bank}:{}-{}:{}", e.first, e.last, e.code));
        }
        if let Some(code) = self.refuse_writes {
            parts.push(format!("refuse-writes={code}"));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exception_range_overlap() {
        let r = ExceptionRange { bank: Some(Bank::Input), first: 10, last: 19, code: 4 };
        assert!(r.hits(Bank::Input, 0, 11));
        assert!(r.hits(Bank::Input, 19, 5));
        assert!(!r.hits(Bank::Input, 20, 5));
        assert!(!r.hits(Bank::Input, 0, 10));
        assert!(!r.hits(Bank::Holding, 10, 1));
        let any = ExceptionRange { bank: None, ..r };
        assert!(any.hits(Bank::Holding, 10, 1));
    }

    #[test]
    fn test_describe() {
        assert_eq!(Faults::default().describe(), "none");
        let f = Faults { silent: true, crc_rate: 0.5, ..Faults::default() };
        assert_eq!(f.describe(), "silent,crc=0.5");
    }
}
