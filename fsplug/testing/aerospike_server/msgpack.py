"""A small MessagePack codec with Aerospike's conventions (stdlib only).

Aerospike stores list and map bins, and encodes expression literals, as MessagePack with two
twists:

* byte strings carry a one-byte *particle type* prefix inside the msgpack ``str`` family:
  ``0x03`` for a string, ``0x04`` for a blob (``0x17`` for GeoJSON).  Msgpack ``bin`` family
  values are decoded as plain ``bytes``.
* ordered maps and lists may start with an ``ext`` marker carrying flags; those come back as
  :class:`Ext` values so that re-encoding is byte-for-byte faithful.

``unpackb(packb(x)) == x`` for every value this module produces, and ``packb(unpackb(b)) == b``
for every encoding that uses minimal-size headers (what the Aerospike clients and server emit).
"""

from __future__ import annotations

import struct

__all__ = ["Ext", "AsBytes", "RawStr", "packb", "unpackb", "unpack_from", "MsgpackError"]

AS_BYTES_STRING = 3
AS_BYTES_BLOB = 4

_pack_d = struct.Struct(">d").pack
_pack_f = struct.Struct(">f").pack
_unpack_d = struct.Struct(">d").unpack_from
_unpack_f = struct.Struct(">f").unpack_from


class MsgpackError(ValueError):
    """Malformed or unsupported MessagePack input."""


class Ext:
    """A msgpack ``ext`` value (Aerospike uses them as list/map flag markers)."""

    __slots__ = ("type", "data")

    def __init__(self, type_: int, data: bytes):
        self.type = type_
        self.data = bytes(data)

    def __eq__(self, other):
        return isinstance(other, Ext) and other.type == self.type and other.data == self.data

    def __hash__(self):
        return hash((Ext, self.type, self.data))

    def __repr__(self):
        return f"Ext({self.type}, {self.data!r})"


class RawStr(bytes):
    """A msgpack str-family value decoded in raw mode (no particle-type prefix interpreted)."""

    __slots__ = ()


class AsBytes:
    """A prefixed byte string whose particle type is neither string nor blob (e.g. GeoJSON)."""

    __slots__ = ("type", "data")

    def __init__(self, type_: int, data: bytes):
        self.type = type_
        self.data = bytes(data)

    def __eq__(self, other):
        return isinstance(other, AsBytes) and other.type == self.type and other.data == self.data

    def __hash__(self):
        return hash((AsBytes, self.type, self.data))

    def __repr__(self):
        return f"AsBytes({self.type}, {self.data!r})"


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------


def _pack_raw_header(out: bytearray, n: int) -> None:
    # Aerospike's C client always uses the str family for prefixed byte strings.
    if n < 32:
        out.append(0xA0 | n)
    elif n < 0x100:
        out += b"\xd9" + bytes((n,))
    elif n < 0x10000:
        out += b"\xda" + n.to_bytes(2, "big")
    else:
        out += b"\xdb" + n.to_bytes(4, "big")


def _pack_int(out: bytearray, v: int) -> None:
    if v >= 0:
        if v < 0x80:
            out.append(v)
        elif v < 0x100:
            out += b"\xcc" + bytes((v,))
        elif v < 0x10000:
            out += b"\xcd" + v.to_bytes(2, "big")
        elif v < 0x100000000:
            out += b"\xce" + v.to_bytes(4, "big")
        elif v < 0x10000000000000000:
            out += b"\xcf" + v.to_bytes(8, "big")
        else:
            raise MsgpackError("integer too large for msgpack")
    else:
        if v >= -32:
            out.append(v & 0xFF)
        elif v >= -0x80:
            out += b"\xd0" + v.to_bytes(1, "big", signed=True)
        elif v >= -0x8000:
            out += b"\xd1" + v.to_bytes(2, "big", signed=True)
        elif v >= -0x80000000:
            out += b"\xd2" + v.to_bytes(4, "big", signed=True)
        elif v >= -0x8000000000000000:
            out += b"\xd3" + v.to_bytes(8, "big", signed=True)
        else:
            raise MsgpackError("integer too small for msgpack")


def _pack(out: bytearray, v) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _pack_int(out, v)
    elif isinstance(v, float):
        out += b"\xcb" + _pack_d(v)
    elif isinstance(v, str):
        b = v.encode("utf-8")
        _pack_raw_header(out, len(b) + 1)
        out.append(AS_BYTES_STRING)
        out += b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        _pack_raw_header(out, len(b) + 1)
        out.append(AS_BYTES_BLOB)
        out += b
    elif isinstance(v, AsBytes):
        _pack_raw_header(out, len(v.data) + 1)
        out.append(v.type)
        out += v.data
    elif isinstance(v, (list, tuple)):
        n = len(v)
        if n < 16:
            out.append(0x90 | n)
        elif n < 0x10000:
            out += b"\xdc" + n.to_bytes(2, "big")
        else:
            out += b"\xdd" + n.to_bytes(4, "big")
        for item in v:
            _pack(out, item)
    elif isinstance(v, dict):
        n = len(v)
        if n < 16:
            out.append(0x80 | n)
        elif n < 0x10000:
            out += b"\xde" + n.to_bytes(2, "big")
        else:
            out += b"\xdf" + n.to_bytes(4, "big")
        for k, item in v.items():
            _pack(out, k)
            _pack(out, item)
    elif isinstance(v, Ext):
        n = len(v.data)
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        if n in fixed:
            out.append(fixed[n])
        elif n < 0x100:
            out += b"\xc7" + bytes((n,))
        elif n < 0x10000:
            out += b"\xc8" + n.to_bytes(2, "big")
        else:
            out += b"\xc9" + n.to_bytes(4, "big")
        out.append(v.type & 0xFF)
        out += v.data
    else:
        raise MsgpackError(f"cannot pack {type(v).__name__}")


def packb(v) -> bytes:
    """Encode ``v`` (None, bool, int, float, str, bytes, list, dict, Ext, AsBytes)."""
    out = bytearray()
    _pack(out, v)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------


def _raw(buf, pos: int, n: int, prefixed):
    # prefixed: True (str family, particle-type prefix), None (str family, raw mode -> RawStr),
    # False (bin family -> bytes).
    end = pos + n
    if end > len(buf):
        raise MsgpackError("truncated string")
    if prefixed is None:
        return RawStr(buf[pos:end]), end
    if not prefixed:
        return bytes(buf[pos:end]), end
    if n == 0:
        return "", end
    t = buf[pos]
    data = bytes(buf[pos + 1:end])
    if t == AS_BYTES_STRING:
        try:
            return data.decode("utf-8"), end
        except UnicodeDecodeError:
            return data, end
    if t == AS_BYTES_BLOB:
        return data, end
    return AsBytes(t, data), end


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    if isinstance(k, dict):
        return tuple((_hashable(a), _hashable(b)) for a, b in k.items())
    return k


def unpack_from(buf, pos: int = 0, raw: bool = False):
    """Decode one value from ``buf`` at ``pos``; return ``(value, next_pos)``.

    With ``raw=True`` str-family values come back as ``bytes`` without interpreting a particle
    type prefix (expressions send bin names and some literals unprefixed).
    """
    try:
        b = buf[pos]
    except IndexError:
        raise MsgpackError("truncated input") from None
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF:
        return _raw(buf, pos, b & 0x1F, None if raw else True)
    if 0x90 <= b <= 0x9F:
        return _array(buf, pos, b & 0x0F, raw)
    if 0x80 <= b <= 0x8F:
        return _map(buf, pos, b & 0x0F, raw)
    if len(buf) < pos:
        raise MsgpackError("truncated input")
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    if b == 0xCC:
        return _need(buf, pos, 1)[pos], pos + 1
    if b == 0xCD:
        return int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big"), pos + 2
    if b == 0xCE:
        return int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big"), pos + 4
    if b == 0xCF:
        return int.from_bytes(_need(buf, pos, 8)[pos:pos + 8], "big"), pos + 8
    if b == 0xD0:
        return int.from_bytes(_need(buf, pos, 1)[pos:pos + 1], "big", signed=True), pos + 1
    if b == 0xD1:
        return int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big", signed=True), pos + 2
    if b == 0xD2:
        return int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big", signed=True), pos + 4
    if b == 0xD3:
        return int.from_bytes(_need(buf, pos, 8)[pos:pos + 8], "big", signed=True), pos + 8
    if b == 0xCA:
        return _unpack_f(_need(buf, pos, 4), pos)[0], pos + 4
    if b == 0xCB:
        return _unpack_d(_need(buf, pos, 8), pos)[0], pos + 8
    if b == 0xD9:
        return _raw(buf, pos + 1, _need(buf, pos, 1)[pos], None if raw else True)
    if b == 0xDA:
        n = int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big")
        return _raw(buf, pos + 2, n, None if raw else True)
    if b == 0xDB:
        n = int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big")
        return _raw(buf, pos + 4, n, None if raw else True)
    if b == 0xC4:
        return _raw(buf, pos + 1, _need(buf, pos, 1)[pos], False)
    if b == 0xC5:
        return _raw(buf, pos + 2, int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big"), False)
    if b == 0xC6:
        return _raw(buf, pos + 4, int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big"), False)
    if b == 0xDC:
        return _array(buf, pos + 2, int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big"), raw)
    if b == 0xDD:
        return _array(buf, pos + 4, int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big"), raw)
    if b == 0xDE:
        return _map(buf, pos + 2, int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big"), raw)
    if b == 0xDF:
        return _map(buf, pos + 4, int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big"), raw)
    if 0xD4 <= b <= 0xD8:
        n = 1 << (b - 0xD4)
        return _ext(buf, pos, n)
    if b == 0xC7:
        return _ext(buf, pos + 1, _need(buf, pos, 1)[pos])
    if b == 0xC8:
        return _ext(buf, pos + 2, int.from_bytes(_need(buf, pos, 2)[pos:pos + 2], "big"))
    if b == 0xC9:
        return _ext(buf, pos + 4, int.from_bytes(_need(buf, pos, 4)[pos:pos + 4], "big"))
    raise MsgpackError(f"unsupported msgpack type byte 0x{b:02x}")


def _need(buf, pos, n):
    if pos + n > len(buf):
        raise MsgpackError("truncated input")
    return buf


def _ext(buf, pos, n):
    _need(buf, pos, n + 1)
    t = buf[pos]
    if t >= 0x80:
        t -= 0x100
    return Ext(t, bytes(buf[pos + 1:pos + 1 + n])), pos + 1 + n


def _array(buf, pos, n, raw=False):
    out = []
    for _ in range(n):
        v, pos = unpack_from(buf, pos, raw)
        out.append(v)
    return out, pos


def _map(buf, pos, n, raw=False):
    out = {}
    for _ in range(n):
        k, pos = unpack_from(buf, pos, raw)
        v, pos = unpack_from(buf, pos, raw)
        out[_hashable(k)] = v
    return out, pos


def unpackb(buf, raw: bool = False):
    """Decode exactly one value occupying all of ``buf``."""
    v, pos = unpack_from(buf, 0, raw)
    if pos != len(buf):
        raise MsgpackError(f"{len(buf) - pos} trailing bytes after msgpack value")
    return v
