//! Time as data: core never reads a clock.
//!
//! Every state machine in this crate takes the current [`Instant`] as an argument
//! (smoltcp/quinn style), so the same code runs on a GX, on a microcontroller
//! and under a simulated clock in tests. Resolution is one microsecond, which is
//! finer than any Modbus timing figure (a character at 115200 baud is 87 us).

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time, in microseconds since an arbitrary epoch chosen by the caller.
///
/// Instants must be monotonic for a given state machine; arithmetic saturates
/// instead of wrapping so a confused caller can never cause a panic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant {
    micros: u64,
}

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant { micros: millis.saturating_mul(1000) }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Milliseconds since the epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1000
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration { micros: self.micros.saturating_sub(earlier.micros) }
    }

    /// The later of two instants.
    pub fn max(self, other: Instant) -> Instant {
        if other > self {
            other
        } else {
            self
        }
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration { micros: 0 };
    /// The longest representable span.
    pub const MAX: Duration = Duration { micros: u64::MAX };

    /// A span of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }

    /// A span of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { micros: millis.saturating_mul(1000) }
    }

    /// A span of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration { micros: secs.saturating_mul(1_000_000) }
    }

    /// Length in microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Length in milliseconds (truncated).
    pub const fn as_millis(self) -> u64 {
        self.micros / 1000
    }

    /// Length in seconds as a float, for control laws and reports.
    pub fn as_secs_f32(self) -> f32 {
        self.micros as f32 / 1_000_000.0
    }

    /// `self * n`, saturating.
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration { micros: self.micros.saturating_mul(n) }
    }

    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration { micros: self.micros.saturating_add(other.micros) }
    }

    /// `self - other`, zero when `other` is longer.
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration { micros: self.micros.saturating_sub(other.micros) }
    }

    /// The longer of two spans.
    pub const fn max(self, other: Duration) -> Duration {
        if other.micros > self.micros {
            other
        } else {
            self
        }
    }

    /// The shorter of two spans.
    pub const fn min(self, other: Duration) -> Duration {
        if other.micros < self.micros {
            other
        } else {
            self
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant { micros: self.micros.saturating_add(rhs.micros) }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        self.saturating_add(rhs)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} ms", self.micros / 1000, self.micros % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Instant::from_millis(5);
        let b = Instant::from_millis(7);
        assert_eq!(b - a, Duration::from_millis(2));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(Instant::from_micros(u64::MAX) + Duration::from_secs(1), Instant::from_micros(u64::MAX));
        assert_eq!(Duration::from_millis(3).saturating_mul(u64::MAX), Duration::MAX);
    }

    #[test]
    fn display_is_milliseconds() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", Duration::from_micros(3646)), "3.646 ms");
    }
}
