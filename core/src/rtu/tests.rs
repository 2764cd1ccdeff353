//! RTU tests: device frames from `docs/devices.md`, emit/parse both ways, and
//! receiver behaviour (garbage, noise, split chunks, USB bursts, silences).

use super::*;
use crate::pdu::{Request, Response, Words};
use proptest::prelude::*;
use std::vec::Vec;

const LINE: LineConfig = LineConfig::new_8n1(9600);

/// devices.md 2.10: Growatt read and its answer.
const GROWATT_REQ: [u8; 8] = [0x01, 0x04, 0x00, 0x23, 0x00, 0x05, 0xC1, 0xC3];
const GROWATT_RESP: [u8; 15] =
    [0x01, 0x04, 0x0A, 0x00, 0x00, 0x08, 0x09, 0x13, 0x91, 0x09, 0x52, 0x00, 0x09, 0xD4, 0xEE];

fn us(micros: u64) -> Instant {
    Instant::from_micros(micros)
}

/// Feeds a chunk completely, collecting events as owned values.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Frame(Vec<u8>),
    Dropped(DropReason),
}

fn drain(rx: &mut RtuReceiver, now: Instant, mut bytes: &[u8]) -> Vec<Ev> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let n = rx.feed(now, bytes);
        bytes = &bytes[n..];
        match rx.poll(now) {
            Some(RxEvent::Frame(f)) => out.push(Ev::Frame(f.as_bytes().to_vec())),
            Some(RxEvent::Dropped(r)) => out.push(Ev::Dropped(r)),
            None if bytes.is_empty() => return out,
            None => {}
        }
    }
    panic!("receiver made no progress");
}

fn poll_all(rx: &mut RtuReceiver, now: Instant) -> Vec<Ev> {
    drain(rx, now, &[])
}

#[test]
fn test_emit_device_frames() {
    let cases: [(u8, Request<'_>, &[u8]); 4] = [
        (
            2,
            Request::ReadInputRegisters { address: 0, quantity: 0x0E },
            &[0x02, 0x04, 0x00, 0x00, 0x00, 0x0E, 0x71, 0xFD],
        ),
        (1, Request::ReadInputRegisters { address: 0x23, quantity: 5 }, &GROWATT_REQ),
        (
            1,
            Request::WriteSingleRegister { address: 3, value: 100 },
            &[0x01, 0x06, 0x00, 0x03, 0x00, 0x64, 0x78, 0x21],
        ),
        (
            2,
            Request::ReadInputRegisters { address: 0, quantity: 0x12 },
            &[0x02, 0x04, 0x00, 0x00, 0x00, 0x12, 0x70, 0x34],
        ),
    ];
    for (unit, req, bytes) in cases {
        let mut buf = [0xA5u8; 12];
        let len = emit(unit, &req, &mut buf).unwrap();
        assert_eq!(&buf[..len], bytes);
        assert!(buf[len..].iter().all(|&b| b == 0xA5));
        let frame = RtuFrame::new_checked(bytes).unwrap();
        assert_eq!(frame.check_crc(), Ok(()));
        assert_eq!(frame.unit(), unit);
        assert_eq!(Request::parse(frame.pdu()), Ok(req));
    }
    // Growatt FC06 writes from devices.md 2.8.
    for (address, value, crc) in
        [(0x7A, 1, [0x69, 0xD3]), (0x7B, 876, [0xF9, 0x0E]), (3000, 876, [0x0B, 0x16])]
    {
        let mut buf = [0xA5u8; 8];
        emit(1, &Request::WriteSingleRegister { address, value }, &mut buf).unwrap();
        assert_eq!(buf[6..], crc);
    }
}

#[test]
fn test_parse_growatt_response() {
    let frame = RtuFrame::new_checked(&GROWATT_RESP[..]).unwrap();
    frame.check_crc().unwrap();
    let req = Request::ReadInputRegisters { address: 0x23, quantity: 5 };
    let resp = Response::parse(&req, frame.pdu()).unwrap().unwrap();
    // Pac = 0x00000809 = 2057 (205.7 W), Fac 5009, Vac 2386, Iac 9.
    assert_eq!(resp.registers().unwrap().iter().collect::<Vec<_>>(), [0, 0x0809, 5009, 2386, 9]);
}

#[test]
fn test_parse_sdm230_response() {
    // devices.md 1.6: `02 04 01 56 00 04` -> 164.895 kWh, 75.264 kVArh.
    let bytes = [0x02, 0x04, 0x08, 0x43, 0x24, 0xE5, 0x1F, 0x42, 0x96, 0x87, 0x2B, 0x5F, 0x22];
    let frame = RtuFrame::new_checked(&bytes[..]).unwrap();
    frame.check_crc().unwrap();
    let req = Request::ReadInputRegisters { address: 0x156, quantity: 4 };
    let resp = Response::parse(&req, frame.pdu()).unwrap().unwrap();
    let bits = (u32::from(resp.register(0).unwrap()) << 16) | u32::from(resp.register(1).unwrap());
    assert!((f32::from_bits(bits) - 164.895).abs() < 0.001);
}

#[test]
fn test_frame_errors() {
    assert_eq!(RtuFrame::new_checked(&[1u8, 2, 3][..]), Err(FrameError::TooShort { len: 3 }));
    assert_eq!(RtuFrame::new_checked(&[0u8; 257][..]), Err(FrameError::TooLong { len: 257 }));
    let mut bad = GROWATT_REQ;
    bad[6] ^= 1;
    let f = RtuFrame::new_checked(&bad[..]).unwrap();
    assert_eq!(f.check_crc(), Err(FrameError::CrcMismatch { computed: 0xC3C1, received: 0xC3C0 }));
    // Unchecked accessors never panic.
    let empty = RtuFrame::new_unchecked(&[][..]);
    assert_eq!((empty.unit(), empty.function(), empty.pdu(), empty.crc()), (0, 0, &[][..], 0));
    let mut buf = [0u8; 4];
    assert_eq!(
        emit(1, &Request::ReadCoils { address: 0, quantity: 1 }, &mut buf),
        Err(PduError::BufferTooSmall { needed: 8, available: 4 })
    );
}

#[test]
fn test_receiver_expected_response_completes_without_silence() {
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    assert_eq!(drain(&mut rx, us(0), &GROWATT_RESP), [Ev::Frame(GROWATT_RESP.to_vec())]);
    assert_eq!(rx.stats().frames, 1);
    assert_eq!(rx.poll_timeout(), None);
}

#[test]
fn test_receiver_exception_form() {
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    let mut exc = [0x01, 0x84, 0x02, 0, 0];
    RtuFrame::new_unchecked(&mut exc[..]).fill_crc();
    assert_eq!(drain(&mut rx, us(0), &exc), [Ev::Frame(exc.to_vec())]);
}

#[test]
fn test_receiver_garbage_before_frame() {
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    let mut bytes = std::vec![0x00, 0xFF, 0x01, 0x04];
    bytes.extend_from_slice(&GROWATT_RESP);
    assert_eq!(drain(&mut rx, us(0), &bytes), [Ev::Frame(GROWATT_RESP.to_vec())]);
    assert_eq!(rx.stats().garbage_bytes, 4);
}

#[test]
fn test_receiver_split_chunks_and_usb_burst() {
    // A 16 ms USB latency pause inside the frame: dropped with spec timing,
    // accepted once the host widens the limits.
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    assert!(drain(&mut rx, us(0), &GROWATT_RESP[..6]).is_empty());
    let ev = drain(&mut rx, us(16_000), &GROWATT_RESP[6..]);
    assert_eq!(ev[0], Ev::Dropped(DropReason::TooShort { len: 6 }));
    // A pause between t1.5 and t3.5 breaks the t1.5 rule.
    rx.reset();
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    assert!(drain(&mut rx, us(100_000), &GROWATT_RESP[..6]).is_empty());
    let ev = drain(&mut rx, us(102_500), &GROWATT_RESP[6..]);
    assert_eq!(ev[0], Ev::Dropped(DropReason::InterCharGap { gap: Duration::from_micros(2_500) }));
    assert_eq!(rx.stats().inter_char_gaps, 1);

    let mut rx = RtuReceiver::new(RxTiming::from_line(&LINE).widened(Duration::from_millis(20)));
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    for (i, chunk) in GROWATT_RESP.chunks(4).enumerate() {
        let ev = drain(&mut rx, us(i as u64 * 16_000), chunk);
        if i < 3 {
            assert!(ev.is_empty());
        } else {
            assert_eq!(ev, [Ev::Frame(GROWATT_RESP.to_vec())]);
        }
    }
}

#[test]
fn test_expected_response_survives_usb_bursts_with_spec_frame_gap() {
    // The host widens only the inside-a-frame limit: requests are still paced
    // by the spec's t3.5, while a response of known length may pause longer.
    let mut timing = RxTiming::from_line(&LINE);
    timing.inter_char_timeout = Duration::from_millis(20);
    let mut rx = RtuReceiver::new(timing);
    assert_eq!(rx.timing().frame_gap, LINE.t35());
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
    assert!(drain(&mut rx, us(0), &GROWATT_RESP[..6]).is_empty());
    // 10 ms of silence: longer than t3.5 (3.6 ms), shorter than the limit.
    assert_eq!(rx.poll_timeout(), Some(us(20_000)));
    assert!(rx.poll(us(10_000)).is_none());
    let ev = drain(&mut rx, us(10_000), &GROWATT_RESP[6..]);
    assert_eq!(ev, [Ev::Frame(GROWATT_RESP.to_vec())]);
    // Without a response expected, t3.5 still ends a burst.
    rx.reset();
    rx.expect_silence();
    assert!(drain(&mut rx, us(50_000), &GROWATT_RESP[..6]).is_empty());
    assert_eq!(rx.poll_timeout(), Some(us(50_000) + LINE.t35()));
}

#[test]
fn test_receiver_gap_after_complete_frame_is_not_a_drop() {
    // Silence mode: a whole frame followed by a t1.5 < gap < t3.5 pause.
    let mut rx = RtuReceiver::for_line(&LINE);
    assert!(drain(&mut rx, us(0), &GROWATT_REQ).is_empty());
    let ev = drain(&mut rx, us(2_500), &GROWATT_REQ);
    assert_eq!(ev[0], Ev::Frame(GROWATT_REQ.to_vec()));
}

#[test]
fn test_receiver_silence_ends_frame() {
    let mut rx = RtuReceiver::for_line(&LINE);
    assert!(drain(&mut rx, us(1000), &GROWATT_REQ).is_empty());
    let deadline = rx.poll_timeout().unwrap();
    assert_eq!(deadline, us(1000) + LINE.t35());
    assert!(poll_all(&mut rx, us(1000 + 3_000)).is_empty());
    assert_eq!(poll_all(&mut rx, deadline), [Ev::Frame(GROWATT_REQ.to_vec())]);
    assert_eq!(rx.buffered(), 0);
    // The next frame arriving late also ends the previous one.
    assert!(drain(&mut rx, us(10_000), &GROWATT_REQ).is_empty());
    assert_eq!(drain(&mut rx, us(20_000), &GROWATT_REQ[..1]), [Ev::Frame(GROWATT_REQ.to_vec())]);
}

#[test]
fn test_receiver_noise_resync_and_crc_errors() {
    let mut rx = RtuReceiver::for_line(&LINE);
    let mut bytes = std::vec![0x55, 0x01];
    bytes.extend_from_slice(&GROWATT_REQ);
    drain(&mut rx, us(0), &bytes);
    assert_eq!(poll_all(&mut rx, us(10_000)), [Ev::Frame(GROWATT_REQ.to_vec())]);
    assert_eq!(rx.stats().garbage_bytes, 2);

    let mut bad = GROWATT_REQ;
    bad[3] ^= 0x10;
    drain(&mut rx, us(20_000), &bad);
    assert_eq!(poll_all(&mut rx, us(30_000)), [Ev::Dropped(DropReason::CrcMismatch)]);
    drain(&mut rx, us(40_000), &[1, 2]);
    assert_eq!(poll_all(&mut rx, us(50_000)), [Ev::Dropped(DropReason::TooShort { len: 2 })]);
    assert_eq!(rx.stats().crc_errors, 1);
    assert_eq!(rx.stats().too_short, 1);
}

#[test]
fn test_receiver_wrong_unit_and_function() {
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_response(2, FunctionCode::ReadInputRegisters, 12);
    drain(&mut rx, us(0), &GROWATT_RESP);
    assert_eq!(
        poll_all(&mut rx, us(10_000)),
        [Ev::Dropped(DropReason::WrongUnit { expected: 2, actual: 1 })]
    );
    rx.expect_response(1, FunctionCode::ReadHoldingRegisters, 12);
    drain(&mut rx, us(20_000), &GROWATT_RESP);
    assert_eq!(
        poll_all(&mut rx, us(30_000)),
        [Ev::Dropped(DropReason::WrongFunction { expected: 3, actual: 4 })]
    );
    // Right unit and function, wrong length (asked for 6 registers).
    rx.expect_response(1, FunctionCode::ReadInputRegisters, 14);
    drain(&mut rx, us(40_000), &GROWATT_RESP);
    assert_eq!(poll_all(&mut rx, us(50_000)), [Ev::Dropped(DropReason::TooShort { len: 15 })]);
}

#[test]
fn test_receiver_too_long_then_recovers() {
    let mut rx = RtuReceiver::for_line(&LINE);
    let ev = drain(&mut rx, us(0), &[0x11; 300]);
    assert_eq!(ev, [Ev::Dropped(DropReason::TooLong { len: 257 })]);
    assert!(poll_all(&mut rx, us(10_000)).is_empty());
    drain(&mut rx, us(20_000), &GROWATT_REQ);
    assert_eq!(poll_all(&mut rx, us(30_000)), [Ev::Frame(GROWATT_REQ.to_vec())]);
}

#[test]
fn test_receiver_requests_predicted_length() {
    let mut rx = RtuReceiver::for_line(&LINE);
    rx.expect_requests();
    let regs = [1u16, 2, 3];
    let mut fc16 = [0u8; 15];
    let n =
        emit(7, &Request::WriteMultipleRegisters { address: 9, values: Words::from_slice(&regs) }, &mut fc16)
            .unwrap();
    assert_eq!(n, 15);
    let mut both = std::vec![0xFF];
    both.extend_from_slice(&GROWATT_REQ);
    both.extend_from_slice(&fc16);
    // Back-to-back requests in one chunk, each ending at its predicted length.
    assert_eq!(drain(&mut rx, us(0), &both), [Ev::Frame(GROWATT_REQ.to_vec()), Ev::Frame(fc16.to_vec())]);
    assert_eq!(rx.stats().garbage_bytes, 1);
}

#[test]
fn test_earliest_send() {
    let t35 = LINE.t35();
    assert_eq!(earliest_send(t35, Some(us(100)), Some(us(5000))), us(5000) + t35);
    assert_eq!(earliest_send(t35, None, None), Instant::ZERO);
}

proptest! {
    #[test]
    fn prop_receiver_never_panics(chunks in prop::collection::vec(
        (0u64..5_000, prop::collection::vec(any::<u8>(), 0..80)), 0..20), mode in 0u8..3) {
        let mut rx = RtuReceiver::for_line(&LINE);
        match mode {
            0 => rx.expect_requests(),
            1 => rx.expect_response(1, FunctionCode::ReadHoldingRegisters, 7),
            _ => {}
        }
        let mut now = 0;
        for (dt, bytes) in &chunks {
            now += dt;
            for ev in drain(&mut rx, us(now), bytes) {
                if let Ev::Frame(f) = ev {
                    prop_assert!(RtuFrame::new_checked(&f[..]).is_ok());
                    prop_assert!(check_crc_trailer(&f));
                }
            }
        }
        poll_all(&mut rx, us(now + 1_000_000));
        prop_assert_eq!(rx.buffered(), 0);
    }

    #[test]
    fn prop_frame_found_after_random_noise(noise in prop::collection::vec(any::<u8>(), 0..40),
                                           split in 1usize..15) {
        let mut rx = RtuReceiver::new(RxTiming::from_line(&LINE).widened(Duration::from_millis(20)));
        rx.expect_response(1, FunctionCode::ReadInputRegisters, 12);
        let mut bytes = noise.clone();
        bytes.extend_from_slice(&GROWATT_RESP);
        let (a, b) = bytes.split_at(bytes.len() - split);
        let mut events = drain(&mut rx, us(0), a);
        events.extend(drain(&mut rx, us(16_000), b));
        prop_assert!(events.contains(&Ev::Frame(GROWATT_RESP.to_vec())));
    }
}
