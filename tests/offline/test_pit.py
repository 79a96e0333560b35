"""Point-in-time joins: boundaries, ties, ttl, missing entities, order, and a brute-force reference."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest

from fsplug.errors import EntityKeyError, SourceDataError, UserInputError
from fsplug.offline.pit import ViewJoin, point_in_time_join
from fsplug.types import DType

from tests.offline.helpers import T0, h, write
from tests.offline.helpers import ts_array as ts


def view(
    path,
    *,
    name="stats",
    keys=("driver_id",),
    cols=("v",),
    out=None,
    dtypes=None,
    ttl=None,
    created="created",
):
    return ViewJoin(
        name=name,
        path=path,
        join_keys=tuple(keys),
        timestamp_field="event_timestamp",
        created_timestamp_field=created,
        columns=tuple(cols),
        output_names=tuple(out or cols),
        dtypes=tuple(dtypes or [DType.FLOAT64] * len(cols)),
        ttl=ttl,
    )


def entities(ids, times, **extra) -> pa.Table:
    return pa.table({"driver_id": ids, "event_timestamp": ts(times), **extra})


@pytest.fixture
def stats_file(tmp_path):
    rows = [
        (1, h(0), h(0), 1.0),
        (1, h(2), h(2), 1.2),
        (1, h(4), h(4), 1.4),
        (2, h(1), h(1), 2.1),
    ]
    table = pa.table(
        {
            "driver_id": [r[0] for r in rows],
            "event_timestamp": ts([r[1] for r in rows]),
            "created": ts([r[2] for r in rows]),
            "v": [r[3] for r in rows],
        }
    )
    return write(tmp_path / "stats.parquet", table)


def test_latest_value_at_or_before_each_row_and_no_future_leakage(stats_file):
    ent = entities(
        [1, 1, 1, 1, 2, 2, 3],
        [h(0) - timedelta(microseconds=1), h(0), h(3), h(4), h(0.5), h(100), h(5)],
    )
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    assert out["v"].to_pylist() == [None, 1.0, 1.2, 1.4, None, 2.1, None]


def test_ttl_boundary_is_inclusive_like_feast(stats_file):
    two = timedelta(hours=2)
    one_us = timedelta(microseconds=1)
    ent = entities([1, 1, 2, 2], [h(6), h(6) + one_us, h(3), h(3) + one_us])
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(stats_file, ttl=two)])
    # row at h(4): age exactly 2h at h(6) -> kept; one microsecond later -> stale
    assert out["v"].to_pylist() == [1.4, None, 2.1, None]


def test_stale_latest_does_not_fall_back_to_an_older_row(stats_file):
    # at h(3.5) with ttl 1h the latest row (h(2)) is 1.5h old: null, not the h(0) row either
    ent = entities([1], [h(3.5)])
    out = point_in_time_join(
        ent, event_timestamp_column="event_timestamp", views=[view(stats_file, ttl=timedelta(hours=1))]
    )
    assert out["v"].to_pylist() == [None]


def test_ttl_none_and_zero_mean_never_stale(stats_file):
    ent = entities([1], [h(10_000)])
    for ttl in (None, timedelta(0)):
        out = point_in_time_join(
            ent, event_timestamp_column="event_timestamp", views=[view(stats_file, ttl=ttl)]
        )
        assert out["v"].to_pylist() == [1.4]


def test_created_breaks_ties_then_last_row_wins(tmp_path):
    table = pa.table(
        {
            "driver_id": [1, 1, 1, 2, 2, 3, 3],
            "event_timestamp": ts([h(1)] * 7),
            "created": ts([h(5), h(7), h(6), None, h(1), h(2), h(2)]),
            "v": [1.5, 1.7, 1.6, 2.0, 2.1, 3.0, 3.1],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    ent = entities([1, 2, 3], [h(1)] * 3)
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(p)])
    assert out["v"].to_pylist() == [1.7, 2.1, 3.1]


def test_late_correction_is_used_even_if_created_after_the_row(tmp_path):
    """Feast semantics: only the event timestamp is compared with the row's time."""
    table = pa.table(
        {
            "driver_id": [1, 1],
            "event_timestamp": ts([h(1), h(1)]),
            "created": ts([h(1), h(50)]),
            "v": [0.1, 0.9],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out = point_in_time_join(entities([1], [h(2)]), event_timestamp_column="event_timestamp", views=[view(p)])
    assert out["v"].to_pylist() == [0.9]


def test_rows_keep_order_columns_and_duplicates(stats_file):
    ent = pa.table(
        {
            "label": [1, 0, 1, 1],
            "driver_id": [2, 1, 1, 2],
            "pickup_distance_km": [1.5, 2.5, 3.5, 4.5],
            "event_timestamp": ts([h(5), h(3), h(3), h(5)]),
        }
    )
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    assert out.column_names == ["label", "driver_id", "pickup_distance_km", "event_timestamp", "v"]
    assert out.select(ent.column_names).equals(ent)
    assert out["v"].to_pylist() == [2.1, 1.2, 1.2, 2.1]


def test_null_keys_and_null_timestamps_get_nulls(stats_file):
    ent = pa.table({"driver_id": pa.array([None, 1, 1]), "event_timestamp": ts([h(5), None, h(5)])})
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    assert out["v"].to_pylist() == [None, None, 1.4]


def test_null_source_keys_never_match_null_entity_keys(tmp_path):
    table = pa.table({"driver_id": pa.array([None, 1]), "event_timestamp": ts([h(0), h(0)]), "v": [9.0, 1.0]})
    p = write(tmp_path / "s.parquet", table)
    ent = pa.table({"driver_id": pa.array([None, 1]), "event_timestamp": ts([h(1), h(1)])})
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(p, created=None)])
    assert out["v"].to_pylist() == [None, 1.0]


def test_time_zones_and_units_on_both_sides(tmp_path):
    # source: naive ns (= UTC); entity rows: Berlin wall clock in seconds and naive ms
    src = pa.table(
        {
            "driver_id": [1, 1],
            "event_timestamp": pa.array(
                [int(h(1).timestamp() * 1e9), int(h(3).timestamp() * 1e9)], pa.timestamp("ns")
            ),
            "v": [1.0, 3.0],
        }
    )
    p = write(tmp_path / "s.parquet", src)
    berlin = pa.array([int(h(2).timestamp()), int(h(3).timestamp())], pa.timestamp("s", "Europe/Berlin"))
    out = point_in_time_join(
        pa.table({"driver_id": [1, 1], "t": berlin}),
        event_timestamp_column="t",
        views=[view(p, created=None)],
    )
    assert out["v"].to_pylist() == [1.0, 3.0]
    naive = pa.array([int(h(3).timestamp() * 1000) - 1], pa.timestamp("ms"))
    out = point_in_time_join(
        pa.table({"driver_id": [1], "t": naive}), event_timestamp_column="t", views=[view(p, created=None)]
    )
    assert out["v"].to_pylist() == [1.0]


def test_two_views_with_prefixed_names_and_declared_types(tmp_path, stats_file):
    act = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int32()),
            "event_timestamp": ts([h(3), h(3)]),
            "trips_today": pa.array([5, 7], pa.int16()),
            "rate": pa.array([0.5, 0.25], pa.float32()),
        }
    )
    pa_path = write(tmp_path / "act.parquet", act)
    v2 = view(
        pa_path,
        name="act",
        cols=("trips_today", "rate"),
        out=("act__trips_today", "act__rate"),
        dtypes=(DType.INT64, DType.FLOAT64),
        ttl=timedelta(hours=2),
        created=None,
    )
    v1 = view(stats_file, out=("stats__v",), ttl=timedelta(days=2))
    ent = entities(pa.array([1, 2, 1], pa.int64()), [h(4), h(4), h(6)])
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[v1, v2])
    assert out.schema.field("act__trips_today").type == pa.int64()
    assert out.schema.field("act__rate").type == pa.float64()
    assert out.to_pydict()["stats__v"] == [1.4, 2.1, 1.4]
    assert out.to_pydict()["act__trips_today"] == [5, 7, None]
    assert out.to_pydict()["act__rate"] == [0.5, 0.25, None]


def test_string_and_multi_column_keys(tmp_path):
    src = pa.table(
        {
            "driver_id": ["a", "a", "b"],
            "zone": pa.array(["n", "s", "n"], pa.large_string()),
            "event_timestamp": ts([h(1), h(1), h(1)]),
            "v": [1.0, 2.0, 3.0],
        }
    )
    p = write(tmp_path / "s.parquet", src)
    ent = pa.table(
        {"driver_id": ["a", "a", "b", "b"], "zone": ["s", "n", "s", "n"], "event_timestamp": ts([h(2)] * 4)}
    )
    out = point_in_time_join(
        ent,
        event_timestamp_column="event_timestamp",
        views=[view(p, keys=("driver_id", "zone"), created=None)],
    )
    assert out["v"].to_pylist() == [2.0, 1.0, None, 3.0]


def test_hive_partitioned_source(tmp_path):
    for day in (1, 2):
        t = pa.table({"driver_id": [1], "event_timestamp": ts([h(24 * day)]), "v": [float(day)]})
        write(tmp_path / "src" / f"day={day}" / "part.parquet", t)
    out = point_in_time_join(
        entities([1, 1], [h(30), h(50)]),
        event_timestamp_column="event_timestamp",
        views=[view(tmp_path / "src", created=None)],
    )
    assert out["v"].to_pylist() == [1.0, 2.0]


def test_empty_entity_table_keeps_schema(stats_file):
    ent = entities(pa.array([], pa.int64()), [])
    out = point_in_time_join(ent, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    assert out.num_rows == 0 and out.schema.field("v").type == pa.float64()


def test_errors(tmp_path, stats_file):
    ent = entities([1], [h(1)])
    with pytest.raises(EntityKeyError, match="no column 'rider_id'"):
        point_in_time_join(
            ent, event_timestamp_column="event_timestamp", views=[view(stats_file, keys=("rider_id",))]
        )
    with pytest.raises(UserInputError, match="no column 'ts'"):
        point_in_time_join(ent, event_timestamp_column="ts", views=[view(stats_file)])
    bad_ts = pa.table({"driver_id": [1], "event_timestamp": ["2026-01-01"]})
    with pytest.raises(UserInputError, match="has type string; expected a timestamp"):
        point_in_time_join(bad_ts, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    with pytest.raises(UserInputError, match="clashes"):
        point_in_time_join(
            ent, event_timestamp_column="event_timestamp", views=[view(stats_file, out=("driver_id",))]
        )
    str_keys = pa.table({"driver_id": ["1"], "event_timestamp": ts([h(1)])})
    with pytest.raises(
        SourceDataError, match="column 'driver_id' has type int64; join key 'driver_id' declares string"
    ):
        point_in_time_join(str_keys, event_timestamp_column="event_timestamp", views=[view(stats_file)])
    with pytest.raises(SourceDataError, match="column 'v' has type double; feature 'v' declares int64"):
        point_in_time_join(
            ent, event_timestamp_column="event_timestamp", views=[view(stats_file, dtypes=(DType.INT64,))]
        )
    with pytest.raises(SourceDataError, match="no such file"):
        point_in_time_join(
            ent, event_timestamp_column="event_timestamp", views=[view(tmp_path / "missing.parquet")]
        )
    with pytest.raises(ValueError, match="same length"):
        ViewJoin(
            "x",
            stats_file,
            ("driver_id",),
            "event_timestamp",
            None,
            ("v",),
            ("v", "w"),
            (DType.FLOAT64,),
            None,
        )


def test_int_entity_keys_beyond_int32_source_range(tmp_path):
    src = pa.table({"driver_id": pa.array([1], pa.int32()), "event_timestamp": ts([h(0)]), "v": [1.0]})
    p = write(tmp_path / "s.parquet", src)
    out = point_in_time_join(
        entities([1, 2**40], [h(1), h(1)]),
        event_timestamp_column="event_timestamp",
        views=[view(p, created=None)],
    )
    assert out["v"].to_pylist() == [1.0, None]


# --------------------------------------------------------------------------------------------
# against a brute-force reference, and against Arrow's own as-of join


def reference_pit(ent_rows, src_rows, ttl):
    out = []
    for e in ent_rows:
        best = None
        if e["driver_id"] is not None and e["t"] is not None:
            for pos, r in enumerate(src_rows):
                if r["driver_id"] != e["driver_id"] or r["event_timestamp"] > e["t"]:
                    continue
                if ttl is not None and r["event_timestamp"] < e["t"] - ttl:
                    continue
                c = r["created"]
                rank = (r["event_timestamp"], c is not None, c or T0, pos)
                if best is None or rank > best[0]:
                    best = (rank, r["v"])
        out.append(None if best is None else best[1])
    return out


@pytest.mark.parametrize(
    ("seed", "ttl"),
    [
        (1, None),
        (2, timedelta(hours=3)),
        (3, timedelta(hours=1)),
        (4, timedelta(minutes=30)),
        (5, timedelta(0)),
    ],
)
def test_matches_brute_force(tmp_path, seed, ttl):
    rng = np.random.default_rng(seed)
    n_src, n_ent, n_keys = 3000, 1500, 80

    def when(n):  # coarse grid so that equal timestamps (and ttl edges) are common
        return [h(int(x) / 4) for x in rng.integers(0, 100, n)]

    src_rows = [
        {
            "driver_id": None if rng.random() < 0.02 else int(k),
            "event_timestamp": t,
            "created": None if rng.random() < 0.2 else h(int(c)),
            "v": float(i),
        }
        for i, (k, t, c) in enumerate(
            zip(rng.integers(0, n_keys, n_src), when(n_src), rng.integers(0, 3, n_src), strict=True)
        )
    ]
    cuts = [0, 1000, 1700, n_src]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        part = src_rows[a:b]
        write(
            tmp_path / "src" / f"p{i}.parquet",
            pa.table(
                {
                    "driver_id": pa.array([r["driver_id"] for r in part], pa.int64()),
                    "event_timestamp": ts([r["event_timestamp"] for r in part]),
                    "created": ts([r["created"] for r in part]),
                    "v": [r["v"] for r in part],
                }
            ),
            row_group_size=128,
        )
    ent_rows = [
        {"driver_id": None if rng.random() < 0.02 else int(k), "t": None if rng.random() < 0.01 else t}
        for k, t in zip(rng.integers(0, n_keys + 5, n_ent), when(n_ent), strict=True)
    ]
    ent = pa.table(
        {
            "driver_id": pa.array([e["driver_id"] for e in ent_rows], pa.int64()),
            "t": ts([e["t"] for e in ent_rows]),
            "row": np.arange(n_ent),
        }
    )
    out = point_in_time_join(ent, event_timestamp_column="t", views=[view(tmp_path / "src", ttl=ttl)])
    assert out["row"].to_pylist() == list(range(n_ent))
    expected = reference_pit(ent_rows, src_rows, None if ttl == timedelta(0) else ttl)
    got = out["v"].to_pylist()
    assert got == expected
    assert sum(v is not None for v in got) > n_ent // 3  # the case is not trivially all-null


def test_agrees_with_arrow_join_asof_without_ties(tmp_path):
    """Arrow's as-of join (inclusive tolerance, no created tie-break) on data without equal timestamps."""
    rng = np.random.default_rng(11)
    n_src, n_ent = 20_000, 10_000
    src_ts = rng.choice(10**9, size=n_src, replace=False) * 1000  # distinct event times
    src = pa.table(
        {
            "driver_id": rng.integers(0, 300, n_src),
            "event_timestamp": pa.array(src_ts, pa.timestamp("us", "UTC")),
            "v": rng.random(n_src),
        }
    )
    p = write(tmp_path / "s.parquet", src)
    ent_ts = rng.integers(0, 10**12, n_ent)
    ent_ts[:100] = src_ts[:100] + 3_600_000_000  # exactly at the ttl edge
    ent = pa.table(
        {"driver_id": rng.integers(0, 300, n_ent), "t": pa.array(ent_ts, pa.timestamp("us", "UTC"))}
    )
    ttl = timedelta(hours=1)
    ours = point_in_time_join(ent, event_timestamp_column="t", views=[view(p, ttl=ttl, created=None)])

    left = ent.append_column("row", pa.array(np.arange(n_ent)))
    left = left.set_column(1, "t", left["t"].cast(pa.int64())).sort_by("t")
    right = src.rename_columns(["driver_id", "t", "v"])
    right = right.set_column(1, "t", right["t"].cast(pa.int64())).sort_by("t")
    arrow = left.join_asof(right, on="t", by="driver_id", tolerance=-3_600_000_000).sort_by("row")
    assert ours["v"].to_pylist() == arrow["v"].to_pylist()
    assert ours["v"].null_count < n_ent
