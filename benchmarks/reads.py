"""Online read cases for fsplug and the raw driver calls it wraps, and the alternating scheduler.

Every system implements `run(case, lo, hi) -> [ns, ...]`: calls `lo..hi` of the case's
pre-drawn workload, each timed on its own with `perf_counter_ns` inside the process that makes
the call. The scheduler runs all systems block by block (rotating who goes first) so that
drift of a shared, noisy machine hits every system alike.

Cases (the same entities per call for every system):
- `one`: 1 driver. fsplug `get_feature_vector(decline_model_v1, ...)`; raw: the same SELECT with one key.
- `fifty`: 50 drivers. fsplug `get_online_features(service=decline_model_v1, ...).to_numpy()`;
  raw: one `SELECT <key, 11 feature bins, 2 timestamp bins> ... WHERE driver_id IN (50 keys)` /
  one Aerospike `batch_read` of the 50 keys and the same bins.
- `fifty_dict`: fsplug's 50 drivers with `.to_dict()` (what Feast's `.to_dict()` is compared with).
- `predict`: `predict_decline_risk` (1 driver, logistic regression), fsplug only.
- `dispatch`: `dispatch` over 50 candidates, fsplug only.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.data import EXAMPLES, SERVICE

__all__ = ["Workload", "workload", "raw_bins", "FsplugSystem", "RawSQLite", "RawSQLiteNumpy", "RawAerospike", "alternate", "CASES"]

CASES = ("one", "fifty", "fifty_dict", "predict", "dispatch")
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
    out = []
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
        return case in ("one", "fifty", "fifty_dict") or (self.svc is not None and case in ("predict", "dispatch"))

    def load(self, wl: Workload) -> None:
        self.loads[wl.case] = wl

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        wl = self.loads[case]
        keys, dist = wl.keys, wl.distances
        store = self.store
        if case == "one":
            req = REQUEST
            return _timed(lambda i: store.get_feature_vector(SERVICE, request=req, driver_id=keys[i][0]), lo, hi)
        if case in ("fifty", "fifty_dict"):
            ents = [{"driver_id": k, "pickup_distance_km": d, "surge_multiplier": [1.0] * len(k),
                     "hour_of_day": [8] * len(k)} for k, d in zip(keys[lo:hi], dist[lo:hi])]
            if case == "fifty":
                return _timed(lambda i: store.get_online_features(service=SERVICE, entities=ents[i - lo]).to_numpy(),
                              lo, hi)
            return _timed(lambda i: store.get_online_features(service=SERVICE, entities=ents[i - lo]).to_dict(),
                          lo, hi)
        svc = self.svc
        if case == "predict":
            req = REQUEST
            return _timed(lambda i: svc.predict_decline_risk(keys[i][0], req), lo, hi)
        if case == "dispatch":
            from dispatch import RideRequest

            reqs = [RideRequest(f"r{i}", 8, 1.0, dict(zip(keys[i], dist[i]))) for i in range(lo, hi)]
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
    """The raw driver call: one `sqlite3` IN query on the same table, columns and file, rows fetched."""

    name = "raw"

    def __init__(self, db_path: Path, table: str, bins: Sequence[str]):
        import sqlite3

        from fsplug.online.sqlite import SQLiteConfig

        self.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, cached_statements=512)
        for pragma in SQLiteConfig().pragmas():  # the same connection settings as fsplug's store
            self.conn.execute(pragma)
        cols = ", ".join(f'"{c}"' for c in ["driver_id", *bins])
        self._sql = {n: f'SELECT {cols} FROM "{table}" WHERE "driver_id" IN ({", ".join("?" * n)})' for n in (1, 50)}
        self.bins = list(bins)
        self.loads: dict[str, Workload] = {}

    def supports(self, case: str) -> bool:
        return case in ("one", "fifty")

    def load(self, wl: Workload) -> None:
        self.loads[wl.case] = wl

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        keys = self.loads[case].keys
        sql = self._sql[len(keys[lo])]
        ex = self.conn.execute
        return _timed(lambda i: ex(sql, keys[i]).fetchall(), lo, hi)

    def close(self) -> None:
        self.conn.close()


class RawSQLiteNumpy(RawSQLite):
    """The floor of any model-ready result: the raw query plus `np.array(rows, float64)` of its rows.

    Not a target baseline: it shows how much of fsplug's overhead over the bare query is the
    unavoidable conversion of Python rows into a float matrix.
    """

    name = "raw+numpy"

    def supports(self, case: str) -> bool:
        return case == "fifty"

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        import numpy as np

        keys = self.loads[case].keys
        sql = self._sql[len(keys[lo])]
        ex = self.conn.execute
        arr = np.array
        f8 = np.float64
        return _timed(lambda i: arr(ex(sql, keys[i]).fetchall(), dtype=f8), lo, hi)


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
