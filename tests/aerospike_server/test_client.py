"""Every supported command, driven by the official ``aerospike`` client over real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import expressions as exp
from aerospike_helpers.batch.records import BatchRecords, Read, Remove, Write
from aerospike_helpers.operations import operations as op

from fsplug.testing.aerospike_server import AerospikeTestServer

from .conftest import client_config

NS, SET = "test", "driver"
SEND_KEY = {"key": aerospike.POLICY_KEY_SEND}


def k(i, set_=SET, ns=NS):
    return (ns, set_, i)


def newer_than(ts):
    """fsplug's write guard: stored ts bin missing or older than the new value."""
    return exp.Or(exp.Not(exp.BinExists("ts")), exp.LT(exp.IntBin("ts"), ts)).compile()


def code_of(fn):
    with pytest.raises(ex.AerospikeError) as e:
        fn()
    return e.value.code


# -- put / get -----------------------------------------------------------------------------------

VALUES = {
    "int": 7, "neg": -(1 << 63), "big": (1 << 63) - 1, "float": 0.125, "str": "ünïcode",
    "empty": "", "blob": b"\x00\xff", "bool_t": True, "bool_f": False,
    "list": [1, "a", 2.5, b"\x01", [True, None], {"n": 1}],
    "map": {"a": 1, "b": [1, 2], "c": {"d": "e"}, 5: "int key"}, "emptyl": [], "emptym": {},
}


def test_put_get_round_trips_every_particle_type(client):
    client.put(k(1), VALUES)
    key, meta, bins = client.get(k(1))
    assert bins == VALUES
    assert meta == {"ttl": 0xFFFFFFFF, "gen": 1}
    assert key[:3] == (NS, SET, None)  # a get never echoes the key (as the real server)


def test_list_and_map_are_stored_byte_for_byte(server, client):
    client.put(k(2), {"l": [0.1, "x", [1]], "m": {"z": 1, "a": 2}})
    rec = server.namespaces[NS].get(bytes(aerospike.calc_digest(NS, SET, 2)))
    assert rec.bins["l"][1] == bytes.fromhex("93cb3fb999999999999aa203789101")
    assert rec.bins["m"][1] == bytes.fromhex("82a2036102a2037a01")  # the client sorts map keys
    _, _, bins = client.get(k(2))
    assert bins == {"l": [0.1, "x", [1]], "m": {"z": 1, "a": 2}}


def test_select_exists_and_misses(client):
    client.put(k(1), {"a": 1, "b": 2, "c": 3})
    assert client.select(k(1), ["a", "c", "nope"])[2] == {"a": 1, "c": 3}
    _, meta = client.exists(k(1))
    assert meta["gen"] == 1
    assert client.exists(k(2))[1] is None
    assert code_of(lambda: client.get(k(2))) == 2
    assert code_of(lambda: client.select(k(2), ["a"])) == 2


def test_key_send_is_stored_and_digest_only_is_not(server, client):
    client.put(k("sent"), {"a": 1}, policy=SEND_KEY)
    client.put(k("digest"), {"a": 1})
    ns = server.namespaces[NS]
    sent = ns.get(bytes(aerospike.calc_digest(NS, SET, "sent")))
    plain = ns.get(bytes(aerospike.calc_digest(NS, SET, "digest")))
    assert sent.key == b"\x03sent" and plain.key is None
    has_key = {"expressions": exp.KeyExists().compile()}
    assert client.get(k("sent"), policy=has_key)[2] == {"a": 1}
    assert code_of(lambda: client.get(k("digest"), policy=has_key)) == 27
    # The stored key must match a key sent later.
    client.put(k("sent"), {"b": 2}, policy=SEND_KEY)
    assert client.get(k("sent"))[1]["gen"] == 2


def test_get_by_digest_key(client):
    client.put(k(9), {"a": 1})
    digest = aerospike.calc_digest(NS, SET, 9)
    assert client.get((NS, SET, None, digest))[2] == {"a": 1}


def test_exists_policies(client):
    create = {"exists": aerospike.POLICY_EXISTS_CREATE}
    update = {"exists": aerospike.POLICY_EXISTS_UPDATE}
    replace = {"exists": aerospike.POLICY_EXISTS_REPLACE}
    cor = {"exists": aerospike.POLICY_EXISTS_CREATE_OR_REPLACE}
    assert code_of(lambda: client.put(k(1), {"a": 1}, policy=update)) == 2
    assert code_of(lambda: client.put(k(1), {"a": 1}, policy=replace)) == 2
    client.put(k(1), {"a": 1, "b": 2}, policy=create)
    assert code_of(lambda: client.put(k(1), {"a": 1}, policy=create)) == 5
    client.put(k(1), {"c": 3}, policy=update)
    assert client.get(k(1))[2] == {"a": 1, "b": 2, "c": 3}
    client.put(k(1), {"d": 4}, policy=replace)
    assert client.get(k(1))[2] == {"d": 4}
    client.put(k(1), {"e": 5}, policy=cor)
    client.put(k(2), {"e": 5}, policy=cor)
    assert client.get(k(1))[2] == {"e": 5} == client.get(k(2))[2]
    assert client.get(k(1))[1]["gen"] == 4


def test_generation_policies(client):
    client.put(k(1), {"a": 1})
    client.put(k(1), {"a": 2})
    eq = {"gen": aerospike.POLICY_GEN_EQ}
    gt = {"gen": aerospike.POLICY_GEN_GT}
    assert code_of(lambda: client.put(k(1), {"a": 3}, meta={"gen": 1}, policy=eq)) == 3
    client.put(k(1), {"a": 3}, meta={"gen": 2}, policy=eq)
    assert code_of(lambda: client.put(k(1), {"a": 4}, meta={"gen": 3}, policy=gt)) == 3
    client.put(k(1), {"a": 4}, meta={"gen": 9}, policy=gt)
    assert client.get(k(1))[1]["gen"] == 4
    assert code_of(lambda: client.remove(k(1), meta={"gen": 1}, policy=eq)) == 3
    client.remove(k(1), meta={"gen": 4}, policy=eq)
    assert client.exists(k(1))[1] is None


def test_bin_delete_by_nil_and_last_bin_deletes_record(client):
    client.put(k(1), {"a": 1, "b": 2})
    client.put(k(1), {"a": None})
    assert client.get(k(1))[2] == {"b": 2}
    client.remove_bin(k(1), ["b"])
    assert client.exists(k(1))[1] is None
    assert code_of(lambda: client.put(k(2), {"a": None})) == 2


def test_remove_hit_miss_and_durable_delete(client):
    client.put(k(1), {"a": 1})
    client.put(k(2), {"a": 1})
    assert client.remove(k(1)) == 0
    assert code_of(lambda: client.remove(k(1))) == 2
    # a Community node refuses durable deletes (code 25), and so does the test server by default
    assert code_of(lambda: client.remove(k(2), policy={"durable_delete": True})) == 25
    assert client.exists(k(2))[1] is not None


def test_touch(server, client):
    server.namespaces[NS].nsup_period = 60
    client.put(k(1), {"a": 1})
    client.touch(k(1), 100)
    _, meta, _ = client.get(k(1))
    assert meta["gen"] == 2 and 98 <= meta["ttl"] <= 100
    assert code_of(lambda: client.touch(k(2), 100)) == 2


def test_operate_ops(client):
    client.put(k(1), {"n": 1, "s": "b", "f": 1.5, "x": 0})
    _, meta, bins = client.operate(k(1), [
        op.increment("n", 41), op.increment("f", 1.0), op.append("s", "c"), op.prepend("s", "a"),
        op.write("w", "new"), op.write("x", None), op.read("n"), op.read("s"), op.read("f"),
        op.read("w"), op.read("x")])
    assert bins == {"n": 42, "s": "abc", "f": 2.5, "w": "new"}
    assert meta["gen"] == 2
    _, meta, bins = client.operate(k(1), [op.touch(), op.read("n")])
    assert meta["gen"] == 3 and bins == {"n": 42}
    assert code_of(lambda: client.operate(k(1), [op.increment("s", 1)])) == 12
    assert code_of(lambda: client.operate(k(1), [op.append("n", "x")])) == 12
    client.increment(k(2), "c", 5)
    client.append(k(2), "t", "x")
    client.prepend(k(2), "t", "y")
    assert client.get(k(2))[2] == {"c": 5, "t": "yx"}
    client.operate(k(1), [op.delete()])
    assert client.exists(k(1))[1] is None


def test_unsupported_ops_are_refused(client):
    from aerospike_helpers.operations import list_operations as lops

    client.put(k(1), {"l": [1, 2]})
    assert code_of(lambda: client.operate(k(1), [lops.list_append("l", 3)])) == 16
    assert client.get(k(1))[2] == {"l": [1, 2]}


def test_bin_name_too_long(client):
    assert code_of(lambda: client.put(k(1), {"x" * 16: 1})) in (21, -2)


# -- TTL -----------------------------------------------------------------------------------------

def test_ttl_refused_while_nsup_period_is_zero(client):
    assert code_of(lambda: client.put(k(1), {"a": 1}, meta={"ttl": 3600})) == 22
    client.put(k(2), {"a": 1}, meta={"ttl": aerospike.TTL_NEVER_EXPIRE})
    client.put(k(3), {"a": 1}, meta={"ttl": aerospike.TTL_NAMESPACE_DEFAULT})
    client.put(k(3), {"a": 2}, meta={"ttl": aerospike.TTL_DONT_UPDATE})
    client.put(k(4), {"a": 2}, meta={"ttl": aerospike.TTL_DONT_UPDATE})
    for i in (2, 3, 4):
        assert client.get(k(i))[1]["ttl"] == 0xFFFFFFFF
    assert code_of(lambda: client.touch(k(2), 60)) == 22
    res = client.batch_write(BatchRecords([
        Write(k(5), [op.write("a", 1)], meta={"ttl": 60}),
        Write(k(6), [op.write("a", 1)]),
    ])).batch_records
    assert [r.result for r in res] == [22, 0]


def test_default_ttl_with_nsup_zero_refuses_namespace_default(make_client):
    with AerospikeTestServer({"test": {"default_ttl": 100}}) as srv:
        c = make_client(srv)
        assert code_of(lambda: c.put(k(1), {"a": 1})) == 22
        c.put(k(1), {"a": 1}, meta={"ttl": aerospike.TTL_NEVER_EXPIRE})


def test_ttl_expiry_with_a_controllable_clock(make_client):
    with AerospikeTestServer({"test": {"nsup_period": 120, "default_ttl": 50}}) as srv:
        c = make_client(srv)
        c.put(k(1), {"a": 1}, meta={"ttl": 10})
        c.put(k(2), {"a": 1})  # namespace default: 50 s
        c.put(k(3), {"a": 1}, meta={"ttl": aerospike.TTL_NEVER_EXPIRE})
        assert 9 <= c.get(k(1))[1]["ttl"] <= 10
        assert 49 <= c.get(k(2))[1]["ttl"] <= 50
        srv.advance_clock(5)
        assert 4 <= c.get(k(1))[1]["ttl"] <= 5  # remaining time, as the client computes it
        srv.advance_clock(6)
        assert code_of(lambda: c.get(k(1))) == 2
        assert c.exists(k(1))[1] is None
        assert srv.record_count("test") == 2
        c.put(k(2), {"a": 2}, meta={"ttl": aerospike.TTL_DONT_UPDATE})
        assert 38 <= c.get(k(2))[1]["ttl"] <= 39
        srv.advance_clock(40)
        assert c.exists(k(2))[1] is None
        assert c.get(k(3))[2] == {"a": 1}
        assert code_of(lambda: c.put(k(4), {"a": 1}, meta={"ttl": 11 * 365 * 86400})) == 4


def test_real_time_expiry(make_client):
    with AerospikeTestServer({"test": {"nsup_period": 1}}) as srv:
        c = make_client(srv)
        c.put(k(1), {"a": 1}, meta={"ttl": 1})
        assert c.get(k(1))[2] == {"a": 1}
        time.sleep(2.05)
        assert code_of(lambda: c.get(k(1))) == 2


# -- size and namespace errors ---------------------------------------------------------------------

def test_record_too_big(make_client):
    with AerospikeTestServer({"test": {}, "small": {"max_record_size": 1000}}) as srv:
        c = make_client(srv)
        assert code_of(lambda: c.put(k(1), {"big": b"x" * (1024 * 1024)})) == 13
        c.put(k(1), {"big": b"x" * (1024 * 1024 - 200)})
        c.put(k(2, ns="small"), {"b": b"x" * 800})
        assert code_of(lambda: c.put(k(3, ns="small"), {"b": b"x" * 1000})) == 13
        assert code_of(lambda: c.operate(k(2, ns="small"), [op.append("b", b"y" * 300)])) == 13
        assert len(c.get(k(2, ns="small"))[2]["b"]) == 800


def test_unknown_namespace(client):
    e = pytest.raises(ex.NamespaceNotFound, client.get, ("nosuchns", SET, 1))
    assert e.value.code == 20 and "nosuchns" in e.value.msg
    assert code_of(lambda: client.put(("nosuchns", SET, 1), {"a": 1})) == 20


def test_unknown_namespace_at_the_server_is_code_20(server):
    import socket

    from fsplug.testing.aerospike_server import protocol as P

    body = P.encode_msg(0, info1=P.INFO1_READ | P.INFO1_GET_ALL, fields=[
        (P.FIELD_NAMESPACE, b"nosuchns"), (P.FIELD_DIGEST_RIPE, b"\x01" * 20)])
    with socket.create_connection((server.host, server.port), timeout=2) as s:
        s.sendall(P.frame(P.PROTO_TYPE_AS_MSG, body))
        reply = s.recv(100)
    assert P.parse_msg(reply[8:])[0].result_code == 20


# -- batch -----------------------------------------------------------------------------------------

def test_batch_read_variants(client):
    client.put(k(1), {"a": 1, "b": 2})
    client.put(k(2), {"a": 3})
    client.put(k(1, "other_set"), {"a": 5})
    client.put(k(1, ns="other"), {"a": 6})
    keys = [k(1), k(404), k(2), k(1, "other_set"), k(1, ns="other"), k(1)]
    recs = client.batch_read(keys).batch_records
    assert [r.result for r in recs] == [0, 2, 0, 0, 0, 0]
    assert [r.record[2] if r.record else None for r in recs] == [
        {"a": 1, "b": 2}, None, {"a": 3}, {"a": 5}, {"a": 6}, {"a": 1, "b": 2}]
    sel = client.batch_read(keys, ["b"]).batch_records
    assert [r.record[2] if r.record else None for r in sel] == [
        {"b": 2}, None, {}, {}, {}, {"b": 2}]
    meta = client.batch_read(keys, []).batch_records
    assert [r.record[1]["gen"] if r.record else None for r in meta] == [1, None, 1, 1, 1, 1]
    assert all(len(r.record) == 2 for r in meta if r.record)


def test_batch_write_mixed(server, client):
    client.put(k(3), {"x": 1})
    client.put(k(4), {"x": 1})
    server.reset_stats()
    res = client.batch_write(BatchRecords([
        Write(k(1), [op.write("a", 1), op.write("b", "s")], policy=SEND_KEY),
        Write(k(3), [op.write("y", 2)], policy={"exists": aerospike.POLICY_EXISTS_CREATE}),
        Write(k(2), [op.increment("n", 2), op.read("n")]),
        Read(k(4), [op.read("x")]),
        Remove(k(4)),
        Remove(k(404)),
        Read(k(404), [op.read("x")]),
    ])).batch_records
    assert [r.result for r in res] == [0, 5, 0, 0, 0, 2, 2]
    assert res[0].record[2] == {"a": None, "b": None}
    assert res[2].record[2] == {"n": 2}
    assert res[3].record[2] == {"x": 1}
    assert client.get(k(1))[2] == {"a": 1, "b": "s"}
    assert client.exists(k(4))[1] is None
    assert server.stats["batch_write"] == 1 and server.stats["batch_keys"] == 7


def test_batch_operate_and_remove(server, client):
    keys = [k(i) for i in range(5)]
    res = client.batch_operate(keys, [op.increment("n", 1), op.read("n")]).batch_records
    assert [r.record[2] for r in res] == [{"n": 1}] * 5
    res = client.batch_operate(keys, [op.increment("n", 1), op.read("n")]).batch_records
    assert [r.record[2] for r in res] == [{"n": 2}] * 5
    server.reset_stats()
    res = client.batch_remove(keys[:3] + [k(404)]).batch_records
    assert [r.result for r in res] == [0, 0, 0, 2]
    assert server.stats["batch_remove"] == 1
    assert server.record_count(NS, SET) == 2


def test_batch_is_one_call_per_request(server, client):
    for i in range(60):
        client.put(k(i), {"a": i})
    server.reset_stats()
    client.batch_read([k(i) for i in range(60)])
    assert server.stats == {"batch_read": 1, "batch_keys": 60}


def test_big_batch_streams_in_chunks(client):
    payload = "x" * 2000
    keys = [k(i) for i in range(300)]
    client.batch_write(BatchRecords([Write(key, [op.write("p", payload)]) for key in keys]))
    recs = client.batch_read(keys).batch_records
    assert len(recs) == 300 and all(r.record[2]["p"] == payload for r in recs)


# -- filter expressions ----------------------------------------------------------------------------

def test_guard_expression_single(client):
    assert client.put(k(1), {"v": 1, "ts": 10}, policy={"expressions": newer_than(10)}) == 0
    assert client.put(k(1), {"v": 2, "ts": 11}, policy={"expressions": newer_than(11)}) == 0
    assert code_of(lambda: client.put(k(1), {"v": 3, "ts": 5},
                                      policy={"expressions": newer_than(5)})) == 27
    assert code_of(lambda: client.put(k(1), {"v": 3, "ts": 11},
                                      policy={"expressions": newer_than(11)})) == 27
    _, meta, bins = client.get(k(1))
    assert bins == {"v": 2, "ts": 11} and meta["gen"] == 2
    client.put(k(2), {"v": 1})  # exists without ts: passes
    assert client.put(k(2), {"v": 2, "ts": 1}, policy={"expressions": newer_than(1)}) == 0


def test_guard_expression_per_row_in_batch_write(client):
    client.put(k(1), {"ts": 100})
    client.put(k(2), {"ts": 100})
    res = client.batch_write(BatchRecords([
        Write(k(1), [op.write("ts", 50)], policy={"expressions": newer_than(50)}),
        Write(k(2), [op.write("ts", 150)], policy={"expressions": newer_than(150)}),
        Write(k(3), [op.write("ts", 1)], policy={"expressions": newer_than(1)}),
    ])).batch_records
    assert [r.result for r in res] == [27, 0, 0]
    assert [client.get(k(i))[2]["ts"] for i in (1, 2, 3)] == [100, 150, 1]


def test_filters_on_reads_deletes_and_batch_policy(client):
    client.put(k(1), {"i": 5, "f": 2.5, "s": "abc", "b": True})
    client.put(k(2), {"i": 50, "f": 0.5, "s": "xyz"})

    def get(key, e):
        return client.get(key, policy={"expressions": e.compile()})

    for e, ok in [
        (exp.Eq(exp.IntBin("i"), 5), True), (exp.NE(exp.IntBin("i"), 5), False),
        (exp.GT(exp.IntBin("i"), 4), True), (exp.GE(exp.IntBin("i"), 6), False),
        (exp.LT(exp.FloatBin("f"), 3.0), True), (exp.LE(exp.FloatBin("f"), 2.0), False),
        (exp.Eq(exp.StrBin("s"), "abc"), True), (exp.GT(exp.StrBin("s"), "abd"), False),
        (exp.And(exp.BinExists("i"), exp.Not(exp.BinExists("zz"))), True),
        (exp.Or(exp.Eq(exp.IntBin("zz"), 1), exp.Eq(exp.BoolBin("b"), True)), True),
        (exp.Eq(exp.BinType("s"), aerospike.AS_BYTES_STRING), True),
        (exp.Eq(exp.IntBin("s"), 1), False),  # wrong type reads as unknown
        (exp.Eq(exp.IntBin("missing"), 1), False),
    ]:
        if ok:
            assert get(k(1), e)[2]["i"] == 5, e
        else:
            assert code_of(lambda e=e: get(k(1), e)) == 27, e
    assert code_of(lambda: get(k(404), exp.Eq(exp.IntBin("i"), 5))) == 2
    no = {"expressions": exp.GT(exp.IntBin("i"), 10).compile()}
    assert code_of(lambda: client.remove(k(1), policy=no)) == 27
    assert client.exists(k(1))[1] is not None
    recs = client.batch_read([k(1), k(2)], policy=no).batch_records
    assert [r.result for r in recs] == [27, 0]
    assert code_of(lambda: client.exists(k(1), policy=no)) == 27


def test_unevaluable_expression_is_refused_never_passed(client):
    from aerospike_helpers.expressions import list as lexp

    client.put(k(1), {"l": [1, 2]})
    # a call the test server does not implement: code 16 (UNSUPPORTED_FEATURE), never a pass
    bad = {"expressions": exp.Eq(lexp.ListSize(None, exp.ListBin("l")), 2).compile()}
    assert code_of(lambda: client.get(k(1), policy=bad)) == 16
    assert code_of(lambda: client.put(k(1), {"l": [9]}, policy=bad)) == 16
    assert client.get(k(1))[2] == {"l": [1, 2]}
    res = client.batch_write(BatchRecords([
        Write(k(1), [op.write("l", [9])], policy=bad), Write(k(2), [op.write("a", 1)])
    ])).batch_records
    assert [r.result for r in res] == [16, 0]
    # one a real node refuses too (int bin against a float literal): code 4
    invalid = {"expressions": exp.Eq(exp.IntBin("l"), 2.0).compile()}
    assert code_of(lambda: client.get(k(1), policy=invalid)) == 4


# -- unsupported commands --------------------------------------------------------------------------

def test_udf_and_sindex_are_refused_with_code_16(server, client):
    client.put(k(1), {"a": 1})
    assert code_of(lambda: client.apply(k(1), "mod", "fn", [])) == 16
    res = client.batch_apply([k(1), k(2)], "mod", "fn", [])
    assert [r.result for r in res.batch_records] == [16, 16]
    e = pytest.raises(ex.AerospikeError, client.index_integer_create, NS, SET, "a", "idx_a")
    assert e.value.code == 16 and "sindex-create" in e.value.msg
    assert server.stats.get("udf", 0) >= 1


def test_security_login_answered_not_supported(server):
    """Like a Community server: a login gets code 51 (security not supported)."""
    cfg = client_config([(server.host, server.port)], user="user", password="password")
    with pytest.raises(ex.AerospikeError) as e:
        aerospike.client(cfg).connect()
    assert e.value.code == 51
    assert server.stats.get("security", 0) >= 1


# -- info --------------------------------------------------------------------------------------

def test_info_commands(server, client):
    client.put(k(1), {"a": 1})
    client.put(k(2, "s2"), {"a": 1})

    def info(cmd):
        (value,) = client.info_all(cmd).values()
        assert value[0] is None
        return value[1]

    assert info("namespaces") == "test;other\n"
    assert info("build") == "8.1.2.0\n"
    assert info("version") == "Aerospike Community Edition build 8.1.2.0\n"
    assert "objects=2" in info("namespace/test") and "nsup-period=0" in info("namespace/test")
    assert info("sets/test/s2").startswith("objects=1:tombstones=0:")
    assert info("sets/test").count("ns=test:set=") == 2
    assert info("sets/other") == "\n"
    server.advance_clock(0.002)  # a record of the truncate's own millisecond would survive it
    assert info("truncate:namespace=test;set=s2") == "ok\n"
    assert server.record_count(NS, "s2") == 0 and server.record_count(NS) == 1
    server.advance_clock(0.002)
    lut = server._clock.now_ns()
    client.put(k(3), {"a": 1})
    assert info(f"truncate:namespace=test;set={SET};lut={lut}") == "ok\n"
    assert server.record_count(NS, SET) == 1  # written in the lut's millisecond or after
    server.advance_clock(0.002)
    assert info("truncate-namespace:namespace=test") == "ok\n"
    assert server.record_count(NS) == 0
    e = pytest.raises(ex.AerospikeError, client.info_all, "truncate:namespace=test")
    assert e.value.code == 4 and "missing 'set'" in e.value.msg
    assert "truncate_lut=" in info("sets/test/s2")
    e = pytest.raises(ex.AerospikeError, client.info_all, "no-such-command")
    assert "unrecognized command" in e.value.msg


# -- out of process: calls that hold the GIL --------------------------------------------------

def test_program_mode_and_client_truncate(tmp_path):
    """``python -m`` mode; the client's truncate() (which holds the GIL) against it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsplug.testing.aerospike_server", "--port", "0", "--namespace",
         "test", "--nsup-period", "60", "--default-ttl", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1 only" in line
        port = int(line.split("port ")[1].split(",")[0])
        c = aerospike.client(client_config([("127.0.0.1", port)])).connect()
        try:
            c.put(k(1), {"a": 1}, meta={"ttl": 100})  # nsup-period 60 allows TTLs
            c.put(k(2, "keep"), {"a": 1})
            time.sleep(0.003)  # a record of the truncate's own millisecond would survive it
            assert c.truncate(NS, SET, 0) == 0
            assert c.exists(k(1))[1] is None
            assert c.get(k(2, "keep"))[2] == {"a": 1}
        finally:
            c.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_update_with_a_different_set_name_is_refused(client):
    client.put(k(1), {"a": 1})
    digest = aerospike.calc_digest(NS, SET, 1)
    assert code_of(lambda: client.put((NS, "elsewhere", None, digest), {"a": 2})) == 4
    assert client.get(k(1))[2] == {"a": 1}


def test_durable_delete_accepted_on_request(make_client):
    with AerospikeTestServer(["test"], durable_delete="accept") as srv:
        c = make_client(srv)
        c.put(k(1), {"a": 1})
        assert c.remove(k(1), policy={"durable_delete": True}) == 0
        assert c.exists(k(1))[1] is None
        assert code_of(lambda: c.remove(k(2), policy={"durable_delete": True})) == 2
