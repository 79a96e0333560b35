"""`python -m benchmarks console`: page times of the web console on a generated registry of hundreds of views.

Generates a feature repo (default: 300 feature views of 10 features over 20 entities, 40 feature
services of 8 views each, 200 rows per source, a third of the views stale), applies and materializes
it (SQLite), starts `fsplug serve` as its own process, and times GET requests of every console page
(sequential, one keep-alive connection, after warm-up) with httpx. Prints the median and p90 per
page and the page size; nothing is written.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["make_repo", "main"]

_TTLS = ["1h", "1d", "7d"]


def make_repo(root: Path, views: int = 300, entities: int = 20, features: int = 10, services: int = 40,
              views_per_service: int = 8, rows: int = 200) -> Path:
    """Write, apply and materialize a generated repo at `root`: views `v0..` (features
    `v<view>_f<n>`, unique names, so a service may mix views), entities `e0..`, services `s0..`.

    Views whose index is divisible by 3 have data a week old under a ttl of at most a day (stale).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsplug.store import FeatureStore

    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "feature_store.yaml").write_text(
        "project: console_bench\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n  path: data/online.db\n")
    lines = ["entities:"]
    for e in range(entities):
        lines += [f"  - name: e{e}", f"    join_key: e{e}_id", "    dtype: int64", f"    description: Entity {e}"]
    lines.append("sources:")
    for v in range(views):
        lines += [f"  - name: src{v}", f"    path: data/src{v}.parquet", "    timestamp_field: ts",
                  f"    description: Source of view {v}"]
    lines.append("feature_views:")
    for v in range(views):
        lines += [f"  - name: v{v}", f"    entity: e{v % entities}", f"    source: src{v}",
                  f"    ttl: {_TTLS[v % 3]}", f"    owner: team{v % 7}@example.com",
                  f"    tags: {{team: t{v % 7}, tier: '{v % 3}'}}", f"    description: Generated view {v}",
                  "    features:"]
        for f in range(features):
            dtype = "float64" if f % 2 else "int64"
            lines.append(f"      - {{name: v{v}_f{f}, dtype: {dtype}, bin: v{v}f{f}, default: 0, "
                         f"description: Feature {f} of view {v}}}")
    lines.append("feature_services:")
    for s in range(services):
        lines += [f"  - name: s{s}", f"    description: Generated service {s}", f"    owner: team{s % 7}@example.com",
                  "    features:"]
        lines += [f"      - v{(s * views_per_service + k) % views}:*" for k in range(views_per_service)]
    (root / "features").mkdir(exist_ok=True)
    (root / "features" / "generated.yaml").write_text("\n".join(lines) + "\n")
    now = datetime.now(UTC).replace(microsecond=0)
    for v in range(views):
        ts = now - (timedelta(days=7) if v % 3 == 0 else timedelta(minutes=5))
        cols = {f"e{v % entities}_id": pa.array(range(rows), pa.int64()),
                "ts": pa.array([ts] * rows, pa.timestamp("us", tz="UTC"))}
        for f in range(features):
            cols[f"v{v}_f{f}"] = pa.array([float(i) if f % 2 else i for i in range(rows)],
                                     pa.float64() if f % 2 else pa.int64())
        pq.write_table(pa.table(cols), root / "data" / f"src{v}.parquet")
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now + timedelta(seconds=1), progress=False)
    return root


def _pages(views: int, services: int) -> list[str]:
    return ["/ui/", "/ui/entities", "/ui/sources", "/ui/views", "/ui/services", "/ui/freshness", "/ui/serving",
            "/ui/search?q=feature+3", f"/ui/views/v{views // 2}", f"/ui/services/s{services // 2}",
            f"/ui/lookup?service=s{services // 2}"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks console", description=__doc__)
    ap.add_argument("--views", type=int, default=300)
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=30, help="timed GETs per page (default 30)")
    args = ap.parse_args(argv)
    import httpx

    from benchmarks.serve import free_port

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        repo = make_repo(Path(tmp) / "repo", views=args.views, services=args.services)
        print(f"generated, applied and materialized {args.views} views in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - the server writes to it until it stops
        proc = subprocess.Popen([sys.executable, "-m", "fsplug.cli", "--repo", str(repo), "serve", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit((Path(tmp) / "serve.log").read_text())
                    time.sleep(0.1)
                print(f"{'page':<32} {'median ms':>10} {'p90 ms':>8} {'KiB':>8}")
                for path in _pages(args.views, args.services):
                    for _ in range(3):
                        client.get(path)
                    times = []
                    size = 0
                    for _ in range(args.rounds):
                        t = time.perf_counter()
                        r = client.get(path)
                        times.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, (path, r.status_code)
                        size = len(r.content)
                    times.sort()
                    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
                    print(f"{path:<32} {statistics.median(times):>10.1f} {p90:>8.1f} {size / 1024:>8.0f}")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    return 0
