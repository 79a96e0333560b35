"""Fixtures of the online store conformance suite: one repo layout, every store.

The Aerospike half runs against the bundled wire-compatible test server, or unchanged against a
real cluster when FSPLUG_AEROSPIKE_HOSTS=host:port[,host:port] is set (each test then uses its own
set names, so runs do not see each other's records).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import write_empty_sources, write_repo

ALL_TYPES = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
  - name: zone
    join_keys: [{name: city, dtype: string}, {name: zone_id, dtype: int64}]
sources:
  - {name: all_src, path: data/all.parquet, timestamp_field: ts, created_timestamp_field: created}
  - {name: stats_src, path: data/stats.parquet, timestamp_field: ts, created_timestamp_field: created}
  - {name: zone_src, path: data/zone.parquet, timestamp_field: ts}
feature_views:
  - name: all_types
    entity: driver
    source: all_src
    ttl: 1d
    features:
      - {name: f_int, dtype: int64, default: -1}
      - {name: f_float, dtype: float64}
      - {name: f_float32, dtype: float32}
      - {name: f_str, dtype: string}
      - {name: f_bool, dtype: bool}
      - {name: f_bytes, dtype: bytes}
      - {name: f_ts, dtype: timestamp}
      - {name: f_emb, dtype: "list[float64]"}
  - name: stats
    entity: driver
    source: stats_src
    ttl: 1h
    features:
      - {name: trips, dtype: int64, bin: st_trips}
      - {name: rate, dtype: float64, bin: st_rate}
  - name: zone_stats
    entity: zone
    source: zone_src
    ttl: none
    features:
      - {name: demand, dtype: float64, bin: z_demand}
feature_services:
  - name: everything
    features: [all_types:*, stats:*]
  - name: stats_only
    features: [stats:*]
"""


@pytest.fixture(scope="session")
def bundled_aerospike():
    """The bundled test server the Aerospike half runs against, or None with FSPLUG_AEROSPIKE_HOSTS."""
    if os.environ.get("FSPLUG_AEROSPIKE_HOSTS"):
        yield None
        return
    from fsplug.testing.aerospike_server import AerospikeTestServer

    with AerospikeTestServer(namespaces=["test"]) as srv:
        yield srv


@pytest.fixture(scope="session")
def aerospike_address(bundled_aerospike):
    """host:port of the Aerospike cluster under test: the env's, or the bundled test server's."""
    return os.environ.get("FSPLUG_AEROSPIKE_HOSTS") or bundled_aerospike.address


def store_config(kind: str, aerospike_address: str | None, extra: str = "") -> str:
    if kind == "sqlite":
        return "project: conf\nonline_store:\n  type: sqlite\n  path: data/online.db\n" + extra
    # a project of its own per test: its sets (<project>-<entity>) are its own on a shared cluster
    hosts = ", ".join(f'"{h}"' for h in aerospike_address.split(","))
    return (
        f"project: conf_{uuid.uuid4().hex[:8]}\nonline_store:\n  type: aerospike\n"
        f"  hosts: [{hosts}]\n  namespace: test\n"
        "  read_total_timeout_ms: 2000\n  read_socket_timeout_ms: 1000\n" + extra
    )


@pytest.fixture(params=["sqlite", "aerospike"])
def store_kind(request):
    return request.param


@pytest.fixture
def conf_repo(tmp_path, store_kind, request) -> Path:
    """An applied repo with every dtype, a composite-key entity and placeholder sources."""

    from fsplug.store import FeatureStore

    address = request.getfixturevalue("aerospike_address") if store_kind == "aerospike" else None
    root = write_repo(tmp_path / "conf", {"defs.yaml": ALL_TYPES}, config=store_config(store_kind, address))
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
    yield root
    with FeatureStore(root) as store:
        store.teardown()
