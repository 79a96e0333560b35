"""The Spark engine gives the local engine's results, value for value.

Generated data with ties (same event and created time, in one file and across files), nulls, NaN,
null keys, several views per entity, a composite key with a string part, a string-keyed entity,
several files, hive partitions and nanosecond timestamps. The online store's contents after each
engine are compared through reads (values, statuses, event times) and through the stored bins
(the Aerospike records, timestamp bins included); the training tables are compared row by row.
A task failing on its first attempt is retried and leaves the same state; a failed job leaves the
materialization state unchanged and says which views completed. Hive partition columns used in a key
and as features give the same records on both engines. A missing or unusable Java is a clear error
(in a fresh interpreter through the CLI, since this module's JVM is running already).

Spark runs in local mode (`local[2,2]`: two threads, a task may be tried twice), one session for
the module.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.errors import ConfigError, DefinitionError, EngineError, SourceDataError
from fsplug.store import FeatureStore
from tests.conftest import write_repo
from tests.stores.conftest import store_config

pytest.importorskip("pyspark", reason="the spark extra (make test installs it)")

DEFS = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
  - name: zone
    join_keys: [{name: city, dtype: string}, {name: zone_id, dtype: int64}]
  - {name: rider, join_key: rider_id, dtype: string}
sources:
  - {name: trips_src, path: data/trips, timestamp_field: ts, created_timestamp_field: created}
  - {name: shift_src, path: data/shift.parquet, timestamp_field: ts}
  - {name: zone_src, path: data/zone, timestamp_field: ts, created_timestamp_field: created}
  - {name: rider_src, path: data/rider.parquet, timestamp_field: ts}
feature_views:
  - name: trips
    entity: driver
    source: trips_src
    ttl: 2h
    features:
      - {name: n_trips, dtype: int64, default: -1}
      - {name: rate, dtype: float64, default: 0.5}
      - {name: r32, dtype: float32}
      - {name: label, dtype: string, default: none}
      - {name: active, dtype: bool}
      - {name: blob, dtype: bytes}
      - {name: seen, dtype: timestamp}
      - {name: emb, dtype: "list[float64]"}
  - name: shift
    entity: driver
    source: shift_src
    ttl: 30m
    features:
      - {name: hours, dtype: float64, bin: sh_hours}
      - {name: breaks, dtype: int64, bin: sh_breaks, default: 0}
  - name: zone_stats
    entity: zone
    source: zone_src
    ttl: none
    features:
      - {name: demand, dtype: float64, bin: z_demand, default: 1.0}
  - name: rider_stats
    entity: rider
    source: rider_src
    ttl: 1h
    features:
      - {name: rating, dtype: float64, bin: r_rating}
request_sources:
  - name: req
    features:
      - {name: distance, dtype: float64, default: 2.0}
derived_views:
  - name: ctx
    inputs: [trips, shift, req]
    features:
      - {name: per_hour, dtype: float64, expr: "n_trips / max(hours, 0.5)"}
      - {name: far, dtype: bool, expr: "distance > 0.5 and active", default: false}
feature_services:
  - name: drivers
    features: [trips:*, shift:*, req:*, ctx:*]
  - name: zones
    features: [zone_stats:*]
  - name: riders
    features: [rider_stats:*]
"""

# data of the last few hours, so that reads now find PRESENT, stale and missing values
END = datetime.now(UTC)
T0 = END.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
DRIVERS = list(range(1, 61))
CITIES = ["north", "south", "é-west"]
RIDERS = [f"r{i}" for i in range(20)]


def _ts(values: list) -> pa.Array:
    return pa.array(values, pa.timestamp("us", tz="UTC"))


def _trips(rng: np.random.Generator, n: int, file_no: int) -> pa.Table:
    """Rows of `trips`: minutes on a coarse grid so that (key, event, created) ties happen often."""
    keys = rng.choice(DRIVERS, n).tolist()
    keys = [None if rng.random() < 0.03 else k for k in keys]
    minutes = rng.integers(0, 8, n) * 30
    ts = [T0 + timedelta(minutes=int(m)) for m in minutes]
    created = [None if rng.random() < 0.2 else T0 + timedelta(minutes=int(c)) for c in rng.integers(0, 3, n)]
    rate = rng.random(n)
    rate[rng.random(n) < 0.1] = np.nan
    return pa.table({
        "driver_id": pa.array(keys, pa.int32()),  # a narrower int than declared: cast like the local reader
        "ts": _ts(ts), "created": _ts(created),
        "n_trips": pa.array([None if rng.random() < 0.1 else int(x) for x in rng.integers(0, 100, n)], pa.int64()),
        "rate": pa.array([None if rng.random() < 0.05 else float(x) for x in rate], pa.float64()),
        "r32": pa.array(rng.random(n).astype(np.float64) / 3, pa.float64()),  # declared float32: narrowed
        "label": pa.array([None if rng.random() < 0.1 else f"f{file_no}-{i}" for i in range(n)], pa.string()),
        "active": pa.array([None if rng.random() < 0.1 else bool(b) for b in rng.integers(0, 2, n)], pa.bool_()),
        "blob": pa.array([None if rng.random() < 0.1 else bytes([file_no, i % 256]) for i in range(n)], pa.binary()),
        "seen": pa.array([T0 - timedelta(seconds=int(s)) for s in rng.integers(0, 10**6, n)],
                         pa.timestamp("ms")),  # naive, milliseconds
        "emb": pa.array([None if rng.random() < 0.1 else [float(file_no), float(i), math.nan] for i in range(n)],
                        pa.list_(pa.float32())),
    })


def _write_data(root: Path, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    data = root / "data"
    for day in ("a", "b"):  # hive partitions, two files each
        for j in range(2):
            d = data / "trips" / f"part={day}"
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(_trips(rng, 400, j + (2 if day == "b" else 0)), d / f"part-{j}.parquet",
                           row_group_size=150)
    # shift: one file, nanosecond naive timestamps (as pandas writes them), no created field
    n = 300
    pq.write_table(pa.table({
        "driver_id": pa.array(rng.choice(DRIVERS, n), pa.int64()),
        "ts": pa.array([np.datetime64(T0.replace(tzinfo=None), "ns") + np.timedelta64(int(s), "ns")
                        for s in rng.integers(0, 4 * 3600, n) * 10**9 + rng.integers(0, 1000, n)],
                       pa.timestamp("ns")),
        "hours": pa.array([None if rng.random() < 0.1 else float(x) for x in rng.random(n) * 10], pa.float64()),
        "breaks": pa.array(rng.integers(0, 4, n), pa.int64()),
    }), data / "shift.parquet")
    # zone: composite key with a string part, two plain files, ties across the files
    for j in range(2):
        n = 200
        (data / "zone").mkdir(exist_ok=True)
        pq.write_table(pa.table({
            "city": pa.array([None if rng.random() < 0.03 else CITIES[c] for c in rng.integers(0, 3, n)]),
            "zone_id": pa.array(rng.integers(0, 10, n), pa.int64()),
            "ts": _ts([T0 + timedelta(hours=int(h)) for h in rng.integers(0, 3, n)]),
            "created": _ts([T0] * n),
            "demand": pa.array([math.nan if rng.random() < 0.1 else float(x) for x in rng.random(n)], pa.float64()),
        }), data / "zone" / f"z{j}.parquet")
    n = 150
    pq.write_table(pa.table({
        "rider_id": pa.array(rng.choice(RIDERS, n)),
        "ts": _ts([T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 240, n)]),
        "rating": pa.array(rng.random(n) * 5, pa.float64()),
    }), data / "rider.parquet")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this venv's packages
    session = (SparkSession.builder.master("local[2,2]").appName("fsplug-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "3")
               .config("spark.sql.session.timeZone", "UTC")
               # the catalog's tables (sources of type spark_table) live here, not in ./spark-warehouse
               .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture
def repos(tmp_path, aerospike_address, spark):
    """Two applied repos on the same data: `local` and `spark` (engine: spark), each its own project."""
    out = {}
    for name in ("local", "spark"):
        extra = "materialization:\n  engine: spark\n  spark: {partitions: 3}\n" if name == "spark" else ""
        root = write_repo(tmp_path / name, {"defs.yaml": DEFS}, config=store_config("aerospike", aerospike_address,
                                                                                     extra))
        _write_data(root)
        with FeatureStore(root) as store:
            store.apply()
        out[name] = root
    yield out
    for root in out.values():
        with FeatureStore(root) as store:
            store.teardown()


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):  # a record's bins (NaN inside a list bin)
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _assert_same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        bad = [(i, x, y) for i, (x, y) in enumerate(zip(a[name], b[name], strict=True)) if not _same(x, y)]
        assert not bad, (name, bad[:5])


ENTITIES = {
    "drivers": {"driver_id": [*DRIVERS, 999]},
    "zones": {"city": [c for c in CITIES for _ in range(11)], "zone_id": [z for _ in CITIES for z in range(11)]},
    "riders": {"rider_id": [*RIDERS, "nobody"]},
}


def _served(root: Path) -> dict:
    with FeatureStore(root) as store:
        return {svc: store.get_online_features(service=svc, entities=keys).to_dict(include_statuses=True)
                | {"__ts": {v: ts.tolist() for v, ts in
                            store.get_online_features(service=svc, entities=keys).event_timestamps.items()}}
                for svc, keys in ENTITIES.items()}


def _bins(root: Path) -> dict:
    """Every stored record's bins (values and timestamp bins), read with the aerospike client."""
    from fsplug.online.aerospike.store import encode_key

    with FeatureStore(root) as store:
        online = store.online_store
        ns = online.config.namespace
        keys = {"driver": [(k,) for k in [*DRIVERS, 999]],
                "zone": [(c, z) for c in CITIES for z in range(11)],
                "rider": [(r,) for r in RIDERS]}
        out = {}
        for entity, tuples in keys.items():
            set_name = online.set_name(entity)
            recs = online.client().batch_read([(ns, set_name, t[0] if len(t) == 1 else encode_key(t))
                                               for t in tuples]).batch_records
            out[entity] = [None if r.record is None else r.record[2] for r in recs]
        return out


def _assert_same_bins(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for entity in a:
        bad = [(i, x, y) for i, (x, y) in enumerate(zip(a[entity], b[entity], strict=True)) if not _same(x, y)]
        assert not bad, (entity, len(bad), bad[:2])
    assert sum(r is not None for recs in a.values() for r in recs) > 50


def _state(root: Path) -> dict:
    with FeatureStore(root) as store:
        return {v: (s.watermark, s.newest_event, s.last_run.entities if s.last_run else None,
                    s.last_run.rows_read if s.last_run else None)
                for v, s in store.materialization_state().items()}


def _run(root: Path, engine: str | None = None) -> list:
    """A window, then an incremental run on top (the newer-wins guard decides what the second writes)."""
    with FeatureStore(root) as store:
        first = store.materialize(T0 - timedelta(days=2), T0 + timedelta(hours=1), progress=False, engine=engine)
        second = store.materialize_incremental(END, progress=False, engine=engine)
    return [(v.view, v.rows_read, v.entities, v.written, v.skipped_null_keys, v.newest_event)
            for r in (first, second) for v in r.views]


def test_spark_materialization_equals_the_local_engine(repos):
    local = _run(repos["local"])
    spark = _run(repos["spark"])  # the repo's engine: spark
    assert spark == local
    assert any(v[4] for v in local)  # null keys were skipped and counted
    served = _served(repos["local"])
    _compare_served(served, _served(repos["spark"]))
    for status in ("PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND"):
        assert status in served["drivers"]["n_trips__status"] + served["drivers"]["hours__status"], status
    _assert_same_bins(_bins(repos["spark"]), _bins(repos["local"]))
    assert _state(repos["spark"]) == _state(repos["local"])


def test_the_hash_partitioning_of_pyspark_before_4_1_gives_the_same_results(repos, monkeypatch):
    """Without DataFrame.repartitionById (pyspark < 4.1), rows go to partitions by a hash of their
    target: a partition may then hold several targets. The engine must not care."""
    from fsplug.engines import spark as engine

    class Old:  # a DataFrame as pyspark < 4.1 has it: no repartitionById
        def __init__(self, df):
            self.df = df

        def repartition(self, *args):
            return self.df.repartition(*args)

    by_part = engine._by_part
    calls = []
    monkeypatch.setattr(engine, "_by_part", lambda df, n: calls.append(n) or by_part(Old(df), n))
    local = _run(repos["local"])
    assert _run(repos["spark"]) == local
    assert calls  # (the fallback did run)
    _compare_served(_served(repos["local"]), _served(repos["spark"]))
    _assert_same_bins(_bins(repos["spark"]), _bins(repos["local"]))
    assert _state(repos["spark"]) == _state(repos["local"])


def _compare_served(a: dict, b: dict) -> None:
    for svc in a:
        _assert_same_rows({k: v for k, v in a[svc].items() if k != "__ts"},
                          {k: v for k, v in b[svc].items() if k != "__ts"})
        assert a[svc]["__ts"] == b[svc]["__ts"]


def test_ties_break_the_same_way_in_both_engines(tmp_path, aerospike_address, spark):
    """Rows of one entity with the same event and created time: the last in scan order wins (files in
    path order, rows in file order), in both engines; a null created time loses to any."""
    roots = {}
    for name in ("local", "spark"):
        root = write_repo(tmp_path / name, {"defs.yaml": DEFS}, config=store_config("aerospike", aerospike_address))
        _write_data(root)
        zone = root / "data" / "zone"
        for f in zone.iterdir():
            f.unlink()
        row = {"city": ["north"], "zone_id": [1], "ts": _ts([T0]), "created": _ts([T0])}
        pq.write_table(pa.table({**row, "demand": [1.0]}), zone / "b.parquet")
        pq.write_table(pa.table({**row, "demand": [2.0]}), zone / "a.parquet")  # written later, sorts first
        pq.write_table(pa.table({"city": ["north"] * 3, "zone_id": [2] * 3, "ts": _ts([T0] * 3),
                                 "created": _ts([T0, None, T0]), "demand": [3.0, 4.0, 5.0]}), zone / "c.parquet")
        pq.write_table(pa.table({"city": ["north"] * 2, "zone_id": [3] * 2, "ts": _ts([T0] * 2),
                                 "created": _ts([T0, None]), "demand": [6.0, 7.0]}), zone / "d.parquet")
        with FeatureStore(root) as store:
            store.apply()
            store.materialize(None, END, views=["zone_stats"], progress=False, engine=name)
            roots[name] = store.get_online_features(
                features=["zone_stats:demand"], entities={"city": ["north"] * 3, "zone_id": [1, 2, 3]}).to_dict()
            store.teardown()
    assert roots["local"] == roots["spark"] == {"demand": [1.0, 5.0, 6.0]}


def test_training_data_on_spark_equals_the_local_engine(repos, spark):
    root = repos["local"]
    rng = np.random.default_rng(3)
    n = 400
    times = [None if i == 5 else T0 + timedelta(minutes=int(m)) for i, m in enumerate(rng.integers(-60, 300, n))]
    entity = pa.table({
        "row": pa.array(range(n), pa.int64()),
        "driver_id": pa.array([None if i == 7 else int(d) for i, d in enumerate(rng.choice([*DRIVERS, 999], n))],
                              pa.int64()),
        "event_timestamp": _ts(times),
        "distance": pa.array([None if rng.random() < 0.2 else float(x) for x in rng.random(n)], pa.float64()),
    })
    path = root / "data" / "entity_rows.parquet"
    pq.write_table(entity, path)
    with FeatureStore(root) as store:
        for kwargs in ({"include_statuses": True}, {"include_statuses": True, "fill_defaults": False}):
            local = store.get_historical_features(entity, service="drivers", **kwargs)
            if kwargs.get("fill_defaults") is False:  # a Spark DataFrame runs on the Spark engine by itself
                result = store.get_historical_features(spark.createDataFrame(entity), service="drivers", **kwargs)
            else:
                result = store.get_historical_features(str(path), service="drivers", engine="spark", **kwargs)
            got = result.toArrow().sort_by("row")
            assert got.column_names == local.column_names
            _assert_same_rows(local.to_pydict(), got.to_pydict())
            for status in ("PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND"):
                assert status in local["n_trips__status"].to_pylist() + local["hours__status"].to_pylist()
        zones = {"city": pa.array([c for c in CITIES for _ in range(12)] + [None]),
                 "zone_id": pa.array([z for _ in CITIES for z in range(-1, 11)] + [1]),
                 "event_timestamp": _ts([T0 + timedelta(hours=z % 4) for z in range(37)])}
        zones["row"] = pa.array(range(37))
        local = store.get_historical_features(pa.table(zones), service="zones", include_statuses=True)
        with FeatureStore(repos["spark"]) as other:  # engine: spark with `partitions: 3`, the same data
            got = other.get_historical_features(pa.table(zones), service="zones", include_statuses=True)
        _assert_same_rows(local.to_pydict(), got.toArrow().sort_by("row").to_pydict())
        out = root / "data" / "training_out"
        written = store.get_historical_features(str(path), service="drivers", engine="spark", output_path=out)
        assert written.count() == n and any(out.glob("*.parquet"))


def test_a_task_failing_once_is_retried_and_leaves_the_same_state(repos, tmp_path, monkeypatch):
    def run(root: Path, engine: str) -> list:
        with FeatureStore(root) as store:
            report = store.materialize(None, END, views=["trips"], progress=False, engine=engine)
        return [(v.view, v.rows_read, v.entities, v.skipped_null_keys, v.newest_event) for v in report.views]

    local = run(repos["local"], "local")
    monkeypatch.setenv("FSPLUG_SPARK_FAIL_ONCE", str(tmp_path / "failed-once"))
    assert run(repos["spark"], "spark") == local
    assert (tmp_path / "failed-once").exists()  # a task did fail after its first write, and was run again
    _assert_same_bins(_bins(repos["spark"]), _bins(repos["local"]))
    assert _state(repos["spark"]) == _state(repos["local"])


def test_a_failed_job_leaves_the_state_unchanged_and_names_the_views_that_completed(repos):
    root = repos["spark"]
    views = ["zone_stats", "rider_stats"]
    with FeatureStore(root) as store:
        store.materialize(T0 - timedelta(days=2), T0 + timedelta(hours=1), views=views, progress=False)
        before = store.materialization_state()
    # a key the store refuses (bigger than a record may be), in the last view's source only
    rider = pq.read_table(root / "data" / "rider.parquet")
    pq.write_table(rider.set_column(0, "rider_id", pa.array(["x" * 2_000_000] * rider.num_rows)),
                   root / "data" / "rider.parquet")
    with FeatureStore(root) as store, pytest.raises(EngineError) as info:
        store.materialize_incremental(END, views=views, progress=False)
    text = str(info.value)
    assert "the Spark job of view 'rider_stats' failed" in text
    assert "completed: zone_stats" in text and "not completed (watermark unchanged): rider_stats" in text
    report = info.value.report
    assert [v.view for v in report.views if v.completed] == ["zone_stats"]
    with FeatureStore(root) as store:
        after = store.materialization_state()
    assert after["rider_stats"] == before["rider_stats"]
    assert after["zone_stats"].watermark == END


def test_sqlite_is_refused_by_the_spark_engine_before_anything_runs(tmp_path, spark):
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS}, config=store_config("sqlite", None))
    _write_data(root)
    with FeatureStore(root) as store:
        store.apply()
        with pytest.raises(ConfigError, match="does not accept writes from many processes.*--engine local"):
            store.materialize(None, T0, progress=False, engine="spark")
        assert store.materialization_state() == {}


@pytest.mark.parametrize("section, message", [
    ("materialization:\n  engine: sprak\n", "feature_store.yaml:6:11: materialization.engine: unknown engine "
                                            "'sprak'; did you mean 'spark'?"),
    ("materialization:\n  spark: {conf: {executor.memory: 4g}}\n", "write spark.executor.memory"),
    ("materialization:\n  spark: {partitions: 0}\n", "materialization.spark.partitions"),
    ("materialization:\n  spark: {mastr: local}\n", "unknown field 'mastr' in materialization.spark; did you mean "
                                                     "'master'?"),
])
def test_bad_engine_settings_are_located(tmp_path, section, message):
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS}, config=store_config("sqlite", None, section))
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).config  # noqa: B018
    assert message in str(info.value)


def test_engine_override_names_the_engines(tmp_path):
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS}, config=store_config("sqlite", None))
    with pytest.raises(ConfigError, match="unknown engine 'sprk'; did you mean 'spark'"):
        FeatureStore(root).engine("sprk")


HIVE_DEFS = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
  - name: regional
    join_keys: [{name: region, dtype: string}, {name: driver_id, dtype: int64}]
sources:
  - {name: hive_src, path: data/hive, timestamp_field: ts, created_timestamp_field: created}
feature_views:
  - name: by_driver
    entity: driver
    source: hive_src
    ttl: none
    features:
      - {name: day, dtype: int64}
      - {name: region, dtype: string}
      - {name: score, dtype: float64}
  - name: by_region
    entity: regional
    source: hive_src
    ttl: none
    features:
      - {name: day, dtype: int64, bin: r_day}
      - {name: score, dtype: float64, bin: r_score}
"""


def test_hive_partition_columns_as_key_and_features_equal_on_both_engines(tmp_path, aerospike_address, spark):
    """The partition columns of a hive directory (region=.../day=...) come from the paths: `region` in a
    composite key and as a feature, `day` as a feature. Driver 99 has one row in every partition with the
    same event and created time: the last file in path order (region=north/day=2) wins, in both engines."""
    served = {}
    for name in ("local", "spark"):
        rng = np.random.default_rng(11)  # the same data in both repos
        root = write_repo(tmp_path / name, {"defs.yaml": HIVE_DEFS},
                          config=store_config("aerospike", aerospike_address))
        for region in ("east", "north"):
            for day in (1, 2):
                d = root / "data" / "hive" / f"region={region}" / f"day={day}"
                d.mkdir(parents=True)
                n = 40
                pq.write_table(pa.table({
                    "driver_id": pa.array([*rng.integers(0, 12, n - 1), 99], pa.int64()),
                    "ts": _ts([T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 3, n - 1) * 30]
                              + [T0 + timedelta(hours=2)]),
                    "created": _ts([T0] * n),
                    "score": pa.array([*rng.random(n - 1), 1000 * day + (10 if region == "north" else 0)]),
                }), d / "part-0.parquet")
        with FeatureStore(root) as store:
            store.apply()
            report = store.materialize(None, END, progress=False, engine=name)
            keys = {"region": [r for r in ("east", "north", "west") for _ in range(13)] + ["north"],
                    "driver_id": [i for _ in range(3) for i in range(13)] + [99]}
            served[name] = (
                [(v.view, v.rows_read, v.entities, v.written, v.newest_event) for v in report.views],
                store.get_online_features(features=["by_driver:day", "by_driver:region", "by_driver:score"],
                                          entities={"driver_id": [*range(13), 99]}).to_dict(include_statuses=True),
                store.get_online_features(features=["by_region:day", "by_region:score"],
                                          entities=keys).to_dict(include_statuses=True))
            store.teardown()
    assert served["spark"] == served["local"]
    views, by_driver, by_region = served["spark"]
    assert [v[:2] for v in views] == [("by_driver", 160), ("by_region", 160)]
    assert (by_driver["region"][-1], by_driver["day"][-1], by_driver["score"][-1]) == ("north", 2, 2010.0)
    assert set(by_driver["day"][:-1]) == {1, 2, None} and set(by_driver["region"][:-1]) == {"east", "north", None}
    assert by_region["score"][-1] == 2010.0 and by_region["day__status"][26:39] == ["NOT_FOUND"] * 13


def _spark_cli(root: Path, java_home: str) -> subprocess.CompletedProcess:
    """`fsplug materialize-incremental now --engine spark` in a fresh interpreter (no JVM started yet)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_"))}
    env["JAVA_HOME"] = java_home
    return subprocess.run([sys.executable, "-c", "import sys; from fsplug.cli import main; sys.exit(main())",
                           "--repo", str(root), "materialize-incremental", "now", "--engine", "spark", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_missing_or_unusable_java_is_a_clear_error(tmp_path, aerospike_address):
    """JAVA_HOME pointing nowhere, or at a `java` that fails: the run stops with a message that says what is
    wrong with Java and what the engine needs, and no view's state moves."""
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS}, config=store_config("aerospike", aerospike_address))
    _write_data(root)
    broken = tmp_path / "jdk"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "java").write_text("#!/bin/sh\necho 'Error: not a usable Java' >&2\nexit 1\n")
    (broken / "bin" / "java").chmod(0o755)
    with FeatureStore(root) as store:
        store.apply()
    try:
        for java_home, problem in ((str(tmp_path / "nowhere"), f"JAVA_HOME is '{tmp_path / 'nowhere'}', which has "
                                                               "no bin/java"),
                                   (str(broken), f"JAVA_HOME's java ({broken}/bin/java) did not start it")):
            done = _spark_cli(root, java_home)
            assert done.returncode == 1, done.stderr[-2000:]
            assert f"error: cannot start Spark: {problem}" in done.stderr, done.stderr[-2000:]
            assert "the Spark engine needs Java 17 or newer (`java` on PATH, or JAVA_HOME)" in done.stderr
        with FeatureStore(root) as store:
            assert store.materialization_state() == {}
    finally:
        with FeatureStore(root) as store:
            store.teardown()


# ---- sources that are tables of the Spark catalog ------------------------------------------------

TABLES = {"trips_src": "fsplug_t.trips", "zone_src": "fsplug_t.zone"}


def _as_tables(defs: str) -> str:
    """DEFS with the sources of TABLES declared as catalog tables instead of their Parquet paths."""
    for name, table in TABLES.items():
        line = next(s for s in defs.splitlines() if f"name: {name}," in s)
        defs = defs.replace(line, line.replace(line[line.index("path:"):line.index("timestamp_field")],
                                               f"type: spark_table, table: {table}, "))
    return defs


@pytest.fixture
def table_repos(tmp_path, aerospike_address, spark):
    """Two applied repos, engine spark, on the same generated data: `parquet` reads every source from its
    Parquet files, `table` reads trips and zone from catalog tables written with saveAsTable from those
    files' rows in scan order (so ties are broken alike: one file per hive partition holding its files'
    rows in order)."""
    spark.sql("CREATE DATABASE fsplug_t")  # in the session's warehouse dir (a temporary one, see `spark`)
    out = {}
    for name, defs in (("parquet", DEFS), ("table", _as_tables(DEFS))):
        extra = "materialization:\n  engine: spark\n  spark: {partitions: 3}\n"
        out[name] = write_repo(tmp_path / name, {"defs.yaml": defs},
                               config=store_config("aerospike", aerospike_address, extra))
        _write_data(out[name])
    data = out["parquet"] / "data"
    trips = pa.concat_tables(pq.read_table(f).append_column("part", pa.array([f.parent.name[5:]] * pq.read_metadata(
        f).num_rows)) for f in sorted((data / "trips").glob("*/*.parquet")))
    spark.createDataFrame(trips).coalesce(1).write.partitionBy("part").saveAsTable(TABLES["trips_src"])
    zone = pa.concat_tables(pq.read_table(f) for f in sorted((data / "zone").glob("*.parquet")))
    spark.createDataFrame(zone).coalesce(1).write.saveAsTable(TABLES["zone_src"])
    for root in out.values():
        with FeatureStore(root) as store:
            store.apply()
    yield out
    for root in out.values():
        with FeatureStore(root) as store:
            store.teardown()
    spark.sql("DROP DATABASE fsplug_t CASCADE")


def test_a_catalog_table_materializes_as_its_parquet_source(table_repos):
    """The same rows as a catalog table and as Parquet files: the Spark engine stores the same records (every
    bin and timestamp bin), serves the same values and reports the same counts."""
    reports = {}
    for name, root in table_repos.items():
        with FeatureStore(root) as store:
            first = store.materialize(T0 - timedelta(days=2), T0 + timedelta(hours=1), views=["trips", "zone_stats"],
                                      progress=False)
            second = store.materialize_incremental(END, views=["trips", "zone_stats"], progress=False)
        reports[name] = [(v.view, v.rows_read, v.entities, v.written, v.skipped_null_keys, v.newest_event)
                         for r in (first, second) for v in r.views]
    assert reports["table"] == reports["parquet"]
    assert all(v[2] for v in reports["table"][:2]) and any(v[4] for v in reports["table"])
    _assert_same_bins(_bins(table_repos["table"]), _bins(table_repos["parquet"]))
    _compare_served(_served(table_repos["parquet"]), _served(table_repos["table"]))
    assert _state(table_repos["table"]) == _state(table_repos["parquet"])


def test_training_data_from_a_catalog_table_equals_that_from_its_parquet_source(table_repos):
    rng = np.random.default_rng(5)
    n = 300
    entity = pa.table({
        "row": pa.array(range(n), pa.int64()),
        "driver_id": pa.array(rng.choice([*DRIVERS, 999], n), pa.int64()),
        "event_timestamp": _ts([T0 + timedelta(minutes=int(m)) for m in rng.integers(-60, 300, n)]),
    })
    zones = pa.table({"row": pa.array(range(37)), "city": pa.array([c for c in CITIES for _ in range(12)] + [None]),
                      "zone_id": pa.array([z for _ in CITIES for z in range(-1, 11)] + [1]),
                      "event_timestamp": _ts([T0 + timedelta(hours=z % 4) for z in range(37)])})
    got = {}
    for name, root in table_repos.items():
        with FeatureStore(root) as store:
            got[name] = [store.get_historical_features(rows, service=svc, include_statuses=True).toArrow()
                         .sort_by("row").to_pydict() for rows, svc in ((entity, "drivers"), (zones, "zones"))]
    for table, parquet in zip(got["table"], got["parquet"], strict=True):
        _assert_same_rows(parquet, table)
    assert "PRESENT" in got["table"][0]["n_trips__status"] and "PRESENT" in got["table"][1]["demand__status"]


def test_a_catalog_table_the_session_does_not_know_is_named_before_anything_is_written(table_repos, spark):
    spark.sql(f"DROP TABLE {TABLES['zone_src']}")
    with FeatureStore(table_repos["table"]) as store:
        with pytest.raises(SourceDataError, match="table 'fsplug_t.zone': not found in the Spark session's catalog"):
            store.materialize(None, END, views=["trips", "zone_stats"], progress=False)
        assert store.materialization_state() == {}


def test_the_local_engine_refuses_a_catalog_table_and_names_the_spark_engine(tmp_path):
    """No Spark needed: apply takes the table's word (its name is checked, not its columns), and every job
    of the local engine stops at the table before it reads or writes anything. Materialization into SQLite
    names the store the Spark engine needs (one that takes writes from its executors)."""
    root = write_repo(tmp_path / "r", {"defs.yaml": _as_tables(DEFS)}, config=store_config("sqlite", None))
    _write_data(root)
    table = "source 'trips_src' is the Spark catalog table 'fsplug_t.trips', which only the Spark engine reads"
    message = f"{table}: run it with `--engine spark`"
    with FeatureStore(root) as store:
        store.apply()
        # the store is SQLite, which the Spark engine does not write into either: the message says so
        with pytest.raises(ConfigError, match=re.escape(
                f"{table}; the Spark engine writes from its executors, and the 'sqlite' online store does not accept "
                "writes from many processes: materialize it into a store that takes writes from the Spark engine's "
                "executors (aerospike), with `--engine spark`")):
            store.materialize(None, END, progress=False)
        assert store.materialization_state() == {}
        entity = {"driver_id": [1], "event_timestamp": _ts([END])}
        with pytest.raises(ConfigError, match=re.escape(message)):
            store.get_historical_features(entity, service="drivers")
        riders = store.get_historical_features({"rider_id": ["r1"], "event_timestamp": _ts([END])}, service="riders")
        assert riders.num_rows == 1  # its Parquet sources still run here


_JVM_PROBE = """
import json, sys
from fsplug.config import SparkConfig
from fsplug.engines.spark import SparkEngine
spark = SparkEngine(SparkConfig(master="local[1]", conf=json.loads(sys.argv[1]))).session()
mx = spark._jvm.java.lang.management.ManagementFactory
hotspot = mx.getPlatformMXBean(spark._jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
def frozen(batches):
    import gc
    import pyarrow as pa
    import fsplug.engines.spark  # not in the daemon: the worker's first task imports it, as a job's does
    for _ in batches:
        pass
    yield pa.RecordBatch.from_pydict({"frozen": [gc.get_freeze_count() > 0]})
def python_job():
    return spark.range(1, numPartitions=1).mapInArrow(frozen, "frozen boolean").collect()[0][0]
frozen_then = [python_job(), python_job()]  # one worker (reused), the first job's and the second's
def where(_):
    import os, pyspark
    yield pyspark.__file__, os.environ.get("MIMALLOC_PURGE_DELAY")
print(json.dumps({"level": hotspot.getVMOption("TieredStopAtLevel").getValue(),
                  "args": list(mx.getRuntimeMXBean().getInputArguments()),
                  "compress": spark.sparkContext.getConf().get("spark.shuffle.compress"),
                  "worker_pyspark": spark.sparkContext.parallelize([0], 1).mapPartitions(where).collect()[0],
                  "frozen": frozen_then}))
spark.stop()
"""


def test_a_local_session_the_engine_starts_compiles_with_c1_only_and_keeps_the_users_java_options(tmp_path):
    """In a fresh interpreter (this module's JVM is running already): the JVM of a local-mode session the
    engine starts runs with -XX:TieredStopAtLevel=1 (C1 only) and the shuffle uncompressed, and JVM options
    the user gives in `spark.driver.extraJavaOptions` are there too, after the engine's."""
    import json

    env = {**os.environ, "SPARK_CONF_DIR": str(tmp_path)}  # no spark-defaults.conf
    done = subprocess.run([sys.executable, "-c", _JVM_PROBE, json.dumps(
        {"spark.ui.enabled": "false", "spark.driver.extraJavaOptions": "-Dfsplug.probe=1"})],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["level"] == "1"
    assert got["args"].index("-XX:TieredStopAtLevel=1") < got["args"].index("-Dfsplug.probe=1")
    assert got["compress"] == "false"
    # the workers' pyspark is the installed package's (compiled once), not the pyspark.zip Spark puts first
    import pyspark

    assert got["worker_pyspark"] == [pyspark.__file__, "-1"]  # and the workers keep the memory they free
    # a worker freezes what its first task left (which imported modules): its next task finds it frozen
    assert got["frozen"] == [False, True]


def test_the_worker_daemon_drops_only_the_installed_packages_own_zip(tmp_path):
    """`spark_daemon` takes off the workers' path the pyspark.zip inside the installed pyspark package (the
    same sources, compiled); a zip of another Spark (a SPARK_HOME of its own) stays first."""
    from fsplug.engines.spark_daemon import prefer_installed_pyspark

    site = tmp_path / "site-packages"
    (site / "pyspark" / "python" / "lib").mkdir(parents=True)
    (site / "pyspark" / "__init__.py").write_text("")
    own = str(site / "pyspark" / "python" / "lib" / "pyspark.zip")
    py4j = str(site / "pyspark" / "python" / "lib" / "py4j-0.10.9.9-src.zip")
    path = ["/work", own, py4j, "/usr/lib/python311.zip", str(site)]
    assert prefer_installed_pyspark(path) and path == ["/work", py4j, "/usr/lib/python311.zip", str(site)]
    other = ["/work", "/opt/spark/python/lib/pyspark.zip", str(site)]
    assert not prefer_installed_pyspark(other) and other[1] == "/opt/spark/python/lib/pyspark.zip"
    not_after = [str(site), own]  # the package comes first already, or is not on the path: leave it
    assert not prefer_installed_pyspark(not_after) and own in not_after


def test_a_workers_first_task_imports_none_of_the_drivers_side():
    """What a materialization task unpickles and runs in a fresh Python worker (the task functions, the view,
    the store's base class) imports neither the driver's side of the engine (pyspark's SQL functions) nor
    fsplug's config and definitions (pydantic models, the YAML loader): a worker imports those modules on the
    job's clock, in its first task."""
    probe = ("import sys, fsplug.engines.spark_tasks, fsplug.registry.model, fsplug.online.base; "
             "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(done.stdout.split())
    assert {"fsplug.engines.spark_tasks", "fsplug.registry.model", "fsplug.online.base"} <= loaded
    driver_side = {"fsplug.engines.spark", "fsplug.config", "fsplug.definitions", "fsplug._yaml",
                   "fsplug.registry.compile", "yaml", "pyspark.sql.functions"}
    assert loaded & driver_side == set()


def test_the_worker_daemon_freezes_what_is_left_after_a_task_that_imported_modules(monkeypatch):
    """After a task that imported modules, the worker collects its garbage and freezes the rest (the
    collection pyspark's daemon runs after every task then skips those objects); after a task that
    imported nothing, nothing more is frozen. The task's exit code goes back to the daemon."""
    import types

    from fsplug.engines import spark_daemon

    done: list[str] = []
    monkeypatch.setattr(spark_daemon, "gc", types.SimpleNamespace(collect=lambda: done.append("collect"),
                                                                  freeze=lambda: done.append("freeze")))

    def task(imports: bool, code: int) -> int:
        if imports:
            monkeypatch.setitem(sys.modules, f"fsplug_probe_{len(sys.modules)}", types.ModuleType("probe"))
        return code

    run = spark_daemon.freezing(task)
    assert run(False, 0) == 0 and done == []
    assert run(True, 0) == 0 and done == ["collect", "freeze"]
    assert run(False, 0) == 0 and done == ["collect", "freeze"]
    assert run(True, 1) == 1 and done == ["collect", "freeze"] * 2


def _local_options(monkeypatch, conf: dict, master: str = "local[1]") -> dict:
    """The settings the engine gives the session builder (no JVM starts)."""
    from types import SimpleNamespace

    from pyspark.sql import SparkSession

    from fsplug.config import SparkConfig
    from fsplug.engines.spark import SparkEngine

    seen: dict = {}

    def get_or_create(builder):
        seen.update(builder._options)
        return SimpleNamespace(conf=SimpleNamespace(set=lambda key, value: None))

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", get_or_create)
    SparkEngine(SparkConfig(master=master, conf=conf)).session()
    return seen


def test_the_local_defaults_leave_the_users_settings_alone(tmp_path, monkeypatch):
    """The engine's JVM options go in spark.driver.defaultJavaOptions, which Spark puts before the user's
    spark.driver.extraJavaOptions; a `conf` entry or a spark-defaults.conf line for a key wins over the
    engine's default, and a session that is not local gets none of them."""
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    opts = _local_options(monkeypatch, {"spark.driver.extraJavaOptions": "-Dx=1"})
    assert opts["spark.driver.defaultJavaOptions"] == "-XX:TieredStopAtLevel=1"
    assert opts["spark.driver.extraJavaOptions"] == "-Dx=1"
    assert opts["spark.shuffle.compress"] == "false"
    assert opts["spark.python.daemon.module"] == "fsplug.engines.spark_daemon"
    assert opts["spark.executorEnv.MIMALLOC_PURGE_DELAY"] == "-1"
    assert opts["spark.executorEnv.MALLOC_MMAP_THRESHOLD_"] == opts["spark.executorEnv.MALLOC_TRIM_THRESHOLD_"]
    opts = _local_options(monkeypatch, {"spark.driver.defaultJavaOptions": "-Dmine=1", "spark.shuffle.compress": True,
                                        "spark.python.daemon.module": "pyspark.daemon",
                                        "spark.executorEnv.MIMALLOC_PURGE_DELAY": 10})
    assert opts["spark.driver.defaultJavaOptions"] == "-Dmine=1" and opts["spark.shuffle.compress"] == "true"
    assert opts["spark.python.daemon.module"] == "pyspark.daemon"
    assert opts["spark.executorEnv.MIMALLOC_PURGE_DELAY"] == "10"
    (tmp_path / "spark-defaults.conf").write_text("# admin\nspark.driver.defaultJavaOptions  -Dadmin=1\n"
                                                  "spark.shuffle.compress=true\n")
    opts = _local_options(monkeypatch, {})
    assert "spark.driver.defaultJavaOptions" not in opts and "spark.shuffle.compress" not in opts
    (tmp_path / "spark-defaults.conf").unlink()
    opts = _local_options(monkeypatch, {}, master="spark://nowhere:7077")
    assert "spark.driver.defaultJavaOptions" not in opts and "spark.shuffle.compress" not in opts
    assert "spark.python.daemon.module" not in opts and not any(k.startswith("spark.executorEnv.") for k in opts)


# ---- catalog tables: names, formats, types and changes the engine must not trip over -------------

SMALL_DEFS = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: pq_src, path: data/t.parquet, timestamp_field: ts}
  - {name: tab_src, type: spark_table, table: fsplug_x.t, timestamp_field: ts}
feature_views:
  - name: pq_view
    entity: driver
    source: pq_src
    ttl: none
    features:
      - {name: rows, dtype: int64, bin: p_rows}
      - {name: null_keys, dtype: int64, bin: p_null_keys}
  - name: tab_view
    entity: driver
    source: tab_src
    ttl: none
    features:
      - {name: rows, dtype: int64, bin: t_rows}
      - {name: null_keys, dtype: int64, bin: t_null_keys}
"""

# a driver's rows: later ones win; driver 3's two rows tie (the last in scan order wins); a null key
SMALL = pa.table({"driver_id": pa.array([1, 1, 2, 3, 3, None], pa.int64()),
                  "ts": _ts([T0, T0 + timedelta(minutes=5), T0, T0, T0, T0]),
                  "rows": pa.array([10, 11, 20, 30, 31, 99], pa.int64()),
                  "null_keys": pa.array([100, 110, 200, 300, 310, 990], pa.int64())})


@pytest.fixture
def small_repo(tmp_path, aerospike_address, spark):
    """An applied repo, engine spark: `pq_view` reads SMALL from Parquet, `tab_view` the catalog table
    fsplug_x.t, which each test creates (one Parquet file, partitioned by `part`, unless it says otherwise)."""
    spark.sql("CREATE DATABASE fsplug_x")
    extra = "materialization:\n  engine: spark\n  spark: {partitions: 2}\n"
    root = write_repo(tmp_path / "r", {"defs.yaml": SMALL_DEFS}, config=store_config("aerospike", aerospike_address,
                                                                                     extra))
    (root / "data").mkdir()
    pq.write_table(SMALL, root / "data" / "t.parquet")
    with FeatureStore(root) as store:
        store.apply()
    yield root
    with FeatureStore(root) as store:
        store.teardown()
    spark.sql("DROP DATABASE fsplug_x CASCADE")


def _small_table(spark, rows: pa.Table = SMALL, part: str = "a") -> None:
    spark.createDataFrame(rows.append_column("part", pa.array([part] * rows.num_rows))).coalesce(1).write \
        .partitionBy("part").saveAsTable("fsplug_x.t")


def _small_served(root: Path) -> dict:
    with FeatureStore(root) as store:
        return store.get_online_features(features=["pq_view:rows", "pq_view:null_keys", "tab_view:rows",
                                                   "tab_view:null_keys"],
                                         entities={"driver_id": [1, 2, 3, 4]}, full_feature_names=True).to_dict()


def test_feature_columns_named_like_the_engines_counts_materialize_from_a_table_and_parquet(small_repo, spark):
    """Columns `rows` and `null_keys` (the names of the engine's counts) are features like any other, read
    from Parquet and from a catalog table alike, and the counts stay right."""
    _small_table(spark)
    with FeatureStore(small_repo) as store:
        report = store.materialize(None, END, progress=False)
    assert [(v.view, v.rows_read, v.entities, v.skipped_null_keys) for v in report.views] == [
        ("pq_view", 6, 3, 1), ("tab_view", 6, 3, 1)]
    got = _small_served(small_repo)
    for view in ("pq_view", "tab_view"):
        assert got[f"{view}__rows"] == [11, 20, 31, None], got
        assert got[f"{view}__null_keys"] == [110, 200, 310, None], got


def test_a_table_partition_added_while_the_job_reads_stops_it(small_repo, spark, monkeypatch):
    """The engine numbers the table's rows from the files it listed: a partition inserted after that (here
    as soon as the job's frame is made, from one file to two) would give rows the row ids of others. The
    job stops, says the table changed, and no state moves."""
    from fsplug.engines.spark import SparkEngine

    _small_table(spark)
    made = SparkEngine._source_frame

    def then_insert(self, *args, **kwargs):
        frame = made(self, *args, **kwargs)
        spark.createDataFrame(SMALL.append_column("part", pa.array(["b"] * SMALL.num_rows))).select(
            "driver_id", "ts", "rows", "null_keys", "part").write.insertInto("fsplug_x.t")
        return frame

    monkeypatch.setattr(SparkEngine, "_source_frame", then_insert)
    with FeatureStore(small_repo) as store:
        with pytest.raises(EngineError, match=r"fsplug_x\.t: changed while it was read \(file .*part=b.* was added "
                                              r"after the job listed its files\); run again"):
            store.materialize(None, END, views=["tab_view"], progress=False)
        assert store.materialization_state() == {}


def test_a_winner_that_matches_no_table_row_is_an_error_not_a_row_of_nulls():
    """Stage 3 of a table: a winner's row id that no row of the table has (the table lost the row since
    stage 1 read it) stops the task with SourceDataError instead of writing nulls."""
    from types import SimpleNamespace

    from fsplug.engines.spark_tasks import write_rows

    job = SimpleNamespace(key_types={"driver_id": None}, ts_field="ts", columns={"rows": None},
                          view=SimpleNamespace(source=SimpleNamespace(table="db.t")))
    values = pa.array([None], pa.struct([("driver_id", pa.int64()), ("ts", pa.timestamp("us", "UTC")),
                                         ("rows", pa.int64())]))
    batch = pa.RecordBatch.from_pydict({"__rid": pa.array([7], pa.int64()), "__v": values,
                                        "__rows": pa.array([0], pa.int64()), "__null_keys": pa.array([0], pa.int64())})
    with pytest.raises(SourceDataError, match=r"table 'db.t': changed while it was read \(a row picked from it is no "
                                              r"longer in it\); run again"):
        next(write_rows(iter([batch]), job=job, store_cls=object, config=None, repo_root=Path("."), project="p",
                         fail_marker=None))


def test_a_table_column_arrow_cannot_hold_matters_only_to_a_view_that_reads_it(small_repo, spark):
    """An ANSI year-month interval has no Arrow form: a table holding one materializes the views that do not
    read it, and a view that reads it is refused by name before anything is written."""
    spark.sql("CREATE TABLE fsplug_x.t USING parquet AS SELECT driver_id, ts, `rows`, null_keys, INTERVAL '1' YEAR iv "
              "FROM VALUES (1L, TIMESTAMP'2024-01-01 00:00:00', 5L, 6L) AS v(driver_id, ts, `rows`, null_keys)")
    with FeatureStore(small_repo) as store:
        report = store.materialize(None, END, views=["tab_view"], progress=False)
        assert [(v.view, v.entities) for v in report.views] == [("tab_view", 1)]
    assert _small_served(small_repo)["tab_view__rows"] == [5, None, None, None]
    defs = SMALL_DEFS + "      - {name: iv, dtype: int64, bin: t_iv}\n"
    (small_repo / "defs.yaml").write_text(defs)
    with FeatureStore(small_repo) as store:
        store.apply()
        before = store.materialization_state()
        with pytest.raises(SourceDataError, match=r"feature view 'tab_view': table 'fsplug_x.t': column 'iv' has "
                                                  r"type interval year, which Spark cannot hand to Arrow"):
            store.materialize_incremental(END, progress=False)
        assert store.materialization_state() == before


def test_a_table_not_stored_as_parquet_is_refused_before_any_view_is_written(small_repo, spark):
    """An ORC table has no row index, so ties could not be broken by scan order: the run stops at the check
    of every view's source, before the Parquet view declared first is written."""
    spark.sql("CREATE TABLE fsplug_x.t USING orc AS SELECT driver_id, ts, `rows`, null_keys FROM VALUES "
              "(1L, TIMESTAMP'2024-01-01 00:00:00', 5L, 6L) AS v(driver_id, ts, `rows`, null_keys)")
    with FeatureStore(small_repo) as store:
        with pytest.raises(SourceDataError, match=r"feature view 'tab_view': table 'fsplug_x.t': the Spark engine "
                                                  r"reads catalog tables stored as Parquet files"):
            store.materialize(None, END, progress=False)
        assert store.materialization_state() == {}
    assert _small_served(small_repo)["pq_view__rows"] == [None] * 4


def test_a_table_the_catalog_cannot_read_is_not_called_missing(small_repo, spark):
    """A view of the catalog whose query no longer resolves: the catalog has it but cannot read it."""
    spark.sql("CREATE TABLE fsplug_x.base USING parquet AS SELECT 1L AS a")
    spark.sql("CREATE VIEW fsplug_x.t AS SELECT a FROM fsplug_x.base")
    spark.sql("DROP TABLE fsplug_x.base")
    spark.sql("CREATE TABLE fsplug_x.base USING parquet AS SELECT 1L AS c")
    with FeatureStore(small_repo) as store:
        with pytest.raises(SourceDataError, match=r"table 'fsplug_x.t': cannot be read: \[UNRESOLVED_COLUMN"):
            store.materialize(None, END, views=["tab_view"], progress=False)
        assert store.materialization_state() == {}
