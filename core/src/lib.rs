//! `dmc-core`: the heap-free heart of dbus-modbus-client.
//!
//! Everything here is sans-IO and `no_std` without `alloc`: bytes come in and
//! go out through caller buffers, time comes in as an [`time::Instant`]
//! argument, and nothing blocks. The host daemon, the hardware-in-the-loop
//! bench and a microcontroller all drive the same code.
//!
//! Layers, bottom up:
//! - [`crc`], [`timing`], [`time`]: checksums, serial-line timing, time as data.
//! - [`pdu`]: Modbus requests, responses and exceptions as typed views over bytes.
//! - [`rtu`], [`ascii`], [`mbap`]: the three ADU framings, with streaming receivers.
//! - [`master`]: the client transaction state machine (`poll(now)`).
//! - [`register`], [`value`]: register types, decoding, encoding and text rendering.
//! - [`profile`]: device profiles as const tables (SDM230, Growatt MIN, ...).
//! - [`plan`], [`schedule`]: packing registers into read blocks and deciding what to read next.
//!
//! Guarantee kept by every parser in this crate: any byte sequence yields a
//! value or an error, never a panic or an out-of-range index.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod ascii;
pub mod control;
pub mod crc;
pub mod master;
pub mod mbap;
pub mod pdu;
pub mod plan;
pub mod profile;
pub mod register;
pub mod rtu;
pub mod schedule;
pub mod time;
pub mod timing;
pub mod value;
pub mod vreglink;
