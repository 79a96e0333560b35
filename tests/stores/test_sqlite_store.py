"""SQLite-only behaviour of the online store (the shared behaviour is in test_conformance.py)."""

from __future__ import annotations

import apsw
from datetime import UTC, datetime

import pyarrow as pa

from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources, write_repo
from tests.stores.conftest import ALL_TYPES, store_config


def _zones(tmp_path, n: int) -> FeatureStore:
    """A SQLite store with `zone_stats` applied and n zones of city "c" pushed (demand = zone_id)."""
    root = write_repo(tmp_path / "r", {"defs.yaml": ALL_TYPES}, config=store_config("sqlite", None))
    write_empty_sources(root)
    store = FeatureStore(root)
    store.apply()
    store.push("zone_stats", {"city": ["c"] * n, "zone_id": list(range(n)),
                              "ts": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
                              "demand": [float(i) for i in range(n)]})
    return store


def test_reads_stay_within_sqlites_parameter_limit(tmp_path):
    """SQLite before 3.32 allows 999 parameters per statement and each composite key binds two:
    10,000 keys in chunks of read_batch_keys (5,000) would overflow it; the store splits further."""
    n = 10_000
    with _zones(tmp_path, n) as store:
        store.online_store.connection().limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # as an old SQLite
        keys = list(range(n - 1, -1, -1))
        res = store.get_online_features(features=["zone_stats:demand"],
                                        entities={"city": ["c"] * n, "zone_id": keys})
        assert res.columns["demand"].tolist() == [float(k) for k in keys]


def test_rows_come_back_in_request_order_even_when_sqlite_is_told_to_reverse(tmp_path):
    """fsplug relies on its LEFT JOIN returning rows in the order of the VALUES list (SQL does not
    promise it). reverse_unordered_selects is SQLite's switch for exposing code that relies on an
    unspecified order: reads stay in request order with it, for rowid, text and composite keys."""
    import random

    root = write_repo(tmp_path / "r", {"defs.yaml": ALL_TYPES}, config=store_config("sqlite", None))
    write_empty_sources(root)
    now = datetime.now(UTC)
    rng = random.Random(4)
    with FeatureStore(root) as store:
        store.apply()
        ids = list(range(300))
        store.push("stats", {"driver_id": ids, "ts": pa.array([now] * 300, pa.timestamp("us", tz="UTC")),
                             "trips": ids, "rate": [i / 2 for i in ids]})
        zones = [("c" + str(i % 7), i) for i in range(300)]
        store.push("zone_stats", {"city": [c for c, _ in zones], "zone_id": [z for _, z in zones],
                                  "ts": pa.array([now] * 300, pa.timestamp("us", tz="UTC")),
                                  "demand": [float(z) for _, z in zones]})
        store.online_store.connection().execute("PRAGMA reverse_unordered_selects=ON")
        for _ in range(20):
            want = rng.sample(ids, 60) + [999, 5, 5]
            got = store.get_online_features(features=["stats:trips"], entities={"driver_id": want}).to_dict()
            assert got["trips"] == [None if k == 999 else k for k in want]
            zs = rng.sample(zones, 40) + [("nowhere", 1)]
            got = store.get_online_features(features=["zone_stats:demand"],
                                            entities={"city": [c for c, _ in zs], "zone_id": [z for _, z in zs]})
            assert got.to_dict()["demand"] == [float(z) if c != "nowhere" else None for c, z in zs]


def test_a_read_past_its_budget_is_interrupted_and_the_next_reads_are_not(tmp_path, monkeypatch):
    """A read with `timeout_ms` that runs past it stops with StoreTimeoutError (SQLite interrupts the
    statement); the connection's deadline goes with it, so reads after it, with or without a budget,
    run whole (one entity's fast path included)."""
    from types import SimpleNamespace

    import pytest

    import fsplug.online.sqlite as sqlite_store
    from fsplug.errors import StoreTimeoutError

    n = 10_000
    with _zones(tmp_path, n) as store:
        entities = {"city": ["c"] * n, "zone_id": list(range(n))}
        clock = [0.0]

        def jumping() -> float:  # the store's clock: 1 s later at each look, so the budget has passed
            clock[0] += 1.0
            return clock[0]

        with monkeypatch.context() as mp:
            mp.setattr(sqlite_store, "time", SimpleNamespace(monotonic=jumping))
            with pytest.raises(StoreTimeoutError, match="exceeded its 100 ms budget"):
                store.get_online_features(features=["zone_stats:demand"], entities=entities, timeout_ms=100)
        for budget in (None, 60_000):
            res = store.get_online_features(features=["zone_stats:demand"], entities=entities, timeout_ms=budget)
            assert res.columns["demand"].tolist() == [float(i) for i in range(n)]
        plan = store.plan(["zone_stats:demand"])
        assert store.online_store.read_one(plan, ("c", 7), timeout_ms=60_000)[0] == 7.0
