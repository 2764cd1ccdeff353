#!/usr/bin/env python3
"""Reads a `dmc-hil bench --record` capture (postcard, hil/src/bench/capture.rs,
format 1) into plain Python objects. Used by from_capture.py."""
import struct


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self):
        shift = value = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    def raw(self):
        n = self.varint()
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def string(self):
        return self.raw().decode("utf-8")

    def chunk(self):
        return {"t_us": self.varint(), "bytes": self.raw()}

    def seq(self, item):
        return [item() for _ in range(self.varint())]


def load(path):
    with open(path, "rb") as f:
        r = Reader(f.read())
    magic, fmt = r.string(), r.varint()
    if magic != "dmc-hil capture" or fmt != 1:
        raise SystemExit(f"{path}: not a dmc-hil capture of format 1 ({magic!r}, {fmt})")
    cap = {"baud": r.varint(), "parity": r.byte(), "stop_bits": r.byte()}

    def transaction():
        return {"unit": r.byte(), "started_us": r.varint(), "request": r.chunk(),
                "received": r.seq(r.chunk), "deadline_us": r.varint(),
                "settled_us": r.varint(), "outcome": r.string()}

    cap["transactions"] = r.seq(transaction)
    return cap


if __name__ == "__main__":
    import sys
    for t in load(sys.argv[1])["transactions"]:
        print(t["unit"], t["request"]["bytes"].hex(), len(t["received"]), t["outcome"][:60])
