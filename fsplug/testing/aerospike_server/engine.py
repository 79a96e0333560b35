"""Command execution: single-record reads/writes/deletes and batches against the storage.

Everything here is socket-free: ``Engine.handle_msg(body)`` takes one AS_MSG body and returns the
framed response bytes, so it can be unit-tested without the network.  The order of checks follows
the real server's write path (existence policy, generation, set name, filter, key, TTL, ops,
size), so the first failing check decides the result code as it would on Aerospike.
"""

from __future__ import annotations

import struct

from fsplug.testing.aerospike_server import cdt
from fsplug.testing.aerospike_server import protocol as P
from fsplug.testing.aerospike_server import query
from fsplug.testing.aerospike_server.expressions import ExpError, ExpUnsupported, compile_filter
from fsplug.testing.aerospike_server.storage import (
    END_MARK, TTL_DONT_UPDATE, TTL_NAMESPACE_DEFAULT, Namespace, Record,
)

_pack_q = struct.Struct(">q").pack
_unpack_q = struct.Struct(">q").unpack
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack

MAX_BIN_NAME = 15
# A batch reply record joins the current proto message only while the body stays within a real
# node's batch buffer: 128 KiB less its 32-byte header (batch.c, facts section 9).
BATCH_BODY_LIMIT = 128 * 1024 - 32

_READ_OP_TYPES = frozenset({P.OP_READ, P.OP_CDT_READ, P.OP_EXP_READ, P.OP_BITS_READ, P.OP_HLL_READ})
_MODIFY_OP_TYPES = frozenset({P.OP_INCR, P.OP_APPEND, P.OP_PREPEND})
_UNSUPPORTED_OPS = frozenset({P.OP_EXP_READ, P.OP_EXP_MODIFY,
                              P.OP_BITS_READ, P.OP_BITS_MODIFY, P.OP_HLL_READ, P.OP_HLL_MODIFY})
_STRINGY = frozenset({P.PT_STRING, P.PT_BLOB, P.PT_JAVA_BLOB, P.PT_CSHARP_BLOB, P.PT_PYTHON_BLOB,
                      P.PT_RUBY_BLOB, P.PT_PHP_BLOB, P.PT_ERLANG_BLOB})

_LAST_MSG = P.frame(P.PROTO_TYPE_AS_MSG, P.encode_msg(0, info3=P.INFO3_LAST))


class Outcome:
    """Result of one record command."""

    __slots__ = ("rc", "generation", "void_time", "ops")

    def __init__(self, rc: int, generation: int = 0, void_time: int = 0, ops=()):
        self.rc = rc
        self.generation = generation
        self.void_time = void_time
        self.ops = ops


NOT_FOUND = Outcome(P.AS_ERR_NOT_FOUND)


def classify(msg: P.Msg) -> str:
    """Name the command a message carries, as fault injection and ``stats`` count it."""
    f = msg.fields
    if P.FIELD_BATCH_INDEX in f or P.FIELD_BATCH_INDEX_WITH_SET in f:
        return "batch"  # refined by the batch handler
    if not P.UDF_FIELDS.isdisjoint(f):
        return "udf" if P.FIELD_DIGEST_RIPE in f else "query"
    if P.FIELD_DIGEST_RIPE not in f or not P.QUERY_FIELDS.isdisjoint(f):
        if P.FIELD_INDEX_RANGE in f or P.FIELD_INDEX_EXPRESSION in f or P.FIELD_INDEX_NAME in f:
            return "query"
        return "scan" if P.FIELD_DIGEST_RIPE not in f else "query"
    if msg.info2 & P.INFO2_WRITE:
        if msg.info2 & P.INFO2_DELETE:
            return "remove"
        ops = msg.ops
        if ops and all(o.op == P.OP_TOUCH for o in ops):
            return "touch"
        if msg.info1 & P.INFO1_READ or any(o.op != P.OP_WRITE for o in ops):
            return "operate"
        return "put"
    if msg.info1 & P.INFO1_NOBINDATA:
        return "exists"
    if any(o.op != P.OP_READ for o in msg.ops):
        return "operate"
    return "get"


def classify_batch(rows) -> str:
    reads = deletes = 0
    for r in rows:
        if r.info2 & P.INFO2_WRITE:
            if r.info2 & P.INFO2_DELETE:
                deletes += 1
        else:
            reads += 1
    if reads == len(rows):
        return "batch_read"
    if deletes == len(rows):
        return "batch_remove"
    return "batch_write"


class Engine:
    """Executes AS_MSG commands for one node against shared namespaces."""

    def __init__(self, namespaces: dict[str, Namespace], clock, durable_delete: str = "refuse"):
        self.namespaces = namespaces
        self.clock = clock
        if durable_delete not in ("accept", "refuse"):
            raise ValueError("durable_delete must be 'accept' or 'refuse'")
        # A Community server refuses durable deletes (AS_ERR_ENTERPRISE_ONLY, 25).
        self.durable_delete_rc = P.AS_OK if durable_delete == "accept" else P.AS_ERR_ENTERPRISE_ONLY

    # -- helpers -------------------------------------------------------------------------------

    def wire_void_time(self, void_time: int) -> int:
        """The record ttl field: expiry as the client's clock sees it (server clock offset out)."""
        if not void_time:
            return 0
        return max(1, void_time - int(self.clock.offset))

    def _response(self, out: Outcome, index: int = 0) -> bytes:
        return P.encode_msg(out.rc, out.generation, self.wire_void_time(out.void_time), out.ops,
                            transaction_ttl=index)

    def error_response(self, rc: int, *, last: bool = False) -> bytes:
        body = P.encode_msg(rc, info3=P.INFO3_LAST if last else 0)
        return P.frame(P.PROTO_TYPE_AS_MSG, body)

    # -- entry point ---------------------------------------------------------------------------

    def execute_single(self, msg: P.Msg) -> bytes:
        """One single-record command -> framed response."""
        f = msg.fields
        ns_b = f.get(P.FIELD_NAMESPACE)
        digest = f.get(P.FIELD_DIGEST_RIPE)
        out = self.run_record(ns_b, f.get(P.FIELD_SETNAME), digest, f.get(P.FIELD_KEY),
                              f.get(P.FIELD_FILTER_EXP), msg.info1, msg.info2, msg.info3,
                              msg.generation, msg.record_ttl, msg.ops)
        return P.frame(P.PROTO_TYPE_AS_MSG, self._response(out))

    def execute_batch(self, msg: P.Msg, rows, send) -> None:
        """Run every row; stream responses through ``send(bytes)``; end with a LAST message.

        A batch-level filter that does not build fails the whole batch as on a real node: one
        AS_MSG with the error code, flagged LAST, and no row replies.
        """
        parent_filter = msg.fields.get(P.FIELD_FILTER_EXP)
        if parent_filter is not None and len(parent_filter):
            try:
                compile_filter(parent_filter)
            except ExpError as e:
                send(self.error_response(_exp_rc(e), last=True))
                return
        buf = bytearray()
        ns_b = set_b = None
        for row in rows:
            rf = row.fields
            if not row.repeat:
                ns_b = rf.get(P.FIELD_NAMESPACE)
                set_b = rf.get(P.FIELD_SETNAME)
            if not P.UDF_FIELDS.isdisjoint(rf):
                out = Outcome(P.AS_ERR_UNSUPPORTED_FEATURE)
            else:
                filt = rf.get(P.FIELD_FILTER_EXP, parent_filter)
                out = self.run_record(ns_b, set_b, row.digest, rf.get(P.FIELD_KEY), filt,
                                      row.info1, row.info2, row.info3, row.generation, row.ttl,
                                      row.ops)
            reply = self._response(out, row.index)
            if buf and len(buf) + len(reply) > BATCH_BODY_LIMIT:
                send(P.frame(P.PROTO_TYPE_AS_MSG, bytes(buf)))
                buf.clear()
            buf += reply
        # The LAST marker is always a proto message of its own (sent with the last data).
        if buf:
            send(P.frame(P.PROTO_TYPE_AS_MSG, bytes(buf)) + _LAST_MSG)
        else:
            send(_LAST_MSG)

    def execute_query(self, msg: P.Msg, send) -> None:
        """A scan or a query without a secondary-index filter (see query.py)."""
        query.run_query(self, msg, send, _exp_rc)

    # -- one record ----------------------------------------------------------------------------

    def run_record(self, ns_b, set_b, digest, key_b, filter_b, info1, info2, info3, generation,
                   ttl, ops) -> Outcome:
        if ns_b is None:
            return Outcome(P.AS_ERR_PARAMETER)
        ns = self.namespaces.get(bytes(ns_b).decode("utf-8", "replace"))
        if ns is None:
            return Outcome(P.AS_ERR_NAMESPACE)
        if digest is None or len(digest) != 20:
            return Outcome(P.AS_ERR_PARAMETER)
        digest = bytes(digest)
        filt = None
        if filter_b is not None and len(filter_b):
            try:
                filt = compile_filter(filter_b)
            except ExpError as e:
                return Outcome(_exp_rc(e))
        set_name = bytes(set_b).decode("utf-8", "replace") if set_b is not None else ""
        try:
            with ns.lock:
                if info2 & P.INFO2_WRITE:
                    if info2 & P.INFO2_DELETE:
                        return self._delete(ns, digest, filt, info2, generation)
                    return self._write(ns, digest, set_name, key_b, filt, info1, info2, info3,
                                       generation, ttl, ops)
                return self._read(ns, digest, filt, info1, ops)
        except ExpError as e:
            return Outcome(_exp_rc(e))

    def _passes(self, filt, rec, digest) -> bool:
        return filt.passes(rec, digest, self.clock.now_cl(), self.clock.now_ms())

    def _read(self, ns: Namespace, digest, filt, info1, ops) -> Outcome:
        for o in ops:
            if o.op != P.OP_READ and o.op != P.OP_CDT_READ:
                return Outcome(P.AS_ERR_UNSUPPORTED_FEATURE)
        rec = ns.get(digest)
        if rec is None:
            return NOT_FOUND
        if filt is not None and not self._passes(filt, rec, digest):
            return Outcome(P.AS_ERR_FILTERED_OUT, rec.generation, rec.void_time)
        if info1 & P.INFO1_NOBINDATA:
            return Outcome(P.AS_OK, rec.generation, rec.void_time)
        bins = rec.bins
        if info1 & P.INFO1_GET_ALL or (ops and not ops[0].name and len(ops) == 1):
            resp = [(P.OP_READ, pt, name, raw) for name, (pt, raw) in bins.items()]
        else:
            resp = []
            for o in ops:
                if o.op == P.OP_CDT_READ:
                    try:
                        pt, raw = cdt.read(bins, o.name, o.value)
                    except cdt.CdtError as e:
                        return Outcome(e.rc, rec.generation, rec.void_time)
                    resp.append((o.op, pt, o.name, raw))
                    continue
                b = bins.get(o.name)
                if b is not None:
                    resp.append((P.OP_READ, b[0], o.name, b[1]))
        return Outcome(P.AS_OK, rec.generation, rec.void_time, resp)

    def _delete(self, ns: Namespace, digest, filt, info2, generation) -> Outcome:
        # A real CE node refuses a durable delete before it looks the record up, so before the
        # not-found, generation and filter checks (delete.c, facts section 8).
        if info2 & P.INFO2_DURABLE_DELETE and self.durable_delete_rc:
            return Outcome(self.durable_delete_rc)
        rec = ns.get(digest)
        if rec is None:
            return NOT_FOUND
        if not _generation_ok(rec.generation, info2, generation):
            return Outcome(P.AS_ERR_GENERATION, rec.generation, rec.void_time)
        if filt is not None and not self._passes(filt, rec, digest):
            return Outcome(P.AS_ERR_FILTERED_OUT, rec.generation, rec.void_time)
        ns.delete(digest)
        return Outcome(P.AS_OK)

    def _write(self, ns: Namespace, digest, set_name, key_b, filt, info1, info2, info3,
               generation, ttl, ops) -> Outcome:
        # Policy checks that need no record (write_master_policies).
        if not ops:
            return Outcome(P.AS_ERR_PARAMETER)
        must_not_create = bool(info3 & (P.INFO3_UPDATE_ONLY | P.INFO3_REPLACE_ONLY))
        is_replace = bool(info3 & (P.INFO3_CREATE_OR_REPLACE | P.INFO3_REPLACE_ONLY))
        respond_all = bool(info2 & P.INFO2_RESPOND_ALL_OPS)
        has_read = False
        for o in ops:
            op = o.op
            if op == P.OP_TOUCH:
                if is_replace:
                    return Outcome(P.AS_ERR_PARAMETER)
                must_not_create = True
                continue
            if len(o.name.encode("utf-8")) > MAX_BIN_NAME:
                return Outcome(P.AS_ERR_BIN_NAME)
            if op in _UNSUPPORTED_OPS:
                return Outcome(P.AS_ERR_UNSUPPORTED_FEATURE)
            if op == P.OP_WRITE:
                if o.ptype == P.PT_NULL and is_replace:
                    return Outcome(P.AS_ERR_PARAMETER)
            elif op in _MODIFY_OP_TYPES or op == P.OP_DELETE_ALL:
                if is_replace:
                    return Outcome(P.AS_ERR_PARAMETER)
            elif op == P.OP_READ or op == P.OP_CDT_READ:
                has_read = True
            elif op == P.OP_CDT_MODIFY:
                if is_replace:
                    return Outcome(P.AS_ERR_PARAMETER)
            else:
                return Outcome(P.AS_ERR_PARAMETER)
        if has_read and not info1 & P.INFO1_READ:
            return Outcome(P.AS_ERR_PARAMETER)

        rec = ns.get(digest)
        created = rec is None
        if created and must_not_create:
            return NOT_FOUND
        cur_gen = 0 if rec is None else rec.generation
        cur_vt = 0 if rec is None else rec.void_time
        if info2 & P.INFO2_CREATE_ONLY and not created:
            return Outcome(P.AS_ERR_RECORD_EXISTS, cur_gen, cur_vt)
        if not _generation_ok(cur_gen, info2, generation):
            return Outcome(P.AS_ERR_GENERATION, cur_gen, cur_vt)
        if rec is not None and rec.set_name != set_name:
            # The server checks the message's set name against the record's on every update
            # (no set in the message for a record in a set is a mismatch too).
            return Outcome(P.AS_ERR_PARAMETER, cur_gen, cur_vt)
        if filt is not None and not created and not self._passes(filt, rec, digest):
            return Outcome(P.AS_ERR_FILTERED_OUT, cur_gen, cur_vt)
        stored_key = None if rec is None else rec.key
        if key_b is not None and len(key_b):
            key_b = bytes(key_b)
            if stored_key is not None and stored_key != key_b:
                return Outcome(P.AS_ERR_KEY_MISMATCH, cur_gen, cur_vt)
            stored_key = key_b
        if ttl == TTL_DONT_UPDATE and created:
            ttl = TTL_NAMESPACE_DEFAULT
        if not ns.ttl_is_valid(ttl):
            return Outcome(P.AS_ERR_PARAMETER, cur_gen, cur_vt)
        if ns.ttl_is_disallowed(ttl):
            return Outcome(P.AS_ERR_FORBIDDEN, cur_gen, cur_vt)

        bins = {} if (rec is None or is_replace) else dict(rec.bins)
        resp = []
        for o in ops:
            op = o.op
            if op == P.OP_WRITE:
                if o.ptype == P.PT_NULL:
                    bins.pop(o.name, None)
                else:
                    if o.ptype not in P.WRITABLE_PARTICLES:
                        return Outcome(P.AS_ERR_PARAMETER, cur_gen, cur_vt)
                    bins[o.name] = (o.ptype, o.value)
                if respond_all:
                    resp.append((op, P.PT_NULL, o.name, b""))
            elif op == P.OP_READ:
                if not o.name:
                    resp.extend((P.OP_READ, pt, n, raw) for n, (pt, raw) in bins.items())
                    continue
                b = bins.get(o.name)
                if b is not None:
                    resp.append((P.OP_READ, b[0], o.name, b[1]))
                elif respond_all:
                    resp.append((P.OP_READ, P.PT_NULL, o.name, b""))
            elif op == P.OP_CDT_MODIFY or op == P.OP_CDT_READ:
                try:
                    pt, raw = (cdt.modify if op == P.OP_CDT_MODIFY else cdt.read)(bins, o.name, o.value)
                except cdt.CdtError as e:
                    return Outcome(e.rc, cur_gen, cur_vt)
                resp.append((op, pt, o.name, raw))
            elif op == P.OP_TOUCH:
                continue
            elif op == P.OP_DELETE_ALL:
                bins.clear()
                if respond_all:
                    resp.append((op, P.PT_NULL, o.name, b""))
            else:  # INCR / APPEND / PREPEND
                rc = _modify(bins, o)
                if rc:
                    return Outcome(rc, cur_gen, cur_vt)
                if respond_all:
                    resp.append((op, P.PT_NULL, o.name, b""))

        if not bins:
            # The write leaves no bins: it is a delete.
            if created:
                return NOT_FOUND
            if info2 & P.INFO2_DURABLE_DELETE and self.durable_delete_rc:
                return Outcome(self.durable_delete_rc, cur_gen, cur_vt)
            ns.delete(digest)
            return Outcome(P.AS_OK, 0, 0, resp)

        # The last-update time has the real node's resolution: whole milliseconds.
        new = Record(set_name if rec is None else rec.set_name, stored_key, bins,
                     (cur_gen % 0xFFFF) + 1, ns.void_time_for(ttl, rec), self.clock.now_ms())
        if new.flat_size() + END_MARK > ns.max_record_size:
            return Outcome(P.AS_ERR_RECORD_TOO_BIG, cur_gen, cur_vt)
        ns.put(digest, new)
        return Outcome(P.AS_OK, new.generation, new.void_time, resp)


def _exp_rc(e: ExpError) -> int:
    """Result code for an expression that does not build: 16 for what this server leaves out,
    4 (PARAMETER) for what a real node refuses too."""
    return P.AS_ERR_UNSUPPORTED_FEATURE if isinstance(e, ExpUnsupported) else P.AS_ERR_PARAMETER


def _generation_ok(cur: int, info2: int, want: int) -> bool:
    if info2 & P.INFO2_GENERATION:
        return cur == want
    if info2 & P.INFO2_GENERATION_GT:
        return want > cur
    return True


def _modify(bins: dict, o: P.Op) -> int:
    """Apply INCR/APPEND/PREPEND to ``bins``; return a result code (0 = ok)."""
    cur = bins.get(o.name)
    if o.op == P.OP_INCR:
        if o.ptype == P.PT_INTEGER:
            if len(o.value) != 8:
                return P.AS_ERR_PARAMETER
            delta = _unpack_q(o.value)[0]
            if cur is None:
                bins[o.name] = (P.PT_INTEGER, o.value)
                return 0
            if cur[0] != P.PT_INTEGER:
                return P.AS_ERR_INCOMPATIBLE_TYPE
            v = _unpack_q(cur[1])[0] + delta
            v = ((v + (1 << 63)) % (1 << 64)) - (1 << 63)
            bins[o.name] = (P.PT_INTEGER, _pack_q(v))
            return 0
        if o.ptype == P.PT_FLOAT:
            if len(o.value) != 8:
                return P.AS_ERR_PARAMETER
            if cur is None:
                bins[o.name] = (P.PT_FLOAT, o.value)
                return 0
            if cur[0] != P.PT_FLOAT:
                return P.AS_ERR_INCOMPATIBLE_TYPE
            bins[o.name] = (P.PT_FLOAT, _pack_d(_unpack_d(cur[1])[0] + _unpack_d(o.value)[0]))
            return 0
        return P.AS_ERR_INCOMPATIBLE_TYPE
    # APPEND / PREPEND
    if o.ptype not in _STRINGY:
        return P.AS_ERR_INCOMPATIBLE_TYPE
    if cur is None:
        bins[o.name] = (o.ptype, o.value)
        return 0
    if cur[0] != o.ptype:
        return P.AS_ERR_INCOMPATIBLE_TYPE
    value = cur[1] + o.value if o.op == P.OP_APPEND else o.value + cur[1]
    bins[o.name] = (o.ptype, value)
    return 0
