"""The `arbitrary` 1.x encoding of the fuzz targets' inputs, shared by
make_seeds.py (spec vectors) and from_capture.py (bench captures).

Integers little-endian, bool = byte & 1, enum variant = (u32 * variants) >> 32,
Option = bool + value, a non-final Vec = (1, element)* 0, and a final `&[u8]`
= all remaining bytes."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(x): return struct.pack("<B", x)
def u16(x): return struct.pack("<H", x)
def u32(x): return struct.pack("<I", x)
def i32(x): return struct.pack("<i", x)
def f32(x): return struct.pack("<f", x)
def f64(x): return struct.pack("<d", x)
def boolean(b): return u8(1 if b else 0)
def some(v): return b"\x01" + v
NONE = b"\x00"


def variant(i, n):
    """Smallest u32 selecting variant i of n."""
    return u32(-(-(i << 32) // n))


def vec(items):
    return b"".join(b"\x01" + it for it in items) + b"\x00"


def h(s):
    return bytes.fromhex(s)


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ArbRequest variants (fuzz/src/lib.rs).
def req_read(fc_index, address, quantity):
    return variant(fc_index, 9) + u16(address) + u16(quantity - 1)  # quantity = raw % max + 1


def req_write_single_register(address, value):
    return variant(5, 9) + u16(address) + u16(value)


def req_rw(read_address, read_quantity, write_address, values):
    return (variant(8, 9) + u16(read_address) + u16(read_quantity - 1) + u16(write_address)
            + vec([u16(v) for v in values]))


# --- rtu_receiver: t1.5, t3.5 (us), baud, steps, wire.
def rtu_script(steps, wire, t15=1719, t35=4011, baud=2):
    return u16(t15) + u16(t35) + u8(baud) + vec(steps) + wire


def wait(units_10us): return variant(0, 5) + u16(units_10us)
def rx(n): return variant(1, 5) + u8(n)
POLL = variant(2, 5)
def expect(unit, request, deadline_ms=1000): return variant(3, 5) + u8(unit) + request + u16(deadline_ms)


# --- busitem_setvalue: a D-Bus `v` in the wire format (little-endian, offset 0).
ALIGN = {"y": 1, "g": 1, "v": 1, "n": 2, "q": 2, "b": 4, "i": 4, "u": 4, "s": 4, "o": 4, "a": 4,
         "x": 8, "t": 8, "d": 8, "(": 8, "{": 8}
FIXED = {"y": "<B", "n": "<h", "q": "<H", "b": "<I", "i": "<i", "u": "<I", "x": "<q", "t": "<Q", "d": "<d"}


def one_type(sig):
    """Splits the first complete type off a signature."""
    if sig[0] == "a":
        inner, rest = one_type(sig[1:])
        return "a" + inner, rest
    if sig[0] in "({":
        close, depth = {"(": ")", "{": "}"}[sig[0]], 0
        for i, c in enumerate(sig):
            depth += c in "({"
            depth -= c in ")}"
            if depth == 0:
                return sig[:i + 1], sig[i + 1:]
    return sig[0], sig[1:]


def dbus(sig, value, out=None):
    """Appends `value` marshalled as the single complete type `sig` to `out`."""
    out = bytearray() if out is None else out
    out.extend(b"\0" * (-len(out) % ALIGN[sig[0]]))
    c = sig[0]
    if c in FIXED:
        out.extend(struct.pack(FIXED[c], value))
    elif c in "so":
        data = value.encode()
        out.extend(struct.pack("<I", len(data)) + data + b"\0")
    elif c == "g":
        out.extend(bytes([len(value)]) + value.encode() + b"\0")
    elif c == "v":
        inner_sig, inner = value
        dbus("g", inner_sig, out)
        dbus(inner_sig, inner, out)
    elif c == "a":
        at = len(out)
        out.extend(b"\0\0\0\0")
        element = sig[1:]
        out.extend(b"\0" * (-len(out) % ALIGN[element[0]]))
        start = len(out)
        items = value.items() if element[0] == "{" else value
        for item in items:
            dbus(element, item, out)
        out[at:at + 4] = struct.pack("<I", len(out) - start)
    elif c in "({":
        rest = sig[1:-1]
        for field in value:
            t, rest = one_type(rest)
            dbus(t, field, out)
    return bytes(out)


def variant_value(sig, value):
    """A `v` holding `value` of type `sig` (what SetValue receives)."""
    return dbus("v", (sig, value))
