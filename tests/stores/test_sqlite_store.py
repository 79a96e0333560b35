"""SQLite-only behaviour of the online store (the shared behaviour is in test_conformance.py)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from fsplug.store import FeatureStore
from tests.conftest import write_repo
from tests.stores.conftest import ALL_TYPES, store_config


def test_reads_stay_within_sqlites_parameter_limit(tmp_path):
    """SQLite before 3.32 allows 999 parameters per statement and each composite key binds two:
    10,000 keys in chunks of read_batch_keys (5,000) would overflow it; the store splits further."""
    root = write_repo(tmp_path / "r", {"defs.yaml": ALL_TYPES}, config=store_config("sqlite", None))
    (root / "data").mkdir()
    for name in ("all", "stats", "zone"):
        pq.write_table(pa.table({"x": pa.array([], pa.int64())}), root / "data" / f"{name}.parquet")
    n = 10_000
    now = datetime.now(timezone.utc)
    with FeatureStore(root) as store:
        store.apply()
        store.push("zone_stats", {"city": ["c"] * n, "zone_id": list(range(n)),
                                  "ts": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                                  "demand": [float(i) for i in range(n)]})
        store.online_store._conn().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # as an old SQLite
        keys = list(range(n - 1, -1, -1))
        res = store.get_online_features(features=["zone_stats:demand"],
                                        entities={"city": ["c"] * n, "zone_id": keys})
        assert res.columns["demand"].tolist() == [float(k) for k in keys]
