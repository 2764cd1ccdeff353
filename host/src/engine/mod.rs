//! The polling engine: buses, devices, and the loop that reads them.
//!
//! One [`bus::Bus`] per serial port or socket runs as an async task; every
//! device on it shares it through the core scheduler, one transaction at a
//! time. [`device::Device`] holds what is known about each device and its
//! presence rules; the bus tells an [`Observer`] what changed so the D-Bus
//! layer (or a test) can publish it.

pub mod bus;
pub mod clock;
pub mod device;
pub mod line_timer;
pub mod shared;

pub use bus::{Bus, BusConfig, BusStats, Command, CommandError, Observer};
pub use clock::Clock;
pub use device::{Device, DeviceStats, Presence, PresenceChange};
pub use shared::{SharedBus, SharedDevice};
