"""Instructions per call of the serving path, counted by valgrind's callgrind: repeatable on a busy machine.

Wall-clock medians on a shared 2-core machine move by 2x between runs; instruction counts do not
(the same code, data and environment give the same count whatever else the machine runs). This
runs each phase `--calls` times in a child process under callgrind, with a dump before every
`time.sleep(0)` between phases, and reports instructions per call of each phase:

- `read`: `get_online_features` of 50 candidates (the dispatch service's plan);
- `read+numpy`: and `.to_numpy()`;
- `read+numpy+statuses`: and `.statuses`;
- `score`: the model on a ready (50, n) matrix;
- `dispatch`: `DispatchService.dispatch` (all of it, with a budget no run misses under valgrind).

Usage: `python -m benchmarks instructions --run CODE REPO [--run CODE2 REPO2 ...] [--calls 100]`:
CODE a checkout of fsplug (its own `.venv` runs it), REPO a served feature repo with a trained model
made by that checkout (`python -m benchmarks run --quick --out DIR` leaves one under `DIR/work/`);
several `--run`s compare versions phase by phase. Needs `valgrind` (Debian's package).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("read", "read+numpy", "read+numpy+statuses", "score", "dispatch")
SERVICE = "decline_model_v1"


def _child(repo: Path, calls: int) -> None:
    """The measured program (run under callgrind by `count`)."""
    sys.path.insert(0, str(Path.cwd() / "examples"))
    from dispatch import DispatchService, RideRequest

    svc = DispatchService(repo, repo / "data" / "models" / f"{SERVICE}.joblib", budget_ms=1e6)
    store = svc.store
    rng = random.Random(7)
    ids = rng.sample(range(1000, 6000), 50)
    n = len(ids)
    entities: dict[str, list[Any]] = {"driver_id": ids, "pickup_distance_km": [1.5] * n,
                                      "surge_multiplier": [1.0] * n, "hour_of_day": [8] * n}
    req = RideRequest("r", 8, 1.0, {d: rng.random() * 5 for d in ids})
    x = store.get_online_features(service=SERVICE, entities=entities).to_numpy()

    def statuses() -> None:
        res = store.get_online_features(service=SERVICE, entities=entities)
        res.to_numpy()
        res.statuses  # noqa: B018 - computing it is the point

    funcs = (lambda: store.get_online_features(service=SERVICE, entities=entities),
             lambda: store.get_online_features(service=SERVICE, entities=entities).to_numpy(),
             statuses, lambda: svc.predictor.score(x), lambda: svc.dispatch(req, ids))
    for f in funcs:  # warm: caches, compiled plans, the statement cache
        for _ in range(20):
            f()
    time.sleep(0)  # dump 1: start-up
    for f in funcs:
        for _ in range(calls):
            f()
        time.sleep(0)  # dump 2..: one phase each


def callgrind(argv: list[str], phases: int, cwd: Path, pythonpath: Path) -> list[int]:
    """Run `argv` (a Python program that calls `time.sleep(0)` after its start-up and after each phase)
    under callgrind and return the instructions of each of its `phases` phases."""
    return [events["Ir"] for events in callgrind_events(argv, phases, cwd, pythonpath)]


def callgrind_events(argv: list[str], phases: int, cwd: Path, pythonpath: Path,
                     cache: bool = False) -> list[dict[str, int]]:
    """`callgrind`, each phase's totals of every event callgrind counted: `Ir` (instructions) and, with
    `cache` (its cache simulation: 32 KB level-1 caches here), `I1mr` (level-1 instruction-cache
    misses), `D1mr` / `D1mw` (level-1 data-cache read / write misses) and the last-level ones."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(pythonpath)}  # no BLAS threads spinning
        subprocess.run(["valgrind", "--tool=callgrind", "--dump-before=time_sleep", f"--callgrind-out-file={out}",
                        *(["--cache-sim=yes"] if cache else []), *argv],
                       cwd=cwd, env=env, check=True, capture_output=True)
        totals = []
        for i in range(2, 2 + phases):
            text = Path(f"{out}.{i}").read_text()
            names = re.search(r"^events: (.+)$", text, re.M)
            m = re.search(r"^(?:summary|totals): ([\d ]+)$", text, re.M)
            if m is None or names is None:
                raise SystemExit(f"no totals in callgrind dump {i}")
            totals.append(dict(zip(names.group(1).split(), map(int, m.group(1).split()), strict=False)))
    return totals


def count(repo: Path, calls: int, code: Path) -> dict[str, float]:
    """Instructions per call of each phase, for the fsplug checkout `code`."""
    python = code / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} not found: run `make install` in {code}")
    child = Path(__file__).resolve()
    totals = callgrind([str(python), str(child), "--child", str(repo.resolve()), "--calls", str(calls)],
                       len(PHASES), code, code)
    return {phase: total / calls for phase, total in zip(PHASES, totals, strict=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks instructions", description=__doc__.split("\n")[0])
    ap.add_argument("--run", nargs=2, action="append", metavar=("CODE", "REPO"), type=Path,
                    help="an fsplug checkout and a served repo it made (repeatable)")
    ap.add_argument("--calls", type=int, default=100, help="calls per phase (default 100)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.calls)
        return 0
    if not args.run:
        ap.error("give at least one --run CODE REPO")
    results = {f"{code} ({repo.name})": count(repo, args.calls, code.resolve()) for code, repo in args.run}
    print("| phase | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for phase in PHASES:
        print(f"| {phase} | " + " | ".join(f"{r[phase]:,.0f}" for r in results.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
