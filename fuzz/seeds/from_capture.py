#!/usr/bin/env python3
"""Turns `dmc-hil bench --record` captures into seeds for rtu_receiver and
pdu_response (real exchanges: the bytes as they arrived, in their chunks and
with their gaps).

    fuzz/seeds/from_capture.py NAME CAPTURE...

writes fuzz/seeds/rtu_receiver/capture_NAME_<i>_<outcome> and
fuzz/seeds/pdu_response/capture_NAME_<i>_<outcome>, one per distinct
(request, outcome class) of the capture: a clean read, a CRC error, a reply
from another unit, a cut frame, an exception, a timeout, a write echo.

The committed capture seeds were made against the simulator (see README.md
in this directory for the exact commands); a capture from the real bus works
the same way."""
import os
import re
import sys

from arb import POLL, expect, req_read, req_write_single_register, rtu_script, rx, u16, variant, vec, wait, write
from capture import load

MAX_WAIT_10US = 0xFFFF


def arb_request(frame):
    """The ArbRequest encoding of an RTU request frame, or None for functions the seeds skip."""
    pdu = frame[1:-2]
    if len(pdu) < 5:
        return None
    fc, a, b = pdu[0], int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
    if fc in (1, 2, 3, 4):
        return req_read(fc - 1, a, b)
    if fc == 6:
        return req_write_single_register(a, b)
    if fc == 16:
        words = [int.from_bytes(pdu[6 + 2 * i:8 + 2 * i], "big") for i in range(b)]
        return variant(7, 9) + u16(a) + vec([u16(w) for w in words])
    return None


def gap(steps, us):
    """Appends waits for `us` microseconds (in the target's 10 us units)."""
    units = max(0, us) // 10
    while units > 0:
        step = min(units, MAX_WAIT_10US)
        steps.append(wait(step))
        units -= step


def t15_us(baud):
    """The inter-character timeout t1.5 (fixed 750 us above 19200 baud)."""
    return 750 if baud > 19200 else 1_500_000 * 11 // baud


def bursts(chunks, joint_us):
    """Chunks closer than `joint_us` merged into one burst at the first one's time: the
    receiver sees the same frame boundaries, and a 200-byte reply read byte by byte becomes
    one step instead of 400 (short seeds keep the fuzzer fast)."""
    out, last = [], None
    for chunk in chunks:
        if out and chunk["t_us"] - last < joint_us:
            out[-1] = (out[-1][0], out[-1][1] + chunk["bytes"])
        else:
            out.append((chunk["t_us"], chunk["bytes"]))
        last = chunk["t_us"]
    return out


def rtu_seed(t, request, joint_us):
    steps = [expect(t["unit"], request, max(1, (t["deadline_us"] - t["started_us"]) // 1000) & 0xFFFF)]
    last = t["request"]["t_us"]
    wire = b""
    for t_us, data in bursts(t["received"], joint_us):
        gap(steps, t_us - last)
        # One Bytes step hands out at most 255 bytes (0 would mean "all the rest").
        for i in range(0, len(data), 255):
            steps.append(rx(len(data[i:i + 255])))
        wire += data
        last = t_us
    gap(steps, 10_000)
    steps.append(POLL)
    return rtu_script(steps, wire), wire


def outcome_class(outcome):
    words = re.sub(r"[^a-z0-9 ]", "", outcome.lower()).split()
    return "_".join(w for w in words[:3] if not re.fullmatch(r"[0-9a-f]{4}", w)) or "other"


def main(name, paths):
    seen = set()
    written = 0
    for path in paths:
        capture = load(path)
        joint_us = t15_us(capture["baud"])
        for t in capture["transactions"]:
            request = arb_request(t["request"]["bytes"])
            cls = outcome_class(t["outcome"])
            key = (t["request"]["bytes"], cls)
            if request is None or key in seen:
                continue
            seen.add(key)
            seed, wire = rtu_seed(t, request, joint_us)
            label = f"capture_{name}_{written:02}_{cls}"
            write("rtu_receiver", label, seed)
            # The answer as a PDU: without the unit byte and the CRC.
            write("pdu_response", label, request + (wire[1:-2] if len(wire) > 3 else wire))
            written += 1
    print(f"{written} seeds each for rtu_receiver and pdu_response from {', '.join(paths)}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(sys.argv[1], sys.argv[2:])
