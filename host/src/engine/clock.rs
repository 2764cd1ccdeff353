//! The host clock: `std::time::Instant` mapped onto core's microsecond
//! [`Instant`] so core state machines get time as data.

use dmc_core::time::Instant;

/// A monotonic clock with a process-local epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock { epoch: std::time::Instant::now() }
    }

    /// Now, as core time.
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// A std instant as core time (instants before the epoch map to zero).
    pub fn at(&self, t: std::time::Instant) -> Instant {
        let micros = t.saturating_duration_since(self.epoch).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Core time as a std instant (for timers).
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        self.epoch + std::time::Duration::from_micros(t.as_micros())
    }
}
