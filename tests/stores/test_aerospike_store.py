"""Aerospike-specific behaviour of the online store, against the bundled test server.

These tests need the test server's introspection (command counters) or namespace settings, so
they always use it, also when FSPLUG_AEROSPIKE_HOSTS points the conformance suite at a cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from fsplug.errors import DefinitionError, NamespaceNotFoundError, StoreUnavailableError, TTLNotAllowedError
from fsplug.store import FeatureStore
from fsplug.testing.aerospike_server import AerospikeTestServer
from tests.conftest import write_empty_sources, write_repo
from tests.stores.conftest import ALL_TYPES

NOW = datetime.now(UTC)


def _repo(tmp_path, address, extra=""):

    cfg = ("project: a\nonline_store:\n  type: aerospike\n  hosts_env: null\n"
           f"  hosts: [\"{address}\"]\n  namespace: test\n" + extra)
    root = write_repo(tmp_path / "repo", {"defs.yaml": ALL_TYPES}, config=cfg)
    write_empty_sources(root)
    return root


@pytest.fixture
def server():
    with AerospikeTestServer(namespaces=["test"]) as srv:
        yield srv


def test_one_batch_read_per_request_across_entities(tmp_path, server):
    root = _repo(tmp_path, server.address)
    with FeatureStore(root) as store:
        store.apply()
        store.push("stats", {"driver_id": list(range(50)), "ts": pa.array([NOW] * 50, pa.timestamp("us", tz="UTC")),
                             "trips": list(range(50)), "rate": [0.1] * 50})
        server.reset_stats()
        res = store.get_online_features(features=["stats:trips", "zone_stats:demand", "all_types:f_str"],
                                        entity_rows=[{"driver_id": i, "city": "x", "zone_id": i} for i in range(50)])
        assert res.to_dict()["trips"] == list(range(50))
        stats = server.stats
        assert stats["batch_read"] == 1, stats
        assert stats["batch_keys"] == 100  # 50 drivers + 50 zones in the same batch_read


def test_records_are_written_with_keys_and_bins_as_declared(tmp_path, server):
    import aerospike

    root = _repo(tmp_path, server.address)
    with FeatureStore(root) as store:
        store.apply()
        store.push("stats", {"driver_id": [7], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": [3], "rate": [0.5]})
        ts_bin = store.registry.view("stats").timestamp_bin
    client = aerospike.client({"hosts": [("127.0.0.1", server.port)]}).connect()
    try:
        (rec,) = client.batch_read([("test", "a-driver", 7)]).batch_records  # set <project>-<entity>
        key, _meta, bins = rec.record
        assert set(bins) == {"st_trips", "st_rate", ts_bin}
        assert bins["st_trips"] == 3 and bins[ts_bin] == int(NOW.timestamp() * 1e6)
        assert key[2] == 7  # the user key was sent with the write and is stored
    finally:
        client.close()


def test_ttl_refused_by_nsup_period_0_explains_the_fix(tmp_path, server):
    root = _repo(tmp_path, server.address, extra="  record_ttl: 30d\n")
    with FeatureStore(root) as store:
        store.apply()
        with pytest.raises(TTLNotAllowedError) as info:
            store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                                 "trips": [1], "rate": [0.5]})
    msg = str(info.value)
    assert "code 22" in msg and "nsup-period" in msg and "record_ttl: never" in msg


def test_ttl_accepted_when_namespace_has_nsup(tmp_path):
    with AerospikeTestServer(namespaces={"test": {"nsup_period": 120}}) as srv:
        root = _repo(tmp_path, srv.address, extra="  record_ttl: 30d\n")
        with FeatureStore(root) as store:
            store.apply()
            assert store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                                        "trips": [1], "rate": [0.5]}) == 1


def test_apply_checks_namespace(tmp_path, server):
    root = _repo(tmp_path, server.address)
    cfg = root / "feature_store.yaml"
    cfg.write_text(cfg.read_text().replace("namespace: test", "namespace: features"))
    with FeatureStore(root) as store, \
            pytest.raises(NamespaceNotFoundError, match="'features' does not exist.*it has: test"):
        store.apply()
    assert not (root / "data" / "registry.json").exists()


def test_unreachable_cluster_names_hosts(tmp_path):
    with AerospikeTestServer(namespaces=["test"]) as srv:
        address = srv.address
    root = _repo(tmp_path, address, extra="  connect_timeout_ms: 200\n")
    with FeatureStore(root) as store, pytest.raises(StoreUnavailableError, match=f"hosts tried: {address}"):
        store.apply()


@pytest.mark.parametrize("line,needle", [
    ("  namespace: " + "n" * 32 + "\n", "is 32 bytes; Aerospike allows 1 to 31"),
    ("  hosts: [\"localhost\"]\n", "must look like host:port"),
    ("  record_ttl: soon\n", "record_ttl"),
    ("  read_total_timeout_ms: -5\n", "greater than or equal to 0"),
    ("  sets: {driver: \"" + "s" * 64 + "\"}\n", "allows 1 to 63"),
])
def test_config_errors_are_located(tmp_path, line, needle):
    base = "project: a\nonline_store:\n  type: aerospike\n"
    root = write_repo(tmp_path / "r", {}, config=base + line)
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).changes()
    assert "feature_store.yaml:4:" in str(info.value) and needle in str(info.value)


def test_missing_driver_says_what_to_install(tmp_path, server, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "aerospike" or name.startswith("aerospike."):
            raise ImportError("No module named 'aerospike'")
        return real(name, *a, **k)

    root = _repo(tmp_path, server.address)
    monkeypatch.setattr(builtins, "__import__", fake)
    from fsplug.errors import StoreDriverMissingError

    with pytest.raises(StoreDriverMissingError, match=r"pip install 'fsplug\[aerospike\]'"):
        FeatureStore(root).apply()
