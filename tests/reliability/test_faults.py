"""Faults, with the Aerospike test server's fault injection and its 3-node cluster.

- a server unreachable at start or lost mid-run (connections refused, or accepted and never
  answered): every read fails within its budget, `dispatch` falls back and says so, and the
  same process recovers by itself when the server is back;
- a slow server: bounded latency, no pile-up of threads or connections;
- one node of three down: partial results keep the live nodes' values;
- materialization interrupted by connection loss at random points: re-running completes it,
  the final state equals an uninterrupted run and the watermark never runs ahead of the data.

Timing assertions use a server in a child process (no GIL shared with the client) and allow
MARGIN_S on top of the budget for a loaded 2-core CI machine; loops are bounded in count.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta

import aerospike
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.errors import StoreError, StoreTimeoutError, StoreUnavailableError, TransientError
from fsplug.result import FieldStatus
from fsplug.store import FeatureStore
from tests.conftest import build_served_repo

from .conftest import (
    MARGIN_S,
    UTC,
    aerospike_config,
    build_repo,
    native_threads,
    open_fds,
    stats_table,
    wait_until,
    worst_case,
)

BUDGET_MS = 50
TIMEOUTS = f"  read_total_timeout_ms: {BUDGET_MS}\n  read_socket_timeout_ms: 20\n  tend_interval_ms: 250\n"
NOW = datetime.now(UTC)
IDS = list(range(1, 21))


def _break(srv, how: str) -> None:
    if how == "refused":  # the process is gone: new connections refused, open ones closed
        srv.refuse_connections(True)
        srv.drop_connections()
    else:  # "hanging": the host is there but answers nothing (a stuck node, a black-holed network)
        srv.pause()


def _repair(srv, how: str) -> None:
    if how == "refused":
        srv.refuse_connections(False)
    else:
        srv.resume()


def _expected(res) -> None:
    d = res.to_dict(include_statuses=True)
    assert d["a"] == [i * 10 for i in IDS] and set(d["a__status"]) == {"PRESENT"}


@pytest.mark.parametrize("how", ["refused", "hanging"])
@pytest.mark.parametrize("when", ["at-start", "mid-run"])
def test_unreachable_server_fails_fast_and_the_store_recovers_by_itself(tmp_path, child_server, how, when):
    srv = child_server
    repo = build_repo(tmp_path / "repo", aerospike_config(srv.address, TIMEOUTS))
    base = native_threads()
    with FeatureStore(repo) as loader:
        loader.push("stats", stats_table(IDS, [NOW] * len(IDS)))
        per_client = native_threads() - base  # the client's tend thread and thread pool
    store = FeatureStore(repo)
    read = lambda: store.get_online_features(features=["stats:a"], entities={"driver_id": IDS})  # noqa: E731
    if when == "mid-run":
        _expected(read())  # connected and serving
    threads = []

    def read_and_count():
        threads.append(native_threads())
        read()

    _break(srv, how)
    try:
        if when == "at-start":
            # a serving process connects at startup (DispatchService does): that first connect is
            # bounded by connect_timeout_ms (default 1 s); every read after it by its own budget
            t0 = time.perf_counter()
            with pytest.raises((StoreUnavailableError, StoreTimeoutError)):
                store.online_store.connect()
            assert time.perf_counter() - t0 <= 1.0 + MARGIN_S
        calls = 200 if how == "refused" else 60  # a hanging read costs its whole budget
        worst, errors = worst_case(read_and_count, calls)
        assert sum(errors.values()) == calls, errors
        assert set(errors) <= {"StoreUnavailableError", "StoreTimeoutError"}, errors
        assert worst <= BUDGET_MS / 1000 + MARGIN_S, f"slowest failing read {worst * 1000:.0f} ms"
        try:
            read()
        except StoreError as exc:
            assert isinstance(exc, TransientError)  # a retry decision is a type check
            assert any(w in str(exc) for w in (srv.address, "budget", "no free connection")), str(exc)
        # one client, or one connect in flight, at a time: failing reads do not pile up threads
        assert max(threads) <= base + per_client + 2, (base, per_client, max(threads))
    finally:
        _repair(srv, how)
    # the same store object recovers: no restart of the process, no new FeatureStore
    assert wait_until(lambda: _ok(read), timeout=10), "the store did not recover after the server came back"
    _expected(read())
    store.close()


def _ok(fn) -> bool:
    try:
        fn()
        return True
    except StoreError:
        return False


# ---------------------------------------------------------------------------------------------
# dispatch on top of a failing store


@pytest.fixture(scope="module")
def dispatch_repo(tmp_path_factory):
    """The shipped repo served from a child-process Aerospike test server, with a trained model."""
    from fsplug.testing.aerospike_server.remote import spawn_server

    with spawn_server(namespaces=["test"]) as srv:
        root = build_served_repo(tmp_path_factory.mktemp("dispatch") / "repo",
                                 aerospike_config(srv.address, TIMEOUTS), n_drivers=60)
        yield srv, root


def _request(cands):
    from examples.dispatch import RideRequest

    return RideRequest("r", 8, 1.0, {c: float(len(cands) - i) for i, c in enumerate(cands)})


@pytest.mark.parametrize("how", ["refused", "hanging"])
def test_dispatch_falls_back_within_budget_when_the_store_is_lost_and_recovers(dispatch_repo, how):
    from examples.dispatch import DispatchService
    from examples.generate_data import DRIVER_ID_BASE

    srv, root = dispatch_repo
    cands = list(range(DRIVER_ID_BASE + 1, DRIVER_ID_BASE + 21))
    req = _request(cands)
    svc = DispatchService(root, budget_ms=BUDGET_MS)
    try:
        healthy = svc.dispatch(req, cands)
        assert healthy.fallback is None
        _break(srv, how)
        try:
            worst = 0.0
            for _ in range(100 if how == "refused" else 40):
                t0 = time.perf_counter()
                d = svc.dispatch(req, cands)
                worst = max(worst, time.perf_counter() - t0)
                assert d.fallback and "ranked by pickup distance" in d.fallback, d.fallback
                assert d.driver_id == cands[-1] and [r[0] for r in d.ranking] == cands[::-1]  # nearest first
            assert worst <= BUDGET_MS / 1000 + MARGIN_S, f"slowest fallback {worst * 1000:.0f} ms"
            r = svc.predict_decline_risk(cands[0], {"pickup_distance_km": 1.0, "hour_of_day": 8})
            assert r.fallback and "store unavailable" in r.fallback and r.probability == svc.base_rate
        finally:
            _repair(srv, how)
        assert wait_until(lambda: svc.dispatch(req, cands).fallback is None, timeout=10)
        again = svc.dispatch(req, cands)
        assert [r[0] for r in again.ranking] == [r[0] for r in healthy.ranking]
    finally:
        svc.close()


def test_dispatch_service_starts_while_the_store_is_down(dispatch_repo):
    from examples.dispatch import DispatchService
    from examples.generate_data import DRIVER_ID_BASE

    srv, root = dispatch_repo
    cands = list(range(DRIVER_ID_BASE + 1, DRIVER_ID_BASE + 11))
    req = _request(cands)
    _break(srv, "refused")
    try:
        svc = DispatchService(root, budget_ms=BUDGET_MS)  # does not raise: it serves fallbacks
        worst = 0.0
        for _ in range(50):
            t0 = time.perf_counter()
            d = svc.dispatch(req, cands)
            worst = max(worst, time.perf_counter() - t0)
            assert d.fallback and d.driver_id == cands[-1]
        assert worst <= BUDGET_MS / 1000 + MARGIN_S
    finally:
        _repair(srv, "refused")
    try:
        assert wait_until(lambda: svc.dispatch(req, cands).fallback is None, timeout=10)
    finally:
        svc.close()


# ---------------------------------------------------------------------------------------------
# slow server


def test_slow_server_bounded_latency_and_no_pile_up(tmp_path, child_server):
    srv = child_server
    max_conns = 16
    config = aerospike_config(srv.address, TIMEOUTS + f"  max_conns_per_node: {max_conns}\n")
    repo = build_repo(tmp_path / "repo", config)
    store = FeatureStore(repo)
    store.push("stats", stats_table(IDS, [NOW] * len(IDS)))
    read = lambda: store.get_online_features(features=["stats:a"], entities={"driver_id": IDS})  # noqa: E731
    for _ in range(20):
        _expected(read())
    threads_before, fds_before = native_threads(), open_fds()
    srv.set_latency(4 * BUDGET_MS / 1000)  # answers arrive long after the budget
    try:
        worst, errors = worst_case(read, 200)
        assert sum(errors.values()) == 200 and set(errors) <= {"StoreTimeoutError", "StoreUnavailableError"}, errors
        assert worst <= BUDGET_MS / 1000 + MARGIN_S, f"slowest read {worst * 1000:.0f} ms"
        # timed-out connections are bounded by the pool (plus the tend connection), threads do not grow
        assert srv.open_connections() <= max_conns + 2, srv.open_connections()
        assert open_fds() <= fds_before + max_conns + 2  # the client's side of those sockets
        assert native_threads() <= threads_before + 1
        with pytest.raises(StoreError, match="no free connection|budget"):
            read()
        # a caller's tighter budget is honoured too
        t0 = time.perf_counter()
        with pytest.raises((StoreTimeoutError, StoreUnavailableError)):
            store.get_online_features(features=["stats:a"], entities={"driver_id": IDS}, timeout_ms=10)
        assert time.perf_counter() - t0 <= 0.010 + MARGIN_S
    finally:
        srv.set_latency(0)
    assert wait_until(lambda: _ok(read), timeout=10)
    worst, errors = worst_case(read, 50)
    assert not errors and worst <= BUDGET_MS / 1000 + MARGIN_S
    assert srv.open_connections() <= max_conns + 2
    assert native_threads() <= threads_before + 1
    store.close()
    assert wait_until(lambda: srv.open_connections() == 0, timeout=5)  # close() releases every connection


# ---------------------------------------------------------------------------------------------
# one node of three down


@pytest.fixture
def cluster_repo(tmp_path):
    from fsplug.testing.aerospike_server import AerospikeTestCluster

    with AerospikeTestCluster(nodes=3, namespaces=["test"]) as cluster:
        repo = build_repo(tmp_path / "repo", aerospike_config(
            cluster.hosts, "  read_total_timeout_ms: 300\n  read_socket_timeout_ms: 100\n  tend_interval_ms: 250\n"))
        yield cluster, repo


def _owners(cluster, store, ids):
    s = store.online_store.set_name("driver")
    return [cluster.owner_of(bytes(aerospike.calc_digest("test", s, i))) for i in ids]


@pytest.mark.parametrize("how", ["stopped", "hanging"])
def test_dead_node_reports_its_keys_and_serves_the_live_nodes(cluster_repo, how):
    cluster, repo = cluster_repo
    ids = list(range(1, 301))
    with FeatureStore(repo) as store:
        store.push("stats", stats_table(ids, [NOW] * len(ids)))
        owners = _owners(cluster, store, ids)
        assert {0, 1, 2} <= set(owners)
        dead = [i for i, o in zip(ids, owners, strict=True) if o == 1]
        if how == "stopped":
            cluster.stop_node(1)
        else:
            cluster.nodes[1].pause()
        try:
            t0 = time.perf_counter()
            res = store.get_online_features(features=["stats:a", "stats:c"], entities={"driver_id": ids},
                                            partial_results=True)
            assert time.perf_counter() - t0 <= 0.3 + MARGIN_S
            st = res.status_names()["a"]
            values = res.to_dict()["a"]
            (errs,) = res.errors
            for i, owner, status, value, err in zip(ids, owners, st, values, errs, strict=True):
                if owner == 1:
                    assert status == "NOT_FOUND" and value == -1  # the declared default
                    assert isinstance(err, StoreUnavailableError if how == "stopped" else StoreTimeoutError), err
                    assert isinstance(err, TransientError)
                else:
                    assert status == "PRESENT" and value == i * 10 and err is None
            assert res.to_dict()["c"][ids.index(dead[0])] is None
            # without partial results the whole request fails, with a transient error
            with pytest.raises((StoreUnavailableError, StoreTimeoutError)):
                store.get_online_features(features=["stats:a"], entities={"driver_id": ids})
            # an entity that does not exist is still just NOT_FOUND, without an error
            res = store.get_online_features(features=["stats:a"], entities={"driver_id": [10**9]},
                                            partial_results=True)
            owner = _owners(cluster, store, [10**9])[0]
            assert (res.errors[0][0] is None) == (owner != 1)
        finally:
            if how == "stopped":
                cluster.start_node(1)
            else:
                cluster.nodes[1].resume()
        assert wait_until(lambda: _ok(lambda: store.get_online_features(
            features=["stats:a"], entities={"driver_id": dead})), timeout=10)
        res = store.get_online_features(features=["stats:a"], entities={"driver_id": ids}, partial_results=True)
        assert res.to_dict()["a"] == [i * 10 for i in ids] and not any(e for e in res.errors[0])


def test_partial_results_keep_the_chunks_read_within_the_budget(tmp_path, child_server):
    """A large request is read in chunks under one deadline: chunks it does not reach are reported, not fatal."""
    srv = child_server
    repo = build_repo(tmp_path / "repo", aerospike_config(
        srv.address, "  read_total_timeout_ms: 300\n  read_socket_timeout_ms: 300\n  max_retries: 0\n"
                     "  max_read_batch: 10\n"))
    ids = list(range(1, 31))
    with FeatureStore(repo) as store:
        store.push("stats", stats_table(ids, [NOW] * len(ids)))
        store.get_online_features(features=["stats:a"], entities={"driver_id": ids})  # connected
        srv.set_latency(0.2, commands={"batch_read"})  # each 10-key chunk takes 200 ms of the 300
        try:
            t0 = time.perf_counter()
            res = store.get_online_features(features=["stats:a"], entities={"driver_id": ids}, partial_results=True)
            assert time.perf_counter() - t0 <= 0.3 + MARGIN_S
            assert res.to_dict()["a"][:10] == [i * 10 for i in ids[:10]]
            assert res.status_names()["a"][10:] == ["NOT_FOUND"] * 20
            assert all(isinstance(e, StoreTimeoutError) for e in res.errors[0][10:])
            with pytest.raises(StoreTimeoutError):
                store.get_online_features(features=["stats:a"], entities={"driver_id": ids})
        finally:
            srv.set_latency(0)


def test_failed_over_node_keeps_every_key_readable(cluster_repo):
    """With replication (stop_node(rebalance=True)), the client re-routes: every value is served."""
    cluster, repo = cluster_repo
    ids = list(range(1, 121))
    with FeatureStore(repo) as store:
        store.push("stats", stats_table(ids, [NOW] * len(ids)))
        cluster.stop_node(2, rebalance=True)
        try:
            def all_present():
                res = store.get_online_features(features=["stats:a"], entities={"driver_id": ids},
                                                partial_results=True)
                return not any(res.errors[0]) and res.to_dict()["a"] == [i * 10 for i in ids]
            assert wait_until(all_present, timeout=10)
        finally:
            cluster.start_node(2)


# ---------------------------------------------------------------------------------------------
# materialization interrupted by connection loss


END = datetime(2026, 3, 1, tzinfo=UTC)
MID = END - timedelta(seconds=1500)
N_ENTITIES = 1500
CHUNK = 50


def _source(path, n_entities: int, seed: int) -> list[tuple]:
    """Random rows, several per entity, some at or after END (never materialized)."""
    rng = random.Random(seed)
    rows = []
    for e in range(n_entities):
        for _ in range(rng.randint(1, 3)):
            t = END - timedelta(seconds=rng.randint(-60, 3000))
            rows.append((e, t, rng.randint(0, 10**6), rng.random()))
    rng.shuffle(rows)
    ids, ts, a, b = zip(*rows, strict=True)
    pq.write_table(stats_table(list(ids), list(ts), a=pa.array(a, pa.int64()), b=pa.array(b),
                               c=pa.array([f"s{x}" for x in a])), path)
    return rows


def _state(repo, ids):
    with FeatureStore(repo) as store:
        res = store.get_online_features(features=["stats:a", "stats:b", "stats:c"], entities={"driver_id": ids})
        return res.to_dict(include_statuses=True), res.event_timestamps["stats"].tolist()


def _inject_at(srv, k: int, action):
    """At the k-th batch_write the server sees from now (0-based), break the connection on the wire.

    "drop": the server closes the connection without executing; "drop_after": it executes, then
    closes without answering (the client cannot know the write landed); an int: it answers that
    result code; "drop_connections": every open connection is closed from a timer thread while
    the writes go on. fail_next covers 3 commands: more than the client's retries.
    """
    timers = []
    if action == "drop_connections":
        timers.append(threading.Timer(random.random() * 0.01, srv.drop_connections))
        timers[-1].start()
    else:
        srv.fail_next(3, commands={"batch_write"}, action=action, after=k)

    def undo():
        for t in timers:
            t.join()

    return undo


@pytest.fixture
def mat_repos(tmp_path, aerospike_server):
    cfg = (f"  write_batch_size: {CHUNK}\n  tend_interval_ms: 250\n  read_total_timeout_ms: 2000\n"
           "  read_socket_timeout_ms: 1000\n")
    faulty = build_repo(tmp_path / "faulty", aerospike_config(aerospike_server.address, cfg))
    clean = build_repo(tmp_path / "clean", aerospike_config(aerospike_server.address, cfg))
    return aerospike_server, faulty, clean


@pytest.mark.parametrize("seed", range(6))
def test_interrupted_materialization_reruns_to_the_uninterrupted_state(mat_repos, seed):
    srv, faulty, clean = mat_repos
    rng = random.Random(seed)
    rows = []
    for repo in (faulty, clean):
        rows = _source(repo / "data" / "stats.parquet", N_ENTITIES, seed)
    ids = list(range(N_ENTITIES))
    windows = [(None, MID), (MID, END)]
    expected = []
    with FeatureStore(clean) as store:  # the reference run: no faults
        for _, end in windows:
            store.materialize_incremental(end, views=["stats"], progress=False)
            expected.append(_state(clean, ids))
    for w, (start, end) in enumerate(windows):
        entities = len({e for e, t, *_ in rows if (start is None or t >= start) and t < end})
        chunks = -(-entities // CHUNK)
        actions = [rng.choice(["drop", "drop_after", 9]), rng.choice(["drop", "drop_after", 9]), "drop_connections"]
        with FeatureStore(faulty) as store:
            for attempt, action in enumerate([*actions, None]):
                before = store.materialization_state().get("stats")
                undo = _inject_at(srv, rng.randrange(chunks), action) if action else (lambda: None)
                try:
                    store.materialize_incremental(end, views=["stats"], progress=False)
                    failed = False
                except StoreError as exc:
                    assert isinstance(exc, TransientError), exc  # connection loss is worth a retry
                    failed = True
                finally:
                    undo()
                    srv.clear_faults()
                after = store.materialization_state().get("stats")
                if failed:
                    assert after == before  # the watermark never runs ahead of the data
                else:
                    assert after.watermark == end
                    break
                assert attempt < 2 or action == "drop_connections"  # the injected faults do interrupt
        assert attempt >= 2  # both fail_next runs were interrupted
        assert _state(faulty, ids) == expected[w]  # equal to the uninterrupted run, window by window


def test_watermark_does_not_move_when_the_last_write_is_lost(mat_repos):
    srv, faulty, _ = mat_repos
    rows = _source(faulty / "data" / "stats.parquet", 200, seed=42)
    present = len({e for e, t, *_ in rows if t < END})
    with FeatureStore(faulty) as store:
        last = -(-present // CHUNK) - 1
        undo = _inject_at(srv, last, "drop_after")  # executed, never acknowledged
        with pytest.raises(StoreUnavailableError, match="may or may not have landed"):
            store.materialize_incremental(END, views=["stats"], progress=False)
        undo()
        srv.clear_faults()
        assert "stats" not in store.materialization_state()
        store.materialize_incremental(END, views=["stats"], progress=False)
        assert store.materialization_state()["stats"].watermark == END
        res = store.get_online_features(features=["stats:a"], entities={"driver_id": list(range(200))})
        assert (res.statuses == FieldStatus.PRESENT).all(axis=1).sum() == present
