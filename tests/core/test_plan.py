"""Retrieval plans: YAML in, plan out (snapshots and tables), and their error cases."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from fsplug.errors import ReferenceNotFoundError, UserInputError
from fsplug.store import FeatureStore
from fsplug.types import DType

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _snapshot(name: str, text: str) -> None:
    """Compare with tests/core/snapshots/<name>; FSPLUG_UPDATE_SNAPSHOTS=1 rewrites it."""
    text = re.sub(r"registry [0-9a-f]{12}", "registry <hash>", text) + "\n"
    path = SNAPSHOTS / name
    if os.environ.get("FSPLUG_UPDATE_SNAPSHOTS"):
        path.write_text(text)
    assert path.exists(), f"missing snapshot {path}; run with FSPLUG_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text()


@pytest.mark.parametrize("name,kwargs", [
    ("plan_decline_model_v1.txt", {"service": "decline_model_v1"}),
    ("plan_features_mixed_order.txt", {"features": ["driver_activity:trips_today", "driver_stats:trips_30d",
                                                     "driver_activity:declines_1h"]}),
    ("plan_full_names.txt", {"features": ["driver_stats:*"], "full_feature_names": True}),
])
def test_plan_snapshots(applied_ride_repo, name, kwargs):
    _snapshot(name, FeatureStore(applied_ride_repo).plan(**kwargs).explain())


# (refs, expected groups as (entity, bins), expected columns as (name, dtype, bin, default))
TABLE = [
    (["driver_stats:trips_30d"],
     [("driver", ("ds_trips_30d", "_ts_driver_stats"))],
     [("trips_30d", DType.INT64, "ds_trips_30d", 0)]),
    (["driver_activity:acceptance_rate_1h", "driver_stats:acceptance_rate_7d", "driver_activity:trips_today"],
     [("driver", ("da_acc_1h", "ds_acc_7d", "da_trips_today", "_ts_driver_2f28", "_ts_driver_stats"))],
     [("acceptance_rate_1h", DType.FLOAT64, "da_acc_1h", None),
      ("acceptance_rate_7d", DType.FLOAT64, "ds_acc_7d", None),
      ("trips_today", DType.INT64, "da_trips_today", 0)]),
    (["ride_request:surge_multiplier", "driver_stats:tenure_days"],
     [("driver", ("ds_tenure", "_ts_driver_stats"))],
     [("surge_multiplier", DType.FLOAT64, None, 1.0), ("tenure_days", DType.INT64, "ds_tenure", 0)]),
]


@pytest.mark.parametrize("refs,groups,columns", TABLE)
def test_plan_table(applied_ride_repo, refs, groups, columns):
    plan = FeatureStore(applied_ride_repo).plan(features=refs)
    got_groups = [(g.entity, g.bins) for g in plan.groups]
    assert len(got_groups) == len(groups), got_groups
    # the timestamp bin name of driver_activity is hashed; compare its shape, then the rest
    for (ent, bins), (gent, gbins) in zip(groups, got_groups, strict=True):
        assert ent == gent and len(bins) == len(gbins)
        for a, b in zip(bins, gbins, strict=True):
            assert a == b or (a.startswith("_ts_driver_") and b.startswith("_ts_driver_") and len(b) <= 15)
    assert [(c.name, c.dtype, c.bin, c.default) for c in plan.columns] == columns
    assert plan.join_keys == ("driver_id",)


def test_plan_is_cached_per_registry_hash(applied_ride_repo):
    store = FeatureStore(applied_ride_repo)
    a = store.plan(service="decline_model_v1")
    assert store.plan(service="decline_model_v1") is a
    p = applied_ride_repo / "features" / "driver.yaml"
    p.write_text(p.read_text().replace("ttl: 2d", "ttl: 3d"))
    store.apply()
    b = store.plan(service="decline_model_v1")
    assert b is not a and b.registry_hash != a.registry_hash


@pytest.mark.parametrize("kwargs,err,match", [
    ({"service": "decline_modle_v1"}, ReferenceNotFoundError, "did you mean 'decline_model_v1'"),
    ({"features": ["trip_context:is_peak"]}, ReferenceNotFoundError, "did you mean 'is_peak_hour'"),
    ({"features": ["driver_stats:trips_3d"]}, ReferenceNotFoundError, "did you mean 'trips_30d'"),
    ({"features": ["driver_stat:trips_30d"]}, ReferenceNotFoundError, "did you mean 'driver_stats'"),
    ({"features": ["trips_30d"]}, ReferenceNotFoundError, "view:feature"),
    ({"features": []}, UserInputError, "empty"),
    ({"features": ["driver_stats:trips_30d", "driver_stats:*"]}, UserInputError, "requested twice"),
    ({}, UserInputError, "exactly one of"),
])
def test_plan_errors(applied_ride_repo, kwargs, err, match):
    with pytest.raises(err, match=match):
        FeatureStore(applied_ride_repo).plan(**kwargs)


def test_name_collision_needs_full_names(clashing_repo):
    store = FeatureStore(clashing_repo)
    with pytest.raises(UserInputError, match="full_feature_names=True"):
        store.plan(features=["a:x", "b:x"])
    plan = store.plan(features=["a:x", "b:x"], full_feature_names=True)
    assert plan.names == ("a__x", "b__x")
