//! Master tests on a simulated clock: success, timeout, exception, wrong
//! unit, late answers from a previous transaction (RTU and MBAP), broadcast.

use super::*;
use crate::pdu::{ExceptionCode, ExceptionResponse, Words};
use std::vec::Vec;

const LINE: LineConfig = LineConfig::new_8n1(9600);
const GROWATT_REQ: [u8; 8] = [0x01, 0x04, 0x00, 0x23, 0x00, 0x05, 0xC1, 0xC3];
const GROWATT_RESP: [u8; 15] =
    [0x01, 0x04, 0x0A, 0x00, 0x00, 0x08, 0x09, 0x13, 0x91, 0x09, 0x52, 0x00, 0x09, 0xD4, 0xEE];
const READ_PAC: Request<'static> = Request::ReadInputRegisters { address: 0x23, quantity: 5 };

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn rtu_master() -> Master<RtuFraming> {
    Master::new(RtuFraming::new(LINE))
}

fn rtu_adu(unit: u8, pdu: &impl crate::pdu::EmitPdu) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = rtu::emit(unit, pdu, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn test_rtu_success() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(500)).unwrap();
    assert_eq!(m.start(ms(0), 1, &READ_PAC, ms(500)), Err(StartError::Busy));
    assert_eq!(m.poll_transmit(ms(0)), Some(&GROWATT_REQ[..]));
    assert_eq!(m.poll_transmit(ms(0)), None);
    assert_eq!(m.poll(ms(10)), Err(nb::Error::WouldBlock));
    assert_eq!(m.poll_timeout(), Some(ms(500)));
    m.handle_rx(ms(30), &GROWATT_RESP[..7]);
    assert_eq!(m.poll(ms(30)), Err(nb::Error::WouldBlock));
    m.handle_rx(ms(31), &GROWATT_RESP[7..]);
    // Complete on the expected length: no t3.5 wait.
    assert_eq!(m.poll(ms(31)), Ok(()));
    let resp = m.response().unwrap();
    assert_eq!(resp.registers().unwrap().iter().collect::<Vec<_>>(), [0, 0x0809, 5009, 2386, 9]);
    assert_eq!(m.poll(ms(32)), Err(nb::Error::Other(TransactionError::Idle)));
    assert_eq!(m.counters().completed, 1);
    assert!(!m.is_busy());
}

#[test]
fn test_rtu_next_request_waits_t35() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(500)).unwrap();
    let _ = m.poll_transmit(ms(0));
    m.handle_rx(ms(30), &GROWATT_RESP);
    assert_eq!(m.poll(ms(30)), Ok(()));
    m.start(ms(30), 1, &READ_PAC, ms(530)).unwrap();
    let ready_at = ms(30) + LINE.t35();
    assert_eq!(m.poll_timeout(), Some(ready_at));
    assert_eq!(m.poll_transmit(ms(31)), None);
    assert!(m.poll_transmit(ready_at).is_some());
}

#[test]
fn test_rtu_timeout() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(100)).unwrap();
    let _ = m.poll_transmit(ms(0));
    assert_eq!(m.poll(ms(99)), Err(nb::Error::WouldBlock));
    assert_eq!(m.poll(ms(100)), Err(nb::Error::Other(TransactionError::Timeout)));
    assert_eq!(m.counters().timeouts, 1);
    assert!(m.response().is_none());
}

#[test]
fn test_rtu_exception() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(100)).unwrap();
    let _ = m.poll_transmit(ms(0));
    let exc = ExceptionResponse {
        function: FunctionCode::ReadInputRegisters,
        code: ExceptionCode::IllegalDataAddress,
    };
    m.handle_rx(ms(20), &rtu_adu(1, &exc));
    assert_eq!(
        m.poll(ms(20)),
        Err(nb::Error::Other(TransactionError::Exception(ExceptionCode::IllegalDataAddress)))
    );
    assert_eq!(m.counters().exceptions, 1);
}

#[test]
fn test_rtu_wrong_unit_ignored() {
    let mut m = rtu_master();
    m.start(ms(0), 2, &READ_PAC, ms(200)).unwrap();
    let _ = m.poll_transmit(ms(0));
    // Unit 1 answers (another master's exchange on the bus): not ours.
    m.handle_rx(ms(20), &GROWATT_RESP);
    assert_eq!(m.poll(ms(40)), Err(nb::Error::WouldBlock));
    assert_eq!(m.counters().wrong_unit, 1);
    let mut ours = GROWATT_RESP;
    ours[0] = 2;
    let ours = rtu_adu(2, &crate::pdu::RawPdu(&ours[1..13]));
    m.handle_rx(ms(50), &ours);
    assert_eq!(m.poll(ms(50)), Ok(()));
}

#[test]
fn test_rtu_late_reply_from_previous_transaction_rejected() {
    let mut m = rtu_master();
    // A: FC04 x5 to unit 1, times out.
    m.start(ms(0), 1, &READ_PAC, ms(100)).unwrap();
    let _ = m.poll_transmit(ms(0));
    assert_eq!(m.poll(ms(100)), Err(nb::Error::Other(TransactionError::Timeout)));
    // B: FC03 x1 to unit 1.
    let b = Request::ReadHoldingRegisters { address: 3, quantity: 1 };
    m.start(ms(101), 1, &b, ms(300)).unwrap();
    let sent = m.poll_transmit(ms(105)).unwrap().len();
    let on_wire_until = ms(105) + LINE.wire_time(sent);
    // A's answer arriving while B is still being sent is stale.
    m.handle_rx(ms(106), &GROWATT_RESP);
    assert_eq!(m.counters().stale_bytes, 15);
    // A's answer after B left the wire: wrong function, dropped at silence.
    m.handle_rx(on_wire_until + Duration::from_millis(5), &GROWATT_RESP);
    assert_eq!(m.poll(on_wire_until + Duration::from_millis(20)), Err(nb::Error::WouldBlock));
    assert_eq!(m.counters().wrong_function, 1);
    // B's real answer.
    let answer = rtu_adu(1, &Response::ReadHoldingRegisters(Words::from_slice(&[100])));
    m.handle_rx(ms(150), &answer);
    assert_eq!(m.poll(ms(150)), Ok(()));
    assert_eq!(m.response().unwrap().register(0), Some(100));
}

#[test]
fn test_rtu_late_reply_same_function_other_length_rejected() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(100)).unwrap();
    let _ = m.poll_transmit(ms(0));
    assert!(m.poll(ms(100)).is_err());
    let b = Request::ReadInputRegisters { address: 0x23, quantity: 2 };
    m.start(ms(100), 1, &b, ms(300)).unwrap();
    let _ = m.poll_transmit(ms(100));
    m.handle_rx(ms(150), &GROWATT_RESP);
    assert_eq!(m.poll(ms(170)), Err(nb::Error::WouldBlock));
    assert_eq!(m.counters().length_errors, 1);
}

#[test]
fn test_rtu_broadcast_completes_on_send() {
    let mut m = rtu_master();
    m.start(ms(0), 0, &Request::WriteSingleRegister { address: 3, value: 100 }, ms(100)).unwrap();
    assert_eq!(m.poll(ms(0)), Err(nb::Error::WouldBlock));
    let _ = m.poll_transmit(ms(0));
    assert_eq!(m.poll(ms(0)), Ok(()));
    assert!(m.response().is_none());
}

#[test]
fn test_rtu_bad_response_is_protocol_error() {
    let mut m = rtu_master();
    let write = Request::WriteSingleRegister { address: 3, value: 100 };
    m.start(ms(0), 1, &write, ms(100)).unwrap();
    let _ = m.poll_transmit(ms(0));
    let wrong_echo = rtu_adu(1, &Request::WriteSingleRegister { address: 3, value: 101 });
    m.handle_rx(ms(20), &wrong_echo);
    assert_eq!(m.poll(ms(20)), Err(nb::Error::Other(TransactionError::Pdu(PduError::EchoMismatch))));
}

#[test]
fn test_cancel_then_restart() {
    let mut m = rtu_master();
    m.start(ms(0), 1, &READ_PAC, ms(100)).unwrap();
    m.cancel();
    assert!(!m.is_busy());
    m.start(ms(1), 1, &READ_PAC, ms(100)).unwrap();
    assert_eq!(m.transmit(), GROWATT_REQ);
}

fn mbap_adu(txn: u16, unit: u8, pdu: &impl crate::pdu::EmitPdu) -> Vec<u8> {
    let mut buf = [0u8; 260];
    let n = mbap::emit(txn, unit, pdu, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn test_mbap_late_reply_rejected_by_transaction_id() {
    let mut m = Master::new(MbapFraming::new());
    let a = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
    m.start(ms(0), 0x11, &a, ms(100)).unwrap();
    let sent = m.poll_transmit(ms(0)).unwrap().to_vec();
    assert_eq!(sent, [0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]);
    assert!(m.poll(ms(100)).is_err());
    m.start(ms(100), 0x11, &a, ms(200)).unwrap();
    assert_eq!(m.transaction_id(), 2);
    let _ = m.poll_transmit(ms(100));
    let resp_a = Response::ReadHoldingRegisters(Words::from_slice(&[1, 2, 3]));
    let resp_b = Response::ReadHoldingRegisters(Words::from_slice(&[4, 5, 6]));
    // Late A and B's answer coalesced in one TCP segment, and split oddly.
    let mut stream = mbap_adu(1, 0x11, &resp_a);
    stream.extend(mbap_adu(2, 0x11, &resp_b));
    m.handle_rx(ms(120), &stream[..5]);
    m.handle_rx(ms(121), &stream[5..]);
    assert_eq!(m.poll(ms(121)), Ok(()));
    assert_eq!(m.response(), Some(resp_b));
    assert_eq!(m.counters().wrong_transaction, 1);
}

#[test]
fn test_ascii_transaction() {
    let mut m = Master::new(AsciiFraming::new(None));
    let a = Request::ReadHoldingRegisters { address: 0x6B, quantity: 3 };
    m.start(ms(0), 0x11, &a, ms(1000)).unwrap();
    assert_eq!(m.poll_transmit(ms(0)), Some(&b":1103006B00037E\r\n"[..]));
    let mut buf = [0u8; 64];
    let resp = Response::ReadHoldingRegisters(Words::from_slice(&[0x022B, 0, 0x64]));
    let n = ascii::emit(0x11, &resp, &mut buf).unwrap();
    m.handle_rx(ms(50), &buf[..n]);
    assert_eq!(m.poll(ms(50)), Ok(()));
    assert_eq!(m.response(), Some(resp));
}
