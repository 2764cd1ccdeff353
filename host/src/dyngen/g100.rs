//! The Growatt's own export limiter (UK G100 set-up), on explicit request only.
//!
//! The fork wrote holding 122 = 1 (export limit via its RS485 meter port),
//! 123 = 876 (87.6 % of rated power) and 3000 = 876 (the rate used when that
//! meter fails) at every start-up. This daemon never writes inverter
//! configuration on its own: the writes happen only while the setting
//! `/Settings/DynamicGeneration/G100ExportLimit` (percent of rated power,
//! default 0 = leave the inverter alone) is above 0, once per value and per
//! inverter service, each one logged.

use dmc_core::pdu::Request;

/// The setting that opts in (percent, 0 = off).
pub const SETTING: &str = "/Settings/DynamicGeneration/G100ExportLimit";

/// Holding 122: export limit mode (1 = RS485 meter).
pub const MODE_REGISTER: u16 = 122;
/// Holding 123: export limit rate, signed 0.1 %.
pub const RATE_REGISTER: u16 = 123;
/// Holding 3000: rate when the export meter fails, 0.1 %.
pub const FAILED_RATE_REGISTER: u16 = 3000;

/// The three single-register writes for `percent` of rated power, or `None`
/// when the setting is off or out of range.
pub fn writes(percent: f64) -> Option<[(u16, u16); 3]> {
    if !percent.is_finite() || percent <= 0.0 || percent > 100.0 {
        return None;
    }
    let tenths = (percent * 10.0).round() as u16;
    Some([(MODE_REGISTER, 1), (RATE_REGISTER, tenths), (FAILED_RATE_REGISTER, tenths)])
}

/// The request for one write.
pub fn request(address: u16, value: u16) -> Request<'static> {
    Request::WriteSingleRegister { address, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_forks_values_and_frames() {
        let w = writes(87.6).expect("on");
        assert_eq!(w, [(122, 1), (123, 876), (3000, 876)]);
        // devices.md 2.8: 01 06 00 7B 03 6C (CRC aside) for 123 = 876.
        let mut pdu = [0u8; 8];
        let n = request(123, 876).emit(&mut pdu).expect("emit");
        assert_eq!(&pdu[..n], &[0x06, 0x00, 0x7B, 0x03, 0x6C]);
    }

    #[test]
    fn test_off_and_nonsense_write_nothing() {
        assert_eq!(writes(0.0), None);
        assert_eq!(writes(-5.0), None);
        assert_eq!(writes(f64::NAN), None);
        assert_eq!(writes(150.0), None);
    }
}
