"""Materialization measured in a child process, so its time and peak RSS are its own.

    python -m benchmarks.materialize --repo DIR --end ISO   (prints one JSON line)

The child applies the repo, empties the online store (a re-run must not find newer data and
skip writes), then times `FeatureStore.materialize(None, end)` over every online view. Entities
are counted as fsplug reports them: one per (view, entity) row written, the same unit the Feast
worker counts. Peak RSS is the VmHWM of the child (the interpreter and imports included;
`rss_before_mib` is the same figure just before materializing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    """Peak RSS of this process in MiB (VmHWM; see fsplug.materialize.peak_rss_bytes)."""
    from fsplug.materialize import peak_rss_bytes

    return round(peak_rss_bytes() / 2**20, 1)


def run_child(argv: list[str], python: str | None = None, env: dict[str, str] | None = None,
              timeout: float | None = None) -> dict[str, Any]:
    """Run a benchmark child (`python -m benchmarks...` or a script) and parse its last stdout line as JSON."""
    cmd = [python or sys.executable, *argv]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout, check=False)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark child {' '.join(argv[:3])} failed (exit {p.returncode}):\n{tail}")
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark child {' '.join(argv[:3])} printed no JSON: {p.stdout[-500:]!r}")
    return json.loads(lines[-1])


def measure_fsplug(repo: Path, end: datetime, timeout: float | None = None) -> dict[str, Any]:
    """fsplug's materialization of `repo` up to `end`, measured in a child process."""
    return run_child(["-m", "benchmarks.materialize", "--repo", str(repo), "--end", end.isoformat()],
                     timeout=timeout)


def _child(repo: Path, end: datetime) -> dict[str, Any]:
    from fsplug.store import FeatureStore

    store = FeatureStore(repo)
    store.apply()
    store.teardown()
    store.close()
    store = FeatureStore(repo)
    store.apply()
    # One-time module imports (pyarrow.dataset/compute: ~0.1 s) stay outside the timing, as Feast's
    # do: its imports happen when the worker builds its FeatureStore, before its timer starts.
    import fsplug.offline.parquet  # noqa: F401

    rss0 = _rss_mib()
    t0 = time.perf_counter()
    report = store.materialize(None, end, progress=False)
    secs = time.perf_counter() - t0
    rss = _rss_mib()
    store.close()
    return {
        "system": "fsplug",
        "seconds": round(secs, 3),
        "entities": report.entities,
        "entities_per_s": round(report.entities / secs, 1) if secs > 0 else None,
        "rows_read": sum(v.rows_read for v in report.views),
        "views": {v.view: {"entities": v.entities, "rows_read": v.rows_read, "seconds": round(v.seconds, 3)}
                  for v in report.views},
        "peak_rss_mib": rss,
        "rss_before_mib": rss0,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--end", required=True)
    args = ap.parse_args(argv)
    print(json.dumps(_child(args.repo, datetime.fromisoformat(args.end))))


if __name__ == "__main__":
    main()
