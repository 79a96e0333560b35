"""Benchmark data sets and feature repos: the same Parquet files for fsplug, Feast and the raw drivers.

Data comes from `examples/generate_data.py` (`generate(out_dir, n_drivers, days, seed, end,
offers_per_driver_day)`) and is cached under `benchmarks/results/data/` by its arguments. A
fsplug repo for a data set is the reference repo's definitions (`feature_repo/features/*.yaml`)
with the source paths pointed at that data and `online_store` set to the store under test.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples"
FEATURE_REPO = ROOT / "feature_repo"
SERVICE = "decline_model_v1"
PROJECT = "fsplug_bench"
ENTITY_TABLE = f"{PROJECT}-driver"  # the entity's SQLite table (fsplug: <project>-<entity>)

# decline_model_v1: 11 stored features over 2 views (+ 3 request features), with their bins
STORED_FEATURES = {
    "driver_stats": {"acceptance_rate_7d": "ds_acc_7d", "acceptance_rate_30d": "ds_acc_30d",
                     "trips_30d": "ds_trips_30d", "avg_rating_30d": "ds_rating_30d",
                     "cancel_rate_30d": "ds_cancel_30d", "tenure_days": "ds_tenure"},
    "driver_activity": {"trips_today": "da_trips_today", "hours_on_shift": "da_shift_h",
                        "consecutive_trips": "da_consec", "acceptance_rate_1h": "da_acc_1h",
                        "declines_1h": "da_decl_1h"},
}
# every feature of each view with its dtype (what a Feast FeatureView declares)
VIEW_SCHEMAS = {
    "driver_stats": {"acceptance_rate_7d": "float64", "acceptance_rate_30d": "float64", "trips_7d": "int64",
                     "trips_30d": "int64", "avg_rating_30d": "float64", "cancel_rate_30d": "float64",
                     "tenure_days": "int64"},
    "driver_activity": {"trips_today": "int64", "hours_on_shift": "float64", "consecutive_trips": "int64",
                        "acceptance_rate_1h": "float64", "declines_1h": "int64"},
}
VIEW_TTL_S = {"driver_stats": 2 * 86_400, "driver_activity": 2 * 3_600}
VIEW_SOURCE = {"driver_stats": "driver_stats.parquet", "driver_activity": "driver_activity.parquet"}


def _generator() -> Any:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    import generate_data

    return generate_data


@dataclass(frozen=True)
class Dataset:
    """One generated data set: where it is and what it holds."""

    dir: Path
    n_drivers: int
    days: int
    offers_per_driver_day: float
    seed: int
    end: datetime
    rows: dict[str, int]
    generate_seconds: float

    @property
    def key(self) -> str:
        return self.dir.name

    def driver_ids(self) -> range:
        base = _generator().DRIVER_ID_BASE
        return range(base + 1, base + self.n_drivers + 1)

    def path(self, name: str) -> Path:
        return self.dir / name

    def describe(self) -> dict[str, Any]:
        return {"drivers": self.n_drivers, "days": self.days, "offers_per_driver_day": self.offers_per_driver_day,
                "seed": self.seed, "end": self.end.isoformat(), "rows": self.rows, "dir": str(self.dir),
                "generate_seconds": self.generate_seconds}


def dataset(n_drivers: int, days: int, offers_per_driver_day: float, seed: int, end: datetime,
            root: Path = RESULTS, log: Any = print) -> Dataset:
    """The data set for these arguments, generated on first use and cached (older ends are pruned)."""
    stem = f"d{n_drivers}_days{days}_o{offers_per_driver_day:g}_s{seed}"
    d = root / "data" / f"{stem}_{end:%Y%m%dT%H%M}"
    meta = d / "summary.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        return Dataset(d, n_drivers, days, offers_per_driver_day, seed, end, m["rows"], m["generate_seconds"])
    for old in (root / "data").glob(stem + "_*"):
        shutil.rmtree(old, ignore_errors=True)
    log(f"  generating {n_drivers:,} drivers x {days} day(s) (offers/driver-day {offers_per_driver_day:g}) ...")
    t0 = time.perf_counter()
    s = _generator().generate(d, n_drivers=n_drivers, days=days, seed=seed, end=end,
                              offers_per_driver_day=offers_per_driver_day)
    secs = round(time.perf_counter() - t0, 2)
    meta.write_text(json.dumps({"rows": s["rows"], "generate_seconds": secs}))
    log(f"  generated {sum(s['rows'].values()):,} rows in {secs:.1f}s")
    return Dataset(d, n_drivers, days, offers_per_driver_day, seed, end, s["rows"], secs)


def fresh_end(now: datetime | None = None) -> datetime:
    """The end of base data: the current hour (so online values are within their ttls)."""
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


def day_end(now: datetime | None = None) -> datetime:
    """The end of scale data: today 00:00 UTC (cached for the day)."""
    now = now or datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def data_start(ds: Dataset) -> datetime:
    """A time before every row of the data set (generation includes no rows before its window)."""
    return ds.end - timedelta(days=ds.days + 2)


def make_fsplug_repo(repo: Path, ds: Dataset, store: dict[str, Any]) -> Path:
    """A fsplug repo over `ds` whose online store is `store` (a feature_store.yaml `online_store` mapping)."""
    import yaml

    if repo.exists():
        shutil.rmtree(repo)
    (repo / "features").mkdir(parents=True)
    (repo / "data").mkdir()
    cfg = {"project": PROJECT, "registry": "data/registry.json", "online_store": store}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for src in sorted((FEATURE_REPO / "features").glob("*.y*ml")):
        text = src.read_text()
        for name in ("driver_stats.parquet", "driver_activity.parquet", "offers.parquet"):
            text = text.replace(f"path: data/{name}", f"path: {ds.path(name)}")
        (repo / "features" / src.name).write_text(text)
    if ds.path("offers.parquet").exists():  # examples/train.py reads <repo>/data/offers.parquet
        (repo / "data" / "offers.parquet").symlink_to(ds.path("offers.parquet"))
    return repo
