"""Online read cases for fsplug and the raw driver calls it wraps, and the alternating scheduler.

Every system implements `run(case, lo, hi) -> [ns, ...]`: calls `lo..hi` of the case's
pre-drawn workload, each timed on its own with `perf_counter_ns` inside the process that makes
the call. The scheduler runs all systems block by block (rotating who goes first) so that
drift of a shared, noisy machine hits every system alike.

Cases (the same entities per call for every system):
- `one`: 1 driver. fsplug `get_feature_vector(decline_model_v1, ...)`; raw: the statement fsplug
  issues for one key (SQLite) / a one-key `batch_read` (Aerospike); floor: that raw call plus the
  least any vector API must do (two arrays and a result object, no checks); Feast: its
  `get_online_features(...).to_dict()` for the driver.
- `fifty`: 50 drivers. fsplug `get_online_features(service=decline_model_v1, ...)`, the call (its
  result converts lazily); raw: the statement fsplug issues, rows fetched (SQLite: the 50 keys as a
  VALUES list LEFT JOINed to the table) / one `batch_read` of the 50 keys and the same bins; raw IN:
  the obvious hand-written `SELECT ... WHERE driver_id IN (...)`, for reference.
- `fifty_numpy`: fsplug's call plus `.to_numpy()`; raw+numpy: the raw call plus `np.array(rows)`.
- `fifty_dict`: fsplug's call plus `.to_dict()`; Feast: `get_online_features(...).to_dict()` (like for like).
- `predict`: `predict_decline_risk` (1 driver, logistic regression), fsplug only.
- `dispatch`: `dispatch` over 50 candidates, fsplug only.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from benchmarks.data import EXAMPLES, SERVICE

__all__ = ["Workload", "workload", "raw_bins", "FsplugSystem", "RawSQLite", "RawSQLiteIn", "RawSQLiteNumpy",
           "RawSQLiteVectorFloor", "RawAerospike", "alternate", "CASES"]

CASES = ("one", "fifty", "fifty_numpy", "fifty_dict", "predict", "dispatch")
REQUEST = {"pickup_distance_km": 1.5, "surge_multiplier": 1.0, "hour_of_day": 8}


@dataclass
class Workload:
    """Pre-drawn calls of one case: the key list of each call (and per-call request values)."""

    case: str
    keys: list[list[int]]
    distances: list[list[float]]

    def __len__(self) -> int:
        return len(self.keys)


def workload(case: str, driver_ids: Sequence[int], calls: int, seed: int) -> Workload:
    """`calls` calls of `case` over `driver_ids`, drawn from `random.Random(seed)` (the same for everyone)."""
    rng = random.Random(f"{seed}:{case}")
    per = 1 if case in ("one", "predict") else 50
    keys = [rng.sample(driver_ids, per) if per > 1 else [rng.choice(driver_ids)] for _ in range(calls)]
    dist = [[round(rng.uniform(0.2, 6.0), 2) for _ in k] for k in keys]
    return Workload(case, keys, dist)


def _timed(fn: Callable[[int], Any], lo: int, hi: int) -> list[int]:
    clock = time.perf_counter_ns
    out: list[int] = []
    append = out.append
    for i in range(lo, hi):
        t0 = clock()
        fn(i)
        append(clock() - t0)
    return out


class FsplugSystem:
    """fsplug in this process: FeatureStore reads, and DispatchService for predict/dispatch."""

    name = "fsplug"

    def __init__(self, repo: Path, model_path: Path | None = None):
        from fsplug.store import FeatureStore

        self.store = FeatureStore(repo)
        self.svc = None
        if model_path is not None:
            if str(EXAMPLES) not in sys.path:
                sys.path.insert(0, str(EXAMPLES))
            from dispatch import DispatchService

            self.svc = DispatchService(repo, model_path)
        self.loads: dict[str, Workload] = {}

    def supports(self, case: str) -> bool:
        return case in ("one", "fifty", "fifty_numpy", "fifty_dict") or (
            self.svc is not None and case in ("predict", "dispatch"))

    def load(self, wl: Workload) -> None:
        self.loads[wl.case] = wl

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        wl = self.loads[case]
        keys, dist = wl.keys, wl.distances
        store = self.store
        if case == "one":
            req = REQUEST
            return _timed(lambda i: store.get_feature_vector(SERVICE, request=req, driver_id=keys[i][0]), lo, hi)
        if case.startswith("fifty"):
            ents: list[dict[str, Sequence[Any]]] = [
                {"driver_id": k, "pickup_distance_km": d, "surge_multiplier": [1.0] * len(k),
                 "hour_of_day": [8] * len(k)} for k, d in zip(keys[lo:hi], dist[lo:hi], strict=True)]
            get = store.get_online_features
            if case == "fifty":
                return _timed(lambda i: get(service=SERVICE, entities=ents[i - lo]), lo, hi)
            if case == "fifty_numpy":
                return _timed(lambda i: get(service=SERVICE, entities=ents[i - lo]).to_numpy(), lo, hi)
            return _timed(lambda i: get(service=SERVICE, entities=ents[i - lo]).to_dict(), lo, hi)
        svc = self.svc
        if svc is None:  # supports() offers predict and dispatch only with a model
            raise ValueError(f"case {case!r} needs a model: FsplugSystem(repo, model_path)")
        if case == "predict":
            req = REQUEST
            return _timed(lambda i: svc.predict_decline_risk(keys[i][0], req), lo, hi)
        if case == "dispatch":
            from dispatch import RideRequest

            reqs = [RideRequest(f"r{i}", 8, 1.0, dict(zip(keys[i], dist[i], strict=True))) for i in range(lo, hi)]
            return _timed(lambda i: svc.dispatch(reqs[i - lo], keys[i]), lo, hi)
        raise ValueError(case)

    def close(self) -> None:
        if self.svc is not None:
            self.svc.close()
        self.store.close()


def raw_bins(store: Any) -> list[str]:
    """The bins fsplug's plan reads for decline_model_v1 (11 feature bins, then the views' timestamp
    bins): the raw baselines select exactly these."""
    (group,) = store.plan(service=SERVICE).groups
    return list(group.bins)


class RawSQLite:
    """The raw driver call fsplug wraps: the same statement through the same driver (APSW) on the same
    file, rows fetched."""

    name = "raw"

    def __init__(self, db_path: Path, table: str, bins: Sequence[str]):
        import apsw

        from fsplug.online.sqlite import SQLiteConfig, read_sql

        self.conn = apsw.Connection(str(db_path), statementcachesize=512)
        for pragma in SQLiteConfig().pragmas():  # the same connection settings as fsplug's store
            self.conn.execute(pragma).fetchall()
        self._sql = {n: read_sql(table, ["driver_id"], bins, n) for n in (1, 50)}
        self.bins = list(bins)
        self.loads: dict[str, Workload] = {}

    def supports(self, case: str) -> bool:
        return case in ("one", "fifty")

    def load(self, wl: Workload) -> None:
        self.loads[wl.case] = wl

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        keys = self.loads[case].keys
        ex = self.conn.execute
        if case == "one":
            sql = self._sql[1]
            return _timed(lambda i: ex(sql, keys[i]).fetchone(), lo, hi)
        sql = self._sql[50]
        return _timed(lambda i: ex(sql, keys[i]).fetchall(), lo, hi)

    def close(self) -> None:
        self.conn.close()


class RawSQLiteIn(RawSQLite):
    """For reference: the hand-written `SELECT driver_id, <bins> ... WHERE driver_id IN (50 keys)`."""

    name = "raw IN"

    def __init__(self, db_path: Path, table: str, bins: Sequence[str]):
        super().__init__(db_path, table, bins)
        cols = ", ".join(f'"{c}"' for c in ["driver_id", *bins])
        self._sql = {50: f'SELECT {cols} FROM "{table}" WHERE "driver_id" IN ({", ".join("?" * 50)})'}

    def supports(self, case: str) -> bool:
        return case == "fifty"


class RawSQLiteNumpy(RawSQLite):
    """The floor of a model-ready result: the raw call plus `np.array(rows, float64)` of its rows.

    Not a target baseline: it shows how much of fsplug's `to_numpy()` cost is the unavoidable
    conversion of Python rows into a float matrix.
    """

    name = "raw+numpy"

    def supports(self, case: str) -> bool:
        return case == "fifty_numpy"

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        import numpy as np

        keys = self.loads[case].keys
        sql = self._sql[50]
        ex = self.conn.execute
        arr = np.array
        f8 = np.float64
        return _timed(lambda i: arr(ex(sql, keys[i]).fetchall(), dtype=f8), lo, hi)


class RawSQLiteVectorFloor(RawSQLite):
    """The floor of any one-entity vector API: the raw call, then the row and the request values as
    a float array, an all-PRESENT status array and a FeatureVector, in a function taking the same
    arguments as get_feature_vector. No checks, no statuses, no defaults: less than any correct
    implementation can do, so no implementation can be faster."""

    name = "floor"

    def supports(self, case: str) -> bool:
        return case == "one"

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        import numpy as np

        from fsplug.store import FeatureVector

        keys = self.loads[case].keys
        sql = self._sql[1]
        ex = self.conn.execute
        arr, f8 = np.array, np.float64
        names = (*self.bins[:-2], *REQUEST)
        present = np.ones(len(self.bins) - 2 + len(REQUEST), dtype=np.uint8)

        def vector(service: str, request: dict[str, Any], driver_id: int) -> FeatureVector:
            row = ex(sql, (driver_id,)).fetchone()
            assert row is not None  # (a LEFT JOIN: one row per key, NULLs when missing)
            return FeatureVector(arr((*row[:-2], *request.values()), dtype=f8), present.copy(), names)

        req = REQUEST
        return _timed(lambda i: vector(SERVICE, request=req, driver_id=keys[i][0]), lo, hi)


class RawAerospike:
    """The raw driver call: one `aerospike` client `batch_read` of the same keys and bins."""

    name = "raw"

    def __init__(self, hosts: Sequence[str], namespace: str, set_name: str, bins: Sequence[str],
                 total_timeout_ms: int = 50, socket_timeout_ms: int = 20):
        import aerospike

        from fsplug.online.aerospike import parse_host

        pol = {"total_timeout": total_timeout_ms, "socket_timeout": socket_timeout_ms, "max_retries": 2}
        self.client = aerospike.client({"hosts": [parse_host(h) for h in hosts],
                                        "policies": {"read": pol, "batch": pol}}).connect()
        self.ns, self.set, self.bins = namespace, set_name, list(bins)
        self.loads: dict[str, list[list[tuple]]] = {}

    def supports(self, case: str) -> bool:
        return case in ("one", "fifty")

    def load(self, wl: Workload) -> None:
        self.loads[wl.case] = [[(self.ns, self.set, k) for k in ks] for ks in wl.keys]

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        keys = self.loads[case]
        br = self.client.batch_read
        bins = self.bins
        return _timed(lambda i: br(keys[i], bins).batch_records, lo, hi)

    def close(self) -> None:
        self.client.close()


def alternate(systems: Sequence[Any], case: str, calls: int, rounds: int, warmup: int,
              log: Callable[[str], None] = lambda s: None) -> dict[str, list[int]]:
    """Run `case` on every system that supports it, in `rounds` interleaved blocks after a warm-up.

    Warm-up: calls [calls, calls + warmup) of the workload (drawn after the measured ones, so
    measured calls do not find their rows pre-fetched), on each system, not recorded. Then block
    r covers calls [r*calls/rounds, (r+1)*calls/rounds) on every system, the starting system
    rotating each round. Returns the samples (ns) per system name.
    """
    active = [s for s in systems if s.supports(case)]
    for s in active:
        s.run(case, calls, calls + warmup)
    out: dict[str, list[int]] = {s.name: [] for s in active}
    bounds = [round(calls * r / rounds) for r in range(rounds + 1)]
    for r in range(rounds):
        order = active[r % len(active):] + active[:r % len(active)]
        for s in order:
            out[s.name].extend(s.run(case, bounds[r], bounds[r + 1]))
    log(f"    {case}: " + ", ".join(f"{k} {len(v)} calls" for k, v in out.items()))
    return out
