"""Scale run of `scan_latest`: time and peak RSS of reading the latest row of N entities.

    python benchmarks/materialize_scan.py --entities 1000000 10000000 --snapshots 3

For each N it writes N entities x `snapshots` daily snapshots with 12 feature columns (plus key,
event and created timestamps; 1% late duplicates) to a Parquet file in `--data-dir` (in a child
process), then scans the middle-to-end window in another child process and reports wall time, rows
and that process's peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`). Data files are reused
when they already exist with the same shape.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = {
    "f_rate_7d": "float64",
    "f_rate_30d": "float64",
    "f_rating": "float64",
    "f_cancel": "float64",
    "f_score_a": "float64",
    "f_score_b": "float32",
    "f_trips_7d": "int64",
    "f_trips_30d": "int64",
    "f_tenure": "int64",
    "f_level": "int64",
    "f_city": "string",
    "f_active": "bool",
}


def generate(path: Path, n: int, snapshots: int, chunk: int = 1_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(n)
    cities = pa.array(["ams", "ber", "lis", "mad", "par", "rom"])
    schema = None
    writer = None
    tmp = path.with_suffix(".tmp")
    try:
        for s in range(snapshots):
            ts0 = int((BASE + timedelta(days=s)).timestamp() * 1e6)
            for lo in range(0, n, chunk):
                m = min(chunk, n - lo)
                ids = np.arange(lo, lo + m, dtype=np.int64)
                late = rng.random(m) < 0.01
                cols = {
                    "entity_id": ids,
                    "event_timestamp": pa.array(np.full(m, ts0), pa.timestamp("us", "UTC")),
                    "created": pa.array(ts0 + rng.integers(1, 3_600_000_000, m), pa.timestamp("us", "UTC")),
                    "f_rate_7d": rng.random(m),
                    "f_rate_30d": rng.random(m),
                    "f_rating": 4 + rng.random(m),
                    "f_cancel": rng.random(m) * 0.1,
                    "f_score_a": rng.normal(size=m),
                    "f_score_b": rng.normal(size=m).astype(np.float32),
                    "f_trips_7d": rng.integers(0, 100, m),
                    "f_trips_30d": rng.integers(0, 400, m),
                    "f_tenure": rng.integers(0, 3000, m),
                    "f_level": rng.integers(0, 5, m),
                    "f_city": cities.take(pa.array(rng.integers(0, len(cities), m))),
                    "f_active": rng.random(m) < 0.7,
                }
                table = pa.table(cols)
                if late.any():  # a corrected row written later for the same event timestamp
                    dup = table.filter(pa.array(late))
                    dup = dup.set_column(2, "created", pc_add(dup.column("created"), 7_200_000_000))
                    table = pa.concat_tables([table, dup])
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(tmp, schema, compression="snappy")
                writer.write_table(table.cast(schema), row_group_size=256 * 1024)
        if writer is None:
            raise ValueError(f"nothing to write: {n} entities x {snapshots} snapshots")
        writer.close()
        tmp.rename(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pc_add(arr, micros: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.add(arr, pa.scalar(micros, pa.duration("us")))


def scan(path: Path, snapshots: int) -> dict:
    import resource

    from fsplug.offline.parquet import ScanStats, scan_latest
    from fsplug.types import DType

    stats = ScanStats()
    t0 = time.perf_counter()
    n_out = 0
    for batch in scan_latest(
        path,
        join_keys={"entity_id": DType.INT64},
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
        columns={k: DType(v) for k, v in FEATURES.items()},
        start=BASE + timedelta(days=snapshots // 2),
        end=BASE + timedelta(days=snapshots + 1),
        stats=stats,
    ):
        n_out += batch.num_rows
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": round(dt, 2),
        "entities_out": n_out,
        "rows_read": stats.rows_read,
        "partitions": stats.partitions,
        "spilled_mib": round(stats.spilled_bytes / 2**20),
        "peak_rss_mib": round(rss, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--snapshots", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "fsplug-bench")
    ap.add_argument("--child", choices=["generate", "scan"], help=argparse.SUPPRESS)
    ap.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "generate":
        generate(args.path, args.entities[0], args.snapshots)
        return
    if args.child == "scan":
        print(json.dumps(scan(args.path, args.snapshots)))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    for n in args.entities:
        path = args.data_dir / f"scan_{n}x{args.snapshots}.parquet"
        if not path.exists():
            t0 = time.perf_counter()
            _child("generate", path, n, args.snapshots)
            print(
                f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f}s"
            )
        out = _child("scan", path, n, args.snapshots)
        res = json.loads(out.strip().splitlines()[-1])
        print(f"N={n:>11,} snapshots={args.snapshots}: " + ", ".join(f"{k}={v}" for k, v in res.items()))


def _child(mode: str, path: Path, n: int, snapshots: int) -> str:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--path",
        str(path),
        "--entities",
        str(n),
        "--snapshots",
        str(snapshots),
    ]
    env = {"PYTHONPATH": str(ROOT)}
    import os

    return subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **env}).stdout


if __name__ == "__main__":
    main()
