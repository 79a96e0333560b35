"""Aerospike wire protocol: proto framing, AS_MSG messages, fields, ops, particles, batch index.

Every proto message starts with an 8-byte header, big-endian: version (1 byte, 2), type (1 byte:
1 info, 2 security, 3 AS_MSG, 4 compressed AS_MSG) and body size (6 bytes).

An AS_MSG body is a 22-byte header (header size 22, info1, info2, info3, info4, result code,
generation u32, record ttl u32, transaction ttl u32, field count u16, op count u16), then the
fields (u32 size counting the type byte, u8 type, data), then the ops (u32 size counting the
7 bytes after it, u8 op, u8 particle type, u8 version, u8 name length, name, value).
"""

from __future__ import annotations

import struct

# ---------------------------------------------------------------------------------------------
# Proto header
# ---------------------------------------------------------------------------------------------

PROTO_VERSION = 2
PROTO_TYPE_INFO = 1
PROTO_TYPE_SECURITY = 2
PROTO_TYPE_AS_MSG = 3
PROTO_TYPE_AS_MSG_COMPRESSED = 4

PROTO_HEADER = struct.Struct(">Q")
MSG_HEADER = struct.Struct(">BBBBBBIIIHH")  # 22 bytes
MSG_HEADER_SIZE = 22
_SIZE_MASK = (1 << 48) - 1


def proto_header(ptype: int, size: int) -> bytes:
    return PROTO_HEADER.pack((PROTO_VERSION << 56) | (ptype << 48) | size)


def parse_proto_header(b) -> tuple[int, int, int]:
    """Return (version, type, size) of an 8-byte proto header."""
    (word,) = PROTO_HEADER.unpack_from(b, 0)
    return word >> 56, (word >> 48) & 0xFF, word & _SIZE_MASK


# ---------------------------------------------------------------------------------------------
# AS_MSG flags
# ---------------------------------------------------------------------------------------------

INFO1_READ = 1
INFO1_GET_ALL = 1 << 1
INFO1_SHORT_QUERY = 1 << 2
INFO1_BATCH = 1 << 3
INFO1_XDR = 1 << 4
INFO1_NOBINDATA = 1 << 5
INFO1_READ_MODE_AP_ALL = 1 << 6
INFO1_COMPRESS_RESPONSE = 1 << 7

INFO2_WRITE = 1
INFO2_DELETE = 1 << 1
INFO2_GENERATION = 1 << 2
INFO2_GENERATION_GT = 1 << 3
INFO2_DURABLE_DELETE = 1 << 4
INFO2_CREATE_ONLY = 1 << 5
INFO2_RELAX_AP_LONG_QUERY = 1 << 6
INFO2_RESPOND_ALL_OPS = 1 << 7

INFO3_LAST = 1
INFO3_COMMIT_MASTER = 1 << 1
INFO3_PARTITION_DONE = 1 << 2
INFO3_UPDATE_ONLY = 1 << 3
INFO3_CREATE_OR_REPLACE = 1 << 4
INFO3_REPLACE_ONLY = 1 << 5
INFO3_SC_READ_TYPE = 1 << 6
INFO3_SC_READ_RELAX = 1 << 7

# ---------------------------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------------------------

FIELD_NAMESPACE = 0
FIELD_SETNAME = 1
FIELD_KEY = 2
FIELD_RECORD_VERSION = 3
FIELD_DIGEST_RIPE = 4
FIELD_MRT_ID = 5
FIELD_MRT_DEADLINE = 6
FIELD_QUERY_ID = 7
FIELD_SOCKET_TIMEOUT = 9
FIELD_RECS_PER_SEC = 10
FIELD_PID_ARRAY = 11
FIELD_DIGEST_ARRAY = 12
FIELD_MAX_RECORDS = 13
FIELD_BVAL_ARRAY = 15
FIELD_INDEX_NAME = 21
FIELD_INDEX_RANGE = 22
FIELD_INDEX_CONTEXT = 23
FIELD_INDEX_EXPRESSION = 24
FIELD_INDEX_TYPE = 26
FIELD_UDF_PACKAGE_NAME = 30
FIELD_UDF_FUNCTION = 31
FIELD_UDF_ARGLIST = 32
FIELD_UDF_OP = 33
FIELD_QUERY_BINS = 40
FIELD_BATCH_INDEX = 41
FIELD_BATCH_INDEX_WITH_SET = 42
FIELD_FILTER_EXP = 43

FIELD_NAMES = {
    0: "NAMESPACE", 1: "SETNAME", 2: "KEY", 3: "RECORD_VERSION", 4: "DIGEST_RIPE", 5: "MRT_ID",
    6: "MRT_DEADLINE", 7: "QUERY_ID", 9: "SOCKET_TIMEOUT", 10: "RECS_PER_SEC", 11: "PID_ARRAY",
    12: "DIGEST_ARRAY", 13: "MAX_RECORDS", 15: "BVAL_ARRAY", 21: "INDEX_NAME", 22: "INDEX_RANGE",
    23: "INDEX_CONTEXT", 24: "INDEX_EXPRESSION", 26: "INDEX_TYPE", 30: "UDF_PACKAGE_NAME",
    31: "UDF_FUNCTION", 32: "UDF_ARGLIST", 33: "UDF_OP", 40: "QUERY_BINS", 41: "BATCH_INDEX",
    42: "BATCH_INDEX_WITH_SET", 43: "FILTER_EXP",
}

# Fields that only scans, queries and UDF calls carry.
QUERY_FIELDS = frozenset({FIELD_QUERY_ID, FIELD_PID_ARRAY, FIELD_DIGEST_ARRAY, FIELD_MAX_RECORDS,
                          FIELD_BVAL_ARRAY, FIELD_INDEX_NAME, FIELD_INDEX_RANGE, FIELD_INDEX_CONTEXT,
                          FIELD_INDEX_EXPRESSION, FIELD_INDEX_TYPE, FIELD_RECS_PER_SEC,
                          FIELD_QUERY_BINS})
UDF_FIELDS = frozenset({FIELD_UDF_PACKAGE_NAME, FIELD_UDF_FUNCTION, FIELD_UDF_ARGLIST, FIELD_UDF_OP})

# ---------------------------------------------------------------------------------------------
# Op types
# ---------------------------------------------------------------------------------------------

OP_READ = 1
OP_WRITE = 2
OP_CDT_READ = 3
OP_CDT_MODIFY = 4
OP_INCR = 5
OP_EXP_READ = 7
OP_EXP_MODIFY = 8
OP_APPEND = 9
OP_PREPEND = 10
OP_TOUCH = 11
OP_BITS_READ = 12
OP_BITS_MODIFY = 13
OP_DELETE_ALL = 14
OP_HLL_READ = 15
OP_HLL_MODIFY = 16

OP_NAMES = {1: "READ", 2: "WRITE", 3: "CDT_READ", 4: "CDT_MODIFY", 5: "INCR", 7: "EXP_READ",
            8: "EXP_MODIFY", 9: "APPEND", 10: "PREPEND", 11: "TOUCH", 12: "BITS_READ",
            13: "BITS_MODIFY", 14: "DELETE_ALL", 15: "HLL_READ", 16: "HLL_MODIFY"}

# ---------------------------------------------------------------------------------------------
# Particle types
# ---------------------------------------------------------------------------------------------

PT_NULL = 0
PT_INTEGER = 1
PT_FLOAT = 2
PT_STRING = 3
PT_BLOB = 4
PT_JAVA_BLOB = 7
PT_CSHARP_BLOB = 8
PT_PYTHON_BLOB = 9
PT_RUBY_BLOB = 10
PT_PHP_BLOB = 11
PT_ERLANG_BLOB = 12
PT_BOOL = 17
PT_HLL = 18
PT_MAP = 19
PT_LIST = 20
PT_GEOJSON = 23

PARTICLE_NAMES = {0: "NIL", 1: "INTEGER", 2: "DOUBLE", 3: "STRING", 4: "BLOB", 7: "JAVA_BLOB",
                  8: "CSHARP_BLOB", 9: "PYTHON_BLOB", 10: "RUBY_BLOB", 11: "PHP_BLOB",
                  12: "ERLANG_BLOB", 17: "BOOL", 18: "HLL", 19: "MAP", 20: "LIST", 23: "GEOJSON"}

# Particle types the server accepts in a bin write.
WRITABLE_PARTICLES = frozenset({PT_INTEGER, PT_FLOAT, PT_STRING, PT_BLOB, PT_JAVA_BLOB,
                                PT_CSHARP_BLOB, PT_PYTHON_BLOB, PT_RUBY_BLOB, PT_PHP_BLOB,
                                PT_ERLANG_BLOB, PT_BOOL, PT_HLL, PT_MAP, PT_LIST, PT_GEOJSON})

# ---------------------------------------------------------------------------------------------
# Batch index field
# ---------------------------------------------------------------------------------------------

BATCH_FLAG_ALLOW_INLINE = 0x1
BATCH_FLAG_ALLOW_INLINE_SSD = 0x2
BATCH_FLAG_RESPOND_ALL_KEYS = 0x4
BATCH_FLAG_BATCH_ANY = 0x8

BATCH_MSG_READ = 0x0
BATCH_MSG_REPEAT = 0x1
BATCH_MSG_INFO = 0x2
BATCH_MSG_GEN = 0x4
BATCH_MSG_TTL = 0x8
BATCH_MSG_INFO4 = 0x10

# ---------------------------------------------------------------------------------------------
# Result codes (the subset this server answers)
# ---------------------------------------------------------------------------------------------

AS_OK = 0
AS_ERR_UNKNOWN = 1
AS_ERR_NOT_FOUND = 2
AS_ERR_GENERATION = 3
AS_ERR_PARAMETER = 4
AS_ERR_RECORD_EXISTS = 5
AS_ERR_BIN_EXISTS = 6
AS_ERR_CLUSTER_KEY_MISMATCH = 7
AS_ERR_OUT_OF_SPACE = 8
AS_ERR_TIMEOUT = 9
AS_ERR_UNAVAILABLE = 11
AS_ERR_INCOMPATIBLE_TYPE = 12
AS_ERR_RECORD_TOO_BIG = 13
AS_ERR_KEY_BUSY = 14
AS_ERR_UNSUPPORTED_FEATURE = 16
AS_ERR_BIN_NOT_FOUND = 17
AS_ERR_DEVICE_OVERLOAD = 18
AS_ERR_KEY_MISMATCH = 19
AS_ERR_NAMESPACE = 20
AS_ERR_BIN_NAME = 21
AS_ERR_FORBIDDEN = 22
AS_ERR_ELEMENT_NOT_FOUND = 23
AS_ERR_ELEMENT_EXISTS = 24
AS_ERR_ENTERPRISE_ONLY = 25
AS_ERR_OP_NOT_APPLICABLE = 26
AS_ERR_FILTERED_OUT = 27
AS_ERR_LOST_CONFLICT = 28
AS_SEC_ERR_NOT_SUPPORTED = 51
AS_ERR_SINDEX_NOT_FOUND = 201

# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------

_U32 = struct.Struct(">I")
_OP_HDR = struct.Struct(">IBBBB")
_FIELD_HDR = struct.Struct(">IB")
_pack_q = struct.Struct(">q").pack
_pack_d = struct.Struct(">d").pack
_unpack_q = struct.Struct(">q").unpack
_unpack_d = struct.Struct(">d").unpack


class ProtocolError(ValueError):
    """A message that does not parse."""


class Op:
    """One bin operation: op type, particle type, bin name (str) and raw value bytes."""

    __slots__ = ("op", "ptype", "name", "value")

    def __init__(self, op: int, ptype: int, name: str, value: bytes = b""):
        self.op = op
        self.ptype = ptype
        self.name = name
        self.value = value

    def __eq__(self, other):
        return (isinstance(other, Op) and self.op == other.op and self.ptype == other.ptype
                and self.name == other.name and bytes(self.value) == bytes(other.value))

    __hash__ = None  # type: ignore[assignment]  # compared by value and mutable: never a dict key

    def __repr__(self):
        return (f"Op({OP_NAMES.get(self.op, self.op)}, {PARTICLE_NAMES.get(self.ptype, self.ptype)}, "
                f"{self.name!r}, {bytes(self.value)!r})")


class Msg:
    """A decoded AS_MSG: header values, fields ``{type: bytes}`` (in order) and ops."""

    __slots__ = ("info1", "info2", "info3", "info4", "result_code", "generation", "record_ttl",
                 "transaction_ttl", "fields", "ops")

    def __init__(self, info1=0, info2=0, info3=0, info4=0, result_code=0, generation=0,
                 record_ttl=0, transaction_ttl=0, fields=None, ops=None):
        self.info1 = info1
        self.info2 = info2
        self.info3 = info3
        self.info4 = info4
        self.result_code = result_code
        self.generation = generation
        self.record_ttl = record_ttl
        self.transaction_ttl = transaction_ttl
        self.fields = fields if fields is not None else {}
        self.ops = ops if ops is not None else []

    def __repr__(self):
        f = {FIELD_NAMES.get(k, k): bytes(v) for k, v in self.fields.items()}
        return (f"Msg(info1={self.info1:#x}, info2={self.info2:#x}, info3={self.info3:#x}, "
                f"info4={self.info4:#x}, rc={self.result_code}, gen={self.generation}, "
                f"ttl={self.record_ttl}, tx_ttl={self.transaction_ttl}, fields={f}, ops={self.ops})")

    def encode(self) -> bytes:
        """The body (without proto header), fields in insertion order."""
        return encode_msg(self.result_code, self.generation, self.record_ttl, self.ops,
                          info1=self.info1, info2=self.info2, info3=self.info3, info4=self.info4,
                          transaction_ttl=self.transaction_ttl, fields=list(self.fields.items()))


def parse_ops(buf, pos: int, n_ops: int, end: int):
    ops = []
    for _ in range(n_ops):
        if pos + 8 > end:
            raise ProtocolError("truncated op header")
        size, op, ptype, _ver, name_len = _OP_HDR.unpack_from(buf, pos)
        op_end = pos + 4 + size
        name_start = pos + 8
        val_start = name_start + name_len
        if op_end > end or val_start > op_end or size < 4:
            raise ProtocolError("bad op size")
        try:
            name = bytes(buf[name_start:val_start]).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("bin name is not utf-8") from None
        ops.append(Op(op, ptype, name, bytes(buf[val_start:op_end])))
        pos = op_end
    return ops, pos


def parse_fields(buf, pos: int, n_fields: int, end: int):
    fields = {}
    for _ in range(n_fields):
        if pos + 5 > end:
            raise ProtocolError("truncated field header")
        size, ftype = _FIELD_HDR.unpack_from(buf, pos)
        f_end = pos + 4 + size
        if f_end > end or size < 1:
            raise ProtocolError("bad field size")
        fields[ftype] = buf[pos + 5:f_end]
        pos = f_end
    return fields, pos


def parse_msg(buf, pos: int = 0, end: int | None = None) -> tuple[Msg, int]:
    """Parse one AS_MSG from ``buf`` at ``pos``. Field values are memoryview/bytes slices."""
    if end is None:
        end = len(buf)
    if pos + MSG_HEADER_SIZE > end:
        raise ProtocolError("truncated AS_MSG header")
    (hsz, info1, info2, info3, info4, rc, gen, rttl, tttl, n_fields,
     n_ops) = MSG_HEADER.unpack_from(buf, pos)
    if hsz != MSG_HEADER_SIZE:
        raise ProtocolError(f"bad AS_MSG header size {hsz}")
    fields, pos = parse_fields(buf, pos + MSG_HEADER_SIZE, n_fields, end)
    ops, pos = parse_ops(buf, pos, n_ops, end)
    return Msg(info1, info2, info3, info4, rc, gen, rttl, tttl, fields, ops), pos


def parse_msgs(body) -> list[Msg]:
    """Parse every AS_MSG packed back to back in one proto body (a batch/scan response)."""
    out = []
    pos = 0
    while pos < len(body):
        m, pos = parse_msg(body, pos)
        out.append(m)
    return out


def encode_op(out: bytearray, op: int, ptype: int, name: bytes, value) -> None:
    out += _OP_HDR.pack(4 + len(name) + len(value), op, ptype, 0, len(name))
    out += name
    out += value


def encode_msg(result_code: int, generation: int = 0, record_ttl: int = 0, ops=(), *,
               info1: int = 0, info2: int = 0, info3: int = 0, info4: int = 0,
               transaction_ttl: int = 0, fields=()) -> bytes:
    """Encode an AS_MSG body. ``ops`` holds Op objects or (op, ptype, name, value) tuples."""
    out = bytearray(MSG_HEADER.pack(MSG_HEADER_SIZE, info1, info2, info3, info4, result_code,
                                    generation, record_ttl, transaction_ttl, len(fields), len(ops)))
    for ftype, data in fields:
        out += _FIELD_HDR.pack(len(data) + 1, ftype)
        out += data
    for o in ops:
        if isinstance(o, Op):
            encode_op(out, o.op, o.ptype, o.name.encode("utf-8"), o.value)
        else:
            op, ptype, name, value = o
            encode_op(out, op, ptype, name if isinstance(name, bytes) else name.encode("utf-8"),
                      value)
    return bytes(out)


def frame(ptype: int, body: bytes) -> bytes:
    return proto_header(ptype, len(body)) + body


# ---------------------------------------------------------------------------------------------
# Batch index field (type 41)
# ---------------------------------------------------------------------------------------------


class BatchRow:
    """One row of a batch request, with REPEAT rows already expanded from the previous row."""

    __slots__ = ("index", "digest", "flags", "repeat", "info1", "info2", "info3", "info4",
                 "generation", "ttl", "fields", "ops")

    def __init__(self, index, digest, flags, repeat, info1, info2, info3, info4, generation, ttl,
                 fields, ops):
        self.index = index
        self.digest = digest
        self.flags = flags
        self.repeat = repeat
        self.info1 = info1
        self.info2 = info2
        self.info3 = info3
        self.info4 = info4
        self.generation = generation
        self.ttl = ttl
        self.fields = fields
        self.ops = ops

    def __repr__(self):
        f = {FIELD_NAMES.get(k, k): bytes(v) for k, v in self.fields.items()}
        return (f"BatchRow(index={self.index}, digest={bytes(self.digest).hex()}, "
                f"flags={self.flags:#x}, repeat={self.repeat}, info1={self.info1:#x}, "
                f"info2={self.info2:#x}, info3={self.info3:#x}, gen={self.generation}, "
                f"ttl={self.ttl}, fields={f}, ops={self.ops})")


_BATCH_HDR = struct.Struct(">IB")
_ROW_HDR = struct.Struct(">I20sB")
_HH = struct.Struct(">HH")


def parse_batch_index(data) -> tuple[int, list[BatchRow]]:
    """Parse a BATCH_INDEX field value; returns (batch flags, rows)."""
    end = len(data)
    if end < 5:
        raise ProtocolError("truncated batch header")
    n_rows, bflags = _BATCH_HDR.unpack_from(data, 0)
    pos = 5
    rows = []
    prev = None
    for _ in range(n_rows):
        if pos + 25 > end:
            raise ProtocolError("truncated batch row")
        index, digest, flags = _ROW_HDR.unpack_from(data, pos)
        pos += 25
        if flags & BATCH_MSG_REPEAT:
            if prev is None:
                raise ProtocolError("first batch row cannot repeat")
            rows.append(BatchRow(index, digest, flags, True, prev.info1, prev.info2, prev.info3,
                                 prev.info4, prev.generation, prev.ttl, prev.fields, prev.ops))
            continue
        info2 = info3 = info4 = gen = ttl = 0
        if flags & BATCH_MSG_INFO:
            if pos + 3 > end:
                raise ProtocolError("truncated batch row info")
            info1, info2, info3 = data[pos], data[pos + 1], data[pos + 2]
            pos += 3
            if flags & BATCH_MSG_INFO4:
                info4 = data[pos]
                pos += 1
        else:
            if pos + 1 > end:
                raise ProtocolError("truncated batch row read attr")
            info1 = data[pos]
            pos += 1
        if flags & BATCH_MSG_GEN:
            gen = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        if flags & BATCH_MSG_TTL:
            (ttl,) = _U32.unpack_from(data, pos)
            pos += 4
        if pos + 4 > end:
            raise ProtocolError("truncated batch row counts")
        n_fields, n_ops = _HH.unpack_from(data, pos)
        pos += 4
        fields, pos = parse_fields(data, pos, n_fields, end)
        ops, pos = parse_ops(data, pos, n_ops, end)
        prev = BatchRow(index, digest, flags, False, info1, info2, info3, info4, gen, ttl, fields,
                        ops)
        rows.append(prev)
    return bflags, rows


def encode_batch_index(bflags: int, rows: list[BatchRow]) -> bytes:
    """Inverse of :func:`parse_batch_index` (used by the tests)."""
    out = bytearray(_BATCH_HDR.pack(len(rows), bflags))
    for r in rows:
        out += _ROW_HDR.pack(r.index, bytes(r.digest), r.flags)
        if r.flags & BATCH_MSG_REPEAT:
            continue
        if r.flags & BATCH_MSG_INFO:
            out += bytes((r.info1, r.info2, r.info3))
            if r.flags & BATCH_MSG_INFO4:
                out.append(r.info4)
        else:
            out.append(r.info1)
        if r.flags & BATCH_MSG_GEN:
            out += r.generation.to_bytes(2, "big")
        if r.flags & BATCH_MSG_TTL:
            out += _U32.pack(r.ttl)
        out += _HH.pack(len(r.fields), len(r.ops))
        for ftype, fdata in r.fields.items():
            out += _FIELD_HDR.pack(len(fdata) + 1, ftype)
            out += fdata
        for o in r.ops:
            encode_op(out, o.op, o.ptype, o.name.encode("utf-8"), o.value)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Particles <-> Python values
# ---------------------------------------------------------------------------------------------


def particle_to_python(ptype: int, raw):
    """Decode a particle to a Python value (list/map via msgpack)."""
    from fsplug.testing.aerospike_server import msgpack

    if ptype == PT_INTEGER:
        if len(raw) != 8:
            return int.from_bytes(raw, "big", signed=True)
        return _unpack_q(raw)[0]
    if ptype == PT_FLOAT:
        return _unpack_d(raw)[0]
    if ptype in (PT_STRING, PT_GEOJSON):
        return bytes(raw).decode("utf-8", "replace")
    if ptype == PT_BOOL:
        return bool(raw[0]) if raw else False
    if ptype in (PT_LIST, PT_MAP):
        return msgpack.unpackb(raw)
    if ptype == PT_NULL:
        return None
    return bytes(raw)


def python_to_particle(v) -> tuple[int, bytes]:
    """Encode a Python value as (particle type, raw bytes)."""
    from fsplug.testing.aerospike_server import msgpack

    if v is None:
        return PT_NULL, b""
    if isinstance(v, bool):
        return PT_BOOL, b"\x01" if v else b"\x00"
    if isinstance(v, int):
        return PT_INTEGER, _pack_q(v)
    if isinstance(v, float):
        return PT_FLOAT, _pack_d(v)
    if isinstance(v, str):
        return PT_STRING, v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return PT_BLOB, bytes(v)
    if isinstance(v, (list, tuple)):
        return PT_LIST, msgpack.packb(list(v))
    if isinstance(v, dict):
        return PT_MAP, msgpack.packb(v)
    raise TypeError(f"cannot encode {type(v).__name__} as a particle")


def decode_key_field(data) -> tuple[int, object]:
    """A KEY field is one particle-type byte then the value."""
    if not data:
        raise ProtocolError("empty key field")
    ptype = data[0]
    return ptype, particle_to_python(ptype, bytes(data[1:]))


def partition_id(digest) -> int:
    """Partition id as the clients compute it: the first two digest bytes, little-endian, mod 4096."""
    return (digest[0] | (digest[1] << 8)) & 4095


CITRUSLEAF_EPOCH = 1262304000  # 2010-01-01T00:00:00Z in Unix seconds
