"""The benchmark suite: data, materialization, alternating read benchmarks, scale runs, targets.

`run(opts)` does everything one `python -m benchmarks run ...` asks for and returns the result
dict that `report.py` writes as JSON and Markdown (and the latency histogram PNG).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import data as D
from benchmarks.materialize import measure_fsplug
from benchmarks.reads import (FsplugSystem, RawAerospike, RawSQLite, RawSQLiteIn, RawSQLiteNumpy, RawSQLiteVectorFloor,
                              alternate, raw_bins, workload)
from benchmarks.stats import ratio, summarize
import contextlib

TEST_SERVER_LABEL = "functional only (test server: its timings say nothing about Aerospike)"
FEAST_AEROSPIKE_CDT_NOTE = ("Feast's Aerospike online store stores each view as a Map bin and reads with Map CDT "
                            "operations (batch_operate + map_get_by_key), which fsplug's test server does not "
                            "implement (it answers code 16); Feast on Aerospike needs a real cluster "
                            "(FSPLUG_AEROSPIKE_HOSTS)")


@dataclass
class Options:
    quick: bool = False
    stores: tuple[str, ...] = ("sqlite",)
    entities: int = 10_000
    days: int = 7
    offers_per_driver_day: float = 2.0
    seed: int = 7
    calls: int = 5_000
    rounds: int = 10
    warmup: int = 500
    scale_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000, 10_000_000)
    scale_calls: int = 3_000
    scale_days: int = 1
    with_feast: bool = False
    feast_scale_max: int = 100_000
    reuse: bool = False
    out_dir: Path = D.RESULTS
    argv: list[str] = field(default_factory=list)


class Log:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", flush=True)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        info["mem_total_gib"] = round(int(mem) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("fsplug", "aerospike", "numpy", "pyarrow"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    import apsw

    out["apsw"], out["sqlite"] = apsw.apsw_version(), apsw.sqlite_lib_version()  # (the SQLite store's driver)
    return out


# ---- stores under test ---------------------------------------------------------------------------
class AerospikeTarget:
    """FSPLUG_AEROSPIKE_HOSTS when set (a real cluster), else the bundled test server in a child process."""

    def __init__(self, log: Log):
        env = os.environ.get("FSPLUG_AEROSPIKE_HOSTS")
        self.server = None
        self.namespace = os.environ.get("FSPLUG_BENCH_AEROSPIKE_NAMESPACE", "test")
        if env:
            self.hosts = [h.strip() for h in env.split(",") if h.strip()]
            self.real = True
            self.label = None
        else:
            from fsplug.testing.aerospike_server import spawn_server

            self.server = spawn_server(namespaces=[self.namespace])
            self.hosts = list(self.server.hosts)
            self.real = False
            self.label = TEST_SERVER_LABEL
            log(f"  Aerospike: test server (child process) on {', '.join(self.hosts)}: {TEST_SERVER_LABEL}")

    def store_config(self, set_name: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {"type": "aerospike", "hosts": self.hosts, "hosts_env": None,
                               "namespace": self.namespace, "sets": {"driver": set_name}}
        if not self.real:  # a Python server under a benchmark loop: generous budgets, no spurious timeouts
            cfg.update(read_total_timeout_ms=2000, read_socket_timeout_ms=1000)
        return cfg

    def feast_config(self) -> dict[str, Any]:
        from fsplug.online.aerospike import parse_host

        return {"type": "aerospike", "hosts": [list(parse_host(h)) for h in self.hosts],
                "namespace": self.namespace}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


# ---- one data set on one store -------------------------------------------------------------------
def _repo_for(opts: Options, store: str, ds: D.Dataset, target: AerospikeTarget | None) -> tuple[Path, dict]:
    repo = opts.out_dir / "work" / f"fsplug_{store}_{ds.key}"
    if store == "sqlite":
        cfg = {"type": "sqlite", "path": "data/online.db"}
    else:
        assert target is not None  # the other store, aerospike, always comes with its target (run)
        cfg = target.store_config(f"bench_{ds.n_drivers}")
    return repo, cfg


def _materialized(repo: Path, ds: D.Dataset, store: str, opts: Options, log: Log, reuse: bool) -> dict[str, Any]:
    """fsplug's materialization of `ds` into the repo's store (measured in a child), or the cached record."""
    marker = repo / "data" / "bench_materialized.json"
    if reuse and marker.exists():
        rec = json.loads(marker.read_text())
        rec["reused_from"] = rec.get("measured_at")
        log(f"  reusing materialized {repo.name} (measured {rec.get('measured_at')})")
        return rec
    log(f"  fsplug materialize {ds.n_drivers:,} drivers into {store} (child process) ...")
    rec = measure_fsplug(repo, ds.end)
    rec["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    marker.write_text(json.dumps(rec))
    log(f"  fsplug: {rec['entities']:,} entities in {rec['seconds']:.1f}s = {rec['entities_per_s']:,.0f}/s, "
        f"peak RSS {rec['peak_rss_mib']:,.0f} MiB")
    return rec


def _check_agreement(fs: FsplugSystem, raw: Any, feast: Any, keys: list[int], store: str) -> dict[str, Any]:
    """Do fsplug, the raw call and Feast return the same stored values for these keys? (not timed)"""
    import math

    import numpy as np

    from benchmarks.reads import REQUEST

    res = fs.store.get_online_features(service=D.SERVICE, entities={"driver_id": keys, **{
        k: [v] * len(keys) for k, v in REQUEST.items()}})
    st = res.status_names()
    fsd = res.to_dict()
    feats = [f for v in D.STORED_FEATURES.values() for f in v]
    bins = [b for v in D.STORED_FEATURES.values() for b in v.values()]
    assert list(raw.bins)[:len(bins)] == bins, (raw.bins, bins)
    out: dict[str, Any] = {"keys": len(keys)}
    # raw rows, by key
    if isinstance(raw, RawSQLite):  # one row per key, in key order (all NULL for an unknown key)
        fetched = raw.conn.execute(raw._sql[50], keys).fetchall() if len(keys) == 50 else []
        rows: dict[Any, tuple[Any, ...] | None] = dict(zip(keys, fetched, strict=True)) if fetched else {}
    else:
        recs = raw.client.batch_read([(raw.ns, raw.set, k) for k in keys], raw.bins).batch_records
        rows = {k: tuple((r.record[2] or {}).get(b) for b in raw.bins) if r.result == 0 else None
                for k, r in zip(keys, recs, strict=True)}
    mism = 0
    ts = res.event_timestamps
    for i, k in enumerate(keys):
        row = rows.get(k)
        for j, view in enumerate(D.STORED_FEATURES):  # the timestamp bins follow the feature bins
            want = ts[view][i]
            got = row[len(bins) + j] if row is not None else None
            if (got is None) != np.isnat(want) or (got is not None and int(got) != int(want.astype("int64"))):
                mism += 1
    for i, k in enumerate(keys):
        row = rows.get(k)
        for j, f in enumerate(feats):
            if st[f][i] != "PRESENT":
                continue
            v = row[j] if row is not None else None
            if v is None or not math.isclose(float(v), float(fsd[f][i]), rel_tol=1e-9, abs_tol=1e-12):
                mism += 1
    out["fsplug_vs_raw_mismatches"] = mism
    if feast is not None:
        try:
            fd = feast.check(keys)
            fm = 0
            compared = 0
            for f in feats:
                for i in range(len(keys)):
                    # Feast ignores ttl online: compare values fsplug reports PRESENT
                    if st[f][i] != "PRESENT":
                        continue
                    compared += 1
                    a, b = fd.get(f, [None] * len(keys))[i], fsd[f][i]
                    if a is None or not math.isclose(float(a), float(b), rel_tol=1e-6):
                        fm += 1
            out["fsplug_vs_feast_mismatches"] = fm
            out["fsplug_vs_feast_compared"] = compared
        except RuntimeError as exc:
            out["feast_check_error"] = str(exc)
    return out


def _feast_prepare(opts: Options, ds: D.Dataset, store: str, target: AerospikeTarget | None,
                   log: Log) -> tuple[Any, dict[str, Any] | None, str | None]:
    """Materialize with Feast (child process) and start its read worker: (system, materialize record, why not)."""
    from benchmarks import feast_side

    repo = opts.out_dir / "work" / f"feast_{store}_{ds.key}"
    if store == "sqlite":
        online = {"type": "sqlite"}
    else:
        assert target is not None  # the other store, aerospike, always comes with its target (run)
        online = target.feast_config()
    spec = feast_side.spec_for(ds, repo, online)
    log(f"  Feast materialize {ds.n_drivers:,} drivers into {store} (child process, Feast venv) ...")
    try:
        mat = feast_side.materialize(spec)
    except (RuntimeError, OSError) as exc:
        why = str(exc).strip().splitlines()[-1][:300]
        if store == "aerospike" and target is not None and not target.real:
            why = f"{FEAST_AEROSPIKE_CDT_NOTE} (error: {why})"
        log(f"  Feast could not materialize: {why}")
        return None, None, why
    if mat.get("entities") is None:
        mat["entities_note"] = "counted by fsplug on the same data (same window, latest row per entity per view)"
    log(f"  Feast: {mat['seconds']:.1f}s, peak RSS {mat['peak_rss_mib']:,.0f} MiB")
    try:
        sysm = feast_side.FeastSystem(spec)
    except (RuntimeError, OSError) as exc:
        return None, mat, str(exc)
    return sysm, mat, None


def bench_dataset(opts: Options, store: str, ds: D.Dataset, target: AerospikeTarget | None, log: Log, *,
                  cases: tuple[str, ...], calls: int, with_feast: bool, model_from: Path | None = None,
                  train: bool = False) -> dict[str, Any]:
    """Materialize `ds` into `store` (fsplug, and Feast when asked), then run the read cases alternating."""
    repo, cfg = _repo_for(opts, store, ds, target)
    marker = repo / "data" / "bench_materialized.json"
    # --reuse applies to the scale data sets over 100k drivers of a real store (the base set and the
    # sets Feast also materializes are always re-materialized, so their ratios come from one run)
    reuse = opts.reuse and not train and ds.n_drivers > REUSE_ABOVE and (
        store == "sqlite" or (target is not None and target.real))
    if not (reuse and marker.exists()):
        D.make_fsplug_repo(repo, ds, cfg)
    out: dict[str, Any] = {"drivers": ds.n_drivers, "dataset": ds.describe(), "repo": str(repo),
                           "materialize": {}, "reads": {}}
    out["materialize"]["fsplug"] = _materialized(repo, ds, store, opts, log, reuse)
    model = None
    if train or model_from is not None:
        model = repo / "data" / "models" / f"{D.SERVICE}.joblib"
        if model_from is not None and model_from.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", ".json"):
                shutil.copy(str(model_from) + suffix, str(model) + suffix)
        elif not model.exists():
            log("  training the decline model (examples/train.py, logistic regression) ...")
            if str(D.EXAMPLES) not in sys.path:
                sys.path.insert(0, str(D.EXAMPLES))
            from train import train as train_model

            # the suite's service (decline_model_v1, as Feast's side): DispatchService serves the model's own.
            # The data's last day is today's first hours (no offers before the first shifts at 05:00):
            # the held-out days come from the days - 1 before it, leaving at least one to train on.
            m = train_model(repo, "logreg", holdout_days=max(1, min(2, ds.days - 2)), service=D.SERVICE)
            out["model"] = {k: m[k] for k in ("auc_holdout", "auc_ground_truth", "train_rows", "test_rows")}
    systems: list[Any] = [FsplugSystem(repo, model)]
    bins = raw_bins(systems[0].store)
    if store == "sqlite":
        db = repo / "data" / "online.db"
        systems += [RawSQLite(db, D.ENTITY_TABLE, bins), RawSQLiteIn(db, D.ENTITY_TABLE, bins),
                    RawSQLiteNumpy(db, D.ENTITY_TABLE, bins), RawSQLiteVectorFloor(db, D.ENTITY_TABLE, bins)]
    else:
        assert target is not None  # the other store, aerospike, always comes with its target (run)
        systems.append(RawAerospike(target.hosts, target.namespace, cfg["sets"]["driver"], bins,
                                    cfg.get("read_total_timeout_ms", 50), cfg.get("read_socket_timeout_ms", 20)))
    feast = None
    if with_feast:
        feast, mat, why = _feast_prepare(opts, ds, store, target, log)
        if mat is not None:
            if mat.get("entities") is None:
                mat["entities"] = out["materialize"]["fsplug"]["entities"]
                mat["entities_per_s"] = round(mat["entities"] / mat["seconds"], 1)
            out["materialize"]["feast"] = mat
        if why:
            out["feast_not_run"] = why
        if feast is not None:
            systems.append(feast)
            out["feast_version"] = feast.version
    if store == "sqlite":
        out["page_cache_warmed_s"] = _warm_page_cache(repo / "data" / "online.db")
    try:
        ids = list(ds.driver_ids())
        sample = workload("fifty", ids, 1, opts.seed + 1).keys[0] if len(ids) >= 50 else ids
        out["agreement"] = _check_agreement(systems[0], systems[1], feast, sample, store)
        for case in cases:
            wl = workload(case, ids, calls + opts.warmup, opts.seed)
            active = [s for s in systems if s.supports(case)]
            if not active:
                continue
            for s in active:
                s.load(wl)
            samples = alternate(active, case, calls, opts.rounds, opts.warmup, log)
            out["reads"][case] = {name: summarize(v) for name, v in samples.items()}
            if case in ("fifty", "fifty_dict"):  # for the histogram
                hist = out.setdefault("samples_fifty_us", {})
                for name, v in samples.items():
                    hist[name if case == "fifty" else f"{name} to_dict"] = [round(x / 1e3, 2) for x in v]
    finally:
        for s in systems:
            s.close()
    return out


REUSE_ABOVE = 100_000


def _warm_page_cache(db: Path) -> float:
    """Read the database file once, so reads are timed with the file in the OS page cache, as on
    a serving host (a reused 10M-driver file would otherwise be read from disk). Returns seconds."""
    t0 = time.perf_counter()
    with open(db, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass
    return round(time.perf_counter() - t0, 2)


# ---- targets -------------------------------------------------------------------------------------
def _get(d: dict, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 with the measured ratio and whether it is met (one run, one machine)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, op: str, store: str, note: str = "",
            reference: bool = False) -> None:
        """`reference`: not a target, the same measure of a baseline (what the hardware allows).
        Figures of a store labelled functional only (the test server) are never judged."""
        met: bool | None = None  # not judged
        if value is not None and not reference and not functional:
            met = value >= limit if op == ">=" else value <= limit
        out.append({"target": name, "store": store, "value": value, "limit": limit, "op": op, "met": met,
                    "note": note})

    for store, sres in result["stores"].items():
        base = sres.get("base") or {}
        r = base.get("reads", {})
        label = sres.get("label")
        note = label or ""
        functional = bool(label)
        for pct in ("p50", "p99"):  # both get_online_features(...).to_dict()
            add(f"50 entities: Feast / fsplug at {pct} (x faster)",
                ratio(_get(r, "fifty_dict", "feast", f"{pct}_us"), _get(r, "fifty_dict", "fsplug", f"{pct}_us")), 10,
                ">=", store,
                note or ("" if _get(r, "fifty_dict", "feast") else base.get("feast_not_run", "Feast not run")))
        add("50 entities: fsplug / raw driver at p50",
            ratio(_get(r, "fifty", "fsplug", "p50_us"), _get(r, "fifty", "raw", "p50_us")), 1.2, "<=", store, note)
        add("50 entities + to_numpy: fsplug / (raw driver + np.array) at p50 (extra: the model-ready matrix)",
            ratio(_get(r, "fifty_numpy", "fsplug", "p50_us"), _get(r, "fifty_numpy", "raw+numpy", "p50_us")), 1.2,
            "<=", store, note)
        add("1 entity: fsplug / raw driver at p50", ratio(_get(r, "one", "fsplug", "p50_us"),
                                                           _get(r, "one", "raw", "p50_us")), 1.3, "<=", store, note)
        add("1 entity: floor of any vector API / raw driver at p50", ratio(_get(r, "one", "floor", "p50_us"),
            _get(r, "one", "raw", "p50_us")), 1.3, "<=", store, "reference: the least any implementation does",
            reference=True)
        if store == "sqlite":
            p99 = _get(r, "dispatch", "fsplug", "p99_us")
            add("dispatch 50 candidates: p99 (us)", p99, 1000, "<=", store)
        m = base.get("materialize", {})
        add("materialization: fsplug / Feast entities per second",
            ratio(_get(m, "fsplug", "entities_per_s"), _get(m, "feast", "entities_per_s")), 10, ">=", store,
            note or ("" if m.get("feast") else "Feast not run"))
        scale = sres.get("scale") or []
        both = [s for s in scale if _get(s, "materialize", "feast", "entities_per_s")]
        if both:  # the largest set both systems materialized: seconds, not fractions of one
            sm = max(both, key=lambda s: s["drivers"])["materialize"]
            add(f"materialization at {max(s['drivers'] for s in both):,} drivers: fsplug / Feast entities per second",
                ratio(_get(sm, "fsplug", "entities_per_s"), _get(sm, "feast", "entities_per_s")), 10, ">=", store, note)
        big = max(scale, key=lambda s: s["drivers"]) if scale else None
        small = min(scale, key=lambda s: s["drivers"]) if scale else None
        if big is not None:
            rss = _get(big, "materialize", "fsplug", "peak_rss_mib")
            add(f"materialization peak RSS at {big['drivers']:,} drivers (MiB)", rss, 1536, "<=", store, note)
        if big is not None and small is not None and big is not small:
            for case in ("one", "fifty"):
                add(f"{case} p99 at {big['drivers']:,} / at {small['drivers']:,} drivers",
                    ratio(_get(big, "reads", case, "fsplug", "p99_us"), _get(small, "reads", case, "fsplug", "p99_us")),
                    1.5, "<=", store, note)
                add(f"{case} p99 at {big['drivers']:,} / at {small['drivers']:,} drivers: raw driver",
                    ratio(_get(big, "reads", case, "raw", "p99_us"), _get(small, "reads", case, "raw", "p99_us")),
                    1.5, "<=", store, "reference: the same ratio for the raw call", reference=True)
    return out


# ---- the whole run -------------------------------------------------------------------------------
def run(opts: Options, log: Log | None = None) -> dict[str, Any]:
    log = log or Log()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "meta": {"started": started.isoformat(timespec="seconds"), "command": "python -m benchmarks " +
                 " ".join(opts.argv), "mode": "quick" if opts.quick else "full", "machine": machine_info(),
                 "versions": _versions(), "options": {k: (str(v) if isinstance(v, Path) else v)
                                                        for k, v in opts.__dict__.items() if k != "argv"},
                 "note": "measured on a shared machine where other engineers run tests concurrently; "
                         "ratios are from systems measured alternately in the same run"},
        "stores": {},
    }
    if opts.with_feast:
        from benchmarks import feast_side

        log("Feast venv ...")
        result["meta"]["versions"]["feast"] = feast_side.ensure_venv(aerospike="aerospike" in opts.stores, log=log)
        log(f"  Feast {result['meta']['versions']['feast']} in {feast_side.VENV}")
    if not opts.quick:
        ensure_matplotlib(log)
    base_end = D.fresh_end(started)
    base = D.dataset(opts.entities, opts.days, opts.offers_per_driver_day, opts.seed, base_end, opts.out_dir, log)
    model_from: Path | None = None
    for store in opts.stores:
        target = AerospikeTarget(log) if store == "aerospike" else None
        sres: dict[str, Any] = {"label": target.label if target else None, "scale": []}
        result["stores"][store] = sres
        try:
            log(f"== {store}: base data set, {opts.entities:,} drivers x {opts.days} days")
            sres["base"] = bench_dataset(opts, store, base, target, log,
                                         cases=("one", "fifty", "fifty_numpy", "fifty_dict", "predict", "dispatch"),
                                         calls=opts.calls, with_feast=opts.with_feast, model_from=model_from,
                                         train=True)
            model_from = Path(sres["base"]["repo"]) / "data" / "models" / f"{D.SERVICE}.joblib"
            sizes = list(opts.scale_sizes)
            if target is not None and not target.real:  # the test server (store aerospike)
                sizes = [s for s in sizes if s <= 100_000]
                sres["scale_note"] = "test server: scale runs limited to 100k drivers (an in-memory Python server)"
            for n in sizes:
                log(f"== {store}: scale, {n:,} drivers x {opts.scale_days} day(s)")
                ds = D.dataset(n, opts.scale_days, 0, opts.seed, D.day_end(started), opts.out_dir, log)
                res = bench_dataset(opts, store, ds, target, log, cases=("one", "fifty", "fifty_dict"),
                                    calls=opts.scale_calls,
                                    with_feast=opts.with_feast and n <= opts.feast_scale_max)
                res.pop("samples_fifty_us", None)
                sres["scale"].append(res)
        finally:
            if target is not None:
                target.close()
    result["targets"] = targets(result)
    result["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["meta"]["seconds"] = round(time.perf_counter() - log.t0, 1)
    with contextlib.suppress(OSError):
        result["meta"]["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


def ensure_matplotlib(log: Log) -> None:
    """Full runs draw the histogram: install the `bench` extra's matplotlib into this venv if missing."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("matplotlib") is None:
        log("installing matplotlib (the bench extra) into this environment for the histogram ...")
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib>=3.8"],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            log("  could not install matplotlib: the histogram PNG will be skipped")


def default_options(quick: bool) -> dict[str, Any]:
    if quick:
        return {"entities": 5_000, "calls": 1_000, "rounds": 4, "warmup": 100, "scale_sizes": (10_000, 100_000),
                "scale_calls": 1_000, "feast_scale_max": 0}
    return {}
