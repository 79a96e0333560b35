"""Behaviours measured on a real Aerospike CE 8.1.2.0 node (real-server-facts.md), checked through
the official client, a recording loopback proxy (batch framing) and raw info sockets."""

from __future__ import annotations

import re
import socket
import threading
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import expressions as exp
from aerospike_helpers.batch.records import BatchRecords, Remove, Write
from aerospike_helpers.operations import map_operations as map_ops
from aerospike_helpers.operations import operations as op

from fsplug.testing.aerospike_server import AerospikeTestCluster, AerospikeTestServer
from fsplug.testing.aerospike_server.storage import DEFAULT_TRUNCATE_SECONDS

from .conftest import client_config
import contextlib

NS = "test"
EPOCH_MS = 1262304000000  # 2010-01-01 in Unix ms: truncate_lut counts from there


def code_of(fn):
    with pytest.raises(ex.AerospikeError) as e:
        fn()
    return e.value.code


def _recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def raw_info(port: int, *commands: str) -> list[str]:
    """Send info commands over a raw socket; the values of the ``name\\tvalue`` reply lines."""
    body = "".join(c + "\n" for c in commands).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(((2 << 56) | (1 << 48) | len(body)).to_bytes(8, "big") + body)
        size = int.from_bytes(_recv_exact(s, 8), "big") & ((1 << 48) - 1)
        text = _recv_exact(s, size).decode()
    return [line.split("\t", 1)[1] for line in text.split("\n") if line]


def set_fields(port: int, set_name: str) -> dict:
    (value,) = raw_info(port, f"sets/{NS}/{set_name}")
    return dict(kv.split("=", 1) for kv in value.rstrip(";").split(":"))


class Recorder:
    """Loopback proxy between the client and a server that records the server's proto messages."""

    def __init__(self, port: int):
        self.port = port
        self.messages: list[tuple[int, bytes]] = []  # (proto type, body) sent by the server
        self._ls = socket.create_server(("127.0.0.1", 0))
        self.proxy_port = self._ls.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            self._socks += [c, u]
            threading.Thread(target=self._forward, args=(c, u), daemon=True).start()
            threading.Thread(target=self._record, args=(u, c), daemon=True).start()

    @staticmethod
    def _forward(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _record(self, src, dst) -> None:
        try:
            while True:
                hdr = _recv_exact(src, 8)
                body = _recv_exact(src, int.from_bytes(hdr, "big") & ((1 << 48) - 1))
                self.messages.append((hdr[1], body))
                dst.sendall(hdr + body)
        except (OSError, ConnectionError):
            pass

    def as_msgs(self) -> list[bytes]:
        return [b for t, b in self.messages if t == 3]

    def close(self) -> None:
        self._ls.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


# -- 1. truncate -----------------------------------------------------------------------------------

def test_default_truncate_phase_is_short_but_not_zero():
    assert 0 < DEFAULT_TRUNCATE_SECONDS <= 0.1
    srv = AerospikeTestServer(["test"])
    assert srv.namespaces["test"].truncate_seconds == DEFAULT_TRUNCATE_SECONDS
    assert AerospikeTestServer(["test"], truncate_seconds=0).namespaces["test"].truncate_seconds == 0


def test_truncate_keeps_records_of_its_own_millisecond(server, client):
    key = lambda i: (NS, "tr", i)  # noqa: E731
    client.put(key("before"), {"a": 1})
    server.advance_clock(0.002)
    server.freeze_clock()
    try:
        client.put(key("same_ms"), {"a": 2})
        assert client.info_all(f"truncate:namespace={NS};set=tr") == {server.node_name: (None, "ok\n")}
        lut_cl_ms = int(set_fields(server.port, "tr")["truncate_lut"])
        # the record written in the truncate's millisecond: its last-update time equals the lut
        lut_ns = (lut_cl_ms + EPOCH_MS) * 1_000_000
        same = {"expressions": exp.Eq(exp.LastUpdateTime(), lut_ns).compile()}
        assert client.get(key("same_ms"), policy=same)[2] == {"a": 2}
        server.advance_clock(0.002)
        client.put(key("after"), {"a": 3})
    finally:
        server.unfreeze_clock()
    assert code_of(lambda: client.get(key("before"))) == 2  # last updated earlier than the lut
    assert client.get(key("after"))[2] == {"a": 3}
    deadline = time.monotonic() + 5
    while server.truncating(NS) and time.monotonic() < deadline:
        time.sleep(0.01)
    # for good: still there once the truncate has finished
    assert client.get(key("same_ms"))[2] == {"a": 2}
    assert set_fields(server.port, "tr")["objects"] == "2"
    assert server.record_count(NS, "tr") == 2


def test_last_update_time_has_millisecond_resolution(server, client):
    server.freeze_clock()
    try:
        client.put((NS, "lut", 1), {"a": 1})
        now_ns = server._clock.now_ns()
    finally:
        server.unfreeze_clock()
    ms_ns = now_ns // 1_000_000 * 1_000_000
    assert client.get((NS, "lut", 1), policy={
        "expressions": exp.Eq(exp.LastUpdateTime(), ms_ns).compile()})[2] == {"a": 1}
    server.advance_clock(1.5)
    assert client.get((NS, "lut", 1), policy={
        "expressions": exp.GE(exp.SinceUpdateTime(), 1500).compile()})[2] == {"a": 1}


def test_truncating_phase_counts_hidden_records_then_drops_them(make_client):
    with AerospikeTestServer(["test"], truncate_seconds=0.5) as srv:
        c = make_client(srv)
        keys = [(NS, "tp", i) for i in range(3)]
        for k in keys:
            c.put(k, {"a": 1, "s": "0123456789"})
        srv.advance_clock(0.002)
        assert set_fields(srv.port, "tp")["objects"] == "3"
        t0 = time.monotonic()
        assert raw_info(srv.port, f"truncate:namespace={NS};set=tp") == ["ok"]
        # reads right after the reply: not found
        for k in keys:
            assert code_of(lambda k=k: c.get(k)) == 2
        # a write right after the truncate survives it
        c.put((NS, "tp", "after"), {"a": -1})
        c.put(keys[0], {"a": -5})
        # still inside the truncate's 0.5 s phase: 2 truncated-but-counted records (key 0 was
        # overwritten) and the 2 new ones
        fields = set_fields(srv.port, "tp")
        ns_fields = dict(kv.split("=", 1) for kv in raw_info(srv.port, "namespace/test")[0].split(";"))
        assert fields["truncating"] == "true" and srv.truncating(NS)
        assert fields["objects"] == "4" and ns_fields["objects"] == "4"
        assert srv.record_count(NS, "tp") == 2  # what reads see
        deadline = time.monotonic() + 5
        while set_fields(srv.port, "tp")["truncating"] == "true" and time.monotonic() < deadline:
            time.sleep(0.02)
        fields = set_fields(srv.port, "tp")
        assert fields["truncating"] == "false" and fields["objects"] == "2"
        assert time.monotonic() - t0 >= 0.5
        assert c.get((NS, "tp", "after"))[2] == {"a": -1}
        assert c.get(keys[0])[2] == {"a": -5}


def test_truncate_on_a_cluster_with_a_frozen_clock(make_client):
    with AerospikeTestCluster(nodes=2, truncate_seconds=0.3) as cl:
        c = make_client(cl)
        c.put((NS, "ct", "old"), {"a": 1})
        cl.advance_clock(0.002)
        cl.freeze_clock()
        try:
            c.put((NS, "ct", "same"), {"a": 2})
            replies = c.info_all(f"truncate:namespace={NS};set=ct")  # to every node, as fsplug does
            assert sorted(v for _e, v in replies.values()) == ["ok\n", "ok\n"]
            assert cl.truncating(NS)
        finally:
            cl.unfreeze_clock()
        assert code_of(lambda: c.get((NS, "ct", "old"))) == 2
        assert c.get((NS, "ct", "same"))[2] == {"a": 2}
        time.sleep(0.4)
        assert not cl.truncating(NS) and cl.record_count(NS, "ct") == 1


def _lut_ns(cl_ms: int) -> int:
    return (cl_ms + EPOCH_MS) * 1_000_000


@pytest.mark.parametrize("lut,reply", [
    ("abc", "ERROR:4:would truncate to 0"),
    ("12x", "ERROR:4:would truncate to 0"),
    ("1000", "ERROR:4:would truncate to 0"),
    ("1000000000000000000", "ERROR:4:would truncate to 0"),
    ("1262304000000000000", "ERROR:4:would truncate to 0"),
    ("1262304000999999", "ERROR:4:would truncate to 0"),
    ("1262304000001000000", "ok"),
    ("-5", "ERROR:4:would truncate in the future"),
    ("", "ERROR:4:missing 'lut' value"),
    ("9" * 30, "ERROR:4:'lut' value too long"),
    ("0x" + "0" * 6 + "18ecd514b71e0731", "ERROR:4:'lut' value too long"),  # 24 characters
    ("0x" + "0" * 5 + "18ecd514b71e0731", "ok"),  # 23 characters, past, hex
    ("0x18ecd514b71e0731", "ok"),
    ("0" + oct(1262304000001000000)[2:], "ok"),  # octal
])
def test_truncate_lut_parsing(server, lut, reply):
    assert raw_info(server.port, f"truncate:namespace=test;set=x;lut={lut}") == [reply]


def test_truncate_with_a_hex_lut_drops_only_earlier_records(server, client):
    client.put((NS, "hx", 1), {"a": 1})
    server.advance_clock(0.005)
    lut = server._clock.now_ns()
    server.advance_clock(0.005)
    client.put((NS, "hx", 2), {"a": 2})
    assert raw_info(server.port, f"truncate:namespace=test;set=hx;lut={hex(lut)}") == ["ok"]
    assert code_of(lambda: client.get((NS, "hx", 1))) == 2
    assert client.get((NS, "hx", 2))[2] == {"a": 2}
    lut_cl_ms = int(set_fields(server.port, "hx")["truncate_lut"])
    assert _lut_ns(lut_cl_ms) == lut // 1_000_000 * 1_000_000


def test_truncate_in_the_future_is_refused_with_code_4(server, client):
    future = time.time_ns() + 3600 * 10**9
    e = pytest.raises(ex.AerospikeError, client.info_all, f"truncate:namespace=test;set=x;lut={future}")
    assert e.value.code == 4 and "would truncate in the future" in e.value.msg


# -- 2. info errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("command,reply", [
    ("namespace/nosuchns", "type=unknown"),
    ("namespace/", "type=unknown"),
    ("sets/nosuchns", "ns_type=unknown"),
    ("sets/nosuchns/x", "ns_type=unknown"),
    ("sets/test/nosuchset", ""),
    ("nosuchcommand", "ERROR:4:unrecognized command"),
    ("bins/test", "ERROR:4:unrecognized command"),
    ("bins/nosuchns", "ERROR:4:unrecognized command"),
    ("cluster-size", "ERROR:4:unrecognized command"),
    ("release", "edition=Aerospike Community Edition;version=8.1.2.0;os=debian12;arch=x86_64;"
                "sha=68182105aaa20bce52e3a672e0ac896e84421f85"),
    ("truncate:namespace=test;set=" + "s" * 70, "ERROR:4:'set' value too long"),
    ("truncate:namespace=" + "n" * 40 + ";set=x", "ERROR:20:'namespace' value too long"),
    ("truncate:namespace=nosuchns;set=x", "ok"),
    ("truncate-namespace:namespace=nosuchns", "ok"),
    ("truncate:set=x", "ERROR:20:missing 'namespace'"),
    ("truncate:namespace=test", "ERROR:4:missing 'set'"),
    ("truncate:namespace=test;set=", "ERROR:4:missing 'set' value"),
    ("truncate-namespace:namespace=test;set=facts_t", "ERROR:4:unexpected set name"),
])
def test_info_replies_as_the_real_node(server, command, reply):
    assert raw_info(server.port, command) == [reply]


def test_refused_namespace_truncate_keeps_the_records(server, client):
    client.put((NS, "keep", 1), {"a": 1})
    server.advance_clock(0.002)
    for cmd in ("truncate:namespace=test", "truncate:namespace=test;set=",
                "truncate-namespace:namespace=test;set=keep"):
        assert raw_info(server.port, cmd)[0].startswith("ERROR:4:")
    assert client.get((NS, "keep", 1))[2] == {"a": 1}


def test_client_sees_the_real_error_codes(server, client):
    e = pytest.raises(ex.AerospikeError, client.info_all, "nosuchcommand")
    assert e.value.code == 4 and "unrecognized command" in e.value.msg
    e = pytest.raises(ex.AerospikeError, client.info_all, "truncate:set=x")
    assert e.value.code == 20
    (value,) = client.info_all("namespace/nosuchns").values()
    assert value == (None, "type=unknown\n")


def test_sets_replies_have_the_real_shape(server, client):
    for i in range(3):
        client.put((NS, "facts_x", i), {"a": i, "s": "0123456789"})
    tail = ("tombstones=0:data_used_bytes=240:truncate_lut=0:sindexes=0:index_populating=false:"
            "truncating=false:default-read-touch-ttl-pct=0:default-ttl=0:disable-eviction=false:"
            "enable-index=false:stop-writes-count=0:stop-writes-size=0;")
    assert raw_info(server.port, "sets/test/facts_x") == ["objects=3:" + tail]
    assert raw_info(server.port, "sets/test") == ["ns=test:set=facts_x:objects=3:" + tail]
    ns_keys = [kv.split("=")[0] for kv in raw_info(server.port, "namespace/test")[0].split(";")]
    assert "single-scope-set" not in ns_keys and "truncate_lut" in ns_keys


# -- 3. and 4. batch framing and batch-level filter errors -----------------------------------------

@pytest.fixture
def recorded(server):
    rec = Recorder(server.port)
    c = aerospike.client(client_config([("127.0.0.1", rec.proxy_port)])).connect()
    yield rec, c
    c.close()
    rec.close()


def test_batch_reply_framing_as_the_real_node(recorded):
    rec, c = recorded
    keys = [(NS, "facts_b", i) for i in range(2000)]
    c.batch_write(BatchRecords([Write(k, [op.write("v", "x" * 580), op.write("i", i)])
                                for i, k in enumerate(keys)]))
    rec.messages.clear()
    res = c.batch_read(keys)
    assert all(r.result == 0 for r in res.batch_records)
    assert [len(b) for b in rec.as_msgs()] == [130624] * 9 + [80384, 22]
    last = rec.as_msgs()[-1]
    assert last[3] & 1 and last[5] == 0  # INFO3_LAST, result 0
    rec.messages.clear()
    c.batch_read(keys[:20], ["i"])
    assert [len(b) for b in rec.as_msgs()] == [20 * 39, 22]  # one data message, then LAST alone


def test_batch_level_filter_that_does_not_build_fails_the_batch(recorded):
    rec, c = recorded
    keys = [(NS, "bf", 1), (NS, "bf", 2)]
    for k in keys:
        c.put(k, {"i": 10, "f": 1.5})
    bad = {"expressions": exp.Eq(exp.IntBin("i"), 10.0).compile()}
    rec.messages.clear()
    res = c.batch_write(BatchRecords([Write(k, [op.write("i", 1)]) for k in keys]), policy_batch=bad)
    assert res.result == 4 and [r.result for r in res.batch_records] == [-15, -15]
    (body,) = rec.as_msgs()
    assert len(body) == 22 and body[5] == 4 and body[3] & 1
    rec.messages.clear()
    res = c.batch_read(keys, policy=bad)
    assert res.result == 4 and [r.result for r in res.batch_records] == [-15, -15]
    (body,) = rec.as_msgs()
    assert len(body) == 22 and body[5] == 4 and body[3] & 1
    assert [c.get(k)[2]["i"] for k in keys] == [10, 10]
    # the same filter in one row's policy fails that row only
    res = c.batch_write(BatchRecords([Write(keys[0], [op.write("i", 1)], policy=bad),
                                      Write(keys[1], [op.write("i", 2)])]))
    assert [r.result for r in res.batch_records] == [4, 0]


# -- 5. durable delete -----------------------------------------------------------------------------

def test_durable_delete_refused_first_as_on_community(server, client):
    dd = {"durable_delete": True}
    k0, k1, missing = (NS, "dd", 0), (NS, "dd", 1), (NS, "dd", "missing")
    client.put(k0, {"a": 1})
    client.put(k1, {"a": 1})
    assert code_of(lambda: client.remove(k0, policy=dd)) == 25
    assert code_of(lambda: client.remove(missing, policy=dd)) == 25  # before the lookup (not 2)
    false = exp.Eq(exp.IntBin("a"), 11).compile()
    assert code_of(lambda: client.remove(k0, policy={**dd, "expressions": false})) == 25  # not 27
    assert code_of(lambda: client.remove(k0, policy={**dd, "gen": aerospike.POLICY_GEN_EQ},
                                         meta={"gen": 9})) == 25  # not 3
    res = client.batch_remove([k0, k1], policy_batch_remove=dd)
    assert [r.result for r in res.batch_records] == [25, 25] and res.result == -16
    res = client.batch_write(BatchRecords([Remove(k0, policy=dd), Remove(k1)]))
    assert [r.result for r in res.batch_records] == [25, 0]
    client.put(k1, {"a": 1})
    assert client.put(k0, {"a": 5}, policy=dd) == 0  # a write that deletes nothing
    assert code_of(lambda: client.operate(k0, [op.write("a", None)], policy=dd)) == 25
    assert code_of(lambda: client.operate(k0, [op.delete()], policy=dd)) == 25
    res = client.batch_write(BatchRecords([Write(k0, [op.write("a", 7)], policy=dd),
                                           Write(k1, [op.write("a", None)], policy=dd)]))
    assert [r.result for r in res.batch_records] == [0, 25]
    assert code_of(lambda: client.operate(missing, [op.write("a", None)], policy=dd)) == 2
    assert client.get(k0)[2] == {"a": 7} and client.get(k1)[2] == {"a": 1}


# -- 6. and 8. metadata expressions, record size -----------------------------------------------------

def _passes(client, key, expr) -> bool:
    try:
        client.get(key, policy={"expressions": expr.compile()})
        return True
    except ex.FilteredOut:
        return False


def test_digest_modulo_uses_digest_bytes_16_to_19(server, client):
    key = (NS, "facts_m", "k1")
    assert aerospike.calc_digest(*key).hex() == "92961976aa9e8ee3eda9bac6e2761369e45e532e"
    client.put(key, {"a": 1})
    assert _passes(client, key, exp.Eq(exp.DigestMod(1000003), 213385))
    assert not _passes(client, key, exp.Eq(exp.DigestMod(1000003), 111963))  # bytes 8-11
    assert _passes(client, key, exp.Eq(exp.DigestMod(3), 1))
    assert _passes(client, key, exp.Eq(exp.DigestMod(-3), 1))
    assert code_of(lambda: client.get(key, policy={
        "expressions": exp.Eq(exp.DigestMod(0), 0).compile()})) == 4


def test_record_size_metadata_and_data_used_bytes(server, client):
    client.put((NS, "facts_m", "k1"), {"a": 1, "s": "hello"}, policy={"key": aerospike.POLICY_KEY_SEND})
    client.put((NS, "facts_m", "k2"), {"a": 1, "s": "hello"})
    for k in ("k1", "k2"):
        key = (NS, "facts_m", k)
        assert _passes(client, key, exp.Eq(exp.RecordSize(), 80))
        assert _passes(client, key, exp.Eq(exp.MemorySize(), 80))
        assert _passes(client, key, exp.Eq(exp.DeviceSize(), 0))
    assert _passes(client, (NS, "facts_m", "k1"), exp.KeyExists())
    assert not _passes(client, (NS, "facts_m", "k2"), exp.KeyExists())
    assert set_fields(server.port, "facts_m")["data_used_bytes"] == "160"
    # one blob bin of n bytes: 64 up to 9, 80 from 10 to 25, 96 from 26
    for n, size in ((9, 64), (10, 80), (25, 80), (26, 96)):
        client.put((NS, "facts_m", "b"), {"x": b"\0" * n})
        assert _passes(client, (NS, "facts_m", "b"), exp.Eq(exp.RecordSize(), size)), n


@pytest.mark.parametrize("value,policy,limit", [
    (b"b", {}, 1048520),
    (b"b", {"key": aerospike.POLICY_KEY_SEND}, 1048510),
    ("s", {}, 1048520),
])
def test_record_size_limit_at_the_exact_boundary(server, client, value, policy, limit):
    key = (NS, "facts_sz", 1)
    big = (lambda n: b"\0" * n) if isinstance(value, bytes) else (lambda n: "x" * n)
    assert client.put(key, {"b": big(limit)}, policy=policy) == 0
    e = pytest.raises(ex.AerospikeError, client.put, key, {"b": big(limit + 1)}, policy=policy)
    assert e.value.code == 13 and isinstance(e.value, ex.RecordTooBig)


def test_record_size_limit_in_a_batch_write(server, client):
    keys = [(NS, "facts_sz", 1), (NS, "facts_sz", 2)]
    res = client.batch_write(BatchRecords([Write(k, [op.write("b", b"\0" * 1048520)]) for k in keys]))
    assert [r.result for r in res.batch_records] == [0, 0]
    res = client.batch_write(BatchRecords([Write(keys[0], [op.write("b", b"\0" * 1048521)]),
                                           Write(keys[1], [op.write("b", b"small")])]))
    assert [r.result for r in res.batch_records] == [13, 0] and res.result == -16


# -- 7. maps ---------------------------------------------------------------------------------------

def test_map_key_value_reads_are_flat_lists_in_key_order(server, client):
    key = (NS, "facts_cdt", 1)
    ordered = {"map_order": aerospike.MAP_KEY_ORDERED}
    assert client.operate(key, [map_ops.map_put("m", "b", 2, ordered)])[2] == {"m": 1}
    assert client.operate(key, [map_ops.map_put("m", "a", 1, ordered)])[2] == {"m": 2}
    assert client.operate(key, [map_ops.map_put_items("m", {"d": 4, "c": 3}, ordered)])[2] == {"m": 4}
    kv = aerospike.MAP_RETURN_KEY_VALUE
    read = lambda o: client.operate(key, [o])[2]  # noqa: E731
    assert read(map_ops.map_get_by_key("m", "a", kv)) == {"m": ["a", 1]}
    assert read(map_ops.map_get_by_key_list("m", ["c", "a", "zz"], kv)) == {"m": ["a", 1, "c", 3]}
    assert read(map_ops.map_get_by_key("m", "zz", kv)) == {"m": []}
    value = aerospike.MAP_RETURN_VALUE
    assert read(map_ops.map_get_by_key_list("m", ["c", "a", "zz"], value)) == {"m": [1, 3]}
    assert read(map_ops.map_get_by_key("m", "zz", value)) == {"m": None}
    client.put(key, {"u": {"a": 1, "b": 2}})
    assert read(map_ops.map_get_by_key_list("u", ["b", "a"], kv)) == {"u": ["a", 1, "b", 2]}
    assert client.get(key)[2]["m"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    # stored as a real node stores a key-ordered map: sorted, behind the c7 00 01 c0 header
    digest = bytes(aerospike.calc_digest(*key))
    _pt, raw = server.namespaces[NS].records[digest].bins["m"]
    assert raw.hex() == "85c70001c0a2036101a2036202a2036303a2036404"
    _pt, raw = server.namespaces[NS].records[digest].bins["u"]
    assert raw.hex() == "82a2036101a2036202"


# -- 9. what the server leaves out -----------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    exp.Eq(exp.Add(exp.IntBin("a"), 1), 2),
    exp.Eq(exp.IntAnd(exp.IntBin("a"), 1), 1),
    exp.CmpRegex(0, "^x", exp.StrBin("s")),
    exp.Eq(exp.Cond(exp.BinExists("a"), 1, 0), 1),
])
def test_expression_calls_left_out_are_refused_with_16(client, expr):
    client.put((NS, "ex", 1), {"a": 1, "s": "xy"})
    assert code_of(lambda: client.get((NS, "ex", 1), policy={"expressions": expr.compile()})) == 16
    assert code_of(lambda: client.put((NS, "ex", 1), {"a": 2},
                                      policy={"expressions": expr.compile()})) == 16
    assert client.get((NS, "ex", 1))[2] == {"a": 1, "s": "xy"}


def test_remaining_metadata_expressions(server, client):
    key = (NS, "meta", "k")
    client.put(key, {"a": 1}, policy={"key": aerospike.POLICY_KEY_SEND})
    assert _passes(client, key, exp.Eq(exp.TTL(), -1))
    assert _passes(client, key, exp.Eq(exp.VoidTime(), -1))
    assert _passes(client, key, exp.Eq(exp.SetName(), "meta"))
    assert _passes(client, key, exp.Not(exp.IsTombstone()))
    assert re.fullmatch(r"objects=1:.*", raw_info(server.port, "sets/test/meta")[0])


def test_comparisons_of_every_literal_kind(client):
    key = (NS, "lit", 1)
    client.put(key, {"l": [1, "a", [2]], "b": b"\x01\x02", "t": True, "s": "abc", "f": 2.5, "m": {"k": 1}})
    for expr, ok in [
        (exp.Eq(exp.ListBin("l"), [1, "a", [2]]), True), (exp.Eq(exp.ListBin("l"), [1]), False),
        (exp.Eq(exp.BlobBin("b"), b"\x01\x02"), True), (exp.LT(exp.BlobBin("b"), b"\x01"), False),
        (exp.Eq(exp.BoolBin("t"), True), True), (exp.Eq(exp.BoolBin("t"), False), False),
        (exp.GE(exp.StrBin("s"), "abc"), True), (exp.GT(exp.FloatBin("f"), 2.5), False),
        (exp.Eq(exp.MapBin("m"), {"k": 1}), True), (exp.NE(exp.MapBin("m"), {"k": 1}), False),
    ]:
        assert _passes(client, key, expr) is ok, expr
