//! VregLink end to end over the PDU layer: the seed document's two worked
//! FC23 examples byte for byte (dbus-modbus-client README, "VregLink"), the
//! VM meter's 35-register window, a master ↔ simulated-slave round trip
//! through `Request::parse` / `Response::emit`, and totality of the parsers.

use dmc_core::pdu::{Request, Response, Words};
use dmc_core::vreglink::{
    encode_reply, parse_reply, serve, VregCommand, VregError, VregLink, VregOp, VregReply, MAX_REPLY_DATA,
    STATUS_READ_NO_VREG, STATUS_SUCCESS,
};
use proptest::prelude::*;

/// Emits a request into a buffer pre-filled with 0xA5 and returns the PDU.
fn emit(request: &Request<'_>) -> Vec<u8> {
    let mut buf = [0xA5u8; 260];
    let n = request.emit(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn test_seed_read_product_id() {
    // Block at 0x4000; the seed reads 5 registers, i.e. a 2-register data area.
    let link = VregLink::new(0x4000, 2);
    let vreg = link.get(0x0100).unwrap();
    let req = vreg.request();
    #[rustfmt::skip]
    let want = [
        0x17,       // function: read/write multiple registers
        0x40, 0x00, // read starting address: VregLink base
        0x00, 0x05, // quantity to read
        0x40, 0x00, // write starting address: VregLink base
        0x00, 0x01, // quantity to write
        0x02,       // write byte count
        0x01, 0x00, // PRODUCT_ID
    ];
    assert_eq!(emit(&req), want);
    #[rustfmt::skip]
    let resp = [
        0x17,       // function
        0x0A,       // byte count
        0x01, 0x00, // PRODUCT_ID echo
        0x00, 0x00, // status: success
        0x00, 0x04, // size: 4
        0x00, 0x12, // product id
        0x34, 0xFE,
    ];
    let words = match Response::parse(&req, &resp) {
        Ok(Ok(Response::ReadWriteMultipleRegisters(words))) => words,
        other => panic!("{other:?}"),
    };
    let reply = vreg.parse_reply(words).unwrap();
    assert_eq!(reply.status, STATUS_SUCCESS);
    assert_eq!(reply.data.as_slice(), &[0x00, 0x12, 0x34, 0xFE]);
    assert!(!reply.truncated);
}

#[test]
fn test_seed_write_description() {
    // The VM meter's block, with the seed's read of only [id, status].
    let link = VregLink::new(0x4000, 32);
    let vreg = link.set(0x010C, b"My Precious").unwrap().with_read_quantity(2).unwrap();
    let req = vreg.request();
    #[rustfmt::skip]
    let want = [
        0x17,       // function
        0x40, 0x00, // read starting address
        0x00, 0x02, // quantity to read
        0x40, 0x00, // write starting address
        0x00, 0x08, // quantity to write
        0x10,       // write byte count
        0x01, 0x0C, // DESCRIPTION1
        0x00, 0x0B, // size: 11
        0x4D, 0x79, // 'M' 'y'
        0x20, 0x50, // ' ' 'P'
        0x72, 0x65, // 'r' 'e'
        0x63, 0x69, // 'c' 'i'
        0x6f, 0x75, // 'o' 'u'
        0x73, 0x00, // 's' padding
    ];
    assert_eq!(emit(&req), want);
    let resp = [0x17, 0x04, 0x01, 0x0C, 0x00, 0x00];
    let Ok(Ok(response)) = Response::parse(&req, &resp) else { panic!() };
    let reply = vreg.parse_reply(response.registers().unwrap()).unwrap();
    assert_eq!((reply.status, reply.data.len(), reply.truncated), (0, 0, false));
}

#[test]
fn test_vm_meter_window_is_35_registers() {
    let link = VregLink::new(0x4000, 32);
    let req = link.get(0x0100).unwrap();
    assert_eq!(
        emit(&req.request()),
        [0x17, 0x40, 0x00, 0x00, 0x23, 0x40, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00]
    );
    let set = link.set(0x010C, b"My Precious").unwrap();
    let bytes = emit(&set.request());
    assert_eq!(&bytes[..10], &[0x17, 0x40, 0x00, 0x00, 0x23, 0x40, 0x00, 0x00, 0x08, 0x10]);
    assert_eq!(bytes.len(), 10 + 16);
}

#[test]
fn test_master_slave_round_trip() {
    // A simulated meter with one readable VREG, a 40-byte description.
    let description = *b"A description longer than the window....";
    let link = VregLink::new(0x4000, 16); // 32-byte window: truncation
    for (vreg, op) in [(link.get(0x010C).unwrap(), VregOp::Get), (link.get(0x0999).unwrap(), VregOp::Get)] {
        let req_bytes = emit(&vreg.request());
        // Slave: parse the request PDU, serve, emit the response PDU.
        let Request::ReadWriteMultipleRegisters { read_quantity, values, .. } =
            Request::parse(&req_bytes).unwrap()
        else {
            panic!()
        };
        let words = serve(values, read_quantity, |cmd, data| {
            assert_eq!(cmd.op, op);
            if cmd.id == 0x010C {
                data.extend_from_slice(&description).unwrap();
                STATUS_SUCCESS
            } else {
                STATUS_READ_NO_VREG
            }
        });
        let resp = Response::ReadWriteMultipleRegisters(Words::from_slice(&words));
        let mut buf = [0u8; 260];
        let n = resp.emit(&mut buf).unwrap();
        // Master: parse the response PDU and the VregLink reply.
        let Ok(Ok(parsed)) = Response::parse(&vreg.request(), &buf[..n]) else { panic!() };
        let reply = vreg.parse_reply(parsed.registers().unwrap()).unwrap();
        if vreg.id() == 0x010C {
            assert_eq!(reply.status, 0);
            assert_eq!(reply.data.as_slice(), &description[..32]);
            assert!(reply.truncated);
        } else {
            assert_eq!((reply.status, reply.data.len()), (STATUS_READ_NO_VREG, 0));
        }
    }
    // Set: the slave sees exactly the bytes the master sent.
    let set = link.set(0x010C, b"odd").unwrap();
    let cmd = VregCommand::parse(Words::from_slice(set.write_words())).unwrap();
    assert_eq!((cmd.op, cmd.data.as_slice()), (VregOp::Set, &b"odd"[..]));
}

#[test]
fn test_mismatched_echo_is_an_error_then_upstream_status() {
    let link = VregLink::new(0x4000, 32);
    let vreg = link.set(0x0112, &[3]).unwrap();
    let words = encode_reply(0x0113, 0, &[], 35);
    let err = vreg.parse_reply(Words::from_slice(&words)).unwrap_err();
    assert_eq!(err, VregError::IdMismatch { expected: 0x0112, actual: 0x0113 });
    assert_eq!(err.status(vreg.op()), 0x8100);
    assert_eq!(vreg.reply_or_failure(Words::from_slice(&words)), VregReply::failure(VregOp::Set));
    assert_eq!(link.get(1).unwrap().failure().status, 0x8000);
}

proptest! {
    /// Any registers: a reply or an error, never a panic; data never longer
    /// than what arrived or than the size field.
    #[test]
    fn prop_parse_reply_total(words in proptest::collection::vec(any::<u16>(), 0..130), id in any::<u16>()) {
        if let Ok(r) = parse_reply(VregOp::Get, id, Words::from_slice(&words)) {
            let arrived = 2 * words.len().saturating_sub(3);
            prop_assert!(r.data.len() <= arrived.min(MAX_REPLY_DATA));
            prop_assert!(r.data.len() <= usize::from(words.get(2).copied().unwrap_or(0)));
            prop_assert_eq!(r.truncated, usize::from(words.get(2).copied().unwrap_or(0)) > r.data.len());
        }
        let _ = VregCommand::parse(Words::from_slice(&words));
    }

    /// Set then serve then parse gives the data back for anything that fits.
    #[test]
    fn prop_set_round_trip(data in proptest::collection::vec(any::<u8>(), 0..80), id in any::<u16>()) {
        let link = VregLink::new(0x4000, 32);
        match link.set(id, &data) {
            Ok(req) => {
                prop_assert!(data.len() <= 64);
                let cmd = VregCommand::parse(Words::from_slice(req.write_words())).unwrap();
                prop_assert_eq!(cmd.data.as_slice(), data.as_slice());
                let words = encode_reply(id, 0, &cmd.data, req.read_quantity());
                let reply = req.parse_reply(Words::from_slice(&words)).unwrap();
                prop_assert_eq!(reply.data.as_slice(), data.as_slice());
                prop_assert!(!reply.truncated);
            }
            Err(status) => {
                prop_assert!(data.len() > 64);
                prop_assert_eq!(status, 0x8104);
            }
        }
    }
}
