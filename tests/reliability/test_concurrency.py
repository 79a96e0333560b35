"""Concurrency: serving while materialization and push write the same view; registry writers in
separate processes; processes killed in the middle of a write.

Torn reads are detected with the `versions` view, whose rows hold their version number in every
feature (v1 = v2 = v3 = int(v4[1:])) and derive their event time from it: a vector mixing two
writes, or values that do not match their timestamp, shows at once. Versions never go backwards
in what a reader sees (writes are guarded: an older event never replaces a newer one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.registry import RegistryStore
from fsplug.store import FeatureStore

from .conftest import aerospike_config, build_repo, version_time, versions_table

ROOT = Path(__file__).resolve().parents[2]
N = 200  # entities
READERS = 8
MAT_VERSIONS = list(range(5, 55, 5))  # what the source file holds (each entity, each version)
PUSH_VERSIONS = list(range(2, 62, 2))  # pushed while materializing (some equal to materialized ones)


def _write_source(repo: Path) -> None:
    tables = [versions_table(list(range(N)), v) for v in MAT_VERSIONS]
    pq.write_table(pa.concat_tables(tables), repo / "data" / "ver.parquet")


@pytest.fixture(params=["sqlite", "aerospike"])
def ver_repo(request, tmp_path):
    if request.param == "sqlite":
        repo = build_repo(tmp_path / "repo")
    else:
        srv = request.getfixturevalue("aerospike_server")
        repo = build_repo(tmp_path / "repo", aerospike_config(
            srv.address, "  read_total_timeout_ms: 2000\n  read_socket_timeout_ms: 1000\n  write_batch_size: 64\n"))
    _write_source(repo)
    return repo


def test_serving_during_materialize_and_push_sees_whole_vectors_that_never_go_back(ver_repo):
    store = FeatureStore(ver_repo)  # one store shared by every thread, as in a serving process
    ids = list(range(N))
    errors: list[BaseException] = []
    reads = [0] * READERS
    rows_seen = [0] * READERS
    writers_done = threading.Event()
    pushed: list[int] = []
    mat_reports = []
    versions_seen: set[int] = set()

    def reader(k: int) -> None:
        last = [0] * N  # highest version this reader has seen per entity
        deadline = time.monotonic() + 30
        extra = 0
        try:
            while time.monotonic() < deadline and reads[k] < 400 and extra < 5:
                if writers_done.is_set():
                    extra += 1
                sub = ids[k::2] if k % 2 else ids  # overlapping requests of different shapes
                res = store.get_online_features(service="ver_svc", entities={"driver_id": sub})
                d = res.to_dict(include_statuses=True)
                ts = res.event_timestamps["versions"]
                for j, e in enumerate(sub):
                    st = {d[f"{c}__status"][j] for c in ("v1", "v2", "v3", "v4")}
                    if st == {"NOT_FOUND"}:
                        assert last[e] == 0, f"entity {e} vanished after version {last[e]}"
                        continue
                    assert st == {"PRESENT"}, st
                    v = d["v1"][j]
                    assert d["v2"][j] == v and d["v3"][j] == float(v) and d["v4"][j] == f"v{v}", (e, d)
                    assert ts[j] == version_time(v).replace(tzinfo=None), (e, v, ts[j])
                    assert v >= last[e], f"entity {e} went back from version {last[e]} to {v}"
                    last[e] = v
                    versions_seen.add(v)
                reads[k] += 1
                rows_seen[k] += len(sub)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def materializer() -> None:
        try:
            for v in MAT_VERSIONS:
                mat_reports.append(store.materialize_incremental(version_time(v) + timedelta(microseconds=1),
                                                                 views=["versions"], progress=False))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def pusher() -> None:
        try:
            for v in PUSH_VERSIONS:
                pushed.append(store.push("versions", versions_table(ids, v)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(READERS)]
    writers = [threading.Thread(target=materializer), threading.Thread(target=pusher)]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join(60)
    writers_done.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads + writers)
    assert not errors, errors[:3]
    assert len(versions_seen) >= 5, versions_seen  # the reads did overlap the writes
    # counts add up: every read answered every entity; every run and push accounted for every row
    assert all(r > 0 for r in reads)
    assert rows_seen == [r * (N if k % 2 == 0 else len(ids[k::2])) for k, r in enumerate(reads)]
    assert [r.views[0].entities for r in mat_reports] == [N] * len(MAT_VERSIONS)
    assert len(pushed) == len(PUSH_VERSIONS) and all(0 <= w <= N for w in pushed)
    assert pushed[-1] == N  # the newest version anyone wrote always lands
    # the final state is the newest version written by either writer, and the watermark is the last run's end
    final = store.get_online_features(service="ver_svc", entities={"driver_id": ids}).to_dict()
    assert final["v1"] == [max(MAT_VERSIONS + PUSH_VERSIONS)] * N
    wm = store.materialization_state()["versions"].watermark
    assert wm == version_time(MAT_VERSIONS[-1]) + timedelta(microseconds=1)
    store.close()


# ---------------------------------------------------------------------------------------------
# the registry, from several processes


def _python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


APPLY_LOOP = """
import sys
from fsplug.store import FeatureStore
for _ in range(int(sys.argv[2])):
    with FeatureStore(sys.argv[1]) as store:
        store.apply()
"""

MATERIALIZE_LOOP = """
import sys
from datetime import datetime, timedelta, timezone
from fsplug.store import FeatureStore
base = datetime(2026, 1, 1, tzinfo=timezone.utc)
for i in range(int(sys.argv[2])):
    with FeatureStore(sys.argv[1]) as store:
        store.materialize_incremental(base + timedelta(seconds=60 + i), views=["versions"], progress=False)
"""


def _with_ttl(repo: Path, ttl: str) -> None:
    defs = repo / "defs.yaml"
    text = defs.read_text()
    defs.write_text(text.replace("  - name: stats\n    entity: driver\n    source: stats_src\n    ttl: none\n",
                                 f"  - name: stats\n    entity: driver\n    source: stats_src\n    ttl: {ttl}\n"))


def test_applies_and_materializations_in_separate_processes_do_not_corrupt_the_registry(tmp_path):
    """Two repos share one registry (an absolute path): their applies race with materializations."""
    shared = tmp_path / "shared" / "registry.json"
    repos = []
    for name, ttl in (("a", "1h"), ("b", "2h")):
        cfg = f"project: rel\nregistry: {shared}\nonline_store:\n  type: sqlite\n  path: {tmp_path / 'online.db'}\n"
        repo = build_repo(tmp_path / name, cfg, apply=False)
        _with_ttl(repo, ttl)
        _write_source(repo)
        repos.append(repo)
    with FeatureStore(repos[0]) as store:
        store.apply()
    hashes = {FeatureStore(r).compile(check_paths=True)[0].hash for r in repos}
    procs = [_python(APPLY_LOOP, str(repos[i % 2]), "6") for i in range(4)]
    procs += [_python(MATERIALIZE_LOOP, str(repos[0]), "4") for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    reg = RegistryStore(shared).load()  # parses, and its hash matches its content
    assert reg.hash in hashes
    # materialization state written by other processes survived every apply (it lives in the store)
    with FeatureStore(repos[0]) as store:
        assert store.materialization_state()["versions"].watermark is not None
    assert not [p for p in shared.parent.iterdir() if p.name.startswith(".registry-")]


CRASH_IN_SAVE = """
import os, signal, sys
from fsplug.store import FeatureStore
def die(fd):
    os.kill(os.getpid(), signal.SIGKILL)  # the new registry is written to its temp file, not yet renamed
os.fsync = die
FeatureStore(sys.argv[1]).apply()
"""

HOLD_LOCK = """
import sys, time
from fsplug.registry import RegistryStore
with RegistryStore(sys.argv[1]).locked():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_process_killed_while_writing_the_registry_leaves_the_old_one(tmp_path):
    repo = build_repo(tmp_path / "repo")
    path = repo / "data" / "registry.json"
    before = path.read_bytes()
    _with_ttl(repo, "3h")
    p = _python(CRASH_IN_SAVE, str(repo))
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert path.read_bytes() == before  # intact, still the old definitions
    assert RegistryStore(path).load().view("stats").ttl_seconds is None
    leftovers = [q for q in path.parent.iterdir() if q.name.startswith(".registry-")]
    assert len(leftovers) == 1  # the dead process's temp file: ignored until the next writer
    # a process killed while holding the registry lock does not block the next apply
    holder = _python(HOLD_LOCK, str(path))
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with FeatureStore(repo) as store:
        store.apply()  # the kernel released the dead process's lock
        assert store.refresh_registry().view("stats").ttl_seconds == 3 * 3600
    assert not [q for q in path.parent.iterdir() if q.name.startswith(".registry-")]  # the leftover is gone


KILLED_MATERIALIZE = """
import sys
from datetime import datetime
from fsplug.online.sqlite import SQLiteOnlineStore
from fsplug.store import FeatureStore
real = SQLiteOnlineStore.write
def write(self, batch):
    n = real(self, batch)
    print("wrote", n, flush=True)  # lets the parent kill it between / during the next writes
    return n
SQLiteOnlineStore.write = write
FeatureStore(sys.argv[1]).materialize_incremental(datetime.fromisoformat(sys.argv[2]), progress=False)
print("done", flush=True)
"""


@pytest.mark.parametrize("after_writes,delay", [(1, 0.0), (2, 0.005), (3, 0.02)])
def test_sqlite_materialization_killed_midway_loses_nothing(tmp_path, after_writes, delay):
    """SIGKILL during a materialization: the database is intact, the watermark unchanged, a re-run completes."""
    import apsw

    repo = build_repo(tmp_path / "repo", SQLITE_SMALL_BATCHES)
    n = 300_000  # about 5 write calls of 65,536 rows, each many 500-row transactions
    pq.write_table(versions_table(list(range(n)), 7), repo / "data" / "ver.parquet")
    end = version_time(60)
    p = _python(KILLED_MATERIALIZE, str(repo), end.isoformat())
    for _ in range(after_writes):
        assert p.stdout.readline().startswith("wrote"), p.stderr.read()
    time.sleep(delay)
    p.kill()
    p.wait()
    conn = apsw.Connection(str(repo / "data" / "online.db"))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with FeatureStore(repo) as store:
        assert "versions" not in store.materialization_state()  # killed before the end: no watermark
        landed = _versions(store, n)
        assert set(landed) == {7, None}  # whole rows of version 7 for some entities, nothing for the rest
        assert 65_536 * after_writes <= landed.count(7) < n
        store.materialize_incremental(end, progress=False)
        assert store.materialization_state()["versions"].watermark == end
        assert _versions(store, n) == [7] * n


def _versions(store, n):
    out = []
    for i in range(0, n, 10_000):
        d = store.get_online_features(service="ver_svc", entities={"driver_id": list(range(i, min(n, i + 10_000)))})
        d = d.to_dict()
        assert all(a == b == (None if a is None else int(c)) for a, b, c in zip(d["v1"], d["v2"], d["v3"], strict=True))
        out.extend(d["v1"])
    return out
SQLITE_SMALL_BATCHES = ("project: rel\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n"
                        "  path: data/online.db\n  write_batch_rows: 500\n")

