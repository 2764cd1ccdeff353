//! `dmc-hil`: device simulators and the hardware-in-the-loop bench for dbus-modbus-client.
//!
//! # Simulator (library use)
//! Other crates' integration tests start a simulated RS485 bus in-process on
//! a pseudo-terminal, point the code under test at [`SimHandle::path`], steer
//! it with [`SimHandle::command`] / [`SimHandle::set`] / [`SimHandle::fault`],
//! and check the wire with [`SimHandle::stats`] and [`SimHandle::served`]:
//!
//! ```no_run
//! use dmc_hil::{SimConfig, SimHandle};
//! let sim = SimHandle::spawn_pty(SimConfig::default()).expect("pty");
//! let port = sim.path(); // open this like /dev/ttyUSB0, 9600 8N1
//! sim.set("sdm230", "power", "-1500").expect("set");
//! sim.fault("growatt", "silent on").expect("fault");
//! // ... run the daemon against `port` ...
//! let served = sim.served(2, "power"); // every SDM230 power value put on the wire
//! assert!(sim.stats().unit(2).is_some_and(|c| c.responses > 0));
//! // dropped: threads stop, pty closes
//! ```
//!
//! The Victron VM-3P75CT (three phase, VregLink over FC23 at 0x4000) joins
//! with `SimConfig::default().with_unit(3, DeviceKind::Vm3p75ct)`; its VregLink
//! traffic is counted in [`UnitCounters::read_writes`].
//!
//! Layers: [`model`] (what each device stores and answers, from
//! `docs/devices.md`), [`bus`] (units, faults, counters; sans-IO), [`serve`]
//! (pty/serial threads with real-line timing), [`net`] (the same bus over
//! Modbus TCP, Modbus UDP and RTU over TCP), [`control`] (the line
//! protocol), [`script`] (time-stamped scenarios).

pub mod ascii_line;
pub mod bench;
pub mod bus;
pub mod control;
pub mod fault;
pub mod frame;
pub mod model;
pub mod net;
pub mod script;
pub mod serve;

pub use bus::{Stats, UnitCounters};
pub use model::DeviceKind;
pub use serve::{send_control, SimConfig, SimHandle};
