"""The server must not leak threads, sockets or memory across many connections."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import tracemalloc

import aerospike

from fsplug.testing.aerospike_server import AerospikeTestServer
from fsplug.testing.aerospike_server import protocol as P

from .conftest import client_config


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle(server, threads_before, fds_before, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gc.collect()
        if (threading.active_count() <= threads_before and open_fds() <= fds_before
                and server.open_connections() == 0):
            break
        time.sleep(0.05)
    return threading.active_count(), open_fds()


def test_thousands_of_connections_leave_no_threads_sockets_or_memory():
    with AerospikeTestServer(["test"]) as srv:
        req = b"build\n"
        msg = P.proto_header(P.PROTO_TYPE_INFO, len(req)) + req
        put = P.frame(P.PROTO_TYPE_AS_MSG, P.encode_msg(0, info2=P.INFO2_WRITE, fields=[
            (P.FIELD_NAMESPACE, b"test"), (P.FIELD_SETNAME, b"s"),
            (P.FIELD_DIGEST_RIPE, b"\x05" * 20)], ops=[(P.OP_WRITE, P.PT_STRING, "a", b"x")]))

        def cycles(n):
            for i in range(n):
                with socket.create_connection((srv.host, srv.port), timeout=2) as s:
                    s.sendall(msg if i % 2 else put)
                    assert s.recv(200)

        cycles(50)  # warm-up
        threads0, fds0 = settle(srv, threading.active_count(), open_fds())
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
        cycles(2000)
        threads1, fds1 = settle(srv, threads0, fds0)
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        growth = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
        assert threads1 <= threads0
        assert fds1 <= fds0
        assert srv.open_connections() == 0
        assert growth < 512 * 1024, growth
        assert srv.stats["connections_opened"] >= 2050
        assert srv.record_count("test") == 1


def test_client_connect_close_cycles_and_stop_join_everything():
    threads0, fds0 = threading.active_count(), open_fds()
    srv = AerospikeTestServer(["test"]).start()
    for i in range(25):
        c = aerospike.client(client_config([(srv.host, srv.port)])).connect()
        c.put(("test", "s", i), {"a": i})
        c.close()
    settle(srv, threads0 + 1, fds0 + 1)
    assert srv.open_connections() == 0
    # Stopping with connections open closes and joins them all.
    socks = [socket.create_connection((srv.host, srv.port), timeout=2) for _ in range(20)]
    deadline = time.monotonic() + 5
    while srv.open_connections() < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.open_connections() == 20
    srv.stop()
    for s in socks:
        s.close()
    assert srv.open_connections() == 0
    assert threading.active_count() <= threads0
    assert open_fds() <= fds0
