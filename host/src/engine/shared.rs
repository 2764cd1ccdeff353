//! What a bus shares with the rest of the daemon while it runs in its own task.
//!
//! The control service (`com.victronenergy.modbusclient.<name>`) shows per-device statistics
//! and may disable a device or ask for a scan; the bus task owns its devices, so it copies
//! their counters here after each pass and reads the requests from here. Plain atomics and
//! short locks: the bus never waits on D-Bus.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::device::DeviceStats;

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
    /// Per device.
    pub devices: Vec<SharedDevice>,
    /// Set by the control service's `/Scan`: re-probe every unidentified device now.
    pub scan_requested: AtomicBool,
}

impl SharedBus {
    /// State for `n` devices, all enabled.
    pub fn new(n: usize) -> Arc<SharedBus> {
        Arc::new(SharedBus {
            devices: (0..n).map(|_| SharedDevice::default()).collect(),
            scan_requested: AtomicBool::new(false),
        })
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
}
