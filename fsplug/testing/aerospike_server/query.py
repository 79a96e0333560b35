"""Primary-index queries: what clients send for a scan, or a query with no secondary-index filter.

A client of today (C client 6+, so the Node.js, Python and Go clients; Java 6+) sends one AS_MSG
without a digest, carrying the namespace, the set (empty: the whole namespace), the partitions
to read (``PID_ARRAY``, u16 little-endian ids, and/or ``DIGEST_ARRAY``, a digest per partition to
resume after), ``INFO3_PARTITION_DONE`` (it understands partition-done messages), and optionally
bin names as READ ops, ``MAX_RECORDS`` (u64), a filter expression and ``INFO1_NOBINDATA``.

A real node (query.c ``basic_query_job``) answers, partition by partition in id order and each
in digest order, one AS_MSG per live record of the set that passes the filter: result 0, the
record's generation and void time, the fields namespace, digest, set (when the record has one)
and key (when it was stored), and a READ op per bin (only the selected ones that exist; a record
with none of them is not sent).  Records are packed into proto messages of a little over 1 MiB
(a message is sent once its body passes ``QUERY_CHUNK_LIMIT``).  A query the client marks short
(``INFO1_SHORT_QUERY``) ends with the LAST message inside the last data message; a long one (the
default) with a LAST message of its own.  A partition-done message is sent only for a partition
that is not available, which never happens here.  Errors found before the query starts are one
LAST message carrying the code.
"""

from __future__ import annotations

import struct

from fsplug.testing.aerospike_server import protocol as P
from fsplug.testing.aerospike_server.expressions import ExpError, compile_filter

QUERY_CHUNK_LIMIT = 1024 * 1024
N_PARTITIONS = 4096
DIGEST_SIZE = 20

_LAST_MSG_BODY = P.encode_msg(0, info3=P.INFO3_LAST)


class QueryError(Exception):
    def __init__(self, rc: int):
        super().__init__(rc)
        self.rc = rc


class _Plan:
    """What a query asks for, checked as basic_query_job_start checks it."""

    __slots__ = ("ns", "set_name", "pids", "resume", "bins", "max_records", "filt",
                 "no_bin_data", "short")

    def __init__(self, engine, msg: P.Msg, exp_rc):
        f = msg.fields
        if msg.info2 & P.INFO2_WRITE or not P.UDF_FIELDS.isdisjoint(f):
            raise QueryError(P.AS_ERR_UNSUPPORTED_FEATURE)  # background and UDF queries
        ns_b = f.get(P.FIELD_NAMESPACE)
        if ns_b is None:
            raise QueryError(P.AS_ERR_PARAMETER)
        self.ns = engine.namespaces.get(bytes(ns_b).decode("utf-8", "replace"))
        if self.ns is None:
            raise QueryError(P.AS_ERR_NAMESPACE)
        if not msg.info3 & P.INFO3_PARTITION_DONE:
            raise QueryError(P.AS_ERR_UNSUPPORTED_FEATURE)  # old-style scan
        set_b = f.get(P.FIELD_SETNAME)
        self.set_name = bytes(set_b).decode("utf-8", "replace") if set_b is not None else ""
        self.pids, self.resume = _partitions(f.get(P.FIELD_PID_ARRAY), f.get(P.FIELD_DIGEST_ARRAY))
        if P.FIELD_INDEX_RANGE in f:
            raise QueryError(P.AS_ERR_SINDEX_NOT_FOUND)  # this server has no secondary index
        self.bins = _bin_names(f.get(P.FIELD_QUERY_BINS), msg.ops)
        self.max_records = 0
        max_b = f.get(P.FIELD_MAX_RECORDS)
        if max_b is not None:
            if len(max_b) != 8:
                raise QueryError(P.AS_ERR_PARAMETER)
            self.max_records = struct.unpack(">Q", bytes(max_b))[0]
        self.filt = None
        filter_b = f.get(P.FIELD_FILTER_EXP)
        if filter_b is not None and len(filter_b):
            try:
                self.filt = compile_filter(filter_b)
            except ExpError as e:
                raise QueryError(exp_rc(e)) from None
        self.no_bin_data = bool(msg.info1 & P.INFO1_NOBINDATA)
        self.short = bool(msg.info1 & P.INFO1_SHORT_QUERY)


def _partitions(pid_b, digest_b) -> tuple[set[int], dict[int, bytes]]:
    if pid_b is None and digest_b is None:
        raise QueryError(P.AS_ERR_UNSUPPORTED_FEATURE)
    pids: set[int] = set()
    resume: dict[int, bytes] = {}
    if pid_b is not None:
        if len(pid_b) % 2:
            raise QueryError(P.AS_ERR_PARAMETER)
        for (pid,) in struct.iter_unpack("<H", bytes(pid_b)):
            if pid >= N_PARTITIONS:
                raise QueryError(P.AS_ERR_PARAMETER)
            pids.add(pid)
    if digest_b is not None:
        if len(digest_b) % DIGEST_SIZE:
            raise QueryError(P.AS_ERR_PARAMETER)
        raw = bytes(digest_b)
        for i in range(0, len(raw), DIGEST_SIZE):
            d = raw[i:i + DIGEST_SIZE]
            pid = P.partition_id(d)
            pids.add(pid)
            resume[pid] = d
    return pids, resume


def _bin_names(query_bins, ops) -> list[str] | None:
    """Selected bins: READ ops, or the older QUERY_BINS field (count, then length + name)."""
    if query_bins is not None and ops:
        raise QueryError(P.AS_ERR_PARAMETER)
    if ops:
        return [o.name for o in ops]
    if query_bins is None:
        return None
    raw = bytes(query_bins)
    names, pos = [], 1
    for _ in range(raw[0] if raw else 0):
        n = raw[pos]
        names.append(raw[pos + 1:pos + 1 + n].decode("utf-8", "replace"))
        pos += 1 + n
    return names


def run_query(engine, msg: P.Msg, send, exp_rc) -> None:
    """Answer a primary-index query through ``send(bytes)``."""
    try:
        plan = _Plan(engine, msg, exp_rc)
    except QueryError as e:
        send(engine.error_response(e.rc, last=True))
        return
    buf = bytearray()
    for reply in _record_replies(engine, plan):
        buf += reply
        if len(buf) > QUERY_CHUNK_LIMIT:
            send(P.frame(P.PROTO_TYPE_AS_MSG, bytes(buf)))
            buf.clear()
    if plan.short:
        send(P.frame(P.PROTO_TYPE_AS_MSG, bytes(buf) + _LAST_MSG_BODY))
        return
    if buf:
        send(P.frame(P.PROTO_TYPE_AS_MSG, bytes(buf)))
    send(P.frame(P.PROTO_TYPE_AS_MSG, _LAST_MSG_BODY))


def _record_replies(engine, plan: _Plan):
    ns = plan.ns
    with ns.lock:
        # Records are replaced, never changed in place, on a write: the snapshot stays valid.
        found = sorted((P.partition_id(d), d, r) for d, r in ns.records.items()
                       if P.partition_id(d) in plan.pids and ns.is_live(r)
                       and (not plan.set_name or r.set_name == plan.set_name))
    ns_field = (P.FIELD_NAMESPACE, ns.name.encode("utf-8"))
    now_cl, now_ms = engine.clock.now_cl(), engine.clock.now_ms()
    count = 0
    for pid, digest, rec in found:
        after = plan.resume.get(pid)
        if after is not None and digest <= after:
            continue
        if plan.filt is not None and not plan.filt.passes(rec, digest, now_cl, now_ms):
            continue
        count += 1
        if plan.max_records and count > plan.max_records:
            return
        if plan.no_bin_data:
            ops = []
        elif plan.bins is None:
            ops = [(P.OP_READ, pt, name, raw) for name, (pt, raw) in rec.bins.items()]
        else:
            ops = [(P.OP_READ, rec.bins[n][0], n, rec.bins[n][1]) for n in plan.bins
                   if n in rec.bins]
            if not ops:
                continue  # a record with none of the selected bins is not sent
        fields = [ns_field, (P.FIELD_DIGEST_RIPE, digest)]
        if rec.set_name:
            fields.append((P.FIELD_SETNAME, rec.set_name.encode("utf-8")))
        if rec.key is not None:
            fields.append((P.FIELD_KEY, rec.key))
        yield P.encode_msg(P.AS_OK, rec.generation, engine.wire_void_time(rec.void_time), ops,
                           info1=P.INFO1_NOBINDATA if plan.no_bin_data else 0, fields=fields)
