//! The dbus-modbus-client daemon as a library, so integration tests and the
//! demo drive exactly the code the GX runs.

pub mod engine;
pub mod link;
pub mod logging;
pub mod spec;
