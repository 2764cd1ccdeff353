//! Eastron SDM230-Modbus single-phase meter (devices.md section 1).
//!
//! Serial behaviour modelled (1.1): FC03/FC04 reads of float32 pairs (high
//! word first); start address and count must be even, except a count-1 read
//! which returns the addressed word; at most 80 registers per request; FC16
//! writes of one float parameter (2 registers); FC08 sub-function 0 echoes;
//! FC06 and everything else → illegal function. The docs only say "exception"
//! for the alignment and size rules; this model answers 02 (illegal data
//! address) for an odd start and 03 (illegal data value) for an odd or too
//! large count.
//!
//! Values: mains around 230 V / 50 Hz, grid power = a varying house load minus
//! the PV output on the same bus (so it goes negative while exporting), and
//! import/export/reactive counters that integrate it. Starting counters are
//! the ones in the public capture (1.6). Input addresses without a quantity in
//! the single-phase map read 0.0 as on the real meter (1.2); beyond 0x0187
//! reads are refused with 02.

use super::{
    parse_f64, register_image, Bank, Device, DeviceKind, Encoding, Environment, ModelReply, ModelRequest,
    Noise, Quantity, SimTime, ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, ILLEGAL_FUNCTION,
};

/// Most registers one request may read (Eastron Europe doc).
pub const MAX_READ_REGISTERS: u16 = 80;
/// Last input address the meter answers (resettable reactive total, 0x0182–0x0183), plus slack to 0x0187.
const LAST_INPUT_ADDR: u16 = 0x0187;
/// Turnaround fit from the public capture: 6 ms + 0.6 ms per register.
const TURNAROUND_BASE_US: u64 = 6_000;
/// Per-register part of the turnaround fit.
const TURNAROUND_PER_REG_US: u64 = 600;

const fn input(name: &'static str, addr: u16) -> Quantity {
    Quantity { name, bank: Bank::Input, addr, encoding: Encoding::F32 }
}
const fn holding(name: &'static str, addr: u16, encoding: Encoding) -> Quantity {
    Quantity { name, bank: Bank::Holding, addr, encoding }
}

/// Everything the SDM230 serves (devices.md 1.2, 1.3).
pub const QUANTITIES: &[Quantity] = &[
    input("voltage", 0x0000),
    input("current", 0x0006),
    input("power", 0x000C),
    input("apparent_power", 0x0012),
    input("reactive_power", 0x0018),
    input("power_factor", 0x001E),
    input("phase_angle", 0x0024),
    input("frequency", 0x0046),
    input("import_energy", 0x0048),
    input("export_energy", 0x004A),
    input("import_reactive_energy", 0x004C),
    input("export_reactive_energy", 0x004E),
    input("total_demand", 0x0054),
    input("max_total_demand", 0x0056),
    input("import_demand", 0x0058),
    input("max_import_demand", 0x005A),
    input("export_demand", 0x005C),
    input("max_export_demand", 0x005E),
    input("current_demand", 0x0102),
    input("max_current_demand", 0x0108),
    input("total_energy", 0x0156),
    input("total_reactive_energy", 0x0158),
    input("resettable_total_energy", 0x0180),
    input("resettable_total_reactive_energy", 0x0182),
    holding("pulse_width", 0x000C, Encoding::F32),
    holding("parity_code", 0x0012, Encoding::F32),
    holding("node_address", 0x0014, Encoding::F32),
    holding("baud_code", 0x001C, Encoding::F32),
    holding("pulse_energy_type", 0x0056, Encoding::F32),
    holding("demand_config", 0xF500, Encoding::U32(1.0)),
    holding("pulse_divisor", 0xF910, Encoding::U16(1.0)),
    holding("measurement_mode", 0xF920, Encoding::U16(1.0)),
    holding("serial", 0xFC00, Encoding::U32(1.0)),
    holding("meter_code", 0xFC02, Encoding::U16(1.0)),
    holding("software_version", 0xFC03, Encoding::U16(1.0)),
];

/// Holding parameters a master may write with FC16 (float, 2 registers).
const WRITABLE_FLOATS: &[u16] = &[0x000C, 0x0012, 0x0014, 0x001C, 0x0056];

/// The SDM230 model.
#[derive(Clone, Debug)]
pub struct Sdm230 {
    noise: Noise,
    /// Fixed grid power from `set sdm230 power W`; `None` = house load minus PV.
    power_override: Option<f64>,
    voltage_override: Option<f64>,
    frequency_override: Option<f64>,
    power_w: f64,
    voltage_v: f64,
    frequency_hz: f64,
    power_factor: f64,
    import_kwh: f64,
    export_kwh: f64,
    import_kvarh: f64,
    export_kvarh: f64,
    max_total_demand_w: f64,
    max_import_demand_w: f64,
    max_export_demand_w: f64,
    max_current_a: f64,
    holding_floats: [(u16, f64); 5],
    serial: u32,
}

impl Sdm230 {
    /// A meter with the capture's counters, 8N1 9600 settings and serial 22_000_123.
    pub fn new(t: SimTime) -> Self {
        let mut m = Sdm230 {
            noise: Noise::new(0x5D23_0000),
            power_override: None,
            voltage_override: None,
            frequency_override: None,
            power_w: 0.0,
            voltage_v: 230.0,
            frequency_hz: 50.0,
            power_factor: 0.95,
            import_kwh: 132.181,
            export_kwh: 32.714,
            import_kvarh: 7.486,
            export_kvarh: 67.778,
            max_total_demand_w: 0.0,
            max_import_demand_w: 0.0,
            max_export_demand_w: 0.0,
            max_current_a: 0.0,
            // pulse width 100 ms, parity 0 (8N1), node address 2, baud code 2 (9600), pulse type 1.
            holding_floats: [(0x000C, 100.0), (0x0012, 0.0), (0x0014, 2.0), (0x001C, 2.0), (0x0056, 1.0)],
            serial: 22_000_123,
        };
        m.recompute(t, &Environment::default());
        m
    }

    /// House load in W as a function of wall time: a base plus two slow waves,
    /// on the wall clock (not device time) so a compressed day does not turn
    /// the meter into noise.
    fn house_load_w(wall_s: f64) -> f64 {
        use std::f64::consts::TAU;
        650.0 + 450.0 * (TAU * wall_s / 90.0).sin() + 250.0 * (TAU * wall_s / 23.0).sin()
    }

    fn recompute(&mut self, t: SimTime, env: &Environment) {
        use std::f64::consts::TAU;
        self.power_w =
            self.power_override.or(env.grid_w).unwrap_or_else(|| Self::house_load_w(t.wall_s) - env.pv_ac_w);
        self.voltage_v = self
            .voltage_override
            .unwrap_or_else(|| 230.0 + 3.0 * (TAU * t.wall_s / 300.0).sin() + self.noise.symmetric(0.3));
        self.frequency_hz = self
            .frequency_override
            .unwrap_or_else(|| 50.0 + 0.04 * (TAU * t.wall_s / 200.0).sin() + self.noise.symmetric(0.005));
        // Power factor sign follows the current direction (import +, export -).
        self.power_factor = if self.power_w < 0.0 { -0.95 } else { 0.95 };
    }

    fn current_a(&self) -> f64 {
        self.power_w.abs() / self.voltage_v.max(1.0) / self.power_factor.abs()
    }

    fn apparent_va(&self) -> f64 {
        self.power_w.abs() / self.power_factor.abs()
    }

    /// Signed like active power: inductive load while importing, capacitive while exporting.
    fn reactive_var(&self) -> f64 {
        let s = self.apparent_va();
        let q = (s * s - self.power_w * self.power_w).max(0.0).sqrt();
        if self.power_w < 0.0 {
            -q
        } else {
            q
        }
    }

    fn holding_float(&self, addr: u16) -> f64 {
        self.holding_floats.iter().find(|(a, _)| *a == addr).map_or(0.0, |(_, v)| *v)
    }

    fn read(&self, bank: Bank, start: u16, count: u16) -> ModelReply {
        if count == 0 || count > MAX_READ_REGISTERS {
            return ModelReply::Exception(ILLEGAL_DATA_VALUE);
        }
        // Count 1 is the documented "instrument specific value": any address, one word.
        if count != 1 {
            if !start.is_multiple_of(2) {
                return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
            }
            if !count.is_multiple_of(2) {
                return ModelReply::Exception(ILLEGAL_DATA_VALUE);
            }
        }
        let image = register_image(QUANTITIES, bank, start, count, |n| self.value(n));
        let mut words = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let Some(addr) = start.checked_add(i) else {
                return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
            };
            match (bank, image.get(&addr)) {
                (_, Some(w)) => words.push(*w),
                // Single-phase meter: unused input slots read 0.0 (capture, 1.2).
                (Bank::Input, None) if addr <= LAST_INPUT_ADDR => words.push(0),
                _ => return ModelReply::Exception(ILLEGAL_DATA_ADDRESS),
            }
        }
        ModelReply::Registers(words)
    }

    fn write(&mut self, start: u16, values: &[u16]) -> ModelReply {
        // One float parameter per message.
        if values.len() != 2 || !start.is_multiple_of(2) {
            return ModelReply::Exception(ILLEGAL_DATA_VALUE);
        }
        if !WRITABLE_FLOATS.contains(&start) {
            return ModelReply::Exception(ILLEGAL_DATA_ADDRESS);
        }
        let Some(v) = Encoding::F32.decode(values).filter(|v| v.is_finite()) else {
            return ModelReply::Exception(ILLEGAL_DATA_VALUE);
        };
        if let Some(slot) = self.holding_floats.iter_mut().find(|(a, _)| *a == start) {
            slot.1 = v;
        }
        ModelReply::WriteMultiple { start, count: 2 }
    }
}

impl Device for Sdm230 {
    fn kind(&self) -> DeviceKind {
        DeviceKind::Sdm230
    }

    fn step(&mut self, t: SimTime, dt_s: f64, env: &Environment) {
        self.recompute(t, env);
        let hours = dt_s.max(0.0) / 3600.0;
        let p_kw = self.power_w / 1000.0;
        let q_kvar = self.reactive_var() / 1000.0;
        if p_kw >= 0.0 {
            self.import_kwh += p_kw * hours;
        } else {
            self.export_kwh -= p_kw * hours;
        }
        if q_kvar >= 0.0 {
            self.import_kvarh += q_kvar * hours;
        } else {
            self.export_kvarh -= q_kvar * hours;
        }
        self.max_total_demand_w = self.max_total_demand_w.max(self.power_w);
        self.max_import_demand_w = self.max_import_demand_w.max(self.power_w.max(0.0));
        self.max_export_demand_w = self.max_export_demand_w.max((-self.power_w).max(0.0));
        self.max_current_a = self.max_current_a.max(self.current_a());
    }

    fn handle(&mut self, request: &ModelRequest, _t: SimTime) -> ModelReply {
        match request {
            ModelRequest::Read { bank, start, count } => self.read(*bank, *start, *count),
            ModelRequest::WriteMultiple { start, values } => self.write(*start, values),
            ModelRequest::Diagnostics { sub_function: 0, data } => {
                ModelReply::Diagnostics { sub_function: 0, data: *data }
            }
            ModelRequest::Diagnostics { .. } => ModelReply::Exception(ILLEGAL_DATA_VALUE),
            ModelRequest::WriteSingle { .. }
            | ModelRequest::ReadWrite { .. }
            | ModelRequest::Other { .. } => ModelReply::Exception(ILLEGAL_FUNCTION),
            ModelRequest::Invalid { code, .. } => ModelReply::Exception(*code),
        }
    }

    fn turnaround_us(&self, request: &ModelRequest) -> u64 {
        let regs = request.span().map_or(0, |(_, _, n)| u64::from(n));
        TURNAROUND_BASE_US + TURNAROUND_PER_REG_US * regs
    }

    fn quantities(&self) -> &'static [Quantity] {
        QUANTITIES
    }

    fn value(&self, name: &str) -> Option<f64> {
        let p = self.power_w;
        Some(match name {
            "voltage" => self.voltage_v,
            "current" => self.current_a(),
            "power" | "total_demand" => p,
            "apparent_power" => self.apparent_va(),
            "reactive_power" => self.reactive_var(),
            "power_factor" => self.power_factor,
            "phase_angle" => self.power_factor.abs().acos().to_degrees(),
            "frequency" => self.frequency_hz,
            "import_energy" => self.import_kwh,
            "export_energy" => self.export_kwh,
            "import_reactive_energy" => self.import_kvarh,
            "export_reactive_energy" => self.export_kvarh,
            "max_total_demand" => self.max_total_demand_w,
            "import_demand" => p.max(0.0),
            "max_import_demand" => self.max_import_demand_w,
            "export_demand" => (-p).max(0.0),
            "max_export_demand" => self.max_export_demand_w,
            "current_demand" => self.current_a(),
            "max_current_demand" => self.max_current_a,
            // Measurement mode 2 (default): total = import + export.
            "total_energy" | "resettable_total_energy" => self.import_kwh + self.export_kwh,
            "total_reactive_energy" | "resettable_total_reactive_energy" => {
                self.import_kvarh + self.export_kvarh
            }
            "pulse_width" => self.holding_float(0x000C),
            "parity_code" => self.holding_float(0x0012),
            "node_address" => self.holding_float(0x0014),
            "baud_code" => self.holding_float(0x001C),
            "pulse_energy_type" => self.holding_float(0x0056),
            // demand interval 60 min, slide 0, scroll 10 s, backlight 60 min as BCD.
            "demand_config" => f64::from(0x6000_1060u32),
            "pulse_divisor" => 0.0,
            "measurement_mode" => 2.0,
            "serial" => f64::from(self.serial),
            // No SDM230 code is documented (devices.md 1.3); 0x0084-style codes are other models.
            "meter_code" => f64::from(0x0000u16),
            "software_version" => f64::from(0x0110u16),
            _ => return None,
        })
    }

    fn set(&mut self, name: &str, value: &str) -> Result<String, String> {
        let auto = value == "auto";
        match name {
            "power" => self.power_override = if auto { None } else { Some(parse_f64(name, value)?) },
            "voltage" => self.voltage_override = if auto { None } else { Some(parse_f64(name, value)?) },
            "frequency" => self.frequency_override = if auto { None } else { Some(parse_f64(name, value)?) },
            "import_energy" => self.import_kwh = parse_f64(name, value)?.max(0.0),
            "export_energy" => self.export_kwh = parse_f64(name, value)?.max(0.0),
            "serial" => {
                self.serial = value.parse().map_err(|_| format!("serial: not a u32: {value:?}"))?;
            }
            _ => return Err(format!("sdm230 has no setting {name:?} (try: {})", self.settable())),
        }
        // Overrides show at once, not only after the next step.
        self.power_w = self.power_override.unwrap_or(self.power_w);
        self.voltage_v = self.voltage_override.unwrap_or(self.voltage_v);
        self.frequency_hz = self.frequency_override.unwrap_or(self.frequency_hz);
        self.power_factor = if self.power_w < 0.0 { -0.95 } else { 0.95 };
        Ok(format!("sdm230 {name} = {value}"))
    }

    fn settable(&self) -> &'static str {
        "power W|auto, voltage V|auto, frequency Hz|auto, import_energy kWh, export_energy kWh, serial N"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> SimTime {
        SimTime { wall_s: s, device_s: s }
    }

    fn read(m: &mut Sdm230, bank: Bank, start: u16, count: u16) -> ModelReply {
        m.handle(&ModelRequest::Read { bank, start, count }, t(0.0))
    }

    #[test]
    fn test_energy_integrates_power() {
        let mut m = Sdm230::new(t(0.0));
        m.set("power", "3600").ok();
        let env = Environment::default();
        let before = m.import_kwh;
        for i in 1..=3600 {
            m.step(t(f64::from(i)), 1.0, &env);
        }
        assert!((m.import_kwh - before - 3.6).abs() < 1e-9, "{}", m.import_kwh - before);
        m.set("power", "-1800").ok();
        let exp_before = m.export_kwh;
        for i in 1..=3600 {
            m.step(t(f64::from(i)), 1.0, &env);
        }
        assert!((m.export_kwh - exp_before - 1.8).abs() < 1e-9);
        let total = m.value("total_energy").unwrap_or(0.0);
        assert!((total - m.import_kwh - m.export_kwh).abs() < 1e-9);
    }

    #[test]
    fn test_power_goes_negative_when_pv_exceeds_load() {
        let mut m = Sdm230::new(t(0.0));
        m.step(t(10.0), 1.0, &Environment { pv_ac_w: 4000.0, ..Environment::default() });
        assert!(m.value("power").unwrap_or(0.0) < 0.0);
        assert!(m.value("power_factor").unwrap_or(0.0) < 0.0);
        m.step(t(11.0), 1.0, &Environment { pv_ac_w: 0.0, ..Environment::default() });
        assert!(m.value("power").unwrap_or(0.0) > 0.0);
    }

    #[test]
    fn test_plausible_mains() {
        let mut m = Sdm230::new(t(0.0));
        for i in 0..1000 {
            m.step(t(f64::from(i) * 7.0), 1.0, &Environment::default());
            let v = m.value("voltage").unwrap_or(0.0);
            let f = m.value("frequency").unwrap_or(0.0);
            assert!((220.0..240.0).contains(&v) && (49.9..50.1).contains(&f), "{v} {f}");
        }
    }

    #[test]
    fn test_serial_rules() {
        let mut m = Sdm230::new(t(0.0));
        m.set("voltage", "244.52").ok();
        let ModelReply::Registers(w) = read(&mut m, Bank::Input, 0, 2) else { panic!("no registers") };
        assert_eq!(w, Encoding::F32.encode(244.52).to_vec());
        assert_eq!(read(&mut m, Bank::Input, 1, 2), ModelReply::Exception(ILLEGAL_DATA_ADDRESS));
        assert_eq!(read(&mut m, Bank::Input, 0, 3), ModelReply::Exception(ILLEGAL_DATA_VALUE));
        assert_eq!(read(&mut m, Bank::Input, 0, 82), ModelReply::Exception(ILLEGAL_DATA_VALUE));
        assert!(matches!(read(&mut m, Bank::Input, 0, 80), ModelReply::Registers(w) if w.len() == 80));
        // Count 1 at the baud register gives the high word of 2.0: the fork's "16384" probe.
        assert_eq!(read(&mut m, Bank::Holding, 0x001C, 1), ModelReply::Registers(vec![0x4000]));
        assert_eq!(read(&mut m, Bank::Input, 0x0200, 2), ModelReply::Exception(ILLEGAL_DATA_ADDRESS));
        // Zeros for the unused phase-2 slot.
        assert_eq!(read(&mut m, Bank::Input, 0x0002, 2), ModelReply::Registers(vec![0, 0]));
        let fc06 = ModelRequest::WriteSingle { addr: 0x000C, value: 1 };
        assert_eq!(m.handle(&fc06, t(0.0)), ModelReply::Exception(ILLEGAL_FUNCTION));
        let [hi, lo] = Encoding::F32.encode(200.0);
        let fc16 = ModelRequest::WriteMultiple { start: 0x000C, values: vec![hi, lo] };
        assert_eq!(m.handle(&fc16, t(0.0)), ModelReply::WriteMultiple { start: 0x000C, count: 2 });
        assert_eq!(m.value("pulse_width"), Some(200.0));
    }
}
