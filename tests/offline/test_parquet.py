"""Parquet sources: opening, schema checks and the latest-row scan used by materialization."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsplug.errors import SourceDataError, UserInputError
from fsplug.offline.parquet import ScanStats, check_columns, open_source, scan_latest
from fsplug.types import DType

from tests.offline.helpers import T0, h, write
from tests.offline.helpers import ts_array


def scan(path, *, keys=("driver_id",), cols=("v",), start=None, end=None, created="created", **kw):
    end = h(1000) if end is None else end
    stats = kw.pop("stats", None) or ScanStats()
    if kw.get("sort_rows", 10**9) < 10**6:  # a small sort budget means: test the two-pass scan
        kw.setdefault("single_pass_rows", 0)
    batches = list(
        scan_latest(
            path,
            join_keys=list(keys) if not isinstance(keys, dict) else keys,
            timestamp_field="event_timestamp",
            created_timestamp_field=created,
            columns=list(cols) if not isinstance(cols, dict) else cols,
            start=start,
            end=end,
            stats=stats,
            **kw,
        )
    )
    table = pa.Table.from_batches(batches) if batches else None
    return table, stats


def as_dict(table: pa.Table, key="driver_id", col="v") -> dict:
    return dict(zip(table[key].to_pylist(), table[col].to_pylist(), strict=True)) if table is not None else {}


# --------------------------------------------------------------------------------------------
# open_source


def test_missing_path_names_it(tmp_path):
    with pytest.raises(SourceDataError, match=r"nope\.parquet: no such file"):
        open_source(tmp_path / "nope.parquet")


def test_source_data_error_is_user_input_error(tmp_path):
    with pytest.raises(UserInputError):
        open_source(tmp_path / "nope.parquet")


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "stats.parquet"
    bad.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(SourceDataError, match=r"stats\.parquet: cannot be read as Parquet"):
        open_source(bad)


def test_corrupt_file_in_directory_is_named_among_good_ones(tmp_path):
    good = pa.table({"driver_id": [1], "event_timestamp": ts_array([h(0)]), "v": [1.0]})
    write(tmp_path / "d" / "a.parquet", good)
    write(tmp_path / "d" / "c.parquet", good)
    (tmp_path / "d" / "b.parquet").write_bytes(b"PAR1garbagegarbage")
    with pytest.raises(SourceDataError) as ei:
        open_source(tmp_path / "d")
    msg = str(ei.value)
    assert "b.parquet" in msg and "a.parquet" not in msg and "c.parquet" not in msg


def test_truncated_file_is_reported(tmp_path):
    good = pa.table({"driver_id": list(range(1000)), "event_timestamp": ts_array([h(0)] * 1000)})
    p = write(tmp_path / "t.parquet", good)
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(SourceDataError, match=r"t\.parquet"):
        open_source(p)


def test_empty_directory_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceDataError, match="no Parquet files"):
        open_source(tmp_path / "empty")


def test_directory_is_read_recursively_ignoring_underscore_and_dot_files(tmp_path):
    def t(i):
        return pa.table({"driver_id": [i], "event_timestamp": ts_array([h(i)]), "v": [float(i)]})
    write(tmp_path / "src" / "2026" / "01" / "part-0.parquet", t(1))
    write(tmp_path / "src" / "2026" / "02" / "part-0.parquet", t(2))
    (tmp_path / "src" / "_SUCCESS").write_text("")
    (tmp_path / "src" / ".part-0.parquet.crc").write_text("crc")
    dset = open_source(tmp_path / "src")
    assert sorted(dset.to_table()["driver_id"].to_pylist()) == [1, 2]


def test_hive_partitioned_directory_exposes_partition_columns(tmp_path):
    root = tmp_path / "hive"
    for day, region, ids in [
        ("2026-03-01", "eu", [1, 2]),
        ("2026-03-02", "eu", [1]),
        ("2026-03-02", "us", [3]),
    ]:
        n = len(ids)
        hour = 0 if day.endswith("01") else 24
        tbl = pa.table(
            {
                "driver_id": ids,
                "event_timestamp": ts_array([h(hour)] * n),
                "v": [float(hour + i) for i in ids],
            }
        )
        write(root / f"date={day}" / f"region={region}" / "part-0.parquet", tbl)
    dset = open_source(root)
    assert {"date", "region"} <= set(dset.schema.names)
    table, _ = scan(root, cols=("v", "region"), created=None)
    got = {r["driver_id"]: (r["v"], r["region"]) for r in table.to_pylist()}
    assert got == {1: (25.0, "eu"), 2: (2.0, "eu"), 3: (27.0, "us")}
    # the time filter still works with partitions
    table, _ = scan(root, cols=("v",), created=None, end=h(24))
    assert as_dict(table) == {1: 1.0, 2: 2.0}


# --------------------------------------------------------------------------------------------
# check_columns


def _check(dset, columns, join_keys=None, created="created", source="data/driver_stats.parquet"):
    check_columns(
        dset,
        source=source,
        join_keys=join_keys or {"driver_id": DType.INT64},
        timestamp_field="event_timestamp",
        created_timestamp_field=created,
        columns=columns,
    )


def test_compatible_types_are_accepted(tmp_path):
    table = pa.table(
        {
            "driver_id": pa.array([1], pa.int32()),
            "event_timestamp": pa.array([0], pa.timestamp("ns")),  # naive, ns
            "created": pa.array([0], pa.timestamp("s", "Europe/Berlin")),
            "i8": pa.array([1], pa.int8()),
            "u32": pa.array([1], pa.uint32()),
            "f32": pa.array([1.5], pa.float32()),
            "f64_as_f32": pa.array([1.5], pa.float64()),
            "s": pa.array(["a"], pa.large_string()),
            "dict_s": pa.array(["a"]).dictionary_encode(),
            "b": pa.array([b"x"], pa.binary()),
            "lb": pa.array([b"x"], pa.large_binary()),
            "flag": [True],
            "when": pa.array([0], pa.timestamp("ms")),
            "emb32": pa.array([[1.0, 2.0]], pa.list_(pa.float32())),
            "emb64": pa.array([[1.0, 2.0]], pa.large_list(pa.float64())),
        }
    )
    dset = open_source(write(tmp_path / "ok.parquet", table))
    _check(
        dset,
        {
            "i8": DType.INT64,
            "u32": DType.INT64,
            "f32": DType.FLOAT64,
            "f64_as_f32": DType.FLOAT32,
            "s": DType.STRING,
            "dict_s": DType.STRING,
            "b": DType.BYTES,
            "lb": DType.BYTES,
            "flag": DType.BOOL,
            "when": DType.TIMESTAMP,
            "emb32": DType.FLOAT64_LIST,
            "emb64": DType.FLOAT64_LIST,
        },
    )


def test_mismatch_message_names_file_column_found_and_declared(tmp_path):
    table = pa.table(
        {"driver_id": [1], "event_timestamp": ts_array([h(0)]), "created": ts_array([h(0)]), "x": ["7"]}
    )
    dset = open_source(write(tmp_path / "s.parquet", table))
    with pytest.raises(SourceDataError) as ei:
        _check(dset, {"x": DType.INT64})
    assert (
        str(ei.value) == "data/driver_stats.parquet: column 'x' has type string; feature 'x' declares int64"
    )


@pytest.mark.parametrize(
    ("arrow", "dtype"),
    [
        (pa.array([1.5]), DType.INT64),
        (pa.array([1]), DType.FLOAT64),
        (pa.array([1]), DType.STRING),
        (pa.array(["a"]), DType.BYTES),
        (pa.array([1]), DType.BOOL),
        (pa.array([True]), DType.INT64),
        (pa.array([[1, 2]]), DType.FLOAT64_LIST),
        (pa.array(["2026-01-01"]), DType.TIMESTAMP),
    ],
    ids=lambda v: str(v.type) if isinstance(v, pa.Array) else str(v),
)
def test_incompatible_types_are_rejected(tmp_path, arrow, dtype):
    table = pa.table(
        {"driver_id": [1], "event_timestamp": ts_array([h(0)]), "created": ts_array([h(0)]), "x": arrow}
    )
    dset = open_source(write(tmp_path / "s.parquet", table))
    found = dset.schema.field("x").type  # as Parquet round-trips it (list items become 'element')
    with pytest.raises(SourceDataError) as ei:
        _check(dset, {"x": dtype})
    assert (
        str(ei.value)
        == f"data/driver_stats.parquet: column 'x' has type {found}; feature 'x' declares {dtype}"
    )


def test_all_problems_are_reported_at_once(tmp_path):
    table = pa.table(
        {
            "driver_id": ["a"],
            "event_timestamp": ["2026-01-01"],
            "x": ["7"],
            "y": [1.0],
        }
    )
    dset = open_source(write(tmp_path / "s.parquet", table))
    with pytest.raises(SourceDataError) as ei:
        _check(dset, {"x": DType.INT64, "y": DType.FLOAT64, "z": DType.FLOAT64})
    lines = str(ei.value).splitlines()
    assert len(lines) == 5, lines
    text = str(ei.value)
    assert "column 'driver_id' has type string; join key 'driver_id' declares int64" in text
    assert "column 'event_timestamp' has type string; it is the event timestamp field" in text
    assert "column 'created' is missing" in text
    assert "column 'x' has type string; feature 'x' declares int64" in text
    assert "column 'z' is missing (feature 'z' declares float64)" in text


def test_per_file_type_mismatch_in_directory_names_the_file(tmp_path):
    base = {"driver_id": [1], "event_timestamp": ts_array([h(0)]), "created": ts_array([h(0)])}
    write(tmp_path / "d" / "a.parquet", pa.table({**base, "x": [1]}))
    write(tmp_path / "d" / "b.parquet", pa.table({**base, "x": ["oops"]}))
    dset = open_source(tmp_path / "d")
    with pytest.raises(SourceDataError) as ei:
        _check(dset, {"x": DType.INT64})
    assert str(ei.value).endswith("b.parquet: column 'x' has type string; feature 'x' declares int64")
    assert "a.parquet" not in str(ei.value)


def test_scan_with_dtypes_runs_the_check(tmp_path):
    table = pa.table(
        {"driver_id": [1], "event_timestamp": ts_array([h(0)]), "created": ts_array([h(0)]), "v": ["x"]}
    )
    p = write(tmp_path / "s.parquet", table)
    with pytest.raises(SourceDataError, match="column 'v' has type string; feature 'v' declares float64"):
        scan(p, keys={"driver_id": DType.INT64}, cols={"v": DType.FLOAT64})


def test_scan_with_names_reports_missing_columns(tmp_path):
    table = pa.table({"driver_id": [1], "event_timestamp": ts_array([h(0)])})
    p = write(tmp_path / "s.parquet", table)
    with pytest.raises(SourceDataError, match=r"s\.parquet: column 'v' is missing"):
        scan(p, created=None)


def test_cast_overflow_is_a_source_data_error(tmp_path):
    table = pa.table(
        {
            "driver_id": [1],
            "event_timestamp": ts_array([h(0)]),
            "v": pa.array([2**63 + 5], pa.uint64()),
        }
    )
    p = write(tmp_path / "s.parquet", table)
    with pytest.raises(SourceDataError, match=r"column 'v' of type uint64 cannot be read as int64"):
        scan(p, created=None, keys={"driver_id": DType.INT64}, cols={"v": DType.INT64})


# --------------------------------------------------------------------------------------------
# scan_latest: hand-built cases


def test_latest_row_per_entity_with_window_edges(tmp_path):
    rows = [
        # driver, event ts, v
        (1, h(0), 10.0),  # before start: excluded
        (1, h(1), 11.0),  # == start: included
        (1, h(5), 15.0),  # latest for 1
        (2, h(9) - timedelta(microseconds=1), 29.0),  # just before end: included
        (2, h(9), 30.0),  # == end: excluded
        (3, h(9), 39.0),  # only row of 3 is at end: 3 absent
        (4, h(3), 43.0),
        (4, h(2), 42.0),  # older row after newer in file order
    ]
    table = pa.table(
        {
            "driver_id": [r[0] for r in rows],
            "event_timestamp": ts_array([r[1] for r in rows]),
            "v": [r[2] for r in rows],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, stats = scan(p, created=None, start=h(1), end=h(9))
    assert as_dict(out) == {1: 15.0, 2: 29.0, 4: 43.0}
    assert stats.entities == 3 and stats.rows_read == 5 and stats.null_key_rows == 0
    ts = dict(zip(out["driver_id"].to_pylist(), out["event_timestamp"].to_pylist(), strict=True))
    assert ts[2] == h(9) - timedelta(microseconds=1)


def test_start_none_means_no_lower_bound(tmp_path):
    table = pa.table(
        {
            "driver_id": [1, 2],
            "event_timestamp": ts_array([datetime(1971, 1, 1, tzinfo=UTC), h(0)]),
            "v": [1.0, 2.0],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, _ = scan(p, created=None, start=None, end=h(1))
    assert as_dict(out) == {1: 1.0, 2: 2.0}


def test_created_breaks_ties_latest_wins_and_null_created_loses(tmp_path):
    table = pa.table(
        {
            "driver_id": [1, 1, 1, 2, 2, 3, 3],
            "event_timestamp": ts_array([h(1), h(1), h(1), h(1), h(1), h(2), h(1)]),
            "created": ts_array([h(3), h(5), h(4), None, h(1), h(1), h(9)]),
            "v": [1.3, 1.5, 1.4, 2.0, 2.1, 3.2, 3.1],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, _ = scan(p)
    # 3: event ts decides before created does
    assert as_dict(out) == {1: 1.5, 2: 2.1, 3: 3.2}


def test_full_ties_go_to_the_last_row_in_scan_order(tmp_path):
    same = {"event_timestamp": ts_array([h(1), h(1)]), "created": ts_array([h(2), h(2)])}
    write(tmp_path / "d" / "a.parquet", pa.table({"driver_id": [1, 1], **same, "v": [1.0, 2.0]}))
    write(tmp_path / "d" / "b.parquet", pa.table({"driver_id": [2, 1], **same, "v": [5.0, 3.0]}))
    write(tmp_path / "d" / "c.parquet", pa.table({"driver_id": [2, 2], **same, "v": [6.0, 7.0]}))
    out, _ = scan(tmp_path / "d")
    assert as_dict(out) == {1: 3.0, 2: 7.0}


def test_null_keys_are_skipped_and_counted(tmp_path):
    table = pa.table(
        {
            "driver_id": pa.array([1, None, 2, None, 1]),
            "event_timestamp": ts_array([h(0), h(5), h(1), h(6), h(2)]),
            "v": [1.0, 99.0, 2.0, 98.0, 1.2],
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, stats = scan(p, created=None)
    assert as_dict(out) == {1: 1.2, 2: 2.0}
    assert stats.null_key_rows == 2


def test_null_keys_counted_once_with_spilled_partitions(tmp_path):
    n = 1000
    table = pa.table(
        {
            "driver_id": pa.array(np.arange(n) % 50, mask=np.arange(n) % 10 == 0),
            "event_timestamp": ts_array([h(i % 7) for i in range(n)]),
            "v": np.arange(n, dtype=np.float64),
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, stats = scan(p, created=None, sort_rows=100, spill_dir=tmp_path / "spill")
    assert stats.partitions == 10 and stats.null_key_rows == 100 and stats.spilled_bytes > 0
    assert list((tmp_path / "spill").iterdir()) == []  # temporary files are removed
    assert len(out) == len(set(out["driver_id"].to_pylist()))


def test_timezones_and_units_are_normalised_to_utc_us(tmp_path):
    berlin = pa.array([int(h(2).timestamp())], pa.timestamp("s", "Europe/Berlin"))
    naive_ns = pa.array([int(h(3).timestamp() * 1e9) + 999], pa.timestamp("ns"))  # naive = UTC
    write(tmp_path / "d" / "a.parquet", pa.table({"driver_id": [1], "event_timestamp": berlin, "v": [1.0]}))
    write(tmp_path / "d" / "b.parquet", pa.table({"driver_id": [2], "event_timestamp": naive_ns, "v": [2.0]}))
    for part in ("a", "b"):
        p = tmp_path / "d" / f"{part}.parquet"
        out, _ = scan(
            p,
            created=None,
            start=h(2).replace(tzinfo=None),
            end=h(
                3,
            )
            + timedelta(microseconds=1),
        )
        assert out.schema.field("event_timestamp").type == pa.timestamp("us", "UTC")
        assert out["event_timestamp"].to_pylist() == [h(2) if part == "a" else h(3)]


def test_bounds_are_exact_for_coarse_units(tmp_path):
    # A millisecond column (Parquet has no seconds unit): bounds with sub-ms parts must not round
    # the row in or out.
    col = pa.array([int(h(1).timestamp()) * 1000], pa.timestamp("ms", "UTC"))
    p = write(tmp_path / "s.parquet", pa.table({"driver_id": [1], "event_timestamp": col, "v": [1.0]}))
    assert open_source(p).schema.field("event_timestamp").type.unit == "ms"
    half = timedelta(microseconds=500)
    assert as_dict(scan(p, created=None, start=h(1) - half, end=h(2))[0]) == {1: 1.0}
    assert as_dict(scan(p, created=None, start=h(1) + half, end=h(2))[0]) == {}
    assert as_dict(scan(p, created=None, start=h(0), end=h(1) + half)[0]) == {1: 1.0}
    assert as_dict(scan(p, created=None, start=h(0), end=h(1))[0]) == {}


def test_output_is_cast_to_declared_types(tmp_path):
    table = pa.table(
        {
            "driver_id": pa.array([1, 2], pa.int16()),
            "event_timestamp": ts_array([h(0), h(1)]),
            "rate": pa.array([0.5, None], pa.float32()),
            "trips": pa.array([3, 4], pa.int32()),
            "city": pa.array(["ams", "ber"]).dictionary_encode(),
        }
    )
    p = write(tmp_path / "s.parquet", table)
    out, _ = scan(
        p,
        created=None,
        keys={"driver_id": DType.INT64},
        cols={"rate": DType.FLOAT64, "trips": DType.INT64, "city": DType.STRING},
    )
    assert out.schema == pa.schema(
        [
            ("driver_id", pa.int64()),
            ("event_timestamp", pa.timestamp("us", "UTC")),
            ("rate", pa.float64()),
            ("trips", pa.int64()),
            ("city", pa.string()),
        ]
    )
    assert out.sort_by("driver_id").to_pydict()["rate"] == [0.5, None]


def test_batches_are_bounded_and_progress_counts_rows(tmp_path):
    n = 5000
    table = pa.table(
        {
            "driver_id": np.arange(n) % 1700,
            "event_timestamp": ts_array([h(i % 13) for i in range(n)]),
            "v": np.arange(n, dtype=np.float64),
        }
    )
    p = write(tmp_path / "s.parquet", table, row_group_size=333)
    seen = []
    stats = ScanStats()
    batches = list(
        scan_latest(
            p,
            join_keys=["driver_id"],
            timestamp_field="event_timestamp",
            created_timestamp_field=None,
            columns=["v"],
            start=None,
            end=h(100),
            batch_rows=256,
            progress=seen.append,
            stats=stats,
            single_pass_rows=0,  # the bounded two-pass scan
        )
    )
    assert all(b.num_rows <= 256 for b in batches)
    assert all(b.num_rows == 256 for b in batches[:-1])
    assert sum(b.num_rows for b in batches) == 1700 == stats.entities
    assert sum(seen) == n == stats.rows_read and len(seen) > 1


def test_empty_window_yields_nothing(tmp_path):
    p = write(
        tmp_path / "s.parquet", pa.table({"driver_id": [1], "event_timestamp": ts_array([h(5)]), "v": [1.0]})
    )
    out, stats = scan(p, created=None, start=h(6), end=h(7))
    assert out is None and stats.entities == 0 and stats.rows_read == 0


# --------------------------------------------------------------------------------------------
# scan_latest vs a brute-force reference


def reference_latest(rows: list[dict], keys, start, end, created="created") -> dict:
    """Pure Python: per key tuple, max by (event ts, created (null lowest), position)."""
    best: dict = {}
    for pos, r in enumerate(rows):
        k = tuple(r[c] for c in keys)
        if any(v is None for v in k) or r["event_timestamp"] is None:
            continue
        ts = r["event_timestamp"]
        if (start is not None and ts < start) or ts >= end:
            continue
        c = r.get(created) if created else None
        rank = (ts, c is not None, c or T0, pos)
        if k not in best or rank > best[k][0]:
            best[k] = (rank, r)
    return {k: (r["event_timestamp"], r["v"]) for k, (_, r) in best.items()}


def random_rows(rng, n, n_keys, string_keys=False, two_keys=False):
    ids = rng.integers(0, n_keys, n)
    ts = [
        h(int(x)) + timedelta(microseconds=int(u))
        for x, u in zip(rng.integers(0, 40, n), rng.integers(0, 3, n), strict=True)
    ]
    created = [None if rng.random() < 0.2 else h(int(x)) for x in rng.integers(0, 4, n)]
    key = [None if rng.random() < 0.03 else (f"d{i}" if string_keys else int(i)) for i in ids]
    rows = [
        {"driver_id": k, "event_timestamp": t, "created": c, "v": float(i)}
        for i, (k, t, c) in enumerate(zip(key, ts, created, strict=True))
    ]
    if two_keys:
        for r, z in zip(rows, rng.integers(0, 3, n), strict=True):
            r["zone"] = ["n", "s", None][z] if rng.random() < 0.05 else ["n", "s"][z % 2]
    return rows


def write_rows(root: Path, rows: list[dict], n_files: int, rng) -> None:
    cuts = (
        sorted(rng.choice(np.arange(1, len(rows)), size=n_files - 1, replace=False).tolist())
        if n_files > 1
        else []
    )
    bounds = [0, *cuts, len(rows)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        part = rows[a:b]
        cols = {name: [r[name] for r in part] for name in part[0]}
        table = pa.table(cols)
        table = table.set_column(1, "event_timestamp", ts_array(cols["event_timestamp"]))
        table = table.set_column(2, "created", ts_array(cols["created"]))
        write(root / f"part-{i:03d}.parquet", table, row_group_size=int(rng.integers(50, 500)))


@pytest.mark.parametrize(
    ("seed", "string_keys", "two_keys", "sort_rows"),
    [
        (1, False, False, 10**9),
        (2, False, False, 300),
        (3, True, False, 10**9),
        (4, True, False, 500),
        (5, False, True, 10**9),
        (6, True, True, 700),
    ],
)
@pytest.mark.parametrize("single_pass_rows", [0, 10**6], ids=["two-pass", "single-pass"])
def test_scan_latest_matches_brute_force(tmp_path, seed, string_keys, two_keys, sort_rows, single_pass_rows):
    rng = np.random.default_rng(seed)
    rows = random_rows(rng, 4000, 600, string_keys=string_keys, two_keys=two_keys)
    write_rows(tmp_path / "src", rows, n_files=int(rng.integers(1, 6)), rng=rng)
    keys = ("driver_id", "zone") if two_keys else ("driver_id",)
    start, end = h(int(rng.integers(0, 10))), h(int(rng.integers(20, 41)))
    out, stats = scan(tmp_path / "src", keys=keys, start=start, end=end, batch_rows=128, sort_rows=sort_rows,
                      single_pass_rows=single_pass_rows)
    got = {tuple(r[k] for k in keys): (r["event_timestamp"], r["v"]) for r in out.to_pylist()}
    expected = reference_latest(rows, keys, start, end)
    assert len(got) == out.num_rows  # one row per entity
    assert got == expected
    assert stats.null_key_rows == sum(
        1 for r in rows if any(r[k] is None for k in keys) and start <= r["event_timestamp"] < end
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 4)),  # key
            st.integers(0, 6),  # event hour
            st.one_of(st.none(), st.integers(0, 2)),  # created hour
        ),
        min_size=1,
        max_size=40,
    ),
    window=st.tuples(st.one_of(st.none(), st.integers(0, 6)), st.integers(0, 7)),
    sort_rows=st.sampled_from([3, 10**6]),
)
def test_scan_latest_property_small(tmp_path_factory, data, window, sort_rows):
    rows = [
        {"driver_id": k, "event_timestamp": h(t), "created": None if c is None else h(c), "v": float(i)}
        for i, (k, t, c) in enumerate(data)
    ]
    table = pa.table(
        {
            "driver_id": pa.array([r["driver_id"] for r in rows], pa.int64()),
            "event_timestamp": ts_array([r["event_timestamp"] for r in rows]),
            "created": ts_array([r["created"] for r in rows]),
            "v": [r["v"] for r in rows],
        }
    )
    p = write(tmp_path_factory.mktemp("p") / "s.parquet", table, row_group_size=7)
    start = None if window[0] is None else h(window[0])
    end = h(window[1])
    out, _ = scan(p, start=start, end=end, batch_rows=4, sort_rows=sort_rows)
    got = {(r["driver_id"],): (r["event_timestamp"], r["v"]) for r in out.to_pylist()} if out else {}
    assert got == reference_latest(rows, ("driver_id",), start, end)
