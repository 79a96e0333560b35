"""Fixtures of the reliability suite: small repos on SQLite and on the Aerospike test server.

Fault-injection tests always use the bundled test server (`hosts_env: null`, so
FSPLUG_AEROSPIKE_HOSTS cannot point them at a real cluster) and only loopback addresses.
Timing tests use a server in a child process (`spawn_server`), so the client's latency is not
the in-process server's GIL contention.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import write_repo

TS = pa.timestamp("us", tz="UTC")

# Slack on top of a time budget for a loaded 2-core CI machine (scheduling, GC, the test's own work).
MARGIN_S = 0.2

DEFS = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
  - {name: zone, join_key: city, dtype: string}
sources:
  - {name: stats_src, path: data/stats.parquet, timestamp_field: ts, created_timestamp_field: created}
  - {name: ver_src, path: data/ver.parquet, timestamp_field: ts}
  - {name: zone_src, path: data/zone.parquet, timestamp_field: ts}
feature_views:
  - name: stats
    entity: driver
    source: stats_src
    ttl: none
    features:
      - {name: a, dtype: int64, default: -1}
      - {name: b, dtype: float64}
      - {name: c, dtype: string}
  - name: versions          # every feature of a row holds the row's version: a torn read shows
    entity: driver
    source: ver_src
    ttl: none
    features:
      - {name: v1, dtype: int64}
      - {name: v2, dtype: int64}
      - {name: v3, dtype: float64}
      - {name: v4, dtype: string}
  - name: zone_stats
    entity: zone
    source: zone_src
    ttl: none
    features:
      - {name: demand, dtype: float64}
request_sources:
  - name: req
    features:
      - {name: dist, dtype: float64}
      - {name: hour, dtype: int64, default: 12}
feature_services:
  - {name: svc, features: ["stats:*", "req:*"]}
  - {name: ver_svc, features: ["versions:*"]}
"""

SQLITE_CONFIG = "project: rel\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n  path: data/online.db\n"


def aerospike_config(hosts: list[str] | str, extra: str = "") -> str:
    """feature_store.yaml for the test server at `hosts`, with a project (so sets and state) of its own."""
    hosts = [hosts] if isinstance(hosts, str) else hosts
    return (f"project: rel_{uuid.uuid4().hex[:8]}\nregistry: data/registry.json\nonline_store:\n  type: aerospike\n"
            f"  hosts: [{', '.join(repr(h) for h in hosts)}]\n  hosts_env: null\n  namespace: test\n" + extra)


def placeholder_sources(root: Path) -> None:
    """Empty Parquet files with the right columns, so that `apply` finds every source."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(stats_table([], []), root / "data" / "stats.parquet")
    pq.write_table(versions_table([], 0), root / "data" / "ver.parquet")
    pq.write_table(pa.table({"city": pa.array([], pa.string()), "ts": pa.array([], TS),
                             "demand": pa.array([], pa.float64())}), root / "data" / "zone.parquet")


def build_repo(root: Path, config: str = SQLITE_CONFIG, defs: str = DEFS, apply: bool = True) -> Path:
    from fsplug.store import FeatureStore

    write_repo(root, {"defs.yaml": defs}, config=config)
    placeholder_sources(root)
    if apply:
        with FeatureStore(root) as store:
            store.apply()
    return root


def stats_table(ids: list[int], times: list[datetime], **over: Any) -> pa.Table:
    """Rows of the `stats` view: a = 10*id, b = id/4, c = 'c<id>' unless overridden."""
    cols = {
        "driver_id": pa.array(ids, pa.int64()),
        "ts": pa.array(times, TS),
        "created": pa.array(times, TS),
        "a": pa.array([i * 10 for i in ids], pa.int64()),
        "b": pa.array([i / 4 for i in ids], pa.float64()),
        "c": pa.array([f"c{i}" for i in ids], pa.string()),
    }
    cols.update(over)
    return pa.table(cols)


def versions_table(ids: list[int], version: int, ts: datetime | None = None) -> pa.Table:
    """Rows of the `versions` view where every feature holds `version` (its event time is derived from it)."""
    t = ts or version_time(version)
    n = len(ids)
    return pa.table({
        "driver_id": pa.array(ids, pa.int64()),
        "ts": pa.array([t] * n, TS),
        "v1": pa.array([version] * n, pa.int64()),
        "v2": pa.array([version] * n, pa.int64()),
        "v3": pa.array([float(version)] * n, pa.float64()),
        "v4": pa.array([f"v{version}"] * n, pa.string()),
    })


BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def version_time(version: int) -> datetime:
    return BASE_TIME + timedelta(seconds=version)


def worst_case(fn: Callable[[], Any], n: int) -> tuple[float, Counter]:
    """Run `fn` n times: the slowest call in seconds and the exception types raised (by name)."""
    worst = 0.0
    errors: Counter = Counter()
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - counted and checked by the caller
            errors[type(exc).__name__] += 1
        worst = max(worst, time.perf_counter() - t0)
    return worst, errors


def native_threads() -> int:
    """Threads of this process, native ones (the client's) included."""
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


@pytest.fixture
def sqlite_repo(tmp_path) -> Path:
    return build_repo(tmp_path / "repo")


@pytest.fixture
def aerospike_server():
    """An in-process test server (fault injection, stats)."""
    from fsplug.testing.aerospike_server import AerospikeTestServer

    with AerospikeTestServer(namespaces=["test"]) as srv:
        yield srv


@pytest.fixture
def child_server():
    """A test server in a child process: timings free of in-process GIL contention."""
    from fsplug.testing.aerospike_server.remote import spawn_server

    with spawn_server(namespaces=["test"]) as srv:
        yield srv
