"""The server in a child process, driven through spawn_server()'s control channel."""

from __future__ import annotations

import aerospike
import pytest
from aerospike import exception as ex

from fsplug.testing.aerospike_server.remote import RemoteError, spawn_server

from .conftest import client_config


def test_spawned_server_faults_stats_and_gil_holding_calls():
    with spawn_server(namespaces={"test": {"nsup_period": 60}}) as srv:
        c = aerospike.client(client_config([("127.0.0.1", srv.port)])).connect()
        try:
            c.put(("test", "s", 1), {"a": 1}, meta={"ttl": 100})
            srv.advance_clock(0.002)  # a record of the truncate's own millisecond would survive it
            assert c.truncate("test", "s", 0) == 0  # holds the GIL: needs an out-of-process server
            assert srv.record_count("test") == 0
            srv.fail_next(1, commands={"put"}, action=14)
            with pytest.raises(ex.AerospikeError) as e:
                c.put(("test", "s", 1), {"a": 1})
            assert e.value.code == 14
            c.put(("test", "s", 2), {"a": 1}, meta={"ttl": 10})
            srv.advance_clock(11)
            assert c.exists(("test", "s", 2))[1] is None
            stats = srv.stats
            assert stats["put"] == 3 and stats["faults_injected"] == 1
            srv.set_latency(0.2, commands={"get"})
            with pytest.raises(ex.AerospikeError) as e:
                c.get(("test", "s", 2), policy={"total_timeout": 100})
            assert e.value.code == 9
            srv.clear_faults()
            with pytest.raises(RemoteError):
                srv._call("not_a_method")
        finally:
            c.close()
    assert srv._proc.returncode == 0


def test_spawned_cluster():
    with spawn_server(nodes=3) as cl:
        assert len(cl.ports) == 3 and len(set(cl.ports)) == 3
        c = aerospike.client(client_config(cl.client_hosts()[:1])).connect()
        try:
            assert len(c.get_nodes()) == 3
            keys = [("test", "s", i) for i in range(30)]
            for key in keys:
                c.put(key, {"v": 1})
            assert sum(cl.node(i).stats.get("put", 0) for i in range(3)) == 30
            cl.stop_node(2)
            results = [r.result for r in c.batch_read(keys).batch_records]
            assert 0 in results and -15 in results
            cl.start_node(2)
        finally:
            c.close()
