//! VregLink (VREG get/set over FC23): reply parsing on arbitrary words, the
//! slave side (`VregCommand::parse`, `serve`) on arbitrary written
//! registers, and a master -> PDU -> slave -> PDU -> master round trip.
//!
//! Checks:
//! - nothing panics;
//! - `parse_reply`: a reply whose echoed id is not the one asked for never
//!   yields data; fewer than 2 registers is `Short`; an accepted reply keeps
//!   the status, carries `min(size, bytes present, MAX_REPLY_DATA)` data
//!   bytes taken MSB first from offset 3, and is flagged `truncated` exactly
//!   when the announced size is larger than what it carries;
//! - `VregCommand::parse`: one register is a GetVreg; a SetVreg is accepted
//!   only when its size is 2 x data registers or one less, and carries
//!   exactly `size` bytes; `serve` answers with `read_quantity` registers
//!   (capped at 125) that echo the id;
//! - what `VregLink::get`/`set` builds is parsed back by the slave as the
//!   same command, and the slave's answer, through `Response` emit/parse, is
//!   read back by the master as the status and data served (trimmed to the
//!   window and flagged truncated when it did not fit).
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::pdu::{Request, Response, Words, MAX_READ_REGISTERS};
use dmc_core::vreglink::{
    parse_reply, serve, VregCommand, VregData, VregError, VregLink, VregOp, MAX_REPLY_DATA, MAX_SET_DATA,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    set: bool,
    id: u16,
    /// A reply as the master receives it.
    reply: Vec<u16>,
    /// Registers as the slave finds them written.
    written: Vec<u16>,
    read_quantity: u8,
    /// Round trip: the link, the SetVreg data and what the slave answers.
    base: u16,
    data_registers: u8,
    data: Vec<u8>,
    served_status: u16,
    served_data: Vec<u8>,
}

fn be_bytes(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn check_parse_reply(op: VregOp, id: u16, words: &[u16]) {
    let result = parse_reply(op, id, Words::from_slice(words));
    let bytes = be_bytes(words);
    // The same registers as received big-endian parse the same.
    assert_eq!(parse_reply(op, id, Words::from_be_bytes(&bytes).unwrap()), result);
    let reply = match (words, result) {
        ([] | [_], Err(VregError::Short { .. })) => return,
        ([echo, ..], Err(VregError::IdMismatch { expected, actual })) => {
            assert_eq!((expected, actual), (id, *echo));
            assert_ne!(*echo, id);
            return;
        }
        ([echo, _, ..], Ok(reply)) => {
            assert_eq!(*echo, id, "a reply for another VREG yielded data");
            reply
        }
        (_, other) => panic!("{words:04X?} gave {other:?}"),
    };
    let size = usize::from(words.get(2).copied().unwrap_or(0));
    let present = bytes.len().saturating_sub(6);
    let carried = size.min(present).min(MAX_REPLY_DATA);
    assert_eq!(reply.status, words[1]);
    assert_eq!(reply.data.len(), carried);
    assert_eq!(&reply.data[..], &bytes[6.min(bytes.len())..][..carried]);
    assert_eq!(reply.truncated, size > carried, "truncation flag for size {size}, {carried} carried");
}

fn check_command(written: &[u16], read_quantity: u16) {
    let parsed = VregCommand::parse(Words::from_slice(written));
    match (written, &parsed) {
        ([], Err(VregError::Short { .. })) => {}
        ([id], Ok(c)) => assert_eq!((c.op, c.id, c.data.len()), (VregOp::Get, *id, 0)),
        ([id, size, data @ ..], _) => {
            let size = usize::from(*size);
            let full = 2 * data.len();
            let ok = (size == full || (!data.is_empty() && size + 1 == full)) && size <= MAX_SET_DATA;
            match &parsed {
                Ok(c) => {
                    assert!(ok, "SetVreg size {size} with {} data registers accepted", data.len());
                    assert_eq!((c.op, c.id), (VregOp::Set, *id));
                    assert_eq!(&c.data[..], &be_bytes(data)[..size]);
                }
                Err(VregError::BadSize { id: bad, .. }) => {
                    assert!(!ok, "good SetVreg size {size} refused");
                    assert_eq!(bad, id);
                }
                Err(e) => panic!("SetVreg {written:04X?}: {e:?}"),
            }
        }
        (_, other) => panic!("{written:04X?} gave {other:?}"),
    }
    let words = serve(Words::from_slice(written), read_quantity, |_, _| 0);
    assert_eq!(words.len(), usize::from(read_quantity.min(MAX_READ_REGISTERS)));
    if let (Ok(c), Some(echo)) = (&parsed, words.first()) {
        assert_eq!(*echo, c.id);
    }
}

fn round_trip(input: &Input) {
    let link = VregLink::new(input.base, u16::from(input.data_registers));
    let built = if input.set { link.set(input.id, &input.data) } else { link.get(input.id) };
    let Ok(vreg) = built else {
        // Refused only for an unusable link or oversized data.
        assert!(!link.is_valid() || (input.set && input.data.len() > link.max_set_len()));
        return;
    };
    assert!(link.is_valid());
    let request = vreg.request();
    let mut pdu = [0u8; 256];
    let n = request.emit(&mut pdu).expect("a VregLink request is a valid FC23");
    let Ok(Request::ReadWriteMultipleRegisters { read_quantity, values, .. }) = Request::parse(&pdu[..n])
    else {
        panic!("VregLink request does not parse back");
    };
    // Slave side.
    let served: &[u8] = &input.served_data[..input.served_data.len().min(MAX_REPLY_DATA)];
    let mut seen = None;
    let reply = serve(values, read_quantity, |command, data| {
        seen = Some(command.clone());
        data.extend_from_slice(served).unwrap();
        input.served_status
    });
    let command = seen.expect("a well-formed request reaches the lookup");
    assert_eq!(command.id, input.id);
    if input.set {
        assert_eq!((command.op, &command.data[..]), (VregOp::Set, &input.data[..]));
    } else {
        assert_eq!((command.op, command.data.len()), (VregOp::Get, 0));
    }
    // Back to the master through the PDU layer.
    let response = Response::ReadWriteMultipleRegisters(Words::from_slice(&reply));
    let n = response.emit(&mut pdu).expect("a served reply emits");
    let Ok(Ok(parsed)) = Response::parse(&request, &pdu[..n]) else {
        panic!("served reply does not answer the request");
    };
    let got = vreg.parse_reply(parsed.registers().unwrap()).expect("served reply parses");
    let window = 2 * usize::from(read_quantity.saturating_sub(3));
    let carried = served.len().min(window);
    assert_eq!(got.status, input.served_status);
    assert_eq!(got.data, VregData::from_slice(&served[..carried]).unwrap());
    assert_eq!(got.truncated, served.len() > carried);
}

fuzz_target!(|input: Input| {
    let op = if input.set { VregOp::Set } else { VregOp::Get };
    check_parse_reply(op, input.id, &input.reply[..input.reply.len().min(130)]);
    check_command(&input.written[..input.written.len().min(130)], u16::from(input.read_quantity));
    round_trip(&input);
});
