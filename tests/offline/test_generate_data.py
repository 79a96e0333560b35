"""The ride-hailing data generator: schema = feature repo, reproducible, labels = ground truth of as-of."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from fsplug.offline.pit import ViewJoin, point_in_time_join
from fsplug.types import DType, parse_dtype

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "generate_data.py"
REPO_YAML = ROOT / "feature_repo" / "features" / "driver.yaml"


def _load():
    spec = importlib.util.spec_from_file_location("generate_data", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["generate_data"] = mod
    spec.loader.exec_module(mod)
    return mod


gd = _load()
REPO = yaml.safe_load(REPO_YAML.read_text())


def _ttl(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhd])", text)
    assert m, text
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m[2]]: int(m[1])})


def _views(data_dir: Path) -> list[ViewJoin]:
    sources = {s["name"]: s for s in REPO["sources"]}
    out = []
    for fv in REPO["feature_views"]:
        src = sources[fv["source"]]
        names = tuple(f["name"] for f in fv["features"])
        out.append(
            ViewJoin(
                name=fv["name"],
                path=data_dir / Path(src["path"]).name,
                join_keys=("driver_id",),
                timestamp_field=src["timestamp_field"],
                created_timestamp_field=src.get("created_timestamp_field"),
                columns=names,
                output_names=names,
                dtypes=tuple(parse_dtype(f["dtype"]) for f in fv["features"]),
                ttl=_ttl(fv["ttl"]),
            )
        )
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """300 drivers x 6 days, simulated 60 drivers at a time so that the chunked path is exercised."""
    out = tmp_path_factory.mktemp("gen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gd, "_CELLS_PER_CHUNK", 60 * (gd.BURN_IN_DAYS + 6))
        summary = gd.generate(out, n_drivers=300, days=6, seed=3)
    return out, summary


def test_files_match_the_feature_repo_exactly(small):
    out, _ = small
    sources = {s["name"]: s for s in REPO["sources"]}
    for fv in REPO["feature_views"]:
        src = sources[fv["source"]]
        schema = pq.read_schema(out / Path(src["path"]).name)
        expected = [
            ("driver_id", pa.int64()),
            (src["timestamp_field"], pa.timestamp("us", "UTC")),
            (src["created_timestamp_field"], pa.timestamp("us", "UTC")),
            *((f["name"], parse_dtype(f["dtype"]).arrow_type()) for f in fv["features"]),
        ]
        assert [(f.name, f.type) for f in schema] == expected
    offers = pq.read_schema(out / "offers.parquet")
    (request,) = REPO["request_sources"]
    for f in request["features"]:
        assert offers.field(f["name"]).type == parse_dtype(f["dtype"]).arrow_type()
    assert offers.names == [
        "driver_id",
        "event_timestamp",
        "pickup_distance_km",
        "surge_multiplier",
        "hour_of_day",
        "declined",
        "true_decline_prob",
    ]
    ttl = {fv["name"]: _ttl(fv["ttl"]) for fv in REPO["feature_views"]}
    assert ttl["driver_stats"] == timedelta(seconds=gd.STATS_TTL_S)
    assert ttl["driver_activity"] == timedelta(seconds=gd.ACTIVITY_TTL_S)


def test_summary_counts_and_time_range(small):
    _, summary = small
    assert summary["start"] == datetime(2026, 2, 23, tzinfo=UTC) and summary["end"] == gd.DEFAULT_END
    for name, path in summary["paths"].items():
        table = pq.read_table(path)
        assert table.num_rows == summary["rows"][name] > 0
        ts = table["event_timestamp"]
        assert pc.min(ts).as_py() >= summary["start"] and pc.max(ts).as_py() < summary["end"]
    stats = pq.read_table(summary["paths"]["driver_stats"])
    assert all(t.hour == t.minute == t.second == 0 for t in stats["event_timestamp"].to_pylist())
    ids = pq.read_table(summary["paths"]["driver_stats"])["driver_id"]
    assert pc.min(ids).as_py() > gd.DRIVER_ID_BASE and pc.max(ids).as_py() <= gd.DRIVER_ID_BASE + 300
    assert 0.1 < summary["decline_rate"] < 0.6


def test_labels_follow_the_ground_truth_of_point_in_time_features(small):
    out, _ = small
    offers = pq.read_table(out / "offers.parquet")
    joined = point_in_time_join(offers, event_timestamp_column="event_timestamp", views=_views(out))
    names = [*gd.STATS_FEATURES, *gd.ACTIVITY_FEATURES, *gd.REQUEST_FEATURES]
    feats = {c: joined[c].cast(pa.float64()).fill_null(np.nan).to_numpy() for c in names}
    np.testing.assert_allclose(
        gd.decline_probability(feats), joined["true_decline_prob"].to_numpy(), rtol=0, atol=1e-12
    )
    # the probabilities spread (the label carries signal) and the label agrees with them
    p = joined["true_decline_prob"].to_numpy()
    y = joined["declined"].to_numpy()
    assert p.std() > 0.1
    assert y[p > 0.6].mean() > y[p < 0.2].mean() + 0.3


def test_activity_ttl_matters(small):
    out, _ = small
    offers = pq.read_table(out / "offers.parquet")
    _, act_view = _views(out)
    no_ttl = ViewJoin(**{**act_view.__dict__, "ttl": None})
    with_ttl = point_in_time_join(offers, event_timestamp_column="event_timestamp", views=[act_view])
    without = point_in_time_join(offers, event_timestamp_column="event_timestamp", views=[no_ttl])
    stale = pc.and_(with_ttl["hours_on_shift"].is_null(), without["hours_on_shift"].is_valid())
    # offers in the first hour of a shift see only yesterday's snapshot: stale under the 2h ttl
    assert 0.05 < pc.mean(stale.cast(pa.float64())).as_py() < 0.5


def test_realistic_nulls(small):
    out, _ = small
    act = pq.read_table(out / "driver_activity.parquet")
    null_rate = act["acceptance_rate_1h"].null_count / act.num_rows
    assert 0.01 < null_rate < 0.5
    # no offers in the hour -> no declines either (among rows that are not late corrections' originals)
    no_offers = act.filter(act["acceptance_rate_1h"].is_null())
    assert pc.mean(pc.equal(no_offers["declines_1h"], 0).cast(pa.float64())).as_py() > 0.95
    for col in ("trips_today", "hours_on_shift", "consecutive_trips", "declines_1h"):
        assert act[col].null_count == 0
    stats = pq.read_table(out / "driver_stats.parquet")
    assert stats["acceptance_rate_7d"].null_count > 0  # drivers without offers in the last 7 days
    rates = pc.drop_null(stats["acceptance_rate_7d"])
    assert pc.min(rates).as_py() >= 0 and pc.max(rates).as_py() <= 1


def test_activity_rows_are_contiguous_shift_hours(small):
    out, _ = small
    act = pq.read_table(
        out / "driver_activity.parquet", columns=["driver_id", "event_timestamp", "created", "hours_on_shift"]
    )
    act = act.sort_by(
        [("driver_id", "ascending"), ("event_timestamp", "ascending"), ("created", "descending")]
    )
    rows = act.to_pylist()
    shifts: dict = {}
    for r in rows:
        shift_start = r["event_timestamp"] - timedelta(
            hours=r["hours_on_shift"]
        )  # the last one ends at 24:00
        shifts.setdefault((r["driver_id"], shift_start.date()), set()).add(
            (r["event_timestamp"], r["hours_on_shift"])
        )
    for snaps in shifts.values():
        hours = sorted(int(h_) for _, h_ in snaps)
        assert hours == list(range(1, len(hours) + 1))  # 1st, 2nd, ... hour on shift, no gaps
        assert len(hours) <= 10
        for _, h_ in snaps:
            assert 0 <= h_ - int(h_) < 300 / 3600  # written within 5 minutes after the hour


@pytest.mark.parametrize("name", ["driver_stats", "driver_activity"])
def test_late_corrections_present_and_later_created_wins(small, name):
    out, _ = small
    table = pq.read_table(out / f"{name}.parquet")
    keys = table.group_by(["driver_id", "event_timestamp"]).aggregate([("created", "count")])
    dups = keys.filter(pc.greater(keys["created_count"], 1))
    assert dups.num_rows > 0
    offers = pa.table({"driver_id": dups["driver_id"], "event_timestamp": dups["event_timestamp"]})
    view = next(v for v in _views(out) if v.name == name)
    joined = point_in_time_join(offers, event_timestamp_column="event_timestamp", views=[view])
    latest = (
        table.sort_by([("created", "descending")])
        .group_by(["driver_id", "event_timestamp"], use_threads=False)
        .aggregate([(c, "first") for c in view.columns])
    )
    by_key = {(r["driver_id"], r["event_timestamp"]): r for r in latest.to_pylist()}
    changed = 0
    for r in joined.to_pylist():
        want = by_key[(r["driver_id"], r["event_timestamp"])]
        assert all(r[c] == want[f"{c}_first"] for c in view.columns)
    earliest = (
        table.sort_by([("created", "ascending")])
        .group_by(["driver_id", "event_timestamp"], use_threads=False)
        .aggregate([(c, "first") for c in view.columns])
    )
    first_by_key = {(r["driver_id"], r["event_timestamp"]): r for r in earliest.to_pylist()}
    for k in zip(dups["driver_id"].to_pylist(), dups["event_timestamp"].to_pylist(), strict=True):
        changed += any(first_by_key[k][f"{c}_first"] != by_key[k][f"{c}_first"] for c in view.columns)
    assert changed > 0  # corrections change values


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = gd.generate(tmp_path / "a", n_drivers=120, days=3, seed=11)
    b = gd.generate(tmp_path / "b", n_drivers=120, days=3, seed=11)
    c = gd.generate(tmp_path / "c", n_drivers=120, days=3, seed=12)
    for name in a["paths"]:
        assert Path(a["paths"][name]).read_bytes() == Path(b["paths"][name]).read_bytes()
        assert Path(a["paths"][name]).read_bytes() != Path(c["paths"][name]).read_bytes()


def test_end_is_respected_and_rows_after_it_dropped(tmp_path):
    end = datetime(2026, 5, 10, 13, 30, tzinfo=UTC)
    s = gd.generate(tmp_path, n_drivers=150, days=2, seed=1, end=end)
    assert s["start"] == datetime(2026, 5, 9, tzinfo=UTC) and s["end"] == end
    for path in s["paths"].values():
        ts = pq.read_table(path)["event_timestamp"]
        assert pc.max(ts).as_py() < end
        assert pc.min(ts).as_py() >= s["start"]
    act = pq.read_table(s["paths"]["driver_activity"])["event_timestamp"].to_pylist()
    assert any(t.date() == end.date() for t in act)  # the partial last day is there


def test_no_offers_for_scale_runs(tmp_path):
    s = gd.generate(tmp_path, n_drivers=50, days=1, seed=1, offers_per_driver_day=0)
    assert s["rows"]["offers"] == 0 and s["rows"]["driver_stats"] > 0
    assert pq.read_table(s["paths"]["offers"]).num_rows == 0


def test_cli(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--drivers",
            "40",
            "--days",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--seed",
            "5",
            "--end",
            "2026-01-10T00:00:00",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    summary = json.loads(res.stdout)
    assert (
        summary["rows"]["driver_stats"] == pq.read_metadata(tmp_path / "d" / "driver_stats.parquet").num_rows
    )
    assert summary["end"] == "2026-01-10T00:00:00+00:00"
    assert (
        DType.INT64.arrow_type() == pq.read_schema(tmp_path / "d" / "offers.parquet").field("declined").type
    )
