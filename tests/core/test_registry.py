"""Registry compile, diff, persistence and the `plan`/`apply` contract."""

from __future__ import annotations

import json
import os
import threading

import pytest

from fsplug.errors import RegistryError
from fsplug.registry import RegistryStore, timestamp_bin
from fsplug.store import FeatureStore


def _edit(repo, old, new):
    p = repo / "features" / "driver.yaml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))


def test_apply_twice_is_a_noop(applied_ride_repo):
    reg_path = applied_ride_repo / "data" / "registry.json"
    before = reg_path.read_bytes()
    mtime = reg_path.stat().st_mtime_ns
    with FeatureStore(applied_ride_repo) as store:
        res = store.apply()
        assert not res.diff and res.diff.render() == "No changes"
    assert reg_path.read_bytes() == before
    assert reg_path.stat().st_mtime_ns == mtime


def test_plan_shows_updates_with_old_and_new_and_flags_invalidating_changes(applied_ride_repo):
    _edit(applied_ride_repo, "ttl: 2d", "ttl: 1d")
    _edit(applied_ride_repo, "{name: trips_30d, dtype: int64, bin: ds_trips_30d",
          "{name: trips_30d, dtype: float64, bin: ds_trips_30d")
    store = FeatureStore(applied_ride_repo)
    d, _ = store.changes()
    text = d.render()
    assert "~ update feature view driver_stats" in text
    assert "    ttl_seconds: 172800 -> 86400" in text
    assert "features.trips_30d.dtype: int64 -> float64   ! invalidates stored data" in text
    assert d.invalidating
    # ttl change alone does not invalidate
    (change,) = d.of("feature_views", "update")
    assert change.invalidating == ("features.trips_30d.dtype",)
    # plan wrote nothing
    assert store.registry_store.load().view("driver_stats").ttl_seconds == 172800


def test_created_and_deleted_objects(applied_ride_repo):
    p = applied_ride_repo / "features" / "driver.yaml"
    text = p.read_text()
    start = text.index("  - name: driver_activity\n")
    end = text.index("request_sources:")
    text = text[:start] + text[end:].replace("      - driver_activity:*\n", "").replace("      - trip_context:*\n", "")
    # the derived view reads driver_activity: it goes too
    p.write_text(text[:text.index("derived_views:")] + text[text.index("feature_services:"):])
    (applied_ride_repo / "features" / "extra.yaml").write_text(
        "feature_services:\n  - name: stats_only\n    features: [driver_stats:*]\n")
    d, _ = FeatureStore(applied_ride_repo).changes()
    text = d.render()
    assert "+ create feature service stats_only" in text
    assert "- delete feature view driver_activity" in text
    assert "its online data stays until `fsplug teardown`" in text
    assert "~ update feature service decline_model_v1" in text
    assert "- delete derived view trip_context" in text
    assert text.splitlines()[-1] == "1 to create, 2 to update, 2 to delete"


def test_registry_round_trips_and_detects_hand_edits(applied_ride_repo):
    store = RegistryStore(applied_ride_repo / "data" / "registry.json")
    reg = store.load()
    assert store.load() == reg
    assert reg.hash and len(reg.hash) == 64
    data = json.loads(store.path.read_text())
    data["feature_views"][0]["ttl_seconds"] = 1
    store.path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="does not match its hash"):
        store.load()
    store.path.write_text("{not json")
    with pytest.raises(RegistryError, match="unreadable"):
        store.load()


def test_missing_registry_says_to_apply(ride_repo):
    with pytest.raises(RegistryError, match="run `fsplug apply` first"):
        _ = FeatureStore(ride_repo).registry


def test_crash_during_write_leaves_old_registry(applied_ride_repo, monkeypatch):
    path = applied_ride_repo / "data" / "registry.json"
    before = path.read_bytes()
    _edit(applied_ride_repo, "ttl: 2d", "ttl: 3d")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        FeatureStore(applied_ride_repo).apply()
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".registry-")]


def test_concurrent_applies_do_not_corrupt(applied_ride_repo):
    _edit(applied_ride_repo, "ttl: 2d", "ttl: 3d")
    errors = []

    def run():
        try:
            FeatureStore(applied_ride_repo).apply()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    reg = FeatureStore(applied_ride_repo).registry
    assert reg.view("driver_stats").ttl_seconds == 3 * 86400


def test_timestamp_bins_fit_aerospike_limit():
    assert timestamp_bin("stats") == "_ts_stats"
    long = timestamp_bin("driver_activity")
    assert len(long.encode()) <= 15 and long.startswith("_ts_driver")
    assert timestamp_bin("driver_activity") == long  # deterministic
    assert timestamp_bin("driver_activity_2") != long
