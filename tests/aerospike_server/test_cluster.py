"""A three-node test cluster seen through the official client."""

from __future__ import annotations

import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers.batch.records import BatchRecords, Write
from aerospike_helpers.operations import operations as op

from fsplug.testing.aerospike_server import AerospikeTestCluster

from .conftest import client_config

KEYS = [("test", "c", i) for i in range(300)]


def owners(cluster, keys):
    return [cluster.owner_of(bytes(aerospike.calc_digest(*key))) for key in keys]


@pytest.fixture
def seeded(cluster, make_client):
    c = make_client(cluster)
    c.batch_write(BatchRecords([Write(key, [op.write("v", key[2])]) for key in KEYS]))
    cluster.reset_stats()
    return c


def test_client_discovers_every_node_from_one_seed(cluster):
    c = aerospike.client(client_config(cluster.client_hosts()[:1])).connect()
    try:
        nodes = c.get_node_names()
        assert sorted(n["port"] for n in nodes) == sorted(cluster.ports)
        assert {n["node_name"] for n in nodes} == {n.node_name for n in cluster.nodes}
        assert len(cluster.hosts) == 3 and all(h.startswith("127.0.0.1:") for h in cluster.hosts)
    finally:
        c.close()


def test_single_record_commands_go_to_the_owner(cluster, make_client):
    c = make_client(cluster)
    keys = KEYS[:60]
    for key in keys:
        c.put(key, {"v": key[2]})
    own = owners(cluster, keys)
    assert [n.stats.get("put", 0) for n in cluster.nodes] == [own.count(i) for i in range(3)]
    assert all(own.count(i) > 0 for i in range(3))


def test_batch_is_split_by_node_and_returns_every_record(cluster, seeded):
    recs = seeded.batch_read(KEYS).batch_records
    assert [r.record[2]["v"] for r in recs] == list(range(300))
    own = owners(cluster, KEYS)
    for i, n in enumerate(cluster.nodes):
        assert n.stats["batch_read"] == 1
        assert n.stats["batch_keys"] == own.count(i)


def test_stopped_node_fails_its_keys_only(cluster, seeded):
    own = owners(cluster, KEYS)
    cluster.stop_node(1)
    res = seeded.batch_read(KEYS)
    results = [r.result for r in res.batch_records]
    assert all((r == 0) == (o != 1) for r, o in zip(results, own, strict=True))
    assert {r for r, o in zip(results, own, strict=True) if o == 1} == {-15}  # client: no response
    on_stopped = KEYS[own.index(1)]
    on_live = KEYS[own.index(0)]
    with pytest.raises(ex.AerospikeError) as e:
        seeded.get(on_stopped)
    assert e.value.code == -10  # client: connection error
    assert seeded.get(on_live)[2] == {"v": on_live[2]}
    cluster.start_node(1)
    deadline = time.monotonic() + 5
    while True:
        try:
            assert seeded.get(on_stopped)[2] == {"v": on_stopped[2]}
            break
        except ex.AerospikeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert all(r.result == 0 for r in seeded.batch_read(KEYS).batch_records)


def test_node_serves_partitions_it_does_not_own(cluster):
    """A command sent to the wrong node is served (as a real node proxies it)."""
    import socket

    from fsplug.testing.aerospike_server import protocol as P

    digest = bytes(aerospike.calc_digest(*KEYS[0]))
    wrong = cluster.nodes[(cluster.owner_of(digest) + 1) % 3]
    put = P.encode_msg(0, info2=P.INFO2_WRITE, fields=[
        (P.FIELD_NAMESPACE, b"test"), (P.FIELD_SETNAME, b"c"), (P.FIELD_DIGEST_RIPE, digest)],
        ops=[(P.OP_WRITE, P.PT_INTEGER, "v", (7).to_bytes(8, "big"))])
    with socket.create_connection((wrong.host, wrong.port), timeout=2) as s:
        s.sendall(P.frame(P.PROTO_TYPE_AS_MSG, put))
        assert P.parse_msg(s.recv(100)[8:])[0].result_code == 0
    assert cluster.record_count("test", "c") == 1


def test_cluster_info_and_ttl_clock(make_client):
    with AerospikeTestCluster(nodes=2, namespaces={"test": {"nsup_period": 60}}) as cl:
        c = make_client(cl)
        for n in c.info_all("peers-clear-std").values():
            assert n[1].count("127.0.0.1:") == 1
        assert {v[1] for v in c.info_all("namespaces").values()} == {"test\n"}
        for key in KEYS[:20]:
            c.put(key, {"v": 1}, meta={"ttl": 10})
        assert cl.record_count("test") == 20
        cl.advance_clock(11)
        assert cl.record_count("test") == 0
        assert all(r.result == 2 for r in c.batch_read(KEYS[:20]).batch_records)


def test_stopped_node_with_rebalance_keeps_every_record_readable(cluster, seeded):
    before = [n.partition_generation for n in cluster.nodes]
    cluster.stop_node(2, rebalance=True)
    assert [n.partition_generation for n in cluster.nodes] == [g + 1 for g in before]
    assert sum(len(cluster.partitions_of(i)) for i in (0, 1)) == 4096
    assert len(cluster.partitions_of(2)) == 0
    deadline = time.monotonic() + 5
    while True:
        res = seeded.batch_read(KEYS)
        if res.result == 0 and all(r.result == 0 for r in res.batch_records):
            break
        assert time.monotonic() < deadline, "the client never re-routed the dropped node's keys"
        time.sleep(0.1)
    assert len(seeded.get_nodes()) == 2
    cluster.start_node(2)
    assert len(cluster.partitions_of(2)) == len(range(2, 4096, 3))
    deadline = time.monotonic() + 5
    while len(seeded.get_nodes()) != 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cluster.reset_stats()
    assert all(r.result == 0 for r in seeded.batch_read(KEYS).batch_records)
    assert all(n.stats.get("batch_read") == 1 for n in cluster.nodes)
