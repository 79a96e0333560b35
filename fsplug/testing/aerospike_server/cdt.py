"""Map CDT operations: the subset a key-value feature store uses (Feast's Aerospike online store).

Supported, on map bins, optionally inside nested maps (context "map key"):
- modify: `map_put` (67) and `map_put_items` (68), creating the bin (and the record) when missing;
  the result is the map's new size;
- read: `map_get_by_key` (97) and `map_get_by_key_list` (107), returning nothing, the count, the
  key(s), the value(s) or the key/value pairs.

A request is the op's MessagePack payload: `[op, args...]`, or `[0xff, [ctx type, ctx value,
...], [op, args...]]` with a context. Every other CDT op, context type and return type is refused
with AEROSPIKE_ERR_UNSUPPORTED_FEATURE (16), like the rest of what this server does not do.

Behaviour as measured on a real CE 8.1 node (real-server-facts.md section 10): a read whose
context key is missing fails the record with OP_NOT_APPLICABLE (26); an op on a bin that is not
a map fails with INCOMPATIBLE_TYPE (12); a read of a missing bin returns nothing. A map created
with `MAP_KEY_ORDERED` is stored in key order behind the ordered-map header (`c7 00 01 c0`), as
a real node stores it; the client reads it back as a dict. A KEY_VALUE read answers a map
particle behind the `c7 00 08 c0` header, holding the found pairs in key order, which the client
turns into a flat list `[k1, v1, k2, v2, ...]` (`[]` when no key is found).
"""

from __future__ import annotations

from fsplug.testing.aerospike_server import msgpack
from fsplug.testing.aerospike_server import protocol as P

__all__ = ["CdtError", "modify", "read"]

MAP_PUT = 67
MAP_PUT_ITEMS = 68
MAP_GET_BY_KEY = 97
MAP_GET_BY_KEY_LIST = 107
CTX_MARKER = 0xFF
CTX_MAP_KEY = 0x22

RETURN_NONE = 0
RETURN_COUNT = 5
RETURN_KEY = 6
RETURN_VALUE = 7
RETURN_KEY_VALUE = 8
RETURN_INVERTED = 0x10000

MAP_ORDER_KEY = 0x01  # map flag: key ordered (KEY_VALUE_ORDERED is 0x03)
# Header pair (ext key, nil value) a real node puts in front of a KEY_VALUE result: the client
# decodes such a map into a flat [k1, v1, ...] list.
_KEY_VALUE_RESULT = msgpack.Ext(0x08, b"")


class CdtError(Exception):
    """A CDT op that fails the record with result code `rc`."""

    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


def _parse(payload) -> tuple[list, list]:
    try:
        req = msgpack.unpackb(bytes(payload))
    except (msgpack.MsgpackError, IndexError, ValueError):
        raise CdtError(P.AS_ERR_PARAMETER) from None
    if not isinstance(req, list) or not req or not isinstance(req[0], int):
        raise CdtError(P.AS_ERR_PARAMETER)
    ctx: list = []
    if req[0] == CTX_MARKER:
        if len(req) != 3 or not isinstance(req[1], list) or len(req[1]) % 2 or not isinstance(req[2], list):
            raise CdtError(P.AS_ERR_PARAMETER)
        ctx, req = req[1], req[2]
        if not req or not isinstance(req[0], int):
            raise CdtError(P.AS_ERR_PARAMETER)
        if any(t != CTX_MAP_KEY for t in ctx[0::2]):
            raise CdtError(P.AS_ERR_UNSUPPORTED_FEATURE)
    return ctx, req


def _load_map(bins: dict, name: str) -> tuple[dict | None, int]:
    """The bin's map without its flag header, and the header's flags (0 when it has none)."""
    b = bins.get(name)
    if b is None:
        return None, 0
    if b[0] != P.PT_MAP:
        raise CdtError(P.AS_ERR_INCOMPATIBLE_TYPE)
    m = P.particle_to_python(P.PT_MAP, b[1])
    flags = 0
    for k in m:
        if isinstance(k, msgpack.Ext):
            flags = k.type
    return {k: v for k, v in m.items() if not isinstance(k, msgpack.Ext)}, flags


def _descend(m: dict, ctx: list) -> dict:
    for key in ctx[1::2]:
        if not isinstance(m, dict) or key not in m:
            raise CdtError(P.AS_ERR_OP_NOT_APPLICABLE)
        m = m[key]
    if not isinstance(m, dict):
        raise CdtError(P.AS_ERR_INCOMPATIBLE_TYPE)
    return m


def _sort_key(k) -> tuple:
    # MessagePack type order, as the server orders keys of a key-ordered map: numbers, strings, blobs
    if isinstance(k, bool):
        return (1, k)
    if isinstance(k, (int, float)):
        return (2, k)
    if isinstance(k, str):
        return (3, k.encode("utf-8"))
    return (4, bytes(k) if isinstance(k, (bytes, bytearray)) else repr(k))


def _key_sorted(m: dict) -> dict:
    return dict(sorted(m.items(), key=lambda kv: _sort_key(kv[0])))


def _pack_map(m: dict, flags: int) -> bytes:
    """A map particle as a real node stores it: an ordered map sorted, behind its flag header."""
    if flags & MAP_ORDER_KEY:
        return msgpack.packb({msgpack.Ext(flags, b""): None, **_key_sorted(m)})
    return msgpack.packb(m)


def modify(bins: dict, name: str, payload) -> tuple[int, bytes]:
    """Apply one CDT modify op to `bins` (name -> (particle type, raw)); returns the result particle."""
    ctx, req = _parse(payload)
    op, args = req[0], req[1:]
    if op not in (MAP_PUT, MAP_PUT_ITEMS):
        raise CdtError(P.AS_ERR_UNSUPPORTED_FEATURE)
    root, flags = _load_map(bins, name)
    if root is None:
        if ctx:
            raise CdtError(P.AS_ERR_OP_NOT_APPLICABLE)
        root = {}
        # The map policy's order attribute (after the key and value, or after the items)
        # decides the order of a map the op creates; an existing map keeps its own.
        attr = args[2] if op == MAP_PUT and len(args) > 2 else args[1] if op == MAP_PUT_ITEMS \
            and len(args) > 1 else 0
        flags = attr & 0x03 if isinstance(attr, int) and not isinstance(attr, bool) else 0
    target = _descend(root, ctx)
    if op == MAP_PUT:
        if len(args) < 2:
            raise CdtError(P.AS_ERR_PARAMETER)
        target[args[0]] = args[1]
    else:
        if not args or not isinstance(args[0], dict):
            raise CdtError(P.AS_ERR_PARAMETER)
        target.update(args[0])
    bins[name] = (P.PT_MAP, _pack_map(root, flags))
    return P.python_to_particle(len(target))


def read(bins: dict, name: str, payload) -> tuple[int, bytes]:
    """Evaluate one CDT read op on `bins`; returns the result particle (null for a missing bin)."""
    ctx, req = _parse(payload)
    op, args = req[0], req[1:]
    if op not in (MAP_GET_BY_KEY, MAP_GET_BY_KEY_LIST) or len(args) < 2:
        raise CdtError(P.AS_ERR_UNSUPPORTED_FEATURE if op not in (MAP_GET_BY_KEY, MAP_GET_BY_KEY_LIST)
                       else P.AS_ERR_PARAMETER)
    rtype = args[0]
    if not isinstance(rtype, int) or rtype & RETURN_INVERTED or rtype not in (
            RETURN_NONE, RETURN_COUNT, RETURN_KEY, RETURN_VALUE, RETURN_KEY_VALUE):
        raise CdtError(P.AS_ERR_UNSUPPORTED_FEATURE)
    if op == MAP_GET_BY_KEY_LIST and not isinstance(args[1], list):
        raise CdtError(P.AS_ERR_PARAMETER)
    root, _flags = _load_map(bins, name)
    if root is None:
        return P.PT_NULL, b""
    target = _descend(root, ctx)
    wanted = [args[1]] if op == MAP_GET_BY_KEY else args[1]
    found = {k: target[k] for k in sorted({k for k in wanted if k in target}, key=_sort_key)}
    if rtype == RETURN_NONE:
        return P.PT_NULL, b""
    if rtype == RETURN_COUNT:
        return P.python_to_particle(len(found))
    if rtype == RETURN_KEY_VALUE:
        return P.PT_MAP, msgpack.packb({_KEY_VALUE_RESULT: None, **found})
    if op == MAP_GET_BY_KEY:
        (k,) = wanted
        if k not in found:
            return P.PT_NULL, b""
        return P.python_to_particle(k if rtype == RETURN_KEY else found[k])
    if rtype == RETURN_KEY:
        return P.python_to_particle(list(found))
    return P.python_to_particle(list(found.values()))  # RETURN_VALUE
