"""Fault injection, restart and counters, seen through the official client."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers.batch.records import BatchRecords, Write
from aerospike_helpers.operations import operations as op

from fsplug.testing.aerospike_server import AerospikeTestServer
from fsplug.testing.aerospike_server import protocol as P
import contextlib

K1 = ("test", "f", 1)
K2 = ("test", "f", 2)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def error_code(fn):
    with pytest.raises(ex.AerospikeError) as e:
        fn()
    return e.value.code


def test_set_latency_per_command_kind(server, client):
    client.put(K1, {"a": 1})
    base = min(timed(lambda: client.get(K1)) for _ in range(5))
    server.set_latency(0.2, commands={"get"})
    assert timed(lambda: client.get(K1)) >= 0.2
    assert timed(lambda: client.put(K2, {"a": 1})) < 0.15
    server.set_latency(0.15)  # every data command
    assert timed(lambda: client.put(K2, {"a": 2})) >= 0.15
    assert timed(lambda: client.batch_read([K1, K2])) >= 0.15
    server.set_latency(0)
    assert timed(lambda: client.get(K1)) < base + 0.1


def test_latency_beyond_timeout_times_out(server, client):
    client.put(K1, {"a": 1})
    server.set_latency(0.3, commands={"get"})
    assert error_code(lambda: client.get(K1, policy={"total_timeout": 100})) == 9
    server.set_latency(0)
    assert client.get(K1)[2] == {"a": 1}


def test_refuse_connections(server, make_client):
    c = make_client(server)
    c.put(K1, {"a": 1})
    server.refuse_connections(True)
    with pytest.raises(ex.AerospikeError):
        make_client(server)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=1)
    assert c.get(K1)[2] == {"a": 1}  # pooled connections still work
    server.refuse_connections(False)
    assert make_client(server).get(K1)[2] == {"a": 1}


def test_drop_connections(server, client):
    client.put(K1, {"a": 1})
    assert server.open_connections() >= 2  # tend + data
    assert server.drop_connections() >= 2
    results = []
    for _ in range(3):
        try:
            results.append(client.get(K1)[2])
        except ex.AerospikeError as e:
            results.append(e.code)
    assert results[-1] == {"a": 1}  # the client reconnects
    assert server.stats["connections_opened"] >= 3


def test_pause_and_resume(server, client):
    client.put(K1, {"a": 1})
    server.pause()
    assert error_code(lambda: client.get(K1, policy={"total_timeout": 200})) == 9
    with socket.create_connection((server.host, server.port), timeout=1) as s:  # still accepts
        req = b"build\n"
        s.sendall(P.proto_header(P.PROTO_TYPE_INFO, len(req)) + req)
        s.settimeout(0.2)
        with pytest.raises(socket.timeout):
            s.recv(100)
        server.resume()
        s.settimeout(2)
        assert s.recv(100).endswith(b"build\t8.1.2.0\n")
    assert client.get(K1)[2] == {"a": 1}


def test_fail_next_drop(server, client):
    client.put(K1, {"a": 1})
    server.fail_next(1, commands={"put"})
    with pytest.raises(ex.AerospikeError):
        client.put(K1, {"a": 2})
    assert client.get(K1)[2] == {"a": 1}  # not executed
    client.put(K1, {"a": 3})
    assert client.get(K1)[2] == {"a": 3}
    assert server.stats["faults_injected"] == 1


def test_fail_next_after_lets_commands_pass_first(server, client):
    server.fail_next(1, commands={"put"}, after=2)
    client.put(K1, {"a": 1})
    client.put(K1, {"a": 2})
    with pytest.raises(ex.AerospikeError):
        client.put(K1, {"a": 3})  # the third put fails, not executed
    assert client.get(K1)[2] == {"a": 2}
    client.put(K1, {"a": 4})
    assert client.get(K1)[2] == {"a": 4} and server.stats["faults_injected"] == 1


def test_fail_next_drop_after_executes(server, client):
    server.fail_next(1, commands="put", action="drop_after")
    with pytest.raises(ex.AerospikeError):
        client.put(K1, {"a": 2})
    assert client.get(K1)[2] == {"a": 2}


def test_fail_next_result_code_single_and_batch(server, client):
    server.fail_next(2, commands={"batch_write"}, action=14)

    def batch():
        return BatchRecords([Write(K1, [op.write("a", 1)]), Write(K2, [op.write("a", 1)])])

    # The client reports a batch-level error in BatchRecords.result, every row -15 (no response).
    for _ in range(2):
        res = client.batch_write(batch())
        assert res.result == 14 and [r.result for r in res.batch_records] == [-15, -15]
    assert client.exists(K1)[1] is None  # not executed
    res = client.batch_write(batch())
    assert res.result == 0 and [r.result for r in res.batch_records] == [0, 0]
    assert client.get(K1)[2] == {"a": 1}
    server.fail_next(1, action=18)  # any data command
    assert error_code(lambda: client.get(K2)) == 18
    assert client.get(K2)[2] == {"a": 1}
    server.fail_next(1, commands={"batch"}, action="drop")
    assert client.batch_read([K1, K2]).result != 0
    res = client.batch_read([K1, K2])
    assert res.result == 0 and [r.result for r in res.batch_records] == [0, 0]
    with pytest.raises(ValueError):
        server.fail_next(1, action="explode")


def test_clear_faults(server, client):
    client.put(K1, {"a": 1})
    server.fail_next(5, action=14)
    server.set_latency(1)
    server.clear_faults()
    assert timed(lambda: client.get(K1)) < 0.5


def test_stop_and_restart_on_same_port(make_client):
    srv = AerospikeTestServer(["test"]).start()
    try:
        port = srv.port
        c = make_client(srv)
        c.put(K1, {"a": 1})
        srv.stop()
        assert not srv.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        assert error_code(lambda: c.get(K1)) != 0
        srv.start(keep_data=True)
        assert srv.port == port

        def eventually(fn):
            deadline = time.monotonic() + 5
            while True:
                try:
                    return fn()
                except ex.AerospikeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

        assert eventually(lambda: c.get(K1))[2] == {"a": 1}
        srv.stop()
        srv.start()  # without the data
        assert eventually(lambda: c.exists(K1))[1] is None
        assert srv.record_count("test") == 0
    finally:
        srv.stop()


def test_stats_count_commands_by_kind(server, client):
    server.reset_stats()
    client.put(K1, {"a": 1})
    client.get(K1)
    client.select(K1, ["a"])
    client.exists(K1)
    client.operate(K1, [op.increment("a", 1), op.read("a")])
    client.touch(K1)
    client.batch_read([K1, K2])
    client.batch_write(BatchRecords([Write(K1, [op.write("a", 1)]), Write(K2, [op.write("a", 1)])]))
    client.batch_remove([K1, K2])
    s = server.stats
    assert {k: s.get(k) for k in ("put", "get", "exists", "operate", "touch", "batch_read",
                                  "batch_write", "batch_remove", "batch_keys")} == {
        "put": 1, "get": 2, "exists": 1, "operate": 1, "touch": 1, "batch_read": 1,
        "batch_write": 1, "batch_remove": 1, "batch_keys": 6}


def test_many_concurrent_connections(server, make_client):
    clients = [make_client(server) for _ in range(4)]
    errors = []

    def work(c, n):
        try:
            for i in range(100):
                key = ("test", f"t{n}", i)
                c.put(key, {"v": i})
                assert c.get(key)[2] == {"v": i}
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c, n)) for n, c in enumerate(clients * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert server.record_count("test") == 800
    assert server.open_connections() >= 5


def test_bad_input_does_not_kill_the_server(server, client):
    with socket.create_connection((server.host, server.port), timeout=2) as s:
        s.sendall(P.frame(P.PROTO_TYPE_AS_MSG, b"\x16garbage"))
        reply = s.recv(100)
        assert P.parse_msg(reply[8:])[0].result_code == P.AS_ERR_PARAMETER
        s.sendall(b"\x07\x01\x00\x00\x00\x00\x00\x01x")  # bad proto version: closed
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(100) == b""
    client.put(K1, {"a": 1})
    assert client.get(K1)[2] == {"a": 1}


def test_compressed_requests_are_enterprise_only(server):
    # A Community node does not decompress a compressed request (proto type 4): it answers a
    # plain AS_MSG with code 25 and keeps the connection. Compression is an Enterprise feature.
    cfg = {"hosts": [(server.host, server.port)], "timeout": 1500,
           "policies": {"write": {"compress": True, "max_retries": 0},
                        "read": {"compress": True}}}
    c = aerospike.client(cfg).connect()
    try:
        # The client compresses only commands over 128 bytes: this put is sent compressed.
        assert error_code(lambda: c.put(K1, {"a": "x" * 1000})) == P.AS_ERR_ENTERPRISE_ONLY
        assert server.stats.get("compressed", 0) >= 1
        assert server.record_count("test", "f") == 0
        c.put(K1, {"a": "x"})  # too small to be compressed: stored
        assert c.get(K1)[2] == {"a": "x"}  # the reply is never compressed
    finally:
        c.close()


def test_compressed_request_answer_on_the_wire(server):
    inner = P.frame(P.PROTO_TYPE_AS_MSG, P.encode_msg(0, info1=P.INFO1_READ | P.INFO1_GET_ALL,
                                                     fields=[(P.FIELD_NAMESPACE, b"test"),
                                                             (P.FIELD_DIGEST_RIPE, b"\1" * 20)]))
    body = struct.pack(">Q", len(inner)) + zlib.compress(inner)
    with socket.create_connection((server.host, server.port), timeout=2) as s:
        s.sendall(P.frame(P.PROTO_TYPE_AS_MSG_COMPRESSED, body))
        reply = s.recv(100)
        assert P.parse_proto_header(reply) == (2, P.PROTO_TYPE_AS_MSG, 22)
        m = P.parse_msg(reply[8:])[0]
        assert (m.result_code, m.info3) == (P.AS_ERR_ENTERPRISE_ONLY, 0)
        s.sendall(inner)  # the connection stays usable
        assert P.parse_msg(s.recv(100)[8:])[0].result_code == P.AS_ERR_NOT_FOUND


def test_stop_is_prompt_during_long_latency_and_pause(make_client):
    srv = AerospikeTestServer(["test"]).start()
    c = make_client(srv)
    c.put(K1, {"a": 1})
    srv.set_latency(30, commands={"get"})
    t = threading.Thread(target=lambda: error_code(lambda: c.get(K1, policy={"total_timeout": 3000})))
    t.start()
    time.sleep(0.2)
    assert timed(srv.stop) < 2
    t.join(5)
    srv.start()
    srv.pause()
    with socket.create_connection((srv.host, srv.port), timeout=1) as s:
        s.sendall(P.proto_header(P.PROTO_TYPE_INFO, 6) + b"build\n")
        time.sleep(0.1)
        assert timed(srv.stop) < 2
    assert srv.open_connections() == 0
