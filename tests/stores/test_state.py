"""State that belongs to the store, on every store: project isolation, materialization state kept
in the store, no future watermark, a teardown that is done when it returns, checks before writing.

Runs against SQLite and the bundled Aerospike test server (with a real node's truncate rule), and
unchanged against a real cluster when FSPLUG_AEROSPIKE_HOSTS is set.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.cli import main
from fsplug.errors import DefinitionError, SourceDataError, StoreError, UserInputError
from fsplug.state import MAX_CLOCK_SKEW
from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources, write_repo
from tests.stores.conftest import ALL_TYPES

TS = pa.timestamp("us", tz="UTC")


def _config(kind: str, address: str | None, project: str, db: str = "data/online.db", extra: str = "") -> str:
    if kind == "sqlite":
        return f"project: {project}\nonline_store:\n  type: sqlite\n  path: {db}\n"
    hosts = ", ".join(f'"{h}"' for h in address.split(","))
    return (f"project: {project}\nonline_store:\n  type: aerospike\n  hosts: [{hosts}]\n  namespace: test\n"
            "  read_total_timeout_ms: 2000\n  read_socket_timeout_ms: 1000\n" + extra)


def _repo(root, kind, address, project, db="data/online.db", extra=""):
    write_repo(root, {"defs.yaml": ALL_TYPES}, config=_config(kind, address, project, db, extra))
    write_empty_sources(root)
    return root


def _stats(ids, when, trips=None):
    return {"driver_id": ids, "ts": pa.array([when] * len(ids), TS), "created": pa.array([when] * len(ids), TS),
            "trips": trips if trips is not None else [i * 10 for i in ids], "rate": [0.5] * len(ids)}


def _write_sources(root, now):
    """Data for all three views: stats (3 drivers), all_types (2 drivers), zone_stats (2 zones)."""
    pq.write_table(pa.table(_stats([1, 2, 3], now - timedelta(minutes=5))), root / "data" / "stats.parquet")
    empty = pq.read_schema(root / "data" / "all.parquet")
    rows = {name: pa.nulls(2, empty.field(name).type) for name in empty.names}
    rows.update({"driver_id": pa.array([1, 2], pa.int64()), "ts": pa.array([now - timedelta(minutes=5)] * 2, TS),
                 "created": pa.array([now - timedelta(minutes=5)] * 2, TS), "f_int": pa.array([7, 8], pa.int64())})
    pq.write_table(pa.table(rows, schema=empty), root / "data" / "all.parquet")
    pq.write_table(pa.table({"city": ["sfo", "nyc"], "zone_id": pa.array([1, 2], pa.int64()),
                             "ts": pa.array([now - timedelta(minutes=5)] * 2, TS), "demand": [1.0, 2.0]}),
                   root / "data" / "zone.parquet")


@pytest.fixture
def address(store_kind, request):
    return request.getfixturevalue("aerospike_address") if store_kind == "aerospike" else None


@pytest.fixture
def repo(tmp_path, store_kind, address, cleanup):
    """A repo of ALL_TYPES with empty sources and a project of its own, torn down afterwards."""
    root = _repo(tmp_path / "r", store_kind, address, f"t_{uuid.uuid4().hex[:8]}")
    cleanup(root)
    return root


@pytest.fixture
def cleanup():
    """Tear down every repo a test registered, afterwards (a real cluster keeps records otherwise)."""
    repos = []
    yield repos.append
    for root in repos:
        with FeatureStore(root) as store:
            if store.registry_store.path.exists():
                store.teardown()


def test_two_projects_on_one_store_never_see_each_others_records(tmp_path, store_kind, address, cleanup):
    """Finding 1: projects `shop` and `shop2` with the same entity shared records and teardown."""
    name = f"shop_{uuid.uuid4().hex[:6]}"
    db = str(tmp_path / "shared.db")
    a = _repo(tmp_path / "a", store_kind, address, name, db)
    b = _repo(tmp_path / "b", store_kind, address, name + "2", db)
    cleanup(a)
    cleanup(b)
    now = datetime.now(UTC)
    with FeatureStore(a) as sa, FeatureStore(b) as sb:
        sa.apply()
        sb.apply()
        assert sa.push("stats", _stats([1, 2], now)) == 2
        res = sb.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2]})
        assert res.status_names()["trips"] == ["NOT_FOUND", "NOT_FOUND"]  # b does not read a's records
        assert sb.push("stats", _stats([1], now, trips=[99])) == 1
        assert sa.get_online_features(features=["stats:trips"], entities={"driver_id": [1]}).to_dict()["trips"] == [10]
        sb.teardown()  # b's teardown leaves a's records and state alone
        sb.apply()  # (SQLite's teardown drops b's tables: apply creates them again)
        assert sa.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2]}).to_dict()["trips"] \
            == [10, 20]
        assert sb.get_online_features(features=["stats:trips"], entities={"driver_id": [1]}).status_names()["trips"] \
            == ["NOT_FOUND"]


def test_entity_set_names_carry_the_project(repo):
    root = repo
    with FeatureStore(root) as store:
        actions = "\n".join(store.apply().store_actions)
        assert f"{store.registry.project}-driver" in actions and f"{store.registry.project}-zone" in actions


def test_materialization_state_lives_in_the_store_not_the_registry(tmp_path, store_kind, address, cleanup):
    """Finding 2: after switching stores, materialize-incremental wrote 0 entities (the watermark was
    in the registry file). Now the new store starts from the beginning by itself."""
    other = "aerospike" if store_kind == "sqlite" else "sqlite"
    other_address = address if other == "sqlite" else None
    project = f"sw_{uuid.uuid4().hex[:6]}"
    root = tmp_path / "r"
    now = datetime.now(UTC)
    if other == "aerospike":  # start on an Aerospike test server, switch to this kind's store
        from fsplug.testing.aerospike_server import AerospikeTestServer

        srv = AerospikeTestServer(namespaces=["test"]).start()
        other_address = srv.address
    try:
        _repo(root, other, other_address, project)
        _write_sources(root, now)
        with FeatureStore(root) as store:
            store.apply()
            first = store.materialize_incremental(now, progress=False)
            assert [v.entities for v in first.views] == [2, 3, 2]
            assert store.materialization_state()["stats"].watermark == now
            if other == "aerospike":
                store.teardown()
    finally:
        if other == "aerospike":
            srv.stop()
    (root / "feature_store.yaml").write_text(_config(store_kind, address, project, "data/second.db"))
    cleanup(root)
    with FeatureStore(root) as store:
        store.apply()
        assert store.materialization_state() == {}  # a new store: nothing materialized into it yet
        second = store.materialize_incremental(now, progress=False)
        assert [v.entities for v in second.views] == [2, 3, 2] and all(v.start is None for v in second.views)
        assert store.get_online_features(features=["stats:trips"], entities={"driver_id": [3]}).to_dict()["trips"] \
            == [30]
        # a second checkout of the same repo sees the same state (it is the store's)
        with FeatureStore(root) as again:
            assert again.materialization_state()["stats"].watermark == now


def test_teardown_then_incremental_refills(repo):
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, progress=False)
        lines = store.teardown()
        assert any("materialization state" in line for line in lines)
        assert store.materialization_state() == {}
        store.apply()
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]})
        assert res.status_names()["trips"] == ["NOT_FOUND"]
        again = store.materialize_incremental(now, progress=False)
        assert [v.entities for v in again.views] == [2, 3, 2]
        assert store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]}).to_dict()["trips"] \
            == [10]


def test_teardown_removes_the_data_of_an_entity_an_apply_deleted(repo):
    """`plan` says a deleted view's online data "stays until `fsplug teardown`", but teardown removed
    only the current registry's entities: the records of a deleted entity outlived it, and the view,
    applied again, served them ("never materialized" in `fsplug status`, PRESENT in reads)."""
    root = repo
    defs = root / "defs.yaml"
    full = defs.read_text()
    zone = ("  - name: zone\n    join_keys: [{name: city, dtype: string}, {name: zone_id, dtype: int64}]\n",
            "  - {name: zone_src, path: data/zone.parquet, timestamp_field: ts}\n",
            "  - name: zone_stats\n    entity: zone\n    source: zone_src\n    ttl: none\n    features:\n"
            "      - {name: demand, dtype: float64, bin: z_demand}\n")
    without = full
    for part in zone:
        assert part in without
        without = without.replace(part, "")
    zones = {"city": ["sfo"], "zone_id": [1]}
    with FeatureStore(root) as store:
        store.apply()
        store.push("zone_stats", {**zones, "ts": pa.array([datetime.now(UTC)], TS), "demand": [1.5]})
        assert store.get_online_features(features=["zone_stats:demand"], entities=zones).to_dict()["demand"] == [1.5]
        defs.write_text(without)
        assert "- delete feature view zone_stats" in store.apply().diff.render()
        lines = store.teardown()
        defs.write_text(full)
        store.apply()
        res = store.get_online_features(features=["zone_stats:demand"], entities=zones)
        assert res.status_names()["demand"] == ["NOT_FOUND"]
        zone_table = store.online_store.default_name(store.registry.project, "zone")
        assert any(line.endswith(zone_table) for line in lines), lines  # teardown says so


def test_a_change_that_invalidates_a_views_data_resets_its_watermark(repo):
    """`plan` says a feature's dtype change invalidates stored data: "re-materialize this view". The
    watermark stayed, so `materialize-incremental` found the view up to date and served what the store
    had (the old dtype's values, or none); now apply resets it and the next incremental run refills the
    view from the beginning. A change that invalidates nothing (a description) keeps the watermark."""
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    defs = root / "defs.yaml"
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, progress=False)
        defs.write_text(defs.read_text().replace("{name: rate, dtype: float64, bin: st_rate}",
                                                 "{name: rate, dtype: float64, bin: st_rate, description: r}"))
        store.apply()
        assert store.materialization_state()["stats"].watermark == now
        defs.write_text(defs.read_text().replace("{name: trips, dtype: int64, bin: st_trips}",
                                                 "{name: trips, dtype: string, bin: st_trips}"))
        pq.write_table(pa.table(_stats([1, 2, 3], now - timedelta(minutes=5), trips=["010", "020", "030"])),
                       root / "data" / "stats.parquet")
        applied = store.apply()
        assert "features.trips.dtype: int64 -> string   ! invalidates stored data: re-materialize this view " \
               "(apply resets its watermark)" in applied.diff.render()
        lines = applied.store_actions
        assert any("state of view stats reset" in line for line in lines), lines
        assert set(store.materialization_state()) == {"all_types", "zone_stats"}
        report = store.materialize_incremental(now, progress=False)
        assert {v.view: (v.start, v.entities) for v in report.views}["stats"] == (None, 3)
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2, 3]})
        assert res.to_dict()["trips"] == ["010", "020", "030"]


def test_future_end_is_refused_and_rewind_is_explicit(repo):
    """Finding 2: `materialize-incremental 2030-01-01` moved the watermark to 2030 for good."""
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    with FeatureStore(root) as store:
        store.apply()
        with pytest.raises(UserInputError, match="in the future"):
            store.materialize_incremental(datetime(2030, 1, 1, tzinfo=UTC), progress=False)
        with pytest.raises(UserInputError, match="in the future"):
            store.materialize(None, now + MAX_CLOCK_SKEW + timedelta(minutes=1), progress=False)
        assert store.materialization_state() == {}  # nothing moved
        store.materialize(None, now + MAX_CLOCK_SKEW - timedelta(seconds=30), views=["stats"], progress=False)
        ahead = store.materialization_state()["stats"].watermark
        assert ahead > now
        # an incremental run is up to date; a rewind is explicit and says what it did
        assert store.materialize_incremental(now, views=["stats"], progress=False).views[0].up_to_date
        start = now - timedelta(hours=1)
        report = store.materialize_incremental(now, views=["stats"], progress=False, from_=start)
        v = report.views[0]
        assert v.entities == 3 and v.start == start and v.rewound_from == ahead
        assert "rewound from" in report.summary()
        assert store.materialization_state()["stats"].watermark == now


def test_push_then_teardown_at_once_leaves_nothing(repo):
    """Finding 3: a record written in the truncate's own millisecond survived it on a real node."""
    root = repo
    now = datetime.now(UTC)
    with FeatureStore(root) as store:
        store.apply()
        for round_ in range(5):
            store.push("stats", _stats([1, 2, 3], now + timedelta(seconds=round_)))
            store.teardown()
            store.apply()
            res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2, 3]})
            assert res.status_names()["trips"] == ["NOT_FOUND"] * 3, round_


def test_teardown_truncates_again_what_a_same_millisecond_write_kept(tmp_path):
    """The bundled server applies a real node's rule (a record updated in the truncate's millisecond
    survives it); with its clock frozen, the push and the first truncate share a millisecond for
    sure, so teardown must see the survivors and truncate again once the clock moves on."""
    import threading

    from fsplug.testing.aerospike_server import AerospikeTestServer

    # its own bundled server (also when FSPLUG_AEROSPIKE_HOSTS names a cluster): it needs the clock
    with AerospikeTestServer(namespaces=["test"]) as bundled_aerospike, \
            FeatureStore(_repo(tmp_path / "r", "aerospike", bundled_aerospike.address, "ms",
                               extra="  hosts_env: null\n")) as store:
        store.apply()
        bundled_aerospike.freeze_clock()
        timer = threading.Timer(0.3, bundled_aerospike.unfreeze_clock)
        try:
            store.push("stats", _stats([1, 2, 3], datetime.now(UTC)))
            timer.start()
            lines = store.teardown()
        finally:
            timer.join()
            bundled_aerospike.unfreeze_clock()
        assert any("truncate rounds" in line for line in lines), lines
        assert bundled_aerospike.record_count("test", store.online_store.set_name("driver")) == 0
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1, 2, 3]})
        assert res.status_names()["trips"] == ["NOT_FOUND"] * 3


def test_apply_finds_schema_mismatches_before_anything_is_written(repo):
    """Finding 4: a column of another type passed apply and failed at materialize."""
    root = repo
    now = datetime.now(UTC)
    pq.write_table(pa.table({"driver_id": pa.array(["1"]), "ts": pa.array([now], TS), "created": pa.array([now], TS),
                             "trips": ["many"], "rate": [0.5]}), root / "data" / "stats.parquet")
    pq.write_table(pa.table({"city": ["sfo"], "zone_id": [1], "ts": pa.array([1], pa.int64()), "demand": [1.0]}),
                   root / "data" / "zone.parquet")
    with FeatureStore(root) as store:
        with pytest.raises(DefinitionError) as info:
            store.apply()
        msgs = [str(p) for p in info.value.problems]
        assert len(msgs) == 3, msgs  # every mismatch at once, each where it is declared
        defs = (root / "defs.yaml").read_text().splitlines()

        def line_of(text):
            return next(i + 1 for i, line in enumerate(defs) if text in line)

        key = next(m for m in msgs if "join key 'driver_id'" in m)
        assert key.startswith(f"defs.yaml:{line_of('- name: stats') + 1}:"), key  # the view's `entity:`
        assert "declares int64" in key and "has type string" in key and "data/stats.parquet" in key
        trips = next(m for m in msgs if "feature 'trips'" in m)
        assert trips.startswith(f"defs.yaml:{line_of('name: trips')}:") and "has type string" in trips
        ts = next(m for m in msgs if "timestamp" in m)
        assert ts.startswith(f"defs.yaml:{line_of('name: zone_src')}:") and "int64" in ts and "zone.parquet" in ts
        assert not store.registry_store.path.exists()  # nothing written


def test_materialize_checks_every_view_before_writing(repo):
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    with FeatureStore(root) as store:
        store.apply()
        # the last view's source breaks after apply: the first views must not be written either
        pq.write_table(pa.table({"city": ["sfo"], "zone_id": [1], "ts": pa.array([now], TS), "demand": ["x"]}),
                       root / "data" / "zone.parquet")
        with pytest.raises(SourceDataError, match="feature 'demand' declares float64.*has type string"):
            store.materialize_incremental(now, progress=False)
        assert store.materialization_state() == {}
        res = store.get_online_features(features=["stats:trips"], entities={"driver_id": [1]})
        assert res.status_names()["trips"] == ["NOT_FOUND"]


def test_a_run_stopped_half_way_says_which_views_completed(repo, monkeypatch):
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    with FeatureStore(root) as store:
        store.apply()
        online = store.online_store
        real_write = online.write

        def failing(batch):
            if batch.view.name == "stats":
                raise StoreError("connection lost (injected)")
            return real_write(batch)

        monkeypatch.setattr(online, "write", failing)
        with pytest.raises(StoreError, match="injected") as info:
            store.materialize_incremental(now, progress=False)
        text = str(info.value)
        assert f"completed: all_types (watermark {now.isoformat()})" in text
        assert "not completed (watermark unchanged): stats, zone_stats" in text
        report = info.value.report
        assert [(v.view, v.completed) for v in report.views] == [("all_types", True), ("stats", False)]
        assert report.not_run == ["zone_stats"]
        assert "stats: NOT completed" in report.summary() and "zone_stats: NOT run" in report.summary()
        assert set(store.materialization_state()) == {"all_types"}
        monkeypatch.setattr(online, "write", real_write)
        rerun = store.materialize_incremental(now, progress=False)
        assert [(v.view, v.up_to_date) for v in rerun.views] == [("all_types", True), ("stats", False),
                                                                  ("zone_stats", False)]


def test_status_reports_each_views_state(repo, capsys):
    root = repo
    now = datetime.now(UTC)
    _write_sources(root, now)
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, views=["stats", "zone_stats"], progress=False)
    assert main(["--repo", str(root), "status", "--json"]) == 0
    rows = {r["view"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["all_types"]["watermark"] is None and rows["all_types"]["last_run"] is None
    stats = rows["stats"]
    assert stats["watermark"] == now.isoformat()
    assert stats["newest_event"] == (now - timedelta(minutes=5)).replace(microsecond=now.microsecond).isoformat()
    assert 300 <= stats["newest_event_age_seconds"] < 400 and stats["stale"] is False  # ttl 1h
    assert stats["last_run"]["entities"] == 3 and stats["last_run"]["rows_read"] == 3
    assert rows["zone_stats"]["stale"] is False  # ttl none: never stale
    assert main(["--repo", str(root), "status"]) == 0
    text = capsys.readouterr().out
    assert "all_types: never materialized into this store" in text
    assert "stats: watermark " + now.isoformat() in text and "fresh" in text


def test_cli_future_end_and_rewind(repo, capsys):
    root = repo
    _write_sources(root, datetime.now(UTC))
    assert main(["--repo", str(root), "apply"]) == 0
    assert main(["--repo", str(root), "materialize-incremental", "2030-01-01", "--quiet"]) == 1
    assert "in the future" in capsys.readouterr().err
    assert main(["--repo", str(root), "materialize-incremental", "now", "--quiet", "--views", "stats"]) == 0
    assert main(["--repo", str(root), "materialize-incremental", "now", "--quiet", "--views", "stats",
                 "--from", "2020-01-01"]) == 0
    out = capsys.readouterr().out
    assert "stats: 3 entities" in out.splitlines()[-1] and "[2020-01-01T00:00:00+00:00" in out
