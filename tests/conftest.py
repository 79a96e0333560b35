"""Shared fixtures: throwaway feature repos built from YAML text."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings
from datetime import UTC

# Property tests draw the same examples on every run (a red CI is the code's fault, and any
# failure reproduces); FSPLUG_HYPOTHESIS_PROFILE=explore draws new ones each run to hunt for bugs.
settings.register_profile("fsplug", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("FSPLUG_HYPOTHESIS_PROFILE", "fsplug"))

ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO = ROOT / "feature_repo"

DEFAULT_CONFIG = """\
project: test
registry: data/registry.json
online_store:
  type: sqlite
  path: data/online.db
"""


def write_repo(root: Path, files: dict[str, str], config: str | None = DEFAULT_CONFIG) -> Path:
    """Write a feature repo: `files` maps relative paths to (dedented) YAML text."""
    root.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (root / "feature_store.yaml").write_text(textwrap.dedent(config))
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def write_empty_sources(root: Path) -> None:
    """Write every source of a repo as an empty Parquet file with the columns its views declare
    (apply checks source schemas, so placeholders must have the declared columns and types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsplug.config import resolve_repo_path
    from fsplug.store import FeatureStore

    reg, _ = FeatureStore(root).compile(check_paths=False)
    fields: dict[str, dict[str, pa.DataType]] = {}
    for view in reg.feature_views.values():
        cols = fields.setdefault(view.source.path, {})
        for k in reg.entity(view.entity).join_keys:
            cols[k.name] = k.dtype.arrow_type()
        for name in (view.source.timestamp_field, view.source.created_timestamp_field):
            if name:
                cols[name] = pa.timestamp("us", tz="UTC")
        for f in view.features:
            cols[f.column] = f.dtype.arrow_type()
    for path, cols in fields.items():
        target = resolve_repo_path(root, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.schema(list(cols.items())).empty_table(), target)


@pytest.fixture
def make_repo(tmp_path):
    """`make_repo({"defs.yaml": "..."})` -> path of a new repo under tmp_path."""
    counter = iter(range(1000))

    def make(files: dict[str, str], config: str | None = DEFAULT_CONFIG) -> Path:
        return write_repo(tmp_path / f"repo{next(counter)}", files, config)

    return make


@pytest.fixture
def clashing_repo(make_repo) -> Path:
    """An applied repo whose views `a` and `b` both have a feature `x` (service `both` reads the two):
    their outputs share a name unless full feature names are asked for."""
    from fsplug.store import FeatureStore

    repo = make_repo({"d.yaml": """\
        entities: [{name: driver, join_key: driver_id, dtype: int64}]
        sources: [{name: s, path: s.parquet, timestamp_field: ts}]
        feature_views:
          - {name: a, entity: driver, source: s, features: [{name: x, dtype: int64, bin: ax}]}
          - {name: b, entity: driver, source: s, features: [{name: x, dtype: int64, bin: bx}]}
        feature_services: [{name: both, features: ["a:x", "b:x"]}]
        """})
    write_empty_sources(repo)
    with FeatureStore(repo) as store:
        store.apply()
    return repo


@pytest.fixture
def ride_repo(tmp_path) -> Path:
    """A copy of the shipped feature_repo's definitions (no data)."""
    dst = tmp_path / "ride_repo"
    shutil.copytree(FEATURE_REPO, dst, ignore=shutil.ignore_patterns("data"))
    return dst


@pytest.fixture
def applied_ride_repo(ride_repo) -> Path:
    """The shipped feature repo with placeholder source files, applied."""
    from fsplug.store import FeatureStore

    write_empty_sources(ride_repo)
    with FeatureStore(ride_repo) as store:
        store.apply()
    return ride_repo


def stale_generated_views(root: Path) -> list[str]:
    """Of the generated views (driver_stats, driver_activity, in that order), those whose newest event in
    `root`/data is older than the view's ttl now: hourly driver activity has none within its 2 h at
    night, when no driver is on shift (tests built on `build_served_repo` must not depend on the hour)."""
    from datetime import datetime

    import pyarrow.parquet as pq

    from fsplug.registry import RegistryStore

    views = RegistryStore(root / "data" / "registry.json").load().feature_views  # the applied ttls
    now = datetime.now(UTC)
    return [v for v in ("driver_stats", "driver_activity")
            if (now - max(pq.read_table(root / "data" / f"{v}.parquet").column("event_timestamp").to_pylist())
                ).total_seconds() > views[v].ttl_seconds]


def build_served_repo(root: Path, feature_store_yaml: str, n_drivers: int, days: int = 3, seed: int = 1) -> Path:
    """The shipped repo with generated data (fresh up to now), applied, materialized, and a logistic
    model trained on every offer saved where DispatchService looks for it."""
    from datetime import datetime

    import pyarrow.parquet as pq

    from examples.generate_data import generate
    from examples.train import SERVICE, build_model, training_matrix
    from fsplug.serving import save_model
    from fsplug.store import FeatureStore

    shutil.copytree(FEATURE_REPO, root, ignore=shutil.ignore_patterns("data"))
    (root / "feature_store.yaml").write_text(feature_store_yaml)
    now = datetime.now(UTC)
    generate(root / "data", n_drivers=n_drivers, days=days, seed=seed,
             end=now.replace(minute=0, second=0, microsecond=0))
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, progress=False)
        x, y, _ = training_matrix(store, pq.read_table(root / "data" / "offers.parquet"))
        save_model(build_model("logreg").fit(x, y), root / "data" / "models" / f"{SERVICE}.joblib",
                   store=store, service=SERVICE, metrics={"base_rate": float(y.mean())})
    return root
