//! The engine observer the engine tests record with, and their shared checks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant as StdInstant};

use dbus_modbus_client::engine::{Bus, BusConfig, Clock, Device, Observer, PresenceChange};
use dbus_modbus_client::spec::DeviceSpec;
use dmc_core::time::Instant;
use dmc_core::value::Value;
use dmc_hil::serve::SimHandle;
use futures_lite::future;

/// A condition that ends a run early.
pub type StopWhen = Box<dyn Fn(&Recorder) -> bool + Send>;

/// Records what the engine reports, stopping at a deadline or a condition.
pub struct Recorder {
    pub deadline: StdInstant,
    /// (device index, path) -> every value delivered, in order, with its time.
    pub values: BTreeMap<(usize, String), Vec<(Instant, f64)>>,
    pub changes: Vec<(usize, PresenceChange, Instant)>,
    /// Completed reads with changes, per device.
    pub reads: Vec<Vec<Instant>>,
    pub stop_when: Option<StopWhen>,
}

impl Recorder {
    pub fn new(run_for: Duration) -> Self {
        Recorder {
            deadline: StdInstant::now() + run_for,
            values: BTreeMap::new(),
            changes: Vec::new(),
            reads: vec![Vec::new(); 4],
            stop_when: None,
        }
    }

    pub fn until(run_for: Duration, stop_when: impl Fn(&Recorder) -> bool + Send + 'static) -> Self {
        Recorder { stop_when: Some(Box::new(stop_when)), ..Recorder::new(run_for) }
    }

    pub fn delivered(&self, dev: usize, path: &str) -> Vec<f64> {
        self.values
            .get(&(dev, path.to_string()))
            .map(|v| v.iter().map(|(_, x)| *x).collect())
            .unwrap_or_default()
    }

    pub fn had(&self, dev: usize, change: PresenceChange) -> bool {
        self.changes.iter().any(|(d, c, _)| *d == dev && *c == change)
    }
}

impl Observer for Recorder {
    fn presence(&mut self, i: usize, _device: &Device, change: PresenceChange, now: Instant) {
        self.changes.push((i, change, now));
    }

    fn values(&mut self, i: usize, device: &Device, now: Instant) {
        if let Some(r) = self.reads.get_mut(i) {
            r.push(now);
        }
        let Some(profile) = device.profile else { return };
        for &idx in &device.changed {
            let (Some(def), Some(Value::Float(v))) = (profile.registers.get(idx), device.values.get(idx))
            else {
                continue;
            };
            for path in def.paths {
                self.values.entry((i, (*path).to_string())).or_default().push((now, *v));
            }
        }
    }

    fn stop_requested(&mut self) -> bool {
        StdInstant::now() >= self.deadline || self.stop_when.as_ref().is_some_and(|f| f(self))
    }
}

/// Runs the bus until the recorder says stop (a timer is the safety net).
pub fn run(bus: &mut Bus, rec: &mut Recorder) {
    if std::env::var_os("DMC_TEST_DEBUG").is_some() {
        dbus_modbus_client::logging::init(true);
    }
    let limit = rec.deadline + Duration::from_secs(5);
    future::block_on(future::or(bus.run(rec), async {
        async_io::Timer::at(limit).await;
    }));
}

/// A bus for `specs` (all on one bus).
pub fn bus_for(specs: Vec<DeviceSpec>) -> Bus {
    let config = BusConfig::for_spec(&specs[0]);
    Bus::new(config, specs, Clock::new()).expect("bus")
}

/// Some values were delivered, and every one is one the simulator served.
pub fn assert_all_served(rec: &Recorder, sim: &SimHandle, dev: usize, unit: u8, path: &str, quantity: &str) {
    assert!(!rec.delivered(dev, path).is_empty(), "no {path} delivered");
    assert_none_wrong(rec, sim, dev, unit, path, quantity);
}

/// Every delivered value (possibly none) is one the simulator served.
pub fn assert_none_wrong(rec: &Recorder, sim: &SimHandle, dev: usize, unit: u8, path: &str, quantity: &str) {
    let served = sim.served(unit, quantity);
    for v in rec.delivered(dev, path) {
        // The register is an f32 on the wire; the served log holds it exactly.
        assert!(
            served.iter().any(|s| (s - v).abs() <= 1e-9 * s.abs().max(1.0)),
            "{path} = {v} was never served (served {} values)",
            served.len()
        );
    }
}
