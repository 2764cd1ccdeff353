#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (committed; rerun after
changing a target's input struct). Frames are the spec and capture vectors
of /work/shared/docs/devices.md and the VregLink README examples.

The encoding is `arbitrary` 1.x: integers little-endian, bool = byte & 1,
enum variant = (u32 * variants) >> 32, Option = bool + value, a non-final
Vec = (1, element)* 0, and a final `&[u8]` = all remaining bytes.
Check a seed with `cargo +nightly fuzz fmt <target> seeds/<target>/<file>`."""
from arb import *  # noqa: F401,F403 (the encoding helpers)

SDM_READ = h("02 04 00 00 00 0E 71 FD")
GROWATT_READ = h("01 04 00 23 00 05 C1 C3")
GROWATT_REPLY = h("01 04 0A 00 00 08 09 13 91 09 52 00 09 D4 EE")
GROWATT_WRITE = h("01 06 00 03 00 64 78 21")
SDM_ENERGY_REPLY = h("02 04 08 43 24 E5 1F 42 96 87 2B 5F 22")
BROADCAST = h("00 08 00 00 55 55 1E B5")
ASCII_REQ = b":1103006B00037E\r\n"

# --- pdu_response: ArbRequest, then the candidate PDU.
write("pdu_response", "growatt_fc04_reply", req_read(3, 0x23, 5) + GROWATT_REPLY[1:-2])
write("pdu_response", "sdm230_fc04_request", req_read(3, 0, 14) + SDM_READ[1:-2])
write("pdu_response", "growatt_fc06_echo", req_write_single_register(3, 100) + GROWATT_WRITE[1:-2])
write("pdu_response", "sdm230_energy_reply", req_read(3, 0x156, 4) + SDM_ENERGY_REPLY[1:-2])
write("pdu_response", "exception_illegal_address", req_read(3, 0x23, 5) + h("84 02"))
write("pdu_response", "vreg_get_reply",
      req_rw(0x4000, 5, 0x4000, [0x0100]) + h("17 0A 01 00 00 00 00 04 00 12 34 FE"))
write("pdu_response", "vreg_get_request", req_read(3, 0, 1) + h("17 40 00 00 05 40 00 00 01 02 01 00"))

# --- rtu_receiver: t1.5, t3.5 (us), baud, steps, wire.
write("rtu_receiver", "growatt_read_transaction",
      rtu_script([expect(1, req_read(3, 0x23, 5)), wait(5000), rx(len(GROWATT_REPLY)), wait(1000), POLL],
                 GROWATT_REPLY))
write("rtu_receiver", "growatt_reply_in_two_bursts",
      rtu_script([expect(1, req_read(3, 0x23, 5)), wait(5000), rx(6), wait(100), rx(0), wait(1000), POLL],
                 GROWATT_REPLY))
write("rtu_receiver", "sdm230_request_then_reply",
      rtu_script([expect(2, req_read(3, 0x156, 4)), wait(5000), rx(len(SDM_READ)), wait(2000),
                  rx(0), wait(2000), POLL], SDM_READ + SDM_ENERGY_REPLY))
write("rtu_receiver", "fc06_write_echo",
      rtu_script([expect(1, req_write_single_register(3, 100)), wait(5000), rx(0), wait(1000), POLL],
                 GROWATT_WRITE))
write("rtu_receiver", "broadcast_and_garbage",
      rtu_script([rx(0), wait(1000), POLL], h("FF 00") + BROADCAST + GROWATT_READ))

# --- mbap_stream: cuts, stream.
MBAP_REQ = h("00 01 00 00 00 06 11 03 00 6B 00 03")
MBAP_RESP = h("00 01 00 00 00 09 11 03 06 02 2B 00 00 00 64")
write("mbap_stream", "request", vec([]) + MBAP_REQ)
write("mbap_stream", "request_response_split", vec([u8(3), u8(9), u8(1)]) + MBAP_REQ + MBAP_RESP)
write("mbap_stream", "growatt_reply_over_tcp", vec([]) + h("00 07 00 00 00 0D") + GROWATT_REPLY[:-2])

# --- ascii_frame: cuts, characters.
write("ascii_frame", "spec_request", vec([]) + ASCII_REQ)
write("ascii_frame", "spec_request_split_lower", vec([u8(1), u8(5), u8(0)]) + ASCII_REQ.lower().replace(b"\r\n", b"\r\n"))
write("ascii_frame", "restart_then_frame", vec([]) + b":1103" + ASCII_REQ)

# --- register_decode: offset, number, decimals, words (big-endian bytes).
write("register_decode", "sdm230_voltage_current_power",
      u8(0) + f64(244.52) + u8(1) + h("43 74 84 95 3F AF 77 47 43 6A F8 E0"))
write("register_decode", "growatt_reply_words", u8(3) + f64(205.7) + u8(1) + GROWATT_REPLY[3:-2])
write("register_decode", "text_serial", u8(0) + f64(-1.0) + u8(2) + b"VE1234567890\x00\x00 VM-3P75CT".ljust(64, b" "))
write("register_decode", "all_ones", u8(1) + f64(float("nan")) + u8(9) + b"\xff" * 80)

# --- vreglink: set, id, reply words, written words, read_quantity, base,
# data_registers, data, served_status, served_data.
def vreg(set_, id_, reply, written, rq, base, regs, data, status, served):
    return (boolean(set_) + u16(id_) + vec([u16(w) for w in reply]) + vec([u16(w) for w in written])
            + u8(rq) + u16(base) + u8(regs) + vec([u8(b) for b in data]) + u16(status)
            + vec([u8(b) for b in served]))


write("vreglink", "readme_get_product_id",
      vreg(False, 0x0100, [0x0100, 0, 4, 0x0012, 0x34FE], [0x0100], 5, 0x4000, 2, b"", 0, b"\x00\x12\x34\xfe"))
write("vreglink", "readme_set_description",
      vreg(True, 0x010C, [0x010C, 0], [0x010C, 11, 0x4D79, 0x2050, 0x7265, 0x6369, 0x6F75, 0x7300], 2,
           0x4000, 32, b"My Precious", 0, b""))
write("vreglink", "truncated_description",
      vreg(False, 0x010C, [0x010C, 0, 40] + [0x4141] * 16, [0x010C], 35, 0x4000, 16, b"", 0, b"B" * 40))

# --- planner: registers, wide, max_registers, alignment, barrier_at, barrier_count, max_hole.
def reg(address, kind, cls, holding, alone=False):
    return u16(address) + u8(kind) + u8(cls) + boolean(holding) + boolean(alone)


write("planner", "sdm230_like",
      vec([reg(a, 1, 1, False) for a in (0, 6, 12, 0x46, 0x48, 0x4A)] + [reg(0xFC02, 0, 3, True, True)])
      + boolean(True) + u8(80) + u8(2) + u16(0) + u8(0) + u8(9))
write("planner", "proptest_regression_align4",
      vec([reg(358, 0, 3, False), reg(356, 0, 3, False)]) + boolean(False) + u8(16) + u8(4) + u16(0) + u8(0) + u8(0))

# --- control_law: arbitrary_config, ArbConfig, start_s, ticks.
def reading(v, age_ms=0): return some(f32(v) + i32(age_ms))


def tick(dt_ms, grid=None, pv=None, battery=None, soc=None, external=None, failed=False):
    r = lambda x: NONE if x is None else reading(x)
    return (i32(dt_ms) + r(grid) + r(pv) + r(battery) + r(soc) + NONE + NONE + NONE + r(external) + NONE
            + boolean(failed))


DEFAULT_CFG = (boolean(True) + f32(0) + f32(4200) + f32(90) + f32(2) + f32(100) + u32(5000) + u32(60000)
               + u32(1000) + u32(60000) + f32(1) + NONE + u32(2000) + u32(0) + u32(30000) + f32(10) + f32(20)
               + f32(3) + f32(100) + u32(5000) + u32(60000) + f32(200) + boolean(False))
write("control_law", "load_step_and_meter_loss",
      boolean(True) + DEFAULT_CFG + u32(100)
      + vec([tick(1000, 300, 1000), tick(1000, -800, 1300), tick(1000, 800, 500),
             tick(1000, float("nan"), 500), tick(-5000, 0, 500), tick(1000, 0, 1000, -500, 50, 1050)]))

# --- busitem_setvalue: profile byte, path byte, then a D-Bus `v` (arb.variant_value).
# Profiles in dmc_core::profile::ALL order: 0 sdm230, 1 growatt_min, 2/3 victron_em.
# Paths: 0 /CustomName, 1 /Role, 2 /Position, 3 /ProductName, 4 /DeviceInstance, then the
# profile's register paths; every Growatt path gets 50.0 so /Growatt/ActivePowerRate is in.
SETVALUES = {
    "double": ("d", 50.0), "int": ("i", 3), "int64": ("x", -(1 << 40)), "uint64": ("t", (1 << 64) - 1),
    "string": ("s", "Roof meter"), "bool": ("b", 1), "byte": ("y", 7), "empty_ai": ("ai", []),
    "array_s": ("as", ["grid", "acload"]), "struct": ("(di)", (50.0, 1)), "dict": ("a{sd}", {"value": 50.0}),
    "nested": ("v", ("d", 50.0)), "objpath": ("o", "/Ac/Power"), "nan": ("d", float("nan")),
}
for what, (sig, value) in SETVALUES.items():
    for path in (0, 2):
        write("busitem_setvalue", f"sdm230_path{path}_{what}", u8(0) + u8(path) + variant_value(sig, value))
for path in range(40):
    write("busitem_setvalue", f"growatt_path{path:02}_double", u8(1) + u8(path) + variant_value("d", 50.0))
write("busitem_setvalue", "growatt_rate_out_of_range", u8(1) + u8(25) + variant_value("d", 150.0))
