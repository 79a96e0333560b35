"""Codec tests, table-driven from the real server's capture (wire/capture.jsonl)."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsplug.testing.aerospike_server import msgpack
from fsplug.testing.aerospike_server import protocol as P
from fsplug.testing.aerospike_server.expressions import ExpError, compile_filter
from fsplug.testing.aerospike_server.info import InfoHandler, node_bitmap
from fsplug.testing.aerospike_server.server import AerospikeTestServer
from fsplug.testing.aerospike_server.storage import Record

WIRE = Path(__file__).parent / "wire"
MSGS = [json.loads(line) for line in (WIRE / "capture.jsonl").read_text().splitlines()]
MSGS = [m for m in MSGS if m["kind"] == "msg"]
AS_MSGS = [m for m in MSGS if m["type"] == 3 and "truncated_from_bytes" not in m]
INFO_MSGS = [m for m in MSGS if m["type"] == 1]
CLUSTER = [json.loads(line) for line in (WIRE / "cluster-info.jsonl").read_text().splitlines()]


def _id(m):
    return f"{m['step']}-{m['dir']}-{m['conn']}-{m['hex'][16:40]}"


def test_capture_has_what_the_tables_need():
    assert len(AS_MSGS) > 50 and len(INFO_MSGS) > 40
    assert {m["dir"] for m in AS_MSGS} == {"c2s", "s2c"}


@pytest.mark.parametrize("m", AS_MSGS, ids=_id)
def test_as_msg_decodes_and_reencodes_byte_for_byte(m):
    raw = bytes.fromhex(m["hex"])
    version, ptype, size = P.parse_proto_header(raw)
    assert (version, ptype, size) == (2, 3, len(raw) - 8)
    body = raw[8:]
    msgs = P.parse_msgs(body)
    assert msgs
    again = b"".join(x.encode() for x in msgs)
    assert P.frame(ptype, again) == raw
    for x in msgs:
        for ftype, data in x.fields.items():
            if ftype == P.FIELD_BATCH_INDEX:
                flags, rows = P.parse_batch_index(data)
                assert P.encode_batch_index(flags, rows) == bytes(data)
        if m["dir"] == "s2c":
            assert x.fields == {}  # the server never sends fields back in this capture


def _requests():
    return [P.parse_msg(bytes.fromhex(m["hex"])[8:])[0] for m in AS_MSGS if m["dir"] == "c2s"]


def test_client_requests_decode_to_the_documented_meaning():
    by_step = {}
    for m in AS_MSGS:
        if m["dir"] == "c2s":
            by_step.setdefault(m["step"], []).append(P.parse_msg(bytes.fromhex(m["hex"])[8:])[0])
    put = by_step["put_int_key_send"][0]
    assert put.info2 == P.INFO2_WRITE and put.transaction_ttl == 2000
    assert bytes(put.fields[P.FIELD_NAMESPACE]) == b"test"
    assert bytes(put.fields[P.FIELD_SETNAME]) == b"driver"
    assert bytes(put.fields[P.FIELD_DIGEST_RIPE]).hex() == "afbf541c278d44a3c382d7f6d5aff2b6a1bbe7ae"
    assert P.decode_key_field(put.fields[P.FIELD_KEY]) == (P.PT_INTEGER, 1)
    assert [(o.op, o.name, P.particle_to_python(o.ptype, o.value)) for o in put.ops] == [
        (P.OP_WRITE, "ds_acc_7d", 0.91), (P.OP_WRITE, "ds_trips", 412),
        (P.OP_WRITE, "ds_name", "ana"), (P.OP_WRITE, "ds_ts", 1764000000000000)]

    lm = by_step["put_list_map"][0]
    assert [P.particle_to_python(o.ptype, o.value) for o in lm.ops] == [
        [0.1, 0.2, 0.3], {"a": 1, "b": "x"}]

    get = by_step["get_hit"][0]
    assert get.info1 == P.INFO1_READ | P.INFO1_GET_ALL and not get.ops
    exists = by_step["exists_hit"][0]
    assert exists.info1 == P.INFO1_READ | P.INFO1_NOBINDATA

    batch = by_step["batch_read_all_bins"][0]
    assert batch.info1 == P.INFO1_BATCH
    flags, rows = P.parse_batch_index(batch.fields[P.FIELD_BATCH_INDEX])
    assert flags == 0x0D
    assert [r.index for r in rows] == [0, 1, 2]
    assert [r.repeat for r in rows] == [False, True, True]
    assert rows[0].flags == P.BATCH_MSG_INFO | P.BATCH_MSG_TTL
    assert rows[2].info1 == P.INFO1_READ | P.INFO1_GET_ALL  # inherited from the previous row
    assert bytes(rows[2].fields[P.FIELD_SETNAME]) == b"driver"

    bw = by_step["batch_write_filtered"][0]
    _, rows = P.parse_batch_index(bw.fields[P.FIELD_BATCH_INDEX])
    assert all(r.info2 == P.INFO2_WRITE | P.INFO2_RESPOND_ALL_OPS for r in rows)
    assert all(P.FIELD_FILTER_EXP in r.fields for r in rows)

    ttl = by_step["put_with_ttl_nsup0"][0]
    assert ttl.record_ttl == 3600
    never = by_step["put_never_expire"][0]
    assert never.record_ttl == 0xFFFFFFFF


def test_server_replies_decode_to_what_the_client_reported():
    replies = {}
    for m in AS_MSGS:
        if m["dir"] == "s2c":
            replies.setdefault(m["step"], []).extend(P.parse_msgs(bytes.fromhex(m["hex"])[8:]))
    hit = replies["get_hit"][0]
    assert (hit.result_code, hit.generation, hit.record_ttl) == (0, 1, 0)
    assert {o.name: P.particle_to_python(o.ptype, o.value) for o in hit.ops} == {
        "ds_acc_7d": 0.91, "ds_trips": 412, "ds_name": "ana", "ds_ts": 1764000000000000}
    assert replies["get_miss"][0].result_code == P.AS_ERR_NOT_FOUND
    assert replies["put_with_ttl_nsup0"][0].result_code == P.AS_ERR_FORBIDDEN
    assert replies["put_record_too_big"][0].result_code == P.AS_ERR_RECORD_TOO_BIG
    fail = replies["put_filter_fail"][0]
    assert (fail.result_code, fail.generation) == (P.AS_ERR_FILTERED_OUT, 3)
    batch = replies["batch_read_all_bins"]
    assert [x.transaction_ttl for x in batch] == [0, 1, 2, 0]
    assert [x.result_code for x in batch] == [0, 2, 0, 0]
    assert batch[-1].info3 == P.INFO3_LAST
    bw = replies["batch_write_no_ttl"]
    assert [(o.op, o.ptype) for o in bw[0].ops] == [(P.OP_WRITE, P.PT_NULL)] * 2
    assert bw[2].generation == 0  # a delete answers without metadata


def _info_bodies(direction):
    return [bytes.fromhex(m["hex"])[8:].decode() for m in INFO_MSGS if m["dir"] == direction]


def test_info_requests_and_replies_parse():
    for body in _info_bodies("c2s"):
        assert body.endswith("\n")
        assert all(name for name in body[:-1].split("\n"))
    for body in _info_bodies("s2c"):
        for line in body[:-1].split("\n"):
            name, sep, _value = line.partition("\t")
            assert sep == "\t" and name


@pytest.fixture(scope="module")
def info_node():
    srv = AerospikeTestServer(["test"], node_name="BB901000000FC02")
    srv.port = 3000
    return InfoHandler(srv)


@pytest.mark.parametrize("request_body", sorted(set(_info_bodies("c2s")) - {
    "sets/test\n", "truncate:namespace=test;set=driver\n"}))
def test_info_replies_equal_the_real_ones(info_node, request_body):
    """Deterministic info replies are byte-identical to the real node's."""
    reals = set()
    pending = {}
    for m in INFO_MSGS:
        body = bytes.fromhex(m["hex"])[8:]
        if m["dir"] == "c2s":
            pending[m["conn"]] = body
        elif pending.get(m["conn"]) == request_body.encode():
            reals.add(body)
    assert len(reals) == 1
    assert info_node.handle(request_body.encode()) == reals.pop()


def test_unknown_info_command_is_an_error(info_node):
    assert info_node.handle(b"no-such-command\n") == b"no-such-command\tERROR:4:unrecognized command\n"
    reply = info_node.handle(b"sindex-create:ns=test;set=s;indexname=i;bin=b;type=numeric\n")
    assert b"\tERROR:16:command 'sindex-create' is not supported" in reply


def test_replicas_bitmap_layout():
    bm = node_bitmap([0, 7, 8, 4095])
    assert bm[0] == 0x81 and bm[1] == 0x80 and bm[511] == 0x01 and sum(bm) == 0x81 + 0x80 + 1
    assert base64.b64encode(node_bitmap(range(4096))).decode() == "/" * 682 + "8="


def _bitmap_parts(value):
    ns, _, rest = value.partition(":")
    regime, count, *maps = rest.split(",")
    return ns, int(regime), int(count), [base64.b64decode(b) for b in maps]


def _members(bm):
    return {p for p in range(4096) if bm[p >> 3] & (0x80 >> (p & 7))}


def test_real_cluster_replicas_and_peers_parse():
    replicas = [c for c in CLUSTER if c["request"] == "replicas"]
    masters = []
    for c in replicas:
        name, _, value = c["reply"].rstrip("\n").partition("\t")
        ns, regime, count, maps = _bitmap_parts(value)
        assert (name, ns, regime, count, len(maps)) == ("replicas", "test", 0, 2, 2)
        assert all(len(b) == 512 for b in maps)
        masters.append(_members(maps[0]))
    assert set().union(*masters) == set(range(4096))
    assert sum(len(m) for m in masters) == 4096  # each partition has exactly one master
    peer_re = re.compile(r"^peers-clear-std\t(\d+),(\d+),\[(\[\w+,,\[127\.0\.0\.1:\d+\]\],?)*\]\n$")
    for c in CLUSTER:
        if c["request"] == "peers-clear-std":
            assert peer_re.match(c["reply"]), c["reply"]


def test_our_cluster_info_has_the_real_cluster_shape():
    from fsplug.testing.aerospike_server import AerospikeTestCluster

    cl = AerospikeTestCluster(nodes=3)
    for i, n in enumerate(cl.nodes):
        n.port = 4010 + 10 * i
    infos = [InfoHandler(n) for n in cl.nodes]
    peer_re = re.compile(r"^peers-clear-std\t(\d+),(\d+),\[(\[\w+,,\[127\.0\.0\.1:\d+\]\],?)*\]\n$")
    masters = []
    for h in infos:
        assert peer_re.match(h.handle(b"peers-clear-std\n").decode())
        value = h.handle(b"replicas\n").decode().rstrip("\n").partition("\t")[2]
        ns, regime, count, maps = _bitmap_parts(value)
        assert (ns, regime, count, len(maps)) == ("test", 0, 1, 1)
        masters.append(_members(maps[0]))
    assert sum(len(m) for m in masters) == 4096 and set().union(*masters) == set(range(4096))
    assert infos[0].handle(b"peers-clear-std\n").decode().count("127.0.0.1:") == 2


def test_partition_id_matches_the_client_rule():
    d = bytes.fromhex("afbf541c278d44a3c382d7f6d5aff2b6a1bbe7ae")
    assert P.partition_id(d) == struct.unpack_from("<H", d)[0] & 4095 == 0xFAF


# -- msgpack ----------------------------------------------------------------------------------

@pytest.mark.parametrize("hexval,expected", [
    ("93cb3fb999999999999acb3fc999999999999acb3fd3333333333333", [0.1, 0.2, 0.3]),
    ("82a2036101a20362a20378", {"a": 1, "b": "x"}),
    ("c0", None), ("c3", True), ("7f", 127), ("cc80", 128), ("e0", -32), ("d0df", -33),
    ("cf00060a24181e4000", 1700000000000000), ("d3ffffffffffffffff" , -1),
    ("a3040102", b"\x01\x02"), ("92c70001c0", [msgpack.Ext(1, b""), None]),
])
def test_msgpack_table(hexval, expected):
    raw = bytes.fromhex(hexval)
    assert msgpack.unpackb(raw) == expected
    if hexval != "d3ffffffffffffffff":  # -1 packs minimally as a fixint
        assert msgpack.packb(expected) == raw


_scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
            | st.floats(allow_nan=False) | st.text(max_size=40) | st.binary(max_size=40))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
    st.text(max_size=8) | st.integers(-1000, 1000), inner, max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_msgpack_round_trip(v):
    raw = msgpack.packb(v)
    back = msgpack.unpackb(raw)
    assert back == v
    assert msgpack.packb(back) == raw


def test_msgpack_rejects_garbage():
    with pytest.raises(msgpack.MsgpackError):
        msgpack.unpackb(b"\x93\x01")
    with pytest.raises(msgpack.MsgpackError):
        msgpack.unpackb(b"\xc1")
    with pytest.raises(msgpack.MsgpackError):
        msgpack.unpackb(b"\x01\x02")


# -- expressions from the capture --------------------------------------------------------------

def _filters():
    out = []
    for req in _requests():
        if P.FIELD_FILTER_EXP in req.fields:
            out.append(bytes(req.fields[P.FIELD_FILTER_EXP]))
        if P.FIELD_BATCH_INDEX in req.fields:
            for r in P.parse_batch_index(req.fields[P.FIELD_BATCH_INDEX])[1]:
                if P.FIELD_FILTER_EXP in r.fields:
                    out.append(bytes(r.fields[P.FIELD_FILTER_EXP]))
    return out


def _rec(**bins):
    return Record("driver", None, {k: P.python_to_particle(v) for k, v in bins.items()}, 1, 0, 1)


def test_capture_filters_evaluate_like_the_real_server():
    """'stored ds_ts missing or older than the new value' from the capture's four writes."""
    filters = _filters()
    assert len(filters) == 5
    newer = {int.from_bytes(f[-8:], "big") if f[-9] == 0xCF else f[-1]: compile_filter(f)
             for f in filters}
    stored = _rec(ds_ts=1764000000000000)
    assert newer[1764000000000001].evaluate(stored) is True   # put_filter_pass: gen 2 -> 3
    assert newer[1700000000000000].evaluate(stored) is False  # put_filter_fail: code 27
    assert newer[1].evaluate(_rec(ds_ts=1764000000000001)) is False  # batch row 0: code 27
    assert newer[9].evaluate(_rec(x=1)) is True   # no ds_ts bin: passes
    assert newer[5].evaluate(_rec()) is True


def test_unsupported_expression_is_refused_not_passed():
    list_size_call = bytes.fromhex("9301957f02009110935104a16c02")
    with pytest.raises(ExpError):
        compile_filter(list_size_call)
    with pytest.raises(ExpError):
        compile_filter(bytes.fromhex("9301935102a169cb401c000000000000"))  # int bin == 7.0
    with pytest.raises(ExpError):
        compile_filter(b"\x93\x01")  # truncated
