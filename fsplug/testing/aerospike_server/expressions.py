"""Aerospike filter expressions (FILTER_EXP field, type 43): compile and evaluate.

The wire form is MessagePack: a call is an array ``[op_code, args...]``, literals stand for
themselves (lists are quoted as ``[126, list]``).  Supported, because fsplug's store, Feast's
Aerospike store and this server's tests use them:

* comparisons ``EQ NE GT GE LT LE`` (1-6) on int, float, string, blob, bool, list and map values;
* logic ``AND OR NOT`` (16-18) with Aerospike's three-valued logic (a missing bin makes a
  comparison *unknown*; ``unknown AND false`` is false, ``unknown OR true`` is true);
* record metadata ``DIGEST_MODULO DEVICE_SIZE LAST_UPDATE SINCE_UPDATE VOID_TIME TTL SET_NAME
  KEY_EXISTS IS_TOMBSTONE MEMORY_SIZE RECORD_SIZE`` (64-74), with the values a real CE 8.1 node
  gives on a memory namespace (real-server-facts.md section 6);
* ``BIN BIN_TYPE`` (81, 82) and ``QUOTED`` (126).

Every other call (arithmetic, integer bit operations, regex, ``COND``/``LET``/``VAR``, record
key, CDT/bit/HLL calls, geo) raises :class:`ExpUnsupported`: the server answers code 16
(AEROSPIKE_ERR_UNSUPPORTED_FEATURE), so an expression this server cannot evaluate is never
treated as passing.  An expression that a real node refuses too (a comparison of an int bin
with a float literal, a malformed tree, ``DigestMod(0)``) raises :class:`ExpError`: code 4
(PARAMETER).  A filter whose value is not ``True`` (false or unknown) filters the record out
(code 27).
"""

from __future__ import annotations

import struct
from typing import Any

from fsplug.testing.aerospike_server import msgpack
from fsplug.testing.aerospike_server.protocol import (
    CITRUSLEAF_EPOCH, PT_BLOB, PT_BOOL, PT_CSHARP_BLOB, PT_ERLANG_BLOB, PT_FLOAT, PT_GEOJSON,
    PT_HLL, PT_INTEGER, PT_JAVA_BLOB, PT_LIST, PT_MAP, PT_PHP_BLOB, PT_PYTHON_BLOB, PT_RUBY_BLOB,
    PT_STRING, particle_to_python,
)

__all__ = ["ExpError", "ExpUnsupported", "compile_filter", "UNKNOWN"]

# Expression value types as the wire names them (BIN calls carry one).
T_NIL, T_BOOL, T_INT, T_STR, T_LIST, T_MAP, T_BLOB, T_FLOAT, T_GEO, T_HLL = range(10)
T_AUTO = -1  # not known statically

_PTYPE_TO_T = {PT_INTEGER: T_INT, PT_FLOAT: T_FLOAT, PT_STRING: T_STR, PT_BOOL: T_BOOL,
               PT_LIST: T_LIST, PT_MAP: T_MAP, PT_GEOJSON: T_GEO, PT_HLL: T_HLL}
for _pt in (PT_BLOB, PT_JAVA_BLOB, PT_CSHARP_BLOB, PT_PYTHON_BLOB, PT_RUBY_BLOB, PT_PHP_BLOB,
            PT_ERLANG_BLOB):
    _PTYPE_TO_T[_pt] = T_BLOB

EQ, NE, GT, GE, LT, LE = 1, 2, 3, 4, 5, 6
AND, OR, NOT = 16, 17, 18
(DIGEST_MODULO, DEVICE_SIZE, LAST_UPDATE, SINCE_UPDATE, VOID_TIME, TTL, SET_NAME, KEY_EXISTS,
 IS_TOMBSTONE, MEMORY_SIZE, RECORD_SIZE) = range(64, 75)
BIN, BIN_TYPE = 81, 82
QUOTED = 126


class ExpError(ValueError):
    """An expression that does not build, as a real node refuses it (answered with code 4)."""


class ExpUnsupported(ExpError):
    """A valid expression call this server does not implement (answered with code 16)."""


class _Unknown:
    __slots__ = ()

    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = _Unknown()

class EvalContext:
    """What an expression may look at: the record (or None), its digest and the clock."""

    __slots__ = ("rec", "digest", "now_cl", "now_ms", "_cache")

    def __init__(self, rec, digest: bytes, now_cl: int, now_ms: int):
        self.rec = rec
        self.digest = digest
        self.now_cl = now_cl  # seconds since the citrusleaf epoch
        self.now_ms = now_ms  # ms since the Unix epoch
        self._cache: dict[Any, Any] = {}

    def bin(self, name: str):
        """(particle type, python value) of a bin, or None when absent."""
        c = self._cache.get(name)
        if c is not None:
            return c
        if self.rec is None:
            return None
        b = self.rec.bins.get(name)
        if b is None:
            return None
        ptype, raw = b
        c = (ptype, particle_to_python(ptype, raw))
        self._cache[name] = c
        return c


def _literal(v):
    """A decoded (raw-mode) msgpack literal -> (python value, type)."""
    if v is None:
        return None, T_NIL
    if isinstance(v, bool):
        return v, T_BOOL
    if isinstance(v, int):
        return v, T_INT
    if isinstance(v, float):
        return v, T_FLOAT
    if isinstance(v, msgpack.RawStr):
        # String literals carry the particle-type prefix 0x03 (blobs 0x04); tolerate none.
        b = bytes(v)
        if b[:1] == b"\x03":
            return b[1:].decode("utf-8", "replace"), T_STR
        if b[:1] == b"\x04":
            return b[1:], T_BLOB
        if b[:1] == b"\x17":
            raise ExpUnsupported("geojson literals are not supported")
        return b.decode("utf-8", "replace"), T_STR
    if isinstance(v, bytes):
        return v, T_BLOB
    if isinstance(v, dict):
        return _norm_container(v), T_MAP
    raise ExpError(f"unsupported literal {v!r}")


def _norm_container(v):
    """Turn a raw-mode decoded container into plain python values (strings unprefixed)."""
    if isinstance(v, list):
        return [_norm_container(x) for x in v]
    if isinstance(v, dict):
        return {_norm_container(k): _norm_container(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return tuple(_norm_container(x) for x in v)
    if isinstance(v, msgpack.RawStr):
        return _literal(v)[0]
    return v


def _name(v) -> str:
    if isinstance(v, (bytes, msgpack.RawStr)):
        b = bytes(v)
        return b.decode("utf-8", "replace")
    if isinstance(v, str):
        return v
    raise ExpError(f"expected a name, got {v!r}")


_CMP = {
    EQ: lambda a, b: a == b, NE: lambda a, b: a != b, GT: lambda a, b: a > b,
    GE: lambda a, b: a >= b, LT: lambda a, b: a < b, LE: lambda a, b: a <= b,
}


def _same_type(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int) and isinstance(b, int):
        return True
    return type(a) is type(b)


class _Compiler:
    """Turns a decoded expression tree into a closure over an EvalContext."""

    def build(self, node):
        """Return (fn(ctx) -> value, static type)."""
        if not isinstance(node, list):
            val, t = _literal(node)
            return (lambda ctx, _v=val: _v), t
        if not node:
            raise ExpError("empty expression call")
        code = node[0]
        if not isinstance(code, int) or isinstance(code, bool):
            raise ExpError(f"bad expression op {code!r}")
        args = node[1:]
        m = _DISPATCH.get(code)
        if m is None:
            raise ExpUnsupported(f"expression op {code} is not supported by the test server")
        return m(self, code, args)

    # -- comparisons ---------------------------------------------------------------------------

    def cmp(self, code, args):
        if len(args) != 2:
            raise ExpError("comparison takes two arguments")
        fa, ta = self.build(args[0])
        fb, tb = self.build(args[1])
        if ta != T_AUTO and tb != T_AUTO and ta != tb and T_NIL not in (ta, tb):
            raise ExpError(f"comparison of mismatched types {ta} and {tb}")
        op = _CMP[code]
        ordered = code not in (EQ, NE)

        def f(ctx):
            a = fa(ctx)
            if a is UNKNOWN:
                return UNKNOWN
            b = fb(ctx)
            if b is UNKNOWN:
                return UNKNOWN
            if not _same_type(a, b):
                if a is None or b is None:
                    return op(a is None, b is None) if not ordered else UNKNOWN
                return UNKNOWN
            try:
                return op(a, b)
            except TypeError:
                return UNKNOWN
        return f, T_BOOL

    # -- logic ---------------------------------------------------------------------------------

    def _bools(self, args):
        fns = []
        for a in args:
            fn, t = self.build(a)
            if t not in (T_BOOL, T_AUTO):
                raise ExpError("logical operator needs boolean arguments")
            fns.append(fn)
        return fns

    def and_(self, code, args):
        fns = self._bools(args)
        if not fns:
            raise ExpError("AND needs arguments")

        def f(ctx):
            unk = False
            for fn in fns:
                v = fn(ctx)
                if v is False:
                    return False
                if v is not True:
                    unk = True
            return UNKNOWN if unk else True
        return f, T_BOOL

    def or_(self, code, args):
        fns = self._bools(args)
        if not fns:
            raise ExpError("OR needs arguments")

        def f(ctx):
            unk = False
            for fn in fns:
                v = fn(ctx)
                if v is True:
                    return True
                if v is not False:
                    unk = True
            return UNKNOWN if unk else False
        return f, T_BOOL

    def not_(self, code, args):
        if len(args) != 1:
            raise ExpError("NOT takes one argument")
        (fn,) = self._bools(args)

        def f(ctx):
            v = fn(ctx)
            return (not v) if isinstance(v, bool) else UNKNOWN
        return f, T_BOOL

    # -- metadata ------------------------------------------------------------------------------

    def meta(self, code, args):
        if code == DIGEST_MODULO:
            if len(args) != 1 or not isinstance(args[0], int) or isinstance(args[0], bool) \
                    or args[0] == 0:
                raise ExpError("digest modulo needs a non-zero integer")
            # A real node takes digest bytes 16-19 as a little-endian u32; a negative modulus
            # works as its absolute value (C's remainder follows the dividend's sign).
            mod = abs(args[0])
            return (lambda ctx: struct.unpack_from("<I", ctx.digest, 16)[0] % mod), T_INT
        if code == DEVICE_SIZE:
            return (lambda ctx: 0), T_INT  # 0 on a memory namespace
        if code in (MEMORY_SIZE, RECORD_SIZE):
            return (lambda ctx: ctx.rec.stored_size() if ctx.rec is not None else 0), T_INT
        if code == LAST_UPDATE:
            # ns since the Unix epoch, at the record's ms resolution
            return (lambda ctx: ctx.rec.lut_ms * 1_000_000 if ctx.rec is not None else 0), T_INT
        if code == SINCE_UPDATE:
            return (lambda ctx: ctx.now_ms - ctx.rec.lut_ms if ctx.rec is not None else 0), T_INT
        if code == VOID_TIME:
            # ns since Unix epoch, -1 when the record never expires
            def vt(ctx):
                if ctx.rec is None or not ctx.rec.void_time:
                    return -1
                return (ctx.rec.void_time + CITRUSLEAF_EPOCH) * 1_000_000_000
            return vt, T_INT
        if code == TTL:
            def ttl(ctx):
                if ctx.rec is None or not ctx.rec.void_time:
                    return -1
                return max(0, ctx.rec.void_time - ctx.now_cl)
            return ttl, T_INT
        if code == SET_NAME:
            return (lambda ctx: ctx.rec.set_name if ctx.rec is not None else ""), T_STR
        if code == KEY_EXISTS:
            return (lambda ctx: ctx.rec is not None and ctx.rec.key is not None), T_BOOL
        return (lambda ctx: False), T_BOOL  # IS_TOMBSTONE: a memory namespace keeps none

    def bin(self, code, args):
        if len(args) != 2 or not isinstance(args[0], int):
            raise ExpError("BIN takes a type and a name")
        want = args[0]
        name = _name(args[1])

        def f(ctx):
            b = ctx.bin(name)
            if b is None:
                return UNKNOWN
            ptype, v = b
            if _PTYPE_TO_T.get(ptype) != want:
                return UNKNOWN
            return v
        return f, want

    def bin_type(self, code, args):
        if len(args) != 1:
            raise ExpError("BIN_TYPE takes a name")
        name = _name(args[0])

        def f(ctx):
            if ctx.rec is None:
                return 0
            b = ctx.rec.bins.get(name)
            return b[0] if b is not None else 0
        return f, T_INT

    # -- control -------------------------------------------------------------------------------

    def quoted(self, code, args):
        if len(args) != 1:
            raise ExpError("QUOTED takes one value")
        v = _norm_container(args[0])
        t = T_LIST if isinstance(v, list) else _literal(args[0])[1]
        return (lambda ctx: v), t


_DISPATCH = {}
for _c in (EQ, NE, GT, GE, LT, LE):
    _DISPATCH[_c] = _Compiler.cmp
_DISPATCH[AND] = _Compiler.and_
_DISPATCH[OR] = _Compiler.or_
_DISPATCH[NOT] = _Compiler.not_
for _c in range(DIGEST_MODULO, RECORD_SIZE + 1):
    _DISPATCH[_c] = _Compiler.meta
_DISPATCH[BIN] = _Compiler.bin
_DISPATCH[BIN_TYPE] = _Compiler.bin_type
_DISPATCH[QUOTED] = _Compiler.quoted


class Filter:
    """A compiled filter expression; ``passes(ctx)`` is True only for a definite true."""

    __slots__ = ("fn", "source")

    def __init__(self, fn, source: bytes):
        self.fn = fn
        self.source = source

    def passes(self, rec, digest: bytes, now_cl: int, now_ms: int) -> bool:
        """True only when the expression evaluates to a definite true for ``rec``."""
        ctx = EvalContext(rec, digest, now_cl, now_ms)
        return self.fn(ctx) is True

    def evaluate(self, rec, digest: bytes = b"\0" * 20, now_cl: int = 0, now_ms: int = 0):
        """The expression's value for ``rec`` (True, False or UNKNOWN)."""
        return self.fn(EvalContext(rec, digest, now_cl, now_ms))


_cache: dict[bytes, Filter] = {}
_CACHE_MAX = 512


def compile_filter(data) -> Filter:
    """Compile FILTER_EXP bytes (cached by content). Raises ExpError when unsupported."""
    key = bytes(data)
    f = _cache.get(key)
    if f is not None:
        return f
    try:
        tree = msgpack.unpackb(key, raw=True)
    except (msgpack.MsgpackError, IndexError, ValueError) as e:
        raise ExpError(f"malformed expression: {e}") from None
    fn, t = _Compiler().build(tree)
    if t not in (T_BOOL, T_AUTO):
        raise ExpError("filter expression must be boolean")
    f = Filter(fn, key)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = f
    return f
