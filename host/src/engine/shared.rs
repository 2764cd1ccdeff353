//! What a bus shares with the rest of the daemon while it runs in its own task.
//!
//! The control service (`com.victronenergy.modbusclient.<name>`) shows per-device statistics
//! and may disable a device or ask for a scan; the bus task owns its devices, so it copies
//! their counters here after each pass and reads the requests from here. Plain atomics and
//! short locks: the bus never waits on D-Bus.
//!
//! A bus can gain devices while it runs (a unit scan finds one), so the per-device entries are
//! allocated for [`MAX_DEVICES`] up front and [`SharedBus::live`] says how many are in use.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::bus::MAX_DEVICES;
use super::device::DeviceStats;
use crate::spec::DeviceSpec;

/// One device's shared state.
#[derive(Debug)]
pub struct SharedDevice {
    /// `false`: the bus neither probes nor reads the device (`Enabled` = 0).
    pub enabled: AtomicBool,
    /// Identified (profile known).
    pub identified: AtomicBool,
    /// Probe transactions completed (a scan's progress counts these).
    pub probes: AtomicU64,
    stats: Mutex<DeviceStats>,
}

impl Default for SharedDevice {
    fn default() -> Self {
        SharedDevice {
            enabled: AtomicBool::new(true),
            identified: AtomicBool::new(false),
            probes: AtomicU64::new(0),
            stats: Mutex::new(DeviceStats::default()),
        }
    }
}

impl SharedDevice {
    /// The counters as of the bus's last pass.
    pub fn stats(&self) -> DeviceStats {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn store_stats(&self, stats: &DeviceStats) {
        *self.stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = *stats;
    }

    /// Whether the bus may talk to the device.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}

/// A bus's shared state: one entry per device, in the bus's device order.
#[derive(Debug)]
pub struct SharedBus {
    /// Per device slot ([`MAX_DEVICES`] of them; the first [`live`](Self::live) are devices).
    pub devices: Vec<SharedDevice>,
    /// Devices the bus has now.
    live: AtomicUsize,
    /// Set by the control service's `/Scan`: re-probe every unidentified device now and, on a
    /// serial bus, ask every unit of [`scan_units`](Self::scan_units) for a known device.
    pub scan_requested: AtomicBool,
    /// Set by `/Scan` = false: end a unit scan under way.
    pub scan_cancel: AtomicBool,
    /// A unit scan is under way (set by the bus).
    pub scan_running: AtomicBool,
    /// Units the current unit scan has asked, of `scan_total`.
    pub scan_asked: AtomicU32,
    /// Units the current unit scan will ask.
    pub scan_total: AtomicU32,
    /// The unit range a scan walks (inclusive).
    scan_units: Mutex<(u8, u8)>,
    /// Devices a scan added, not yet saved in the settings (the control service takes them).
    found: Mutex<Vec<DeviceSpec>>,
}

impl SharedBus {
    /// State for `n` devices, all enabled.
    pub fn new(n: usize) -> Arc<SharedBus> {
        Arc::new(SharedBus {
            devices: (0..n.max(MAX_DEVICES)).map(|_| SharedDevice::default()).collect(),
            live: AtomicUsize::new(n),
            scan_requested: AtomicBool::new(false),
            scan_cancel: AtomicBool::new(false),
            scan_running: AtomicBool::new(false),
            scan_asked: AtomicU32::new(0),
            scan_total: AtomicU32::new(0),
            scan_units: Mutex::new((1, 247)),
            found: Mutex::new(Vec::new()),
        })
    }

    /// Devices on the bus now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The bus gained a device (a scan found it): its entry becomes live and `spec` waits to
    /// be saved.
    pub(crate) fn device_added(&self, spec: DeviceSpec) {
        self.live.fetch_add(1, Ordering::Relaxed);
        lock(&self.found).push(spec);
    }

    /// Devices found by scans since the last call.
    pub fn take_found(&self) -> Vec<DeviceSpec> {
        std::mem::take(&mut *lock(&self.found))
    }

    /// The unit range scans walk (`1..=247` unless set).
    pub fn scan_units(&self) -> (u8, u8) {
        *lock(&self.scan_units)
    }

    /// Sets the unit range scans walk.
    pub fn set_scan_units(&self, first: u8, last: u8) {
        *lock(&self.scan_units) = (first, last);
    }

    /// A scan was asked for and not taken up yet, or a unit scan runs.
    pub fn scan_busy(&self) -> bool {
        self.scan_requested.load(Ordering::Relaxed) || self.scan_running.load(Ordering::Relaxed)
    }

    /// Whether device `i` is enabled (unknown devices are).
    pub fn is_enabled(&self, i: usize) -> bool {
        self.devices.get(i).is_none_or(SharedDevice::is_enabled)
    }

    /// Enables or disables device `i`.
    pub fn set_enabled(&self, i: usize, enabled: bool) {
        if let Some(d) = self.devices.get(i) {
            d.enabled.store(enabled, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_start_enabled_and_can_be_disabled() {
        let shared = SharedBus::new(2);
        assert!(shared.is_enabled(0) && shared.is_enabled(1) && shared.is_enabled(7));
        shared.set_enabled(1, false);
        assert!(!shared.is_enabled(1));
        let stats = DeviceStats { requests: 3, ..DeviceStats::default() };
        shared.devices[0].store_stats(&stats);
        assert_eq!(shared.devices[0].stats().requests, 3);
    }

    #[test]
    fn a_found_device_becomes_live_and_waits_to_be_saved() {
        let shared = SharedBus::new(1);
        assert_eq!((shared.live(), shared.devices.len()), (1, MAX_DEVICES));
        let spec = DeviceSpec::parse("rtu:ttyUSB0:9600:3").expect("spec");
        shared.device_added(spec.clone());
        assert_eq!(shared.live(), 2);
        assert_eq!(shared.take_found(), vec![spec]);
        assert!(shared.take_found().is_empty());
    }
}
