"""One conformance suite for every online store (SQLite and Aerospike).

Runs in CI against SQLite and the bundled Aerospike test server; unchanged against a real
cluster when FSPLUG_AEROSPIKE_HOSTS is set.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.errors import SourceDataError, StoreError, UserInputError
from fsplug.result import FieldStatus
from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_now():
    """NOW is the time of each test, not of the import: data written 55 minutes before NOW must
    still be inside the 1h ttl when it is read, however long the suite has been running."""
    global NOW  # noqa: PLW0603 - the module's tests share one NOW, refreshed per test
    NOW = datetime.now(UTC).replace(microsecond=0)


def _all_types_rows(ids, ts, **over):
    n = len(ids)
    cols = {
        "driver_id": pa.array(ids, pa.int64()),
        "ts": pa.array([ts] * n, pa.timestamp("us", tz="UTC")),
        "created": pa.array([ts] * n, pa.timestamp("us", tz="UTC")),
        "f_int": pa.array([i * 10 for i in ids], pa.int64()),
        "f_float": pa.array([i / 4 for i in ids], pa.float64()),
        "f_float32": pa.array([i / 2 for i in ids], pa.float32()),
        "f_str": pa.array([f"drv-{i}-é" for i in ids], pa.string()),
        "f_bool": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
        "f_bytes": pa.array([bytes([i % 256, 0, 255]) for i in ids], pa.binary()),
        "f_ts": pa.array([ts - timedelta(days=i) for i in ids], pa.timestamp("us", tz="UTC")),
        "f_emb": pa.array([[float(i), 0.5, -1.0] for i in ids], pa.list_(pa.float64())),
    }
    for k, v in over.items():
        cols[k] = v
    return pa.table(cols)


def test_round_trip_every_dtype_with_nulls_and_missing(conf_repo):
    with FeatureStore(conf_repo) as store:
        table = _all_types_rows([1, 2], NOW - timedelta(minutes=5))
        nulls = _all_types_rows([3], NOW - timedelta(minutes=5), **{
            k: pa.nulls(1, t) for k, t in [("f_int", pa.int64()), ("f_float", pa.float64()),
                                          ("f_float32", pa.float32()), ("f_str", pa.string()),
                                          ("f_bool", pa.bool_()), ("f_bytes", pa.binary()),
                                          ("f_ts", pa.timestamp("us", tz="UTC")),
                                          ("f_emb", pa.list_(pa.float64()))]})
        assert store.push("all_types", table) == 2
        assert store.push("all_types", nulls) == 1
        res = store.get_online_features(features=["all_types:*"], entities={"driver_id": [1, 2, 3, 99]})
        d = res.to_dict()
        assert d["f_int"] == [10, 20, -1, -1]  # declared default where not present
        assert d["f_float"] == [0.25, 0.5, None, None]
        assert d["f_float32"] == [0.5, 1.0, None, None]
        assert d["f_str"] == ["drv-1-é", "drv-2-é", None, None]
        assert d["f_bool"] == [False, True, None, None]
        assert d["f_bytes"] == [bytes([1, 0, 255]), bytes([2, 0, 255]), None, None]
        ts0 = NOW - timedelta(minutes=5)
        assert d["f_ts"] == [ts0 - timedelta(days=1), ts0 - timedelta(days=2), None, None]
        assert d["f_emb"] == [[1.0, 0.5, -1.0], [2.0, 0.5, -1.0], None, None]
        st = res.statuses
        assert (st[:2] == FieldStatus.PRESENT).all()
        assert (st[2] == FieldStatus.NULL_VALUE).all()
        assert (st[3] == FieldStatus.NOT_FOUND).all()
        assert res.columns["f_float32"].dtype == np.float32
        assert res.columns["f_ts"].dtype == np.dtype("datetime64[us]")
        ev = res.event_timestamps["all_types"]
        assert ev[0] == np.datetime64(ts0.replace(tzinfo=None), "us") and np.isnat(ev[3])
        arrow = res.to_arrow()
        assert arrow.schema.field("f_emb").type == pa.list_(pa.float64())
        assert arrow.column("f_str").null_count == 2


def test_list_with_null_elements_is_written_with_nan_on_every_store(conf_repo):
    """A list[float64] value holding a null element (Parquet allows one) is stored with NaN there, by
    materialization and push alike, on every store (Aerospike failed with a TypeError in the client
    conversion, a traceback from `fsplug materialize`)."""
    ts = NOW - timedelta(minutes=5)
    emb = pa.array([[1.0, None, 3.0], [None], []], pa.list_(pa.float64()))
    pq.write_table(_all_types_rows([1, 2, 3], ts, f_emb=emb), conf_repo / "data" / "all.parquet")
    with FeatureStore(conf_repo) as store:
        report = store.materialize(NOW - timedelta(days=1), NOW, views=["all_types"])
        assert [v.written for v in report.views] == [3]
        assert store.push("all_types", _all_types_rows([4], ts, f_emb=pa.array([[None, 2.0]],
                                                                                 pa.list_(pa.float64())))) == 1
        res = store.get_online_features(features=["all_types:f_emb"], entities={"driver_id": [1, 2, 3, 4]})
        got = res.to_dict(include_statuses=True)
        assert got["f_emb__status"] == ["PRESENT"] * 4
        expected = [[1.0, math.nan, 3.0], [math.nan], [], [math.nan, 2.0]]
        for value, want in zip(got["f_emb"], expected, strict=True):
            assert np.array_equal(np.asarray(value, dtype=np.float64), np.asarray(want, dtype=np.float64),
                                  equal_nan=True)


def test_statuses_include_outside_max_age(conf_repo):
    now = datetime.now(UTC)  # not the import-time NOW: the 1 minute margin to the 1h ttl must hold at read time
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1, 2], "ts": pa.array([now - timedelta(minutes=59),
                                                                 now - timedelta(minutes=61)],
                                                                 pa.timestamp("us", tz="UTC")),
                             "trips": [5, 6], "rate": [0.5, None]})
        res = store.get_online_features(features=["stats:trips", "stats:rate"], entities={"driver_id": [1, 2]})
        assert res.status_names() == {"trips": ["PRESENT", "OUTSIDE_MAX_AGE"], "rate": ["PRESENT", "OUTSIDE_MAX_AGE"]}
        assert res.to_dict()["trips"] == [5, None]  # stale values are not served
        assert np.isnan(res.to_numpy()[1]).all()
        values, codes = res.python_columns()  # what the server writes: to_dict's lists, the status codes
        assert values == [[5, None], [0.5, None]] and codes == [[1, 4], [1, 4]] == res.status_codes()
        res.status_codes()[0][0] = 3  # the caller's copy: the result's codes stay, in every column
        assert res.status_codes() == [[1, 4], [1, 4]] and res.python_columns()[1] == [[1, 4], [1, 4]]


def test_views_of_one_entity_are_written_independently(conf_repo):
    with FeatureStore(conf_repo) as store:
        store.push("all_types", _all_types_rows([7], NOW - timedelta(minutes=1)))
        store.push("stats", {"driver_id": [7], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": [3], "rate": [0.9]})
        later = pa.array([NOW + timedelta(seconds=1)], pa.timestamp("us", tz="UTC"))
        store.push("stats", {"driver_id": [7], "ts": later,
                             "trips": [4], "rate": [0.8]})
        d = store.get_online_features(service="everything", entities={"driver_id": [7]}).to_dict(include_statuses=True)
        assert d["f_int"] == [70] and d["f_str"] == ["drv-7-é"] and d["trips"] == [4] and d["rate"] == [0.8]
        assert all(v == ["PRESENT"] for k, v in d.items() if k.endswith("__status"))


def test_older_rows_never_overwrite_newer(conf_repo):
    with FeatureStore(conf_repo) as store:
        new, old = NOW, NOW - timedelta(minutes=10)
        ts = pa.timestamp("us", tz="UTC")
        assert store.push("stats", {"driver_id": [1], "ts": pa.array([new], ts), "trips": [2], "rate": [0.2]}) == 1
        assert store.push("stats", {"driver_id": [1], "ts": pa.array([old], ts), "trips": [1], "rate": [0.1]}) == 0
        d = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]}).to_dict()
        assert d["trips"] == [2]
        # the same event again is an idempotent rewrite
        assert store.push("stats", {"driver_id": [1], "ts": pa.array([new], ts), "trips": [2], "rate": [0.2]}) == 1


def test_composite_string_keys(conf_repo):
    with FeatureStore(conf_repo) as store:
        store.push("zone_stats", {"city": ["sfo", "sfo", "nyc"], "zone_id": [1, 2, 1],
                                  "ts": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")), "demand": [1.5, 2.5, 3.5]})
        res = store.get_online_features(features=["zone_stats:demand"],
                                        entity_rows=[{"city": "nyc", "zone_id": 1}, {"city": "sfo", "zone_id": 2},
                                                     {"city": "sfo", "zone_id": 9}])
        assert res.to_dict()["demand"] == [3.5, 2.5, None]
        assert res.status_names()["demand"] == ["PRESENT", "PRESENT", "NOT_FOUND"]


STRING_KEY = """\
entities:
  - {name: user, join_key: user_id, dtype: string}
sources:
  - {name: users, path: data/users.parquet, timestamp_field: ts}
feature_views:
  - {name: user_stats, entity: user, source: users, ttl: none, features: [{name: score, dtype: int64}]}
"""


def test_string_keys_that_differ_only_after_a_nul_character_are_different_entities(tmp_path, store_kind, request):
    """The aerospike client cuts a string key at its first NUL: 'u\\x00x' was the record of 'u', so an
    entity never written ('u\\x00y') was served another one's values as PRESENT. Such a key goes by the
    digest of the whole string, the one other client libraries compute for it."""
    from tests.conftest import write_repo
    from tests.stores.conftest import store_config

    address = request.getfixturevalue("aerospike_address") if store_kind == "aerospike" else None
    root = write_repo(tmp_path / "nul", {"defs.yaml": STRING_KEY}, config=store_config(store_kind, address))
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
        try:
            ts = pa.array([NOW, NOW, NOW], pa.timestamp("us", tz="UTC"))
            assert store.push("user_stats", {"user_id": ["u\x00x", "u", "\x00"], "ts": ts, "score": [1, 2, 3]}) == 3
            keys = ["u\x00x", "u", "u\x00y", "\x00", ""]
            res = store.get_online_features(features=["user_stats:score"], entities={"user_id": keys})
            assert res.to_dict() == {"score": [1, 2, None, 3, None]}
            one = store.get_online_features(features=["user_stats:score"], entities={"user_id": ["u\x00y"]})
            assert one.status_names() == {"score": ["NOT_FOUND"]}
            if store_kind == "aerospike":  # the record is where another client library looks for that string key
                import hashlib

                online = store.online_store
                set_name = online.set_name("user")
                digest = hashlib.new("ripemd160", set_name.encode() + b"\x03" + b"u\x00x").digest()
                _, _, bins = online.client().get((online.config.namespace, set_name, None, bytearray(digest)))
                assert bins["score"] == 1
                import aerospike  # the formula is the client's own for a string without NUL

                assert bytes(aerospike.calc_digest(online.config.namespace, set_name, "u")) == hashlib.new(
                    "ripemd160", set_name.encode() + b"\x03" + b"u").digest()
        finally:
            store.teardown()


def _random_source(path, n_entities, seed):
    rng = random.Random(seed)
    rows = []
    base = NOW - timedelta(minutes=55)  # inside the view's 1h ttl, so values are served
    for e in range(n_entities):
        for _ in range(rng.randint(1, 4)):
            t = base + timedelta(seconds=rng.randint(0, 50 * 60))
            rows.append((e, t, t + timedelta(seconds=rng.randint(0, 3)), rng.randint(0, 100), rng.random()))
    # a few exact ties on event time, broken by created
    for e in range(0, n_entities, 97):
        t = base + timedelta(minutes=30)
        rows.append((e, t, t, 1, 0.1))
        rows.append((e, t, t + timedelta(seconds=1), 2, 0.2))
    rng.shuffle(rows)
    ids, ts, created, trips, rate = zip(*rows, strict=True)
    pq.write_table(pa.table({
        "driver_id": pa.array(ids, pa.int64()), "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "created": pa.array(created, pa.timestamp("us", tz="UTC")),
        "trips": pa.array(trips, pa.int64()), "rate": pa.array(rate, pa.float64())}), path)
    return rows


def _expected_latest(rows, start, end):
    best = {}
    for e, t, c, trips, rate in rows:
        # equal (t, c): the later row in the file wins
        if (start is None or t >= start) and t < end and (e not in best or (t, c) >= best[e][:2]):
            best[e] = (t, c, trips, rate)
    return best


def test_materialize_equals_independent_latest_rows(conf_repo):
    rows = _random_source(conf_repo / "data" / "stats.parquet", 3000, seed=11)
    base = NOW - timedelta(minutes=55)
    start, end = base + timedelta(minutes=10), base + timedelta(minutes=40)
    with FeatureStore(conf_repo) as store:
        report = store.materialize(start, end, views=["stats"], progress=False)
        expected = _expected_latest(rows, start, end)
        assert report.views[0].entities == len(expected)
        ids = list(range(3000))
        res = store.get_online_features(features=["stats:trips", "stats:rate"], entities={"driver_id": ids})
        got_ts = res.event_timestamps["stats"]
        for e in ids:
            if e in expected:
                t, _, trips, rate = expected[e]
                assert got_ts[e] == np.datetime64(t.replace(tzinfo=None), "us"), e
                assert res.columns["trips"][e] == trips and res.columns["rate"][e] == pytest.approx(rate)
            else:
                assert res.statuses[e, 0] == FieldStatus.NOT_FOUND


def test_materialize_incremental_moves_watermark(conf_repo):
    rows = _random_source(conf_repo / "data" / "stats.parquet", 500, seed=3)
    base = NOW - timedelta(minutes=55)
    with FeatureStore(conf_repo) as store:
        mid, end = base + timedelta(minutes=20), base + timedelta(minutes=50)
        r1 = store.materialize_incremental(mid, views=["stats"], progress=False)
        assert r1.views[0].start is None
        assert store.materialization_state()["stats"].watermark == mid
        r2 = store.materialize_incremental(end, views=["stats"], progress=False)
        assert r2.views[0].start == mid
        assert store.materialization_state()["stats"].watermark == end
        r3 = store.materialize_incremental(end, views=["stats"], progress=False)
        assert r3.views[0].up_to_date
        exp = _expected_latest(rows, None, end)
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": sorted(exp)})
        assert res.columns["trips"].tolist() == [exp[e][2] for e in sorted(exp)]


def test_interrupted_materialization_keeps_watermark_and_rerun_completes(conf_repo, monkeypatch):
    rows = _random_source(conf_repo / "data" / "stats.parquet", 2000, seed=5)
    end = NOW
    with FeatureStore(conf_repo) as store:
        online = store.online_store
        real_write = online.write
        calls = {"n": 0}

        def flaky(batch):
            calls["n"] += 1
            half = len(batch) // 2
            from fsplug.online.base import WriteBatch

            part = WriteBatch(batch.view, batch.key_names, [k[:half] for k in batch.keys], batch.event_ts_us[:half],
                              [c[:half] for c in batch.columns])
            real_write(part)  # half of the batch lands, then the connection "drops"
            raise StoreError("connection lost (injected)")

        monkeypatch.setattr(online, "write", flaky)
        with pytest.raises(StoreError, match="injected"):
            store.materialize_incremental(end, views=["stats"], progress=False)
        assert "stats" not in store.materialization_state()  # watermark did not move
        monkeypatch.setattr(online, "write", real_write)
        store.materialize_incremental(end, views=["stats"], progress=False)
        assert store.materialization_state()["stats"].watermark == end
        exp = _expected_latest(rows, None, end)
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": sorted(exp)})
        assert res.columns["trips"].tolist() == [exp[e][2] for e in sorted(exp)]


def test_source_type_mismatch_is_reported_and_nothing_recorded(conf_repo):
    pq.write_table(pa.table({"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": ["many"], "rate": [0.5]}), conf_repo / "data" / "stats.parquet")
    with FeatureStore(conf_repo) as store:
        with pytest.raises(SourceDataError, match="trips"):
            store.materialize(None, NOW + timedelta(seconds=1), views=["stats"], progress=False)
        assert "stats" not in store.materialization_state()


def test_apply_teardown_lifecycle(conf_repo):
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": [1], "rate": [0.5]})
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]})
        assert res.to_dict()["trips"] == [1]
        store.teardown()
        store.apply()
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]})
        assert res.status_names()["trips"] == ["NOT_FOUND"]
        # adding a feature to a view after data exists: apply adds it, old values stay
        store.push("stats", {"driver_id": [2], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": [8], "rate": [0.5]})
        defs = conf_repo / "defs.yaml"
        defs.write_text(defs.read_text().replace(
            "      - {name: rate, dtype: float64, bin: st_rate}\n",
            "      - {name: rate, dtype: float64, bin: st_rate}\n      - {name: extra, dtype: int64, bin: st_extra}\n"))
        write_empty_sources(conf_repo)  # the source gains the new column (apply checks it)
        rendered = store.apply().diff.render()
        assert rendered.startswith("~ update feature view stats") and "extra" in rendered, rendered
        d = store.get_online_features(features=["stats:trips", "stats:extra"], entities={"driver_id": [2]}).to_dict(
            include_statuses=True)
        assert d["trips"] == [8] and d["extra__status"] == ["NULL_VALUE"]


def test_a_feature_whose_dtype_changed_serves_the_new_values_as_written(conf_repo):
    """`plan` says a dtype change invalidates stored data: re-materialize. SQLite kept the column's old
    type, whose affinity turned the new string values into numbers ('0012' was served as 12, training
    data said '0012')."""
    ts = pa.timestamp("us", tz="UTC")
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], ts), "trips": [5], "rate": [0.5]})
        defs = conf_repo / "defs.yaml"
        defs.write_text(defs.read_text().replace("{name: trips, dtype: int64, bin: st_trips}",
                                                 "{name: trips, dtype: string, bin: st_trips}"))
        write_empty_sources(conf_repo)  # the source's column is text now
        assert "features.trips.dtype: int64 -> string" in store.apply().diff.render()
        later = pa.array([NOW + timedelta(seconds=1)] * 2, ts)
        store.push("stats", {"driver_id": [1, 2], "ts": later, "trips": ["0012", "7"], "rate": [0.5, 0.5]})
        d = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2]}).to_dict()
        assert d["trips"] == ["0012", "7"]


def test_a_feature_removed_and_added_back_serves_no_old_value(conf_repo, store_kind):
    """A feature removed from a view, then added back by a later apply, served the values stored before
    its removal as PRESENT: apply empties it (NULL_VALUE until materialized again); the view's other
    features keep theirs. Aerospike writes only the records that hold the bin (a third here)."""
    ts = pa.timestamp("us", tz="UTC")
    defs = conf_repo / "defs.yaml"
    with_rate = defs.read_text()
    rate = "      - {name: rate, dtype: float64, bin: st_rate}\n"
    with FeatureStore(conf_repo) as store:
        ids = list(range(1, 301))  # (records in many partitions: Aerospike's scans go a slice at a time)
        rates = [0.5 if i % 3 == 0 else None for i in ids]
        store.push("stats", {"driver_id": ids, "ts": pa.array([NOW] * 300, ts), "trips": ids, "rate": rates})
        defs.write_text(with_rate.replace(rate, ""))
        store.apply()
        defs.write_text(with_rate)
        actions = store.apply().store_actions
        d = store.get_online_features(features=["stats:trips", "stats:rate"], entities={"driver_id": ids}).to_dict(
            include_statuses=True)
        assert d == {"trips": ids, "trips__status": ["PRESENT"] * 300,
                     "rate": [None] * 300, "rate__status": ["NULL_VALUE"] * 300}
        assert "st_rate" in actions[-1] and "emptied" in actions[-1], actions
        if store_kind == "aerospike":
            assert "(100 records;" in actions[-1], actions


def test_a_view_deleted_and_created_again_serves_no_old_value(conf_repo):
    """A view deleted, then applied again, served the values stored before its deletion as PRESENT:
    apply empties its bins and event time (NOT_FOUND until materialized again)."""
    ts = pa.timestamp("us", tz="UTC")
    defs = conf_repo / "defs.yaml"
    full = defs.read_text()
    view = full[full.index("  - name: zone_stats\n"):full.index("feature_services:")]
    with FeatureStore(conf_repo) as store:
        store.push("zone_stats", {"city": ["sfo"], "zone_id": [1], "ts": pa.array([NOW], ts), "demand": [1.5]})
        defs.write_text(full.replace(view, ""))
        store.apply()
        defs.write_text(full)
        store.apply()
        res = store.get_online_features(features=["zone_stats:demand"], entities={"city": ["sfo"], "zone_id": [1]})
        assert res.status_names() == {"demand": ["NOT_FOUND"]}
        store.push("zone_stats", {"city": ["sfo"], "zone_id": [1], "ts": pa.array([NOW], ts), "demand": [2.5]})
        res = store.get_online_features(features=["zone_stats:demand"], entities={"city": ["sfo"], "zone_id": [1]})
        assert res.to_dict(include_statuses=True) == {"demand": [2.5], "demand__status": ["PRESENT"]}


def test_a_feature_whose_dtype_changed_serves_no_value_of_the_old_dtype(conf_repo):
    """Aerospike kept the old dtype's values: the stored int was served as a string, and read as a
    list[float64] it crashed the read (`float()` of each element of an int). Apply empties the feature
    (NULL_VALUE until materialized again; its watermark is reset) on both stores."""
    ts = pa.timestamp("us", tz="UTC")
    defs = conf_repo / "defs.yaml"
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], ts), "trips": [5], "rate": [0.5]})
        for dtype in ("list[float64]", "string"):
            defs.write_text(defs.read_text().replace("dtype: int64, bin: st_trips", f"dtype: '{dtype}', bin: st_trips"))
            write_empty_sources(conf_repo)
            store.apply()
            res = store.get_online_features(features=["stats:trips", "stats:rate"], entities={"driver_id": [1]})
            assert res.to_dict(include_statuses=True) == {
                "trips": [None], "trips__status": ["NULL_VALUE"], "rate": [0.5], "rate__status": ["PRESENT"]}, dtype
            defs.write_text(defs.read_text().replace(f"dtype: '{dtype}', bin: st_trips", "dtype: int64, bin: st_trips"))
            write_empty_sources(conf_repo)
            store.apply()
            store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], ts), "trips": [5], "rate": [0.5]})


def test_an_entity_whose_join_keys_changed_keeps_its_new_keys_apart(conf_repo):
    """`plan` says a join key change invalidates stored data: re-materialize. SQLite kept the table of the
    old keys: a key made a string stayed an INTEGER column ('01' and '1' were one entity, served the
    other's value), and a renamed key failed every write and read (`no such column`)."""
    ts = pa.timestamp("us", tz="UTC")
    defs = conf_repo / "defs.yaml"
    old = "join_keys: [{name: city, dtype: string}, {name: zone_id, dtype: int64}]"
    with FeatureStore(conf_repo) as store:
        store.push("zone_stats", {"city": ["sfo"], "zone_id": [1], "ts": pa.array([NOW], ts), "demand": [1.0]})
        for new_keys, key in (("{name: city, dtype: string}, {name: zone_id, dtype: string}", "zone_id"),
                              ("{name: city, dtype: string}, {name: zone, dtype: string}", "zone")):
            defs.write_text(defs.read_text().replace(old, f"join_keys: [{new_keys}]"))
            old = f"join_keys: [{new_keys}]"
            write_empty_sources(conf_repo)  # the source's key columns are the new ones
            assert "! invalidates stored data" in store.apply().diff.render()
            zones = {"city": ["sfo", "sfo"], key: ["01", "1"]}
            store.push("zone_stats", {**zones, "ts": pa.array([NOW] * 2, ts), "demand": [2.0, 3.0]})
            assert store.get_online_features(features=["zone_stats:demand"], entities=zones).to_dict() \
                == {"demand": [2.0, 3.0]}, key


def test_large_request_is_chunked_transparently(conf_repo):
    with FeatureStore(conf_repo) as store:
        ids = list(range(6000))
        store.push("stats", {"driver_id": ids, "ts": pa.array([NOW] * len(ids), pa.timestamp("us", tz="UTC")),
                             "trips": ids, "rate": [0.5] * len(ids)})
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": ids})
        assert res.columns["trips"].tolist() == ids


def test_two_entities_in_one_request(conf_repo):
    with FeatureStore(conf_repo) as store:
        store.push("all_types", _all_types_rows([1], NOW))
        store.push("zone_stats", {"city": ["sfo"], "zone_id": [4], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                                  "demand": [2.5]})
        res = store.get_online_features(
            features=["all_types:f_str", "zone_stats:demand", "all_types:f_int"],
            entity_rows=[{"driver_id": 1, "city": "sfo", "zone_id": 4}, {"driver_id": 2, "city": "sfo", "zone_id": 4}])
        assert res.to_dict() == {"f_str": ["drv-1-é", None], "demand": [2.5, 2.5], "f_int": [10, -1]}
        with pytest.raises(UserInputError, match="f_str: text, bytes and list features"):
            res.to_numpy()  # no silent NaN for a text feature
        m = store.get_online_features(
            features=["zone_stats:demand", "all_types:f_int", "all_types:f_bool", "all_types:f_ts"],
            entity_rows=[{"driver_id": 1, "city": "sfo", "zone_id": 4}, {"driver_id": 2, "city": "sfo", "zone_id": 4}],
        ).to_numpy()
        assert m[0, 0] == 2.5 and m[1, 1] == -1 and m[0, 2] == 0.0  # driver 1's f_bool is False: 0
        assert m[0, 3] == (NOW - timedelta(days=1)).timestamp()  # a timestamp: seconds since the epoch


def test_feature_vector_equals_the_batch_row_for_every_status(conf_repo):
    """get_feature_vector (SQLite: its one-key shortcut) serves what get_online_features serves:
    present, null, stale and unknown drivers; also with the key repeated and unknown keys in a batch."""
    now = datetime.now(UTC)
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1, 2, 3],
                             "ts": pa.array([now - timedelta(minutes=1), now - timedelta(minutes=1),
                                             now - timedelta(minutes=90)], pa.timestamp("us", tz="UTC")),
                             "trips": [5, None, 7], "rate": [0.5, 0.25, 0.75]})
        ids = [1, 2, 3, 404, 1, 2]
        batch = store.get_online_features(service="stats_only", entities={"driver_id": ids})
        want_values, want_st = batch.to_numpy(), batch.statuses
        assert want_st[:4, 0].tolist() == [FieldStatus.PRESENT, FieldStatus.NULL_VALUE,
                                           FieldStatus.OUTSIDE_MAX_AGE, FieldStatus.NOT_FOUND]
        assert want_values[4].tolist() == [5.0, 0.5] and np.array_equal(want_st[4], want_st[0])  # repeated key
        for i, d in enumerate(ids):
            vec = store.get_feature_vector("stats_only", driver_id=d)
            np.testing.assert_array_equal(vec.values, want_values[i])
            np.testing.assert_array_equal(vec.statuses, want_st[i])
            assert vec.names == ("trips", "rate")


def test_empty_key_list_reads_nothing(conf_repo):
    from fsplug.request import KeyList

    with FeatureStore(conf_repo) as store:
        plan = store.plan(features=["stats:trips"])
        assert store.online_store.read(plan, [KeyList([[]])]) == [[]]


def test_partial_results_as_the_store_declares(conf_repo):
    """A store that can report per-entity failures does (no failure here: no errors); one that cannot
    refuses the option instead of quietly doing a normal read."""
    with FeatureStore(conf_repo) as store:
        store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "trips": [4], "rate": [0.5]})
        if store.online_store.capabilities.partial_results:
            res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2]},
                                            partial_results=True)
            assert res.to_dict()["trips"] == [4, None] and res.errors == [[None, None]]
        else:
            with pytest.raises(UserInputError, match="cannot report per-entity failures"):
                store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]},
                                          partial_results=True)


def test_the_plan_explains_where_this_store_keeps_each_entity(conf_repo):
    with FeatureStore(conf_repo) as store:
        text = store.plan(service="everything").explain(store.online_store.location)
        where = store.online_store.location("driver")
        assert f"read entity 'driver' ({where}; keys driver_id: int64)" in text
        assert f"{store.registry.project}-driver" in where
