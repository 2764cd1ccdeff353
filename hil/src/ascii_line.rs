//! Modbus ASCII on the simulated serial line (`SimConfig::ascii`).
//!
//! The bus model speaks RTU frames, so this layer only translates: a request
//! `:` + hex + LRC + CR LF (core's [`AsciiReceiver`]) becomes unit + PDU + CRC
//! for [`crate::bus::Bus::handle_frame`], and each RTU emission goes back out
//! as `:` + hex + LRC + CR LF, paced at the line's character time. An emission
//! whose CRC is wrong (the `crc` fault) is sent with a wrong LRC, so the fault
//! injection keeps its meaning; bytes that are not a frame at all (`garbage`)
//! are sent as they are.

use std::io::{ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

use dmc_core::ascii::AsciiReceiver;
use dmc_core::crc::{crc16, lrc};
use dmc_core::timing::LineConfig;
use serialport::{SerialPort, TTYPort};

use crate::serve::{hex, sleep_until, write_paced, Shared, STOP_POLL};

/// Serves the bus in ASCII until the simulator stops.
pub(crate) fn ascii_loop(shared: &Shared, mut port: TTYPort, line: LineConfig, trace: bool) {
    let char_time = Duration::from_micros(line.char_time().as_micros());
    let mut receiver = AsciiReceiver::new();
    let mut buf = [0u8; 512];
    while !shared.stopped() {
        let mut received: &[u8] = &[];
        if port.set_timeout(STOP_POLL).is_ok() {
            match port.read(&mut buf) {
                Ok(n) => received = buf.get(..n).unwrap_or_default(),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => thread::sleep(STOP_POLL),
            }
        }
        let read_at = Instant::now();
        let mut requests: Vec<Vec<u8>> = Vec::new();
        while !received.is_empty() {
            let taken = receiver.feed(received);
            received = received.get(taken..).unwrap_or_default();
            while let Some(event) = receiver.poll() {
                match event {
                    Ok(frame) => requests.push(rtu_frame(frame.unit, frame.pdu)),
                    Err(e) if trace => eprintln!("dmc-hil sim: dropped ASCII frame: {e}"),
                    Err(_) => {}
                }
            }
            if taken == 0 {
                break;
            }
        }
        for request in requests {
            let wall_s = shared.wall_s();
            if trace {
                eprintln!("dmc-hil sim: {wall_s:9.3} rx {}", hex(&request));
            }
            let emissions = shared.bus().handle_frame(&request, wall_s);
            // A pty delivers the request at once, but the master counts it
            // on the wire for its character time and drops bytes that come
            // sooner: answer only after the modelled request (`:`, two hex
            // digits per byte and the LRC, CR LF).
            let chars = 2 * request.len().saturating_sub(2) + 5;
            let mut cursor = read_at + char_time * u32::try_from(chars.saturating_sub(1)).unwrap_or(u32::MAX);
            for e in emissions {
                cursor += Duration::from_micros(e.gap_us);
                sleep_until(cursor);
                let out = ascii_of_rtu(&e.bytes);
                if trace {
                    eprintln!("dmc-hil sim: {:9.3} tx {}", shared.wall_s(), String::from_utf8_lossy(&out));
                }
                cursor = write_paced(&mut port, &out, char_time);
            }
        }
    }
}

/// Unit + PDU + CRC, as the RTU bus model expects.
fn rtu_frame(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(unit);
    frame.extend_from_slice(pdu);
    frame.extend_from_slice(&crc16(&frame).to_le_bytes());
    frame
}

/// The ASCII form of an RTU emission (see the module comment).
fn ascii_of_rtu(rtu: &[u8]) -> Vec<u8> {
    let Some((body, crc)) = rtu.len().checked_sub(2).map(|n| rtu.split_at(n)) else {
        return rtu.to_vec();
    };
    if body.len() < 2 {
        return rtu.to_vec();
    }
    let crc_ok = crc == crc16(body).to_le_bytes();
    let check = if crc_ok { lrc(body) } else { !lrc(body) };
    let mut out = Vec::with_capacity(2 * body.len() + 5);
    out.push(b':');
    for b in body.iter().chain(std::iter::once(&check)) {
        out.extend_from_slice(format!("{b:02X}").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_both_ways_and_keeps_a_crc_fault() {
        // Read input registers 0..2 of unit 2.
        let rtu = rtu_frame(2, &[0x04, 0x00, 0x00, 0x00, 0x02]);
        assert_eq!(rtu.len(), 8);
        let ascii = ascii_of_rtu(&rtu);
        assert_eq!(ascii, b":020400000002F8\r\n".to_vec());
        let mut rx = AsciiReceiver::new();
        assert_eq!(rx.feed(&ascii), ascii.len());
        let Some(Ok(frame)) = rx.poll() else { panic!("no frame") };
        assert_eq!(rtu_frame(frame.unit, frame.pdu), rtu);
        // A corrupted CRC becomes a wrong LRC.
        let mut bad = rtu.clone();
        bad[7] ^= 0xFF;
        let mut rx = AsciiReceiver::new();
        let _ = rx.feed(&ascii_of_rtu(&bad));
        assert!(matches!(rx.poll(), Some(Err(_))));
    }
}
