"""Scans and primary-index queries, as a real node answers them (query.c basic_query_job)."""

from __future__ import annotations

import socket
import struct

import aerospike
import pytest
from aerospike import exception as ex
from aerospike import predicates
from aerospike_helpers import expressions as exp

from fsplug.testing.aerospike_server import protocol as P
from fsplug.testing.aerospike_server.query import QUERY_CHUNK_LIMIT

NS, SET = "test", "q"
ALL_PIDS = struct.pack("<4096H", *range(4096))


def fill(client, n=40):
    for i in range(n):
        policy = {"key": aerospike.POLICY_KEY_SEND} if i % 2 else None
        client.put((NS, SET, i), {"i": i, "s": f"v{i}"}, policy=policy)
    client.put((NS, "other", 1), {"i": 1})
    client.put((NS, None, 2), {"i": 2})


def test_scan_and_query_of_a_set(server, client):
    fill(client)
    recs = client.scan(NS, SET).results()
    assert sorted(b["i"] for _k, _m, b in recs) == list(range(40))
    # the key comes back when it was stored (odd keys), else only the digest
    keys = {b["i"]: k for k, _m, b in recs}
    assert keys[1][:3] == (NS, SET, 1) and keys[2][2] is None and len(keys[2][3]) == 20
    assert {m["gen"] for _k, m, _b in recs} == {1}
    q = client.query(NS, SET)
    q.select("s")
    assert sorted(b["s"] for _k, _m, b in q.results()) == sorted(f"v{i}" for i in range(40))
    assert len(client.scan(NS, SET).results({"max_records": 7})) == 7
    assert len(client.scan(NS, None).results()) == 42  # the whole namespace
    assert client.scan(NS, "nosuchset").results() == []
    gt = {"expressions": exp.GT(exp.IntBin("i"), 30).compile()}
    assert sorted(b["i"] for _k, _m, b in client.query(NS, SET).results(gt)) == list(range(31, 40))
    half = [len(client.scan(NS, SET).results({"partition_filter": {"begin": b, "count": 2048}}))
            for b in (0, 2048)]
    assert sum(half) == 40
    assert server.stats.get("scan", 0) + server.stats.get("query", 0) >= 6


def test_scan_of_a_cluster(cluster, make_client):
    client = make_client(cluster)
    fill(client)
    assert len(client.scan(NS, SET).results()) == 40


def test_query_on_a_bin_needs_a_secondary_index(server, client):
    fill(client, 3)
    q = client.query(NS, SET)
    q.where(predicates.equals("i", 1))
    with pytest.raises(ex.AerospikeError) as e:
        q.results()
    assert e.value.code == P.AS_ERR_SINDEX_NOT_FOUND  # 201: this server has none


# -- on the wire ---------------------------------------------------------------------------------

def query_msg(*, info1=P.INFO1_READ, info3=P.INFO3_PARTITION_DONE, set_name=SET, pids=ALL_PIDS,
              ops=(), extra=()):
    fields = [(P.FIELD_NAMESPACE, NS.encode()), (P.FIELD_SETNAME, set_name.encode())]
    if pids is not None:
        fields.append((P.FIELD_PID_ARRAY, pids))
    fields += list(extra)
    body = P.encode_msg(0, ops=ops, info1=info1, info3=info3, fields=fields)
    return P.frame(P.PROTO_TYPE_AS_MSG, body)


def exchange(server, request) -> list[list[P.Msg]]:
    """Send one query; return the reply's proto messages, each as its AS_MSGs, up to LAST."""
    out: list[list[P.Msg]] = []
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(request)
        f = s.makefile("rb")
        while not out or not out[-1][-1].info3 & P.INFO3_LAST:
            _v, ptype, size = P.parse_proto_header(f.read(8))
            assert ptype == P.PROTO_TYPE_AS_MSG
            out.append(P.parse_msgs(f.read(size)))
    return out


def records(msgs) -> list[P.Msg]:
    return [m for chunk in msgs for m in chunk if not m.info3 & P.INFO3_LAST]


def test_record_replies_carry_namespace_digest_set_and_stored_key(server, client):
    fill(client, 4)
    msgs = exchange(server, query_msg())
    # a long query (the default): the records, then a LAST message of its own
    assert [len(m) for m in msgs] == [4, 1]
    last = msgs[-1][0]
    assert (last.info3, last.result_code, last.fields, last.ops) == (P.INFO3_LAST, 0, {}, [])
    recs = msgs[0]
    digests = [bytes(m.fields[P.FIELD_DIGEST_RIPE]) for m in recs]
    assert digests == sorted(digests, key=lambda d: (P.partition_id(d), d))
    for m in recs:
        assert (m.result_code, m.info1, m.info3, m.generation) == (0, 0, 0, 1)
        assert list(m.fields)[:3] == [P.FIELD_NAMESPACE, P.FIELD_DIGEST_RIPE, P.FIELD_SETNAME]
        assert bytes(m.fields[P.FIELD_NAMESPACE]) == NS.encode()
        assert bytes(m.fields[P.FIELD_SETNAME]) == SET.encode()
        assert {o.name for o in m.ops} == {"i", "s"} and {o.op for o in m.ops} == {P.OP_READ}
    keys = [P.decode_key_field(m.fields[P.FIELD_KEY]) for m in recs if P.FIELD_KEY in m.fields]
    assert sorted(keys) == [(P.PT_INTEGER, 1), (P.PT_INTEGER, 3)]


def test_short_query_ends_inside_the_last_data_message(server, client):
    fill(client, 3)
    msgs = exchange(server, query_msg(info1=P.INFO1_READ | P.INFO1_SHORT_QUERY))
    assert len(msgs) == 1 and len(msgs[0]) == 4 and msgs[0][-1].info3 == P.INFO3_LAST


def test_selected_bins_metadata_only_and_resume(server, client):
    fill(client, 6)
    client.put((NS, SET, 100), {"other": 1})
    read_s = [P.Op(P.OP_READ, P.PT_NULL, "s")]
    recs = exchange(server, query_msg(ops=read_s))[0]
    assert len(recs) == 6  # the record without bin s is not sent at all
    assert all([o.name for o in m.ops] == ["s"] for m in recs)
    meta = exchange(server, query_msg(info1=P.INFO1_READ | P.INFO1_NOBINDATA))[0]
    assert len(meta) == 7 and all(m.ops == [] and m.info1 == P.INFO1_NOBINDATA for m in meta)
    # DIGEST_ARRAY: that digest's partition alone, from the record after the digest on
    d = bytes(meta[0].fields[P.FIELD_DIGEST_RIPE])
    before_d = d[:2] + bytes(18)  # same partition, sorts before d
    for after, want in ((before_d, [d]), (d, [])):
        resumed = exchange(server, query_msg(pids=None, extra=[(P.FIELD_DIGEST_ARRAY, after)]))
        assert [bytes(m.fields[P.FIELD_DIGEST_RIPE]) for m in records(resumed)] == want
    limited = exchange(server, query_msg(extra=[(P.FIELD_MAX_RECORDS, struct.pack(">Q", 2))]))
    assert len(records(limited)) == 2


def test_replies_are_cut_after_the_chunk_limit(server, client):
    n = 40
    for i in range(n):
        client.put((NS, SET, i), {"b": b"x" * 60_000})
    msgs = exchange(server, query_msg())
    data = [m for m in msgs if not m[-1].info3 & P.INFO3_LAST]
    assert sum(len(m) for m in data) == n and len(data) == 3
    per_record = sum(len(P.encode_msg(0, ops=m.ops, fields=list(m.fields.items())))
                     for m in data[0]) // len(data[0])
    # each message goes just past the limit: one record more would not have been needed
    assert all(QUERY_CHUNK_LIMIT < len(m) * per_record <= QUERY_CHUNK_LIMIT + per_record
               for m in data[:-1])


@pytest.mark.parametrize("request_kw, code", [
    ({"info3": 0}, P.AS_ERR_UNSUPPORTED_FEATURE),  # an old-style scan: no partition-done
    ({"pids": None}, P.AS_ERR_UNSUPPORTED_FEATURE),  # no partitions
    ({"pids": b"\x01"}, P.AS_ERR_PARAMETER),
    ({"pids": struct.pack("<H", 4096)}, P.AS_ERR_PARAMETER),
    ({"extra": [(P.FIELD_INDEX_RANGE, b"\x01")]}, P.AS_ERR_SINDEX_NOT_FOUND),
    ({"extra": [(P.FIELD_MAX_RECORDS, b"\x01")]}, P.AS_ERR_PARAMETER),
    ({"extra": [(P.FIELD_QUERY_BINS, b"\x01\x01s")], "ops": [P.Op(P.OP_READ, P.PT_NULL, "s")]},
     P.AS_ERR_PARAMETER),
])
def test_refused_queries_answer_one_last_message(server, request_kw, code):
    msgs = exchange(server, query_msg(**request_kw))
    assert len(msgs) == 1 and len(msgs[0]) == 1
    m = msgs[0][0]
    assert (m.result_code, m.info3) == (code, P.INFO3_LAST)


def test_unknown_namespace(server):
    body = P.encode_msg(0, info1=P.INFO1_READ, info3=P.INFO3_PARTITION_DONE,
                        fields=[(P.FIELD_NAMESPACE, b"nosuchns"), (P.FIELD_PID_ARRAY, ALL_PIDS)])
    m = exchange(server, P.frame(P.PROTO_TYPE_AS_MSG, body))[0][0]
    assert m.result_code == P.AS_ERR_NAMESPACE
