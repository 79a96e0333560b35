"""Materialization on the local and the Spark engine, side by side: entities/s and peak memory.

    python -m benchmarks materialize --engine local,spark --drivers 1M,10M --masters 'local[1],local[2]' \\
        [--store null|aerospike] [--snapshots 2] [--runs 3] [--no-warm] [--data-dir DIR]

Data: `benchmarks/materialize_scan.generate` (N drivers x `snapshots` daily rows, 12 features, 1% late
corrections with the same event time), one Parquet file per N, reused when it exists. Each run is a
child process that applies a one-view repo and times `FeatureStore.materialize(None, end)` over all of
it; the Spark session is started before the timer (a cluster's is running already).

Stores: `null` (default) keeps nothing (`benchmarks/null_store.py`): the figures are the engine's own
(read, pick the latest row, convert, call `write`). `aerospike` writes to FSPLUG_AEROSPIKE_HOSTS, or to
the bundled test server in a child process (functional only: its speed says nothing about Aerospike's).

Memory: `driver_peak_mib` is the child's own peak RSS (VmHWM: the Python driver, and for the local
engine everything); for Spark, `jvm_peak_mib` is the sampled peak RSS of the JVM (in local mode it is
the Spark driver and the executor threads) and `workers_peak_mib` the sampled peak of the summed RSS of
the Python workers (where the store writes run), sampled every 0.2 s.

CPU: `cpu_seconds` (and `warm_cpu_seconds`) is the CPU time (user + system) the job took in the child
and every process under it: the local engine's threads; for Spark the Python driver, the JVM (task
threads, and its JIT compiler and garbage collector threads, on whichever core they ran) and the Python
workers. On a shared machine it moves far less than wall time, and it is the per-core cost: entities
per CPU-second (`entities_per_cpu_s`) is the engine's rate per core. For Spark, `cpu_breakdown` (and
`warm_cpu_breakdown`) splits it by where it ran: the JVM's threads by name (`jvm:Executor task launch
worker for task`: the executor's task threads; `jvm:Thread`: py4j's threads, where the driver plans the
queries; `jvm:C1 CompilerThre`: the JIT; `jvm:GC Thread`), `python daemon`, `python workers`, `driver`. A JVM
thread that ended during the run (the JVM stops compiler threads it no longer needs) is not in it, so the
groups can add up to less than `cpu_seconds`. The sampler's own CPU (a thread of the child that reads /proc
every 0.2 s: a few ms a sample, more the more processes the machine runs, and more seconds the longer the run
takes) is the benchmark's, not the engine's: it is left out of `cpu_seconds` and of `driver`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.procs import descendants

ROOT = Path(__file__).resolve().parents[1]


def _repo(root: Path, data: Path, store: str, engine: str, master: str | None) -> Path:
    from benchmarks.materialize_scan import FEATURES

    root.mkdir(parents=True, exist_ok=True)
    store_yaml = ('  type: "benchmarks.null_store:NullOnlineStore"\n' if store == "null" else
                  f"  type: aerospike\n  hosts: [{os.environ['FSPLUG_AEROSPIKE_HOSTS']}]\n  namespace: test\n")
    spark = f"  spark: {{master: \"{master}\", conf: {{spark.ui.enabled: false, spark.driver.memory: 2g}}}}\n" \
        if engine == "spark" else ""
    (root / "feature_store.yaml").write_text(
        f"project: bench_{engine}\nonline_store:\n{store_yaml}materialization:\n  engine: {engine}\n{spark}")
    feats = "\n".join(f"      - {{name: {k}, dtype: {v}}}" for k, v in FEATURES.items())
    (root / "defs.yaml").write_text(
        "entities:\n  - {name: driver, join_key: entity_id, dtype: int64}\n"
        f"sources:\n  - {{name: src, path: {data}, timestamp_field: event_timestamp, "
        "created_timestamp_field: created}\n"
        "feature_views:\n  - name: stats\n    entity: driver\n    source: src\n    ttl: none\n"
        f"    features:\n{feats}\n")
    return root


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process (all its threads) and of every process under it (each
    one's own and that of the children it reaped: Spark's Python workers): the JVM's compiler and
    collector threads included, whichever core they ran on."""
    total = time.process_time()
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / _TICK  # utime, stime, cutime, cstime
    return total


def _cpu_by_thread(sampler: _Sampler) -> dict[str, float]:
    """CPU seconds so far of the Spark side, by group: `jvm:<thread name>` (digits dropped: "Executor task
    launch worker for task 3" and its kind are one group, and so are the compiler threads, "C1
    CompilerThre", the GC's "GC Thread#", py4j's "Thread-"), `python daemon` (pyspark's daemon that forks
    the workers), `python workers` (the forked workers, where the tasks' Python runs) and `driver` (this
    process, without the `sampler`'s thread). A difference of two of these is a run's breakdown (`cpu_breakdown`
    in the JSON)."""
    out: dict[str, float] = {"driver": time.process_time() - sampler.cpu}
    procs = descendants(os.getpid())
    jvms = {pid for pid, cmd in procs.items() if "java" in cmd.split(" ")[0]}
    for pid in procs:
        jvm = pid in jvms
        try:
            if jvm:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                        text = fh.read()
                    name = re.sub(r"[\d#-]+$", "", text[text.index("(") + 1:text.rindex(")")]).strip()
                    fields = text.rsplit(")", 1)[1].split()
                    key = f"jvm:{name}"
                    out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
                continue
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        # the daemon's parent is the JVM; the workers' is the daemon
        key = "python daemon" if int(fields[1]) in jvms else "python workers"
        out[key] = out.get(key, 0.0) + sum(int(f) for f in fields[11:15]) / _TICK
    return out


def _breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """`after - before` by group, groups of at least 0.05 s, largest first."""
    diff = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in diff.items() if v >= 0.05), key=lambda kv: -kv[1]))


class _Sampler(threading.Thread):
    """Peak RSS of this process's JVM and of its Python workers (summed), sampled every 0.2 s; `cpu` is the
    CPU time the sampling took so far (this thread's), which the child leaves out of the job's."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.jvm = self.workers = 0
        self.cpu = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            jvm = workers = 0
            for pid, cmd in descendants(os.getpid()).items():
                if "java" in cmd.split(" ")[0]:
                    jvm += _rss_kib(pid)
                elif "python" in cmd:
                    workers += _rss_kib(pid)
            self.jvm, self.workers = max(self.jvm, jvm), max(self.workers, workers)
            self.cpu = time.thread_time()
            self.stop.wait(0.2)


def _child(repo: Path, end: datetime, warm: bool) -> dict[str, Any]:
    from fsplug.materialize import peak_rss_bytes
    from fsplug.store import FeatureStore

    store = FeatureStore(repo)
    store.apply()
    engine = store.engine()
    if engine is not None:
        engine.session()  # started before the timer, as a cluster's session would be
    import fsplug.offline.parquet  # noqa: F401

    sampler = _Sampler()
    sampler.start()

    def cpu_now() -> float:  # the job's CPU so far, without the sampler's
        return _cpu_seconds() - sampler.cpu

    by_thread = _cpu_by_thread(sampler) if engine is not None else {}
    c0, t0 = cpu_now(), time.perf_counter()
    report = store.materialize(None, end, progress=False)
    secs, cpu = time.perf_counter() - t0, cpu_now() - c0
    out = {"seconds": round(secs, 2), "entities": report.entities,
           "rows_read": sum(v.rows_read for v in report.views), "entities_per_s": round(report.entities / secs),
           "cpu_seconds": round(cpu, 2), "entities_per_cpu_s": round(report.entities / cpu)}
    if engine is not None:
        out["cpu_breakdown"] = _breakdown(by_thread, by_thread := _cpu_by_thread(sampler))
    if warm:  # the same job again in the same process: a warm JVM, Python workers already started
        c0, t0 = cpu_now(), time.perf_counter()
        again = store.materialize(None, end, progress=False)
        secs, cpu = time.perf_counter() - t0, cpu_now() - c0
        out.update(warm_seconds=round(secs, 2), warm_entities_per_s=round(again.entities / secs),
                   warm_cpu_seconds=round(cpu, 2), warm_entities_per_cpu_s=round(again.entities / cpu))
        if engine is not None:
            out["warm_cpu_breakdown"] = _breakdown(by_thread, _cpu_by_thread(sampler))
    sampler.stop.set()
    sampler.join()
    out["sampler_cpu_seconds"] = round(sampler.cpu, 2)
    out["driver_peak_mib"] = round(peak_rss_bytes() / 2**20)
    if engine is not None:
        out["jvm_peak_mib"] = round(sampler.jvm / 1024)
        out["workers_peak_mib"] = round(sampler.workers / 1024)
    store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import sizes
    from benchmarks.materialize import run_child
    from benchmarks.materialize_scan import BASE, generate

    ap = argparse.ArgumentParser(prog="python -m benchmarks materialize", description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="local,spark", help="comma-separated engines (default local,spark)")
    ap.add_argument("--drivers", type=sizes, default=(1_000_000,), help="driver counts, e.g. 1M,10M (default 1M)")
    ap.add_argument("--masters", default="local[1],local[2]", help="Spark masters to compare (comma-separated)")
    ap.add_argument("--store", choices=["null", "aerospike"], default="null")
    ap.add_argument("--snapshots", type=int, default=2, help="daily rows per driver (default 2)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each case; the table shows medians (default 3)")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/fsplug-bench"))
    ap.add_argument("--warm", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a second run in the same child (warm: same JVM and Python workers)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--end", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, datetime.fromisoformat(args.end), args.warm)))
        return 0
    server = None
    env: dict[str, str] = {}
    if args.store == "aerospike" and not os.environ.get("FSPLUG_AEROSPIKE_HOSTS"):
        from fsplug.testing.aerospike_server import spawn_server

        server = spawn_server(namespaces=["test"])
        env["FSPLUG_AEROSPIKE_HOSTS"] = f'"127.0.0.1:{server.port}"'
    os.environ.update(env)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    end = BASE + timedelta(days=args.snapshots + 1)
    cases = [(e, m) for e in args.engine.split(",") for m in (args.masters.split(",") if e == "spark" else [None])]
    results: list[dict[str, Any]] = []
    try:
        for n in args.drivers:
            data = args.data_dir / f"scan_{n}x{args.snapshots}.parquet"
            if not data.exists():
                generate(data, n, args.snapshots)
            for run in range(args.runs):
                for engine, master in cases:  # alternating the cases run by run
                    repo = _repo(args.data_dir / f"repo_{engine}_{(master or '').strip('[]').replace('[', '')}",
                                 data, args.store, engine, master)
                    res = run_child(["-m", "benchmarks.materialize_engines", "--child", str(repo),
                                     "--end", end.isoformat(), "--warm" if args.warm else "--no-warm"], env=env)
                    res.update(drivers=n, engine=engine, master=master, run=run)
                    print(json.dumps(res), flush=True)
                    results.append(res)
    finally:
        if server is not None:
            server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"materialize_engines_{stamp}.json").write_text(json.dumps(
        {"argv": sys.argv[1:] if argv is None else argv, "store": args.store, "results": results}, indent=1))
    print(_table(results))
    return 0


def _table(results: list[dict[str, Any]]) -> str:
    keys = ["seconds", "entities_per_s", "warm_seconds", "warm_entities_per_s", "cpu_seconds", "warm_cpu_seconds",
            "driver_peak_mib", "jvm_peak_mib", "workers_peak_mib"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["drivers"], r["engine"], r["master"]), []).append(r)
    lines = ["| drivers | engine | master | runs | entities | " + " | ".join(keys) + " |",
             "|---:|---|---|---:|---:|" + "---:|" * len(keys)]
    for (n, engine, master), rs in groups.items():
        med = [statistics.median(r[k] for r in rs) if k in rs[0] else "-" for k in keys]
        lines.append(f"| {n:,} | {engine} | {master or '-'} | {len(rs)} | {rs[0]['entities']:,} | "
                     + " | ".join(f"{m:,.0f}" if isinstance(m, (int, float)) and "seconds" not in k else str(m)
                                  for m, k in zip(med, keys, strict=True)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
