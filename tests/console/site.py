"""The feature repo the console's tests and screenshots show, and traffic for its Serving page.

The shipped ride-hailing repo with generated data (fresh up to now), plus a view whose data is
three days old under a one-day ttl (stale), a view that is offline only, and, for the escaping
tests, a view whose description, owner and tags hold markup.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.conftest import build_served_repo

SQLITE_YAML = "project: dispatch\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
STALE_VIEW = "driver_legacy_scores"
HOSTILE_VIEW = "driver_markup"
HOSTILE_TEXT = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss=2\">"

_LEGACY = """\
sources:
  - name: legacy_scores
    path: data/legacy_scores.parquet
    timestamp_field: event_timestamp
    description: Risk scores of the old rules engine (no longer refreshed)

feature_views:
  - name: driver_legacy_scores
    entity: driver
    source: legacy_scores
    ttl: 1d
    owner: risk-legacy@example.com
    tags: {team: risk, status: deprecated}
    description: Scores of the retired rules engine, kept for comparison
    features:
      - {name: legacy_risk, dtype: float64, bin: lg_risk, default: 0.5, description: Old rules-engine risk score}
      - {name: legacy_flags, dtype: int64, bin: lg_flags, default: 0, description: Rules that fired}

feature_services:
  - name: legacy_compare
    description: The decline model's features next to the retired engine's scores
    owner: risk-legacy@example.com
    tags: {team: risk}
    features:
      - driver_stats:acceptance_rate_7d
      - driver_legacy_scores:*
"""

_HOSTILE = f"""\
feature_views:
  - name: driver_markup
    entity: driver
    source: legacy_scores
    ttl: 1d
    owner: '{HOSTILE_TEXT}'
    tags: {{team: '<b>bold</b>'}}
    description: '{HOSTILE_TEXT}'
    features:
      - {{name: markup_score, dtype: float64, column: legacy_risk, bin: mk_score, description: '{HOSTILE_TEXT}'}}
"""


def build_console_repo(root: Path, n_drivers: int = 200, hostile: bool = False) -> Path:
    """The repo (applied and materialized at `root`); `hostile` adds the view holding markup."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsplug.store import FeatureStore

    build_served_repo(root, SQLITE_YAML, n_drivers=n_drivers, days=2)
    (root / "features" / "legacy.yaml").write_text(textwrap.dedent(_LEGACY))
    if hostile:
        (root / "features" / "markup.yaml").write_text(_HOSTILE)
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    ids = list(range(1001, 1001 + n_drivers))
    pq.write_table(pa.table({
        "driver_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array([old] * len(ids), pa.timestamp("us", tz="UTC")),
        "legacy_risk": pa.array([(i % 97) / 97 for i in ids], pa.float64()),
        "legacy_flags": pa.array([i % 5 for i in ids], pa.int64()),
    }), root / "data" / "legacy_scores.parquet")
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(datetime.now(UTC), progress=False)
    return root


def traffic(url: str, requests: int = 60) -> int:
    """Send reads (and a few bad requests) to a server so its Serving page has something to draw;
    returns the number of `POST /get-online-features` requests sent."""
    sent = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(requests):
            ids = [1001 + (i * 7 + k) % 150 for k in range(1 + i % 20)]
            r = client.post("/get-online-features", json={
                "feature_service": "decline_model_v1",
                "entities": {"driver_id": ids, "pickup_distance_km": [1.5] * len(ids), "hour_of_day": [8] * len(ids)}})
            assert r.status_code == 200, r.text
            sent += 1
            if i % 3 == 0:
                client.post("/get-online-features", json={"features": ["driver_stats:trips_7d"],
                                                          "entities": {"driver_id": ids}})
                sent += 1
            if i % 4 == 0:
                client.post("/get-feature-vector", json={"feature_service": "legacy_compare",
                                                         "entity": {"driver_id": ids[0]}})
        for bad in ({"feature_service": "decline_modle_v1", "entities": {"driver_id": [1]}},
                    {"features": ["driver_stats:nope"], "entities": {"driver_id": [1]}}):
            assert client.post("/get-online-features", json=bad).status_code == 422
            sent += 1
    return sent
