//! Growatt MIN TL-X PV inverter, e.g. MIN 4200TL-X (devices.md section 2).
//!
//! Serial behaviour modelled (2.1): FC03/FC04 reads of up to 125 words, FC06
//! and FC16 writes, everything else → illegal function. Served ranges: input
//! 0–124 (the legacy bank the fork reads, 2.2) and 3000–3124 (TL-X bank, 2.3);
//! holding 0–249 (incl. the "new serial" 209–223) and 3000–3124. A read that
//! leaves those ranges → 02. Writes to registers outside the writable set →
//! 02; out-of-range values → 03 (the real device's codes for these cases are
//! not documented; these are the Modbus-standard choices).
//!
//! Behaviour: PV power follows a day curve (sunrise 06:00, sunset 20:00 device
//! time), the inverter sleeps — answers nothing — while the strings deliver
//! less than the wake threshold (2.7), reports status 0 (waiting) with zero
//! output while PV is weak or it is switched off, 1 (normal) while producing,
//! 3 (fault) when a fault is injected. The active power rate (holding 3,
//! 0–100 % or 255) caps the AC output against the nominal power in holding 6–7.
//! Temperatures follow load; Eac today/total and Epv counters integrate power.

use super::{
    parse_f64, register_image, Bank, Device, DeviceKind, Encoding, Environment, ModelReply, ModelRequest,
    Noise, Quantity, SimTime, ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION,
};

/// Most registers per read (doc V1.24 section 3).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Turnaround observed in the fork's log (2.1).
const TURNAROUND_US: u64 = 15_000;
/// Nominal power of the simulated MIN 4200TL-X, W.
pub const NOMINAL_POWER_W: f64 = 4200.0;
/// Device type code the fork expects in holding 43 (2.5).
pub const DEVICE_TYPE_CODE: u16 = 5100;
/// Two MPPT trackers, one phase (holding 44).
pub const TRACKERS_PHASES: u16 = 0x0201;
/// Below this DC power the inverter's electronics are off: no replies at all.
const WAKE_THRESHOLD_W: f64 = 15.0;
/// Below this DC power it is awake but waiting (status 0, no output).
const PRODUCE_THRESHOLD_W: f64 = 80.0;
/// DC to AC efficiency.
const EFFICIENCY: f64 = 0.97;
/// Sunrise and sunset, device hours.
const SUNRISE_H: f64 = 6.0;
/// See [`SUNRISE_H`].
const SUNSET_H: f64 = 20.0;
/// Share of PV power on string 1 (string 2 gets the rest).
const STRING1_SHARE: f64 = 0.55;

/// Growatt status codes (input 0, low byte of input 3000).
pub mod status {
    /// Waiting (PV too weak, or switched off).
    pub const WAITING: u16 = 0;
    /// Normal, producing.
    pub const NORMAL: u16 = 1;
    /// Fault.
    pub const FAULT: u16 = 3;
}

const fn input(name: &'static str, addr: u16, encoding: Encoding) -> Quantity {
    Quantity { name, bank: Bank::Input, addr, encoding }
}
const fn holding(name: &'static str, addr: u16, encoding: Encoding) -> Quantity {
    Quantity { name, bank: Bank::Holding, addr, encoding }
}
const U16: Encoding = Encoding::U16(1.0);
const D1: Encoding = Encoding::U16(0.1);
const D1L: Encoding = Encoding::U32(0.1);

/// Everything the inverter serves as numbers (ASCII strings are handled apart).
pub const QUANTITIES: &[Quantity] = &[
    // Legacy input bank (2.2).
    input("status", 0, U16),
    input("pv_power", 1, D1L),
    input("pv1_voltage", 3, D1),
    input("pv1_current", 4, D1),
    input("pv1_power", 5, D1L),
    input("pv2_voltage", 7, D1),
    input("pv2_current", 8, D1),
    input("pv2_power", 9, D1L),
    input("ac_power", 35, D1L),
    input("frequency", 37, Encoding::U16(0.01)),
    input("voltage", 38, D1),
    input("current", 39, D1),
    input("apparent_power", 40, D1L),
    input("energy_today", 53, D1L),
    input("energy_total", 55, D1L),
    input("work_time", 57, Encoding::U32(0.5)),
    input("pv1_energy_today", 59, D1L),
    input("pv1_energy_total", 61, D1L),
    input("pv2_energy_today", 63, D1L),
    input("pv2_energy_total", 65, D1L),
    input("pv_energy_total", 91, D1L),
    input("inverter_temp", 93, D1),
    input("ipm_temp", 94, D1),
    input("boost_temp", 95, D1),
    input("output_percent", 101, U16),
    input("output_limit", 102, D1L),
    input("derating", 104, U16),
    input("fault_code", 105, U16),
    // TL-X bank (2.3): same values at their 3000-based addresses.
    input("status", 3000, U16),
    input("pv_power", 3001, D1L),
    input("pv1_voltage", 3003, D1),
    input("pv1_current", 3004, D1),
    input("pv1_power", 3005, D1L),
    input("pv2_voltage", 3007, D1),
    input("pv2_current", 3008, D1),
    input("pv2_power", 3009, D1L),
    input("ac_power", 3023, D1L),
    input("frequency", 3025, Encoding::U16(0.01)),
    input("voltage", 3026, D1),
    input("current", 3027, D1),
    input("apparent_power", 3028, D1L),
    input("energy_today", 3049, D1L),
    input("energy_total", 3051, D1L),
    input("pv_energy_total", 3053, D1L),
    input("derating", 3086, U16),
    input("inverter_temp", 3093, D1),
    input("ipm_temp", 3094, D1),
    input("boost_temp", 3095, D1),
    input("output_percent", 3101, U16),
    input("output_limit", 3102, D1L),
    input("fault_code", 3105, U16),
    // Holding (2.4).
    holding("on_off", 0, U16),
    holding("pf_memory", 2, U16),
    holding("active_rate", 3, U16),
    holding("reactive_rate", 4, U16),
    holding("power_factor_cmd", 5, U16),
    holding("nominal_power", 6, Encoding::U32(0.1)),
    holding("nominal_pv_voltage", 8, D1),
    holding("baud_code", 22, U16),
    holding("modbus_address", 30, U16),
    holding("g100_fail_safe", 42, U16),
    holding("device_type", 43, U16),
    holding("trackers_phases", 44, U16),
    holding("protocol_version", 88, U16),
    holding("export_limit_enable", 122, U16),
    holding("export_limit_rate", 123, Encoding::S16(0.1)),
    holding("export_limit_failed_rate", 3000, Encoding::U16(0.1)),
];

/// Holding registers a master may write, with the accepted raw values.
fn write_allowed(addr: u16, value: u16) -> Result<(), u8> {
    let ok = match addr {
        0 => value <= 1,
        2 => value <= 1,
        3 => value <= 100 || value == 255,
        4 => (value as i16) >= -100 && (value as i16) <= 100 || value == 255,
        5 => value <= 20_000,
        42 => value <= 1,
        122 => value <= 3,
        123 => (-1000..=1000).contains(&(value as i16)),
        124 => value <= 2,
        3000 => value <= 1000,
        _ => return Err(ILLEGAL_DATA_ADDRESS),
    };
    if ok {
        Ok(())
    } else {
        Err(ILLEGAL_DATA_VALUE)
    }
}

/// Readable range per bank (inclusive): 0 = legacy range, 1 = TL-X 3000 range.
fn region(bank: Bank, addr: u16) -> Option<u8> {
    let low_end = match bank {
        Bank::Input => 124,
        Bank::Holding => 249,
    };
    match addr {
        a if a <= low_end => Some(0),
        3000..=3124 => Some(1),
        _ => None,
    }
}

/// Writes `text` as ASCII, two characters per register, space padded.
fn put_ascii(holding: &mut [u16], addr: usize, words: usize, text: &str) {
    let mut bytes = text.bytes().chain(std::iter::repeat(b' '));
    for slot in holding.iter_mut().skip(addr).take(words) {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *slot = u16::from_be_bytes([hi, lo]);
    }
}

/// PV power a 4.6 kWp array delivers at `hour` (0..24), before clouds: a
/// smooth bell between sunrise and sunset.
pub fn clear_sky_pv_w(hour: f64, peak_w: f64) -> f64 {
    if hour <= SUNRISE_H || hour >= SUNSET_H {
        return 0.0;
    }
    let x = (hour - SUNRISE_H) / (SUNSET_H - SUNRISE_H);
    peak_w * (std::f64::consts::PI * x).sin().powf(1.5)
}

/// AC energy of an average day (clouds at 90 %) from midnight to `hour`, so
/// "today" starts plausible rather than at zero when the simulator starts at noon.
fn produced_since_midnight_kwh(hour: f64, peak_w: f64) -> f64 {
    const STEPS: u32 = 240;
    let dt_h = hour / f64::from(STEPS);
    (0..STEPS)
        .map(|i| {
            let h = (f64::from(i) + 0.5) * dt_h;
            (clear_sky_pv_w(h, peak_w) * 0.9 * EFFICIENCY).min(NOMINAL_POWER_W) / 1000.0 * dt_h
        })
        .sum()
}

/// The MIN TL-X model.
#[derive(Clone, Debug)]
pub struct GrowattMin {
    noise: Noise,
    /// Holding registers 0..=249 (raw).
    holding_low: Vec<u16>,
    /// Holding registers 3000..=3124 (raw).
    holding_high: Vec<u16>,
    peak_pv_w: f64,
    pv_override: Option<f64>,
    /// PV available (AC) from the household plant, when one runs.
    plant_pv_ac_w: Option<f64>,
    fault_code: Option<u16>,
    awake_override: Option<bool>,
    pv_dc_w: f64,
    ac_w: f64,
    voltage_v: f64,
    frequency_hz: f64,
    ambient_c: f64,
    energy_today_kwh: f64,
    energy_total_kwh: f64,
    pv_today_kwh: [f64; 2],
    pv_total_kwh: [f64; 2],
    work_time_s: f64,
    day: i64,
}

impl GrowattMin {
    /// A MIN 4200TL-X at Modbus address `unit`.
    pub fn new(unit: u8, t: SimTime) -> Self {
        let mut holding_low = vec![0u16; 250];
        let mut holding_high = vec![0u16; 125];
        let nominal = (NOMINAL_POWER_W * 10.0) as u32;
        for (addr, value) in [
            (0usize, 1u16),
            (3, 255),
            (4, 255),
            (5, 10_000),
            (6, (nominal >> 16) as u16),
            (7, nominal as u16),
            (8, 3600),
            (17, 1000),
            (22, 0),
            (30, u16::from(unit)),
            (43, DEVICE_TYPE_CODE),
            (44, TRACKERS_PHASES),
            (88, 207),
            (122, 0),
        ] {
            holding_low[addr] = value;
        }
        put_ascii(&mut holding_low, 9, 3, "GH1.0 ");
        put_ascii(&mut holding_low, 12, 3, "ZAAA.8");
        put_ascii(&mut holding_low, 23, 5, "SIMGW00001");
        put_ascii(&mut holding_low, 34, 8, "GROWATT SIM");
        put_ascii(&mut holding_low, 209, 15, "SIMGW00001");
        put_ascii(&mut holding_high, 1, 15, "SIMGW00001");
        holding_high[0] = 1000;
        let mut m = GrowattMin {
            noise: Noise::new(0x6A0_77A7 ^ u64::from(unit)),
            holding_low,
            holding_high,
            peak_pv_w: 4600.0,
            pv_override: None,
            plant_pv_ac_w: None,
            fault_code: None,
            awake_override: None,
            pv_dc_w: 0.0,
            ac_w: 0.0,
            voltage_v: 230.0,
            frequency_hz: 50.0,
            ambient_c: 15.0,
            energy_today_kwh: produced_since_midnight_kwh(t.hour_of_day(), 4600.0),
            energy_total_kwh: 12_345.6,
            pv_today_kwh: [0.0; 2],
            pv_total_kwh: [6_900.0, 5_800.0],
            work_time_s: 9_000_000.0,
            day: t.day_index(),
        };
        m.recompute(t);
        m
    }

    fn holding_word(&self, addr: u16) -> u16 {
        match addr {
            0..=249 => self.holding_low.get(usize::from(addr)).copied().unwrap_or(0),
            3000..=3124 => self.holding_high.get(usize::from(addr - 3000)).copied().unwrap_or(0),
            _ => 0,
        }
    }

    fn set_holding_word(&mut self, addr: u16, value: u16) {
        let slot = match addr {
            0..=249 => self.holding_low.get_mut(usize::from(addr)),
            3000..=3124 => self.holding_high.get_mut(usize::from(addr - 3000)),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = value;
        }
    }

    /// AC output cap in W from holding 3 (255 = none) and the nominal power.
    pub fn output_limit_w(&self) -> f64 {
        let nominal = self.nominal_power_w();
        match self.holding_word(3) {
            rate @ 0..=100 => nominal * f64::from(rate) / 100.0,
            _ => nominal,
        }
    }

    fn nominal_power_w(&self) -> f64 {
        f64::from((u32::from(self.holding_word(6)) << 16) | u32::from(self.holding_word(7))) * 0.1
    }

    /// Current status code.
    pub fn status(&self) -> u16 {
        if self.fault_code.is_some() {
            status::FAULT
        } else if self.holding_word(0) == 0 || self.pv_dc_w < PRODUCE_THRESHOLD_W {
            status::WAITING
        } else {
            status::NORMAL
        }
    }

    fn recompute(&mut self, t: SimTime) {
        use std::f64::consts::TAU;
        // Passing clouds on the wall clock, 80..100 % of clear sky.
        let clouds = 0.9 + 0.1 * (TAU * t.wall_s / 137.0).sin();
        let clear = clear_sky_pv_w(t.hour_of_day(), self.peak_pv_w);
        let plant_dc = self.plant_pv_ac_w.map(|w| w / EFFICIENCY);
        self.pv_dc_w = self.pv_override.or(plant_dc).unwrap_or(clear * clouds).max(0.0);
        self.ambient_c = 12.0 + 10.0 * clear / self.peak_pv_w.max(1.0);
        self.ac_w = if self.status() == status::NORMAL {
            (self.pv_dc_w * EFFICIENCY).min(self.output_limit_w()).min(self.nominal_power_w())
        } else {
            0.0
        };
        self.voltage_v = 231.0 + 2.0 * (TAU * t.wall_s / 250.0).sin() + self.noise.symmetric(0.2);
        self.frequency_hz = 50.0 + 0.03 * (TAU * t.wall_s / 180.0).sin();
    }

    /// DC power actually drawn from the strings (less than available when limited).
    fn pv_used_w(&self) -> f64 {
        if self.ac_w > 0.0 {
            self.ac_w / EFFICIENCY
        } else {
            0.0
        }
    }

    fn string_voltage(&self, string: usize) -> f64 {
        if self.pv_dc_w <= 0.0 {
            return 0.0;
        }
        let base = if string == 0 { 360.0 } else { 330.0 };
        // Open-circuit voltage is higher than the MPP voltage while not loaded.
        let load = if self.ac_w > 0.0 { 0.0 } else { 40.0 };
        base + load + 20.0 * (self.pv_dc_w / self.peak_pv_w.max(1.0))
    }

    fn string_power(&self, string: usize) -> f64 {
        let share = if string == 0 { STRING1_SHARE } else { 1.0 - STRING1_SHARE };
        self.pv_used_w() * share
    }

    fn read(&self, bank: Bank, start: u16, count: u16) -> ModelReply {
        if count == 0 || count > MAX_READ_REGISTERS {
            return ModelReply::Exception(ILLEGAL_DATA_VALUE);
        }
        let Some(last) = start.checked_add(count - 1) else {
            return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
        };
        // A read must stay inside one served range.
        match (region(bank, start), region(bank, last)) {
            (Some(a), Some(b)) if a == b => {}
            _ => return ModelReply::Exception(ILLEGAL_DATA_ADDRESS),
        }
        if bank == Bank::Holding {
            return ModelReply::Registers((start..=last).map(|a| self.holding_word(a)).collect());
        }
        let image = register_image(QUANTITIES, bank, start, count, |n| self.value(n));
        ModelReply::Registers((start..=last).map(|a| image.get(&a).copied().unwrap_or(0)).collect())
    }

    fn write(&mut self, start: u16, values: &[u16]) -> Result<(), u8> {
        for (i, v) in values.iter().enumerate() {
            let addr = start.checked_add(i as u16).ok_or(ILLEGAL_DATA_ADDRESS)?;
            write_allowed(addr, *v)?;
        }
        for (i, v) in values.iter().enumerate() {
            self.set_holding_word(start.wrapping_add(i as u16), *v);
        }
        Ok(())
    }
}

impl Device for GrowattMin {
    fn kind(&self) -> DeviceKind {
        DeviceKind::GrowattMin
    }

    fn step(&mut self, t: SimTime, dt_s: f64, env: &Environment) {
        self.plant_pv_ac_w = env.pv_available_w;
        if t.day_index() != self.day {
            self.day = t.day_index();
            self.energy_today_kwh = 0.0;
            self.pv_today_kwh = [0.0; 2];
        }
        self.recompute(t);
        let hours = dt_s.max(0.0) / 3600.0;
        self.energy_today_kwh += self.ac_w / 1000.0 * hours;
        self.energy_total_kwh += self.ac_w / 1000.0 * hours;
        for s in 0..2 {
            let e = self.string_power(s) / 1000.0 * hours;
            self.pv_today_kwh[s] += e;
            self.pv_total_kwh[s] += e;
        }
        if self.is_awake() {
            self.work_time_s += dt_s.max(0.0);
        }
    }

    fn ac_production_w(&self) -> f64 {
        self.ac_w
    }

    fn is_awake(&self) -> bool {
        self.awake_override.unwrap_or(self.pv_dc_w >= WAKE_THRESHOLD_W)
    }

    fn handle(&mut self, request: &ModelRequest, t: SimTime) -> ModelReply {
        let reply = match request {
            ModelRequest::Read { bank, start, count } => return self.read(*bank, *start, *count),
            ModelRequest::WriteSingle { addr, value } => {
                self.write(*addr, &[*value]).map(|()| ModelReply::WriteSingle { addr: *addr, value: *value })
            }
            ModelRequest::WriteMultiple { start, values } if (1..=123).contains(&values.len()) => self
                .write(*start, values)
                .map(|()| ModelReply::WriteMultiple { start: *start, count: values.len() as u16 }),
            ModelRequest::WriteMultiple { .. } => Err(ILLEGAL_DATA_VALUE),
            ModelRequest::Diagnostics { .. }
            | ModelRequest::ReadWrite { .. }
            | ModelRequest::Other { .. } => Err(ILLEGAL_FUNCTION),
            ModelRequest::Invalid { code, .. } => Err(*code),
        };
        // A new power rate acts at once (the next read shows it).
        self.recompute(t);
        reply.unwrap_or_else(ModelReply::Exception)
    }

    fn turnaround_us(&self, _request: &ModelRequest) -> u64 {
        TURNAROUND_US
    }

    fn quantities(&self) -> &'static [Quantity] {
        QUANTITIES
    }

    fn value(&self, name: &str) -> Option<f64> {
        if let Some(q) = QUANTITIES.iter().find(|q| q.name == name && q.bank == Bank::Holding) {
            let words = [self.holding_word(q.addr), self.holding_word(q.addr.wrapping_add(1))];
            return q.encoding.decode(&words);
        }
        let load = self.ac_w / self.nominal_power_w().max(1.0);
        Some(match name {
            "status" => f64::from(self.status()),
            "pv_power" => self.pv_used_w(),
            "pv_available" => self.pv_dc_w,
            "pv1_voltage" => self.string_voltage(0),
            "pv2_voltage" => self.string_voltage(1),
            "pv1_power" => self.string_power(0),
            "pv2_power" => self.string_power(1),
            "pv1_current" => self.string_power(0) / self.string_voltage(0).max(1.0),
            "pv2_current" => self.string_power(1) / self.string_voltage(1).max(1.0),
            "ac_power" | "apparent_power" => self.ac_w,
            "frequency" => self.frequency_hz,
            "voltage" => self.voltage_v,
            "current" => self.ac_w / self.voltage_v.max(1.0),
            "energy_today" => self.energy_today_kwh,
            "energy_total" => self.energy_total_kwh,
            "work_time" => self.work_time_s,
            "pv1_energy_today" => self.pv_today_kwh[0],
            "pv2_energy_today" => self.pv_today_kwh[1],
            "pv1_energy_total" => self.pv_total_kwh[0],
            "pv2_energy_total" => self.pv_total_kwh[1],
            "pv_energy_total" => self.pv_total_kwh[0] + self.pv_total_kwh[1],
            "inverter_temp" => self.ambient_c + 25.0 * load,
            "ipm_temp" => self.ambient_c + 32.0 * load,
            "boost_temp" => self.ambient_c + 20.0 * (self.pv_used_w() / self.peak_pv_w.max(1.0)),
            "output_percent" => (load * 100.0).round(),
            "output_limit" => self.output_limit_w(),
            // 7 = cActivePowerOrder: output held below what the strings offer by holding 3.
            "derating" => {
                let limited = self.status() == status::NORMAL
                    && self.pv_dc_w * EFFICIENCY > self.output_limit_w() + 1.0;
                if limited {
                    7.0
                } else {
                    0.0
                }
            }
            "fault_code" => f64::from(self.fault_code.unwrap_or(0)),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: &str) -> Result<String, String> {
        let auto = value == "auto";
        match name {
            "pv" => self.pv_override = if auto { None } else { Some(parse_f64(name, value)?.max(0.0)) },
            "peak_pv" => self.peak_pv_w = parse_f64(name, value)?.max(0.0),
            "fault" => {
                self.fault_code = match value {
                    "off" | "0" => None,
                    code => Some(code.parse().map_err(|_| format!("fault: not a code: {code:?}"))?),
                }
            }
            "awake" => {
                self.awake_override = match value {
                    "on" => Some(true),
                    "off" => Some(false),
                    "auto" => None,
                    _ => return Err(format!("awake: expected on|off|auto, got {value:?}")),
                }
            }
            "active_rate" => {
                let v: u16 = value.parse().map_err(|_| format!("active_rate: not a number: {value:?}"))?;
                write_allowed(3, v).map_err(|_| format!("active_rate: {v} outside 0..100 or 255"))?;
                self.set_holding_word(3, v);
            }
            "on_off" => {
                let v: u16 = value.parse().map_err(|_| format!("on_off: expected 0 or 1: {value:?}"))?;
                self.set_holding_word(0, v.min(1));
            }
            "energy_total" => self.energy_total_kwh = parse_f64(name, value)?.max(0.0),
            _ => return Err(format!("growatt has no setting {name:?} (try: {})", self.settable())),
        }
        Ok(format!("growatt {name} = {value}"))
    }

    fn settable(&self) -> &'static str {
        "pv W|auto (DC available), peak_pv W, fault CODE|off, awake on|off|auto, active_rate 0..100|255, \
         on_off 0|1, energy_total kWh"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_hour(h: f64) -> SimTime {
        SimTime { wall_s: 0.0, device_s: h * 3600.0 }
    }

    #[test]
    fn test_day_curve() {
        assert_eq!(clear_sky_pv_w(3.0, 4600.0), 0.0);
        assert_eq!(clear_sky_pv_w(22.0, 4600.0), 0.0);
        let noon = clear_sky_pv_w(13.0, 4600.0);
        assert!((noon - 4600.0).abs() < 1.0, "{noon}");
        assert!(clear_sky_pv_w(8.0, 4600.0) < clear_sky_pv_w(11.0, 4600.0));
        assert!((clear_sky_pv_w(10.0, 4600.0) - clear_sky_pv_w(16.0, 4600.0)).abs() < 1e-6);
    }

    #[test]
    fn test_status_consistent_with_power() {
        for h in 0..24 {
            let t = at_hour(f64::from(h) + 0.5);
            let m = GrowattMin::new(1, t);
            let p = m.value("ac_power").unwrap_or(-1.0);
            match m.status() {
                status::NORMAL => assert!(p > 0.0 && m.is_awake(), "hour {h}"),
                status::WAITING => assert_eq!(p, 0.0, "hour {h}"),
                s => panic!("status {s} at hour {h}"),
            }
            if !m.is_awake() {
                assert_eq!(p, 0.0);
            }
        }
        assert!(!GrowattMin::new(1, at_hour(2.0)).is_awake());
        assert_eq!(GrowattMin::new(1, at_hour(13.0)).status(), status::NORMAL);
        let mut m = GrowattMin::new(1, at_hour(13.0));
        m.set("fault", "30").ok();
        m.step(at_hour(13.0), 0.0, &Environment::default());
        assert_eq!(m.status(), status::FAULT);
        assert_eq!(m.value("ac_power"), Some(0.0));
        assert_eq!(m.value("fault_code"), Some(30.0));
    }

    #[test]
    fn test_temperatures_follow_load() {
        let noon = GrowattMin::new(1, at_hour(13.0));
        let morning = GrowattMin::new(1, at_hour(7.0));
        let tn = noon.value("inverter_temp").unwrap_or(0.0);
        let tm = morning.value("inverter_temp").unwrap_or(0.0);
        assert!(tn > tm && (10.0..70.0).contains(&tn), "{tn} {tm}");
    }

    #[test]
    fn test_energy_integrates_and_resets_daily() {
        let mut m = GrowattMin::new(1, at_hour(12.0));
        m.set("pv", "2000").ok();
        let total0 = m.value("energy_total").unwrap_or(0.0);
        let today0 = m.value("energy_today").unwrap_or(0.0);
        assert!((5.0..25.0).contains(&today0), "a sunny morning's yield, got {today0}");
        for i in 1..=3600 {
            m.step(at_hour(12.0 + f64::from(i) / 3600.0), 1.0, &Environment::default());
        }
        let today = m.value("energy_today").unwrap_or(0.0) - today0;
        assert!((today - 1.94).abs() < 1e-6, "{today}");
        assert!((m.value("energy_total").unwrap_or(0.0) - total0 - today).abs() < 1e-6);
        m.step(at_hour(24.5), 0.0, &Environment::default());
        assert_eq!(m.value("energy_today"), Some(0.0));
    }

    #[test]
    fn test_active_rate_write_caps_output() {
        let t = at_hour(13.0);
        let mut m = GrowattMin::new(1, t);
        m.set("pv", "4600").ok();
        m.step(t, 0.0, &Environment::default());
        assert_eq!(m.value("ac_power"), Some(NOMINAL_POWER_W));
        let w = ModelRequest::WriteSingle { addr: 3, value: 50 };
        assert_eq!(m.handle(&w, t), ModelReply::WriteSingle { addr: 3, value: 50 });
        assert_eq!(m.value("ac_power"), Some(2100.0));
        assert_eq!(m.value("derating"), Some(7.0));
        let bad = ModelRequest::WriteSingle { addr: 3, value: 101 };
        assert_eq!(m.handle(&bad, t), ModelReply::Exception(ILLEGAL_DATA_VALUE));
        let ro = ModelRequest::WriteSingle { addr: 43, value: 1 };
        assert_eq!(m.handle(&ro, t), ModelReply::Exception(ILLEGAL_DATA_ADDRESS));
    }

    #[test]
    fn test_identity_registers() {
        let mut m = GrowattMin::new(1, at_hour(13.0));
        let r = m.handle(&ModelRequest::Read { bank: Bank::Holding, start: 0, count: 45 }, at_hour(13.0));
        let ModelReply::Registers(w) = r else { panic!("{r:?}") };
        assert_eq!((w[6], w[7]), (0, 42_000));
        assert_eq!((w[43], w[44]), (5100, 0x0201));
        assert_eq!(w[9], u16::from_be_bytes(*b"GH"));
        assert_eq!(w[30], 1);
        let r = m.handle(&ModelRequest::Read { bank: Bank::Input, start: 120, count: 10 }, at_hour(13.0));
        assert_eq!(r, ModelReply::Exception(ILLEGAL_DATA_ADDRESS));
        let r = m.handle(&ModelRequest::Read { bank: Bank::Input, start: 0, count: 126 }, at_hour(13.0));
        assert_eq!(r, ModelReply::Exception(ILLEGAL_DATA_VALUE));
        let r = m.handle(&ModelRequest::Read { bank: Bank::Holding, start: 209, count: 15 }, at_hour(13.0));
        assert!(matches!(r, ModelReply::Registers(w) if w[0] == u16::from_be_bytes(*b"SI")));
    }
}
