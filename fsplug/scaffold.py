"""`fsplug init`: a small working feature repo, with data, to start from (as `feast init` gives).

The repo declares one entity, one Parquet source with generated hourly rows up to now, one feature
view, a request source and a feature service; `fsplug apply`, `fsplug materialize-incremental now`
and `fsplug get-online-features` run on it at once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fsplug.errors import UserInputError

__all__ = ["init_repo", "DRIVER_IDS"]

DRIVER_IDS = tuple(range(1001, 1006))
"""The drivers of the generated data."""

_CONFIG = """\
# fsplug feature repo: `fsplug apply`, then `fsplug materialize-incremental now`.
project: {project}
registry: data/registry.json
online_store:
  type: sqlite            # embedded, no server; for Aerospike: type: aerospike, hosts, namespace
  path: data/online.db
"""

_FEATURES = """\
# Definitions: every *.yaml / *.yml here but feature_store*.yaml (and what .fsplugignore lists).
entities:
  - name: driver
    join_key: driver_id
    dtype: int64
    description: A driver

sources:
  - name: driver_hourly_source
    path: data/driver_stats.parquet
    timestamp_field: event_timestamp
    created_timestamp_field: created

feature_views:
  - name: driver_hourly_stats
    entity: driver
    source: driver_hourly_source
    ttl: 1d
    features:
      - {name: conv_rate, dtype: float32, description: Share of ride offers converted}
      - {name: acc_rate, dtype: float32, description: Share of ride offers accepted}
      - {name: avg_daily_trips, dtype: int64, default: 0, description: Trips per day over the last week}

request_sources:
  - name: ride_request
    features:
      - {name: pickup_distance_km, dtype: float64, default: 1.0}

feature_services:
  - name: driver_activity_v1
    features: [driver_hourly_stats:*, ride_request:*]
"""

_IGNORE = """\
# Files and folders fsplug does not read as definitions (gitignore syntax).
# data/ and hidden folders are always skipped; so is any feature_store*.yaml.
drafts/
"""


def init_repo(path: str | Path, project: str | None = None, now: datetime | None = None,
              days: int = 3) -> list[Path]:
    """Write a small working repo at `path` (created; it must not hold a feature repo already).

    Args:
        path: the new repo's folder.
        project: the project name (default: the folder's name, made a valid name).
        now: the end of the generated data (default: now); rows are hourly over `days` days.
        days: how many days of hourly rows to generate.

    Returns:
        The files written.

    Raises:
        UserInputError: `path` already holds a feature_store.yaml, or is a file.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(path)
    if root.exists() and not root.is_dir():
        raise UserInputError(f"{root} is a file; give a folder for the new feature repo")
    if (root / "feature_store.yaml").exists():
        raise UserInputError(f"{root} already holds a feature repo (feature_store.yaml); choose another folder")
    name = project or re.sub(r"[^A-Za-z0-9_-]", "_", root.resolve().name) or "my_project"
    if not re.match(r"^[A-Za-z_]", name):
        name = "p_" + name
    (root / "data").mkdir(parents=True, exist_ok=True)
    written = []
    for rel, text in (("feature_store.yaml", _CONFIG.format(project=name)), ("features.yaml", _FEATURES),
                      (".fsplugignore", _IGNORE)):
        (root / rel).write_text(text)
        written.append(root / rel)
    end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    hours = [end - timedelta(hours=h) for h in range(days * 24 - 1, -1, -1)]
    rng = np.random.default_rng(7)
    ids = [d for _ in hours for d in DRIVER_IDS]
    times = [t for t in hours for _ in DRIVER_IDS]
    n = len(ids)
    table = pa.table({
        "driver_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "created": pa.array([t + timedelta(minutes=5) for t in times], pa.timestamp("us", tz="UTC")),
        "conv_rate": pa.array(rng.uniform(0.1, 0.9, n).astype(np.float32)),
        "acc_rate": pa.array(rng.uniform(0.5, 1.0, n).astype(np.float32)),
        "avg_daily_trips": pa.array(rng.integers(5, 40, n), pa.int64()),
    })
    pq.write_table(table, root / "data" / "driver_stats.parquet")
    written.append(root / "data" / "driver_stats.parquet")
    return written
