"""Aerospike filter expressions (FILTER_EXP field, type 43): compile and evaluate.

The wire form is MessagePack: a call is an array ``[op_code, args...]``, literals stand for
themselves (lists are quoted as ``[126, list]``).  Supported:

* comparisons ``EQ NE GT GE LT LE`` (1-6) on int, float, string, blob, bool, list and map values;
  ``CMP_REGEX`` (7);
* logic ``AND OR NOT EXCLUSIVE`` (16-19) with Aerospike's three-valued logic (a missing bin makes a
  comparison *unknown*; ``unknown AND false`` is false, ``unknown OR true`` is true);
* arithmetic ``ADD SUB MUL DIV POW LOG MOD ABS FLOOR CEIL TO_INT TO_FLOAT`` (20-31), integer bit ops
  (32-38), ``MIN MAX`` (50, 51);
* record metadata ``DIGEST_MODULO DEVICE_SIZE LAST_UPDATE SINCE_UPDATE VOID_TIME TTL SET_NAME
  KEY_EXISTS IS_TOMBSTONE MEMORY_SIZE RECORD_SIZE`` (64-74);
* ``KEY BIN BIN_TYPE`` (80-82), ``COND VAR LET QUOTED`` (123-126).

Anything else (CDT/bit/HLL calls, geo) raises :class:`ExpError`; the server answers it with
result code 4 (PARAMETER), so an expression the server cannot evaluate is never treated as passing.
A filter whose value is not ``True`` (false or unknown) filters the record out (code 27).
"""

from __future__ import annotations

import math
import re
import struct

from fsplug.testing.aerospike_server import msgpack
from fsplug.testing.aerospike_server.protocol import (
    PT_BLOB, PT_BOOL, PT_CSHARP_BLOB, PT_ERLANG_BLOB, PT_FLOAT, PT_GEOJSON, PT_HLL, PT_INTEGER,
    PT_JAVA_BLOB, PT_LIST, PT_MAP, PT_PHP_BLOB, PT_PYTHON_BLOB, PT_RUBY_BLOB, PT_STRING,
    particle_to_python,
)

__all__ = ["ExpError", "compile_filter", "UNKNOWN"]

# Expression value types as the wire names them (BIN and KEY calls carry one).
T_NIL, T_BOOL, T_INT, T_STR, T_LIST, T_MAP, T_BLOB, T_FLOAT, T_GEO, T_HLL = range(10)
T_AUTO = -1  # not known statically

_PTYPE_TO_T = {PT_INTEGER: T_INT, PT_FLOAT: T_FLOAT, PT_STRING: T_STR, PT_BOOL: T_BOOL,
               PT_LIST: T_LIST, PT_MAP: T_MAP, PT_GEOJSON: T_GEO, PT_HLL: T_HLL}
for _pt in (PT_BLOB, PT_JAVA_BLOB, PT_CSHARP_BLOB, PT_PYTHON_BLOB, PT_RUBY_BLOB, PT_PHP_BLOB,
            PT_ERLANG_BLOB):
    _PTYPE_TO_T[_pt] = T_BLOB

EQ, NE, GT, GE, LT, LE, CMP_REGEX, CMP_GEO = 1, 2, 3, 4, 5, 6, 7, 8
AND, OR, NOT, EXCLUSIVE = 16, 17, 18, 19
(ADD, SUB, MUL, DIV, POW, LOG, MOD, ABS, FLOOR, CEIL, TO_INT, TO_FLOAT, INT_AND, INT_OR, INT_XOR,
 INT_NOT, INT_LSHIFT, INT_RSHIFT, INT_ARSHIFT, INT_COUNT, INT_LSCAN, INT_RSCAN) = range(20, 42)
MIN, MAX = 50, 51
(DIGEST_MODULO, DEVICE_SIZE, LAST_UPDATE, SINCE_UPDATE, VOID_TIME, TTL, SET_NAME, KEY_EXISTS,
 IS_TOMBSTONE, MEMORY_SIZE, RECORD_SIZE) = range(64, 75)
KEY, BIN, BIN_TYPE = 80, 81, 82
COND, VAR, LET, QUOTED, CALL = 123, 124, 125, 126, 127


class ExpError(ValueError):
    """An expression this server cannot build or evaluate (answered with code 4)."""


class _Unknown:
    __slots__ = ()

    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = _Unknown()

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _wrap64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


class EvalContext:
    """What an expression may look at: the record (or None), its digest and the clock."""

    __slots__ = ("rec", "digest", "now_cl", "now_ns", "vars", "_cache")

    def __init__(self, rec, digest: bytes, now_cl: int, now_ns: int):
        self.rec = rec
        self.digest = digest
        self.now_cl = now_cl
        self.now_ns = now_ns
        self.vars = {}
        self._cache = {}

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
            raise ExpError("geojson literals are not supported")
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
    def __init__(self):
        self.lets: list[set] = []

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
            raise ExpError(f"unsupported expression op {code}")
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

    def regex(self, code, args):
        if len(args) != 3:
            raise ExpError("regex compare takes flags, pattern and a string")
        flags, pattern, target = args
        if not isinstance(flags, int):
            raise ExpError("regex flags must be an integer")
        pat, pt = _literal(pattern)
        if pt != T_STR:
            raise ExpError("regex pattern must be a string")
        reflags = 0
        if flags & 2:
            reflags |= re.IGNORECASE
        if flags & 8:
            reflags |= re.MULTILINE
        try:
            rx = re.compile(pat, reflags)
        except re.error as e:
            raise ExpError(f"bad regex: {e}") from None
        ft, tt = self.build(target)
        if tt not in (T_STR, T_AUTO):
            raise ExpError("regex target must be a string")

        def f(ctx):
            s = ft(ctx)
            if not isinstance(s, str):
                return UNKNOWN
            return rx.search(s) is not None
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

    def exclusive(self, code, args):
        fns = self._bools(args)

        def f(ctx):
            n = 0
            for fn in fns:
                v = fn(ctx)
                if not isinstance(v, bool):
                    return UNKNOWN
                n += v
            return n == 1
        return f, T_BOOL

    # -- arithmetic ----------------------------------------------------------------------------

    def _nums(self, args, want=None):
        fns, types = [], set()
        for a in args:
            fn, t = self.build(a)
            if t not in (T_INT, T_FLOAT, T_AUTO):
                raise ExpError("arithmetic needs numeric arguments")
            fns.append(fn)
            if t != T_AUTO:
                types.add(t)
        if len(types) > 1:
            raise ExpError("arithmetic arguments mix int and float")
        t = types.pop() if types else T_AUTO
        if want is not None and t not in (want, T_AUTO):
            raise ExpError("wrong numeric type")
        return fns, t

    def arith(self, code, args):
        if not args:
            raise ExpError("arithmetic needs arguments")
        fns, t = self._nums(args)

        def f(ctx):
            vals = []
            for fn in fns:
                v = fn(ctx)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return UNKNOWN
                vals.append(v)
            if len({type(v) for v in vals}) > 1:
                return UNKNOWN
            is_int = isinstance(vals[0], int)
            acc = vals[0]
            try:
                if code == ADD:
                    for v in vals[1:]:
                        acc += v
                elif code == SUB:
                    if len(vals) == 1:
                        acc = -acc
                    for v in vals[1:]:
                        acc -= v
                elif code == MUL:
                    for v in vals[1:]:
                        acc *= v
                elif code == DIV:
                    if len(vals) == 1:
                        vals = [1 if is_int else 1.0, acc]
                        acc = vals[0]
                    for v in vals[1:]:
                        if is_int:
                            if v == 0:
                                return UNKNOWN
                            q = abs(acc) // abs(v)
                            acc = q if (acc >= 0) == (v >= 0) else -q
                        else:
                            acc = acc / v if v else (math.copysign(math.inf, acc) if acc else math.nan)
                elif code == MOD:
                    if len(vals) != 2 or vals[1] == 0:
                        return UNKNOWN
                    acc = int(math.fmod(vals[0], vals[1]))
                elif code == MIN:
                    acc = min(vals)
                elif code == MAX:
                    acc = max(vals)
            except (OverflowError, ZeroDivisionError):
                return UNKNOWN
            return _wrap64(acc) if is_int else acc
        return f, t

    def unary_num(self, code, args):
        if len(args) != 1:
            raise ExpError("unary numeric op takes one argument")
        fns, t = self._nums(args)
        fn = fns[0]
        if code in (FLOOR, CEIL) and t == T_INT:
            raise ExpError("floor/ceil need a float")
        out_t = {TO_INT: T_INT, TO_FLOAT: T_FLOAT, FLOOR: T_FLOAT, CEIL: T_FLOAT}.get(code, t)

        def f(ctx):
            v = fn(ctx)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return UNKNOWN
            if code == ABS:
                return _wrap64(abs(v)) if isinstance(v, int) else abs(v)
            if code == FLOOR:
                return float(math.floor(v))
            if code == CEIL:
                return float(math.ceil(v))
            if code == TO_INT:
                if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                    return UNKNOWN
                return max(_I64_MIN, min(_I64_MAX, int(v)))
            if code == TO_FLOAT:
                return float(v)
            return UNKNOWN
        return f, out_t

    def pow_log(self, code, args):
        if len(args) != 2:
            raise ExpError("pow/log take two arguments")
        fns, _t = self._nums(args, want=T_FLOAT)

        def f(ctx):
            a, b = fns[0](ctx), fns[1](ctx)
            if not isinstance(a, float) or not isinstance(b, float):
                return UNKNOWN
            try:
                return a ** b if code == POW else math.log(a, b)
            except (ValueError, ZeroDivisionError, OverflowError):
                return math.nan
        return f, T_FLOAT

    def int_bits(self, code, args):
        fns, _t = self._nums(args, want=T_INT)

        def f(ctx):
            vals = []
            for fn in fns:
                v = fn(ctx)
                if isinstance(v, bool) or not isinstance(v, int):
                    return UNKNOWN
                vals.append(v)
            a = vals[0]
            if code == INT_AND:
                for v in vals[1:]:
                    a &= v
            elif code == INT_OR:
                for v in vals[1:]:
                    a |= v
            elif code == INT_XOR:
                for v in vals[1:]:
                    a ^= v
            elif code == INT_NOT:
                a = ~a
            elif code == INT_LSHIFT:
                a = _wrap64(a << (vals[1] & 63))
            elif code == INT_RSHIFT:
                a = _wrap64((a & ((1 << 64) - 1)) >> (vals[1] & 63))
            elif code == INT_ARSHIFT:
                a = a >> (vals[1] & 63)
            elif code == INT_COUNT:
                a = bin(a & ((1 << 64) - 1)).count("1")
            return _wrap64(a)
        return f, T_INT

    # -- metadata ------------------------------------------------------------------------------

    def meta(self, code, args):
        if code == DIGEST_MODULO:
            if len(args) != 1 or not isinstance(args[0], int) or args[0] <= 0:
                raise ExpError("digest modulo needs a positive integer")
            mod = args[0]
            # The server takes the modulo of the digest's bytes 8-11 as a little-endian u32.
            return (lambda ctx: struct.unpack_from("<I", ctx.digest, 8)[0] % mod), T_INT
        if code in (DEVICE_SIZE, MEMORY_SIZE, RECORD_SIZE):
            if code == MEMORY_SIZE:
                return (lambda ctx: 0), T_INT
            return (lambda ctx: ctx.rec.size() if ctx.rec is not None else 0), T_INT
        if code == LAST_UPDATE:
            return (lambda ctx: ctx.rec.lut if ctx.rec is not None else 0), T_INT
        if code == SINCE_UPDATE:
            return (lambda ctx: (ctx.now_ns - ctx.rec.lut) // 1_000_000
                    if ctx.rec is not None else 0), T_INT
        if code == VOID_TIME:
            # ns since Unix epoch, -1 when the record never expires
            def vt(ctx):
                if ctx.rec is None or not ctx.rec.void_time:
                    return -1
                return (ctx.rec.void_time + 1262304000) * 1_000_000_000
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
        if code == IS_TOMBSTONE:
            return (lambda ctx: False), T_BOOL
        raise ExpError(f"unsupported metadata op {code}")

    def key(self, code, args):
        if len(args) != 1 or not isinstance(args[0], int):
            raise ExpError("KEY takes a type")
        want = args[0]

        def f(ctx):
            if ctx.rec is None or ctx.rec.key is None:
                return UNKNOWN
            k = ctx.rec.key
            ptype = k[0]
            if _PTYPE_TO_T.get(ptype) != want:
                return UNKNOWN
            return particle_to_python(ptype, k[1:])
        return f, want

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

    def cond(self, code, args):
        if len(args) < 3 or len(args) % 2 != 1:
            raise ExpError("COND takes condition/value pairs and a default")
        pairs = []
        types = set()
        for i in range(0, len(args) - 1, 2):
            c, ct = self.build(args[i])
            if ct not in (T_BOOL, T_AUTO):
                raise ExpError("COND condition must be boolean")
            v, vt = self.build(args[i + 1])
            pairs.append((c, v))
            types.add(vt)
        d, dt = self.build(args[-1])
        types.add(dt)
        types.discard(T_AUTO)
        types.discard(T_NIL)

        def f(ctx):
            for c, v in pairs:
                r = c(ctx)
                if r is True:
                    return v(ctx)
                if r is not False:
                    return UNKNOWN
            return d(ctx)
        return f, (types.pop() if len(types) == 1 else T_AUTO)

    def let(self, code, args):
        if len(args) < 3 or len(args) % 2 != 1:
            raise ExpError("LET takes name/value pairs and a scope expression")
        defs = []
        for i in range(0, len(args) - 1, 2):
            name = _name(args[i])
            fn, _t = self.build(args[i + 1])
            defs.append((name, fn))
        body, bt = self.build(args[-1])

        def f(ctx):
            saved = dict(ctx.vars)
            try:
                for name, fn in defs:
                    ctx.vars[name] = fn(ctx)
                return body(ctx)
            finally:
                ctx.vars = saved
        return f, bt

    def var(self, code, args):
        if len(args) != 1:
            raise ExpError("VAR takes a name")
        name = _name(args[0])

        def f(ctx):
            try:
                return ctx.vars[name]
            except KeyError:
                raise ExpError(f"undefined variable {name!r}") from None
        return f, T_AUTO

    def quoted(self, code, args):
        if len(args) != 1:
            raise ExpError("QUOTED takes one value")
        v = _norm_container(args[0])
        t = T_LIST if isinstance(v, list) else _literal(args[0])[1]
        return (lambda ctx: v), t


_DISPATCH = {}
for _c in (EQ, NE, GT, GE, LT, LE):
    _DISPATCH[_c] = _Compiler.cmp
_DISPATCH[CMP_REGEX] = _Compiler.regex
_DISPATCH[AND] = _Compiler.and_
_DISPATCH[OR] = _Compiler.or_
_DISPATCH[NOT] = _Compiler.not_
_DISPATCH[EXCLUSIVE] = _Compiler.exclusive
for _c in (ADD, SUB, MUL, DIV, MOD, MIN, MAX):
    _DISPATCH[_c] = _Compiler.arith
for _c in (ABS, FLOOR, CEIL, TO_INT, TO_FLOAT):
    _DISPATCH[_c] = _Compiler.unary_num
for _c in (POW, LOG):
    _DISPATCH[_c] = _Compiler.pow_log
for _c in (INT_AND, INT_OR, INT_XOR, INT_NOT, INT_LSHIFT, INT_RSHIFT, INT_ARSHIFT, INT_COUNT):
    _DISPATCH[_c] = _Compiler.int_bits
for _c in range(DIGEST_MODULO, RECORD_SIZE + 1):
    _DISPATCH[_c] = _Compiler.meta
_DISPATCH[KEY] = _Compiler.key
_DISPATCH[BIN] = _Compiler.bin
_DISPATCH[BIN_TYPE] = _Compiler.bin_type
_DISPATCH[COND] = _Compiler.cond
_DISPATCH[LET] = _Compiler.let
_DISPATCH[VAR] = _Compiler.var
_DISPATCH[QUOTED] = _Compiler.quoted


class Filter:
    """A compiled filter expression; ``passes(ctx)`` is True only for a definite true."""

    __slots__ = ("fn", "source")

    def __init__(self, fn, source: bytes):
        self.fn = fn
        self.source = source

    def passes(self, rec, digest: bytes, now_cl: int, now_ns: int) -> bool:
        ctx = EvalContext(rec, digest, now_cl, now_ns)
        return self.fn(ctx) is True

    def evaluate(self, rec, digest: bytes = b"\0" * 20, now_cl: int = 0, now_ns: int = 0):
        return self.fn(EvalContext(rec, digest, now_cl, now_ns))


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
