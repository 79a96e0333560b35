"""`python -m benchmarks derived`: what derived features cost on the hot path.

The reference repo serves `decline_model_v1` (11 stored + 3 request features) and `decline_model_v2`
(the same plus `trip_context`'s 3 derived features: `is_peak_hour`, `is_night`, `trips_per_hour`).
Both read the same SQLite store (`examples/generate_data.py`, seed 7, 1 day, fresh up to the current
hour); every call of a case draws the same drivers and request values for both services. Cases:

- `get_online_features` at 1 and 50 entities: the call itself (values convert lazily);
- the same plus `to_numpy()` (the model matrix: this is where derived features are computed) and,
  at 50, plus `to_dict()`;
- `get_feature_vector` at 1 entity (with derived features it goes through the batch code for one row).

Calls alternate between the services block by block after a warm-up; a run reports each case's p50
per service; `--runs N` repeats the whole and the table shows the medians of the runs' p50s and the
ratio v2 / v1. Results go to `benchmarks/results/derived_<stamp>.json`.

`--instructions` counts instructions per call instead, under valgrind's callgrind (repeatable on a busy
machine, unlike wall-clock; see benchmarks/instructions.py): each case and service runs `--calls` times
(default 200 there) in a child process after a warm-up. `--code DIR` (repeatable) runs the child with
the fsplug package of another checkout (an unpacked `git archive` of an older commit, say) on the same
repo and data, so versions compare case by case. `--cache` adds callgrind's cache simulation: level-1
instruction- and data-cache misses per call (where the derived features' time goes beyond their
instructions).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import ROOT, RESULTS, dataset, fresh_end, make_fsplug_repo
from benchmarks.stats import median_of, summarize

SERVICES = ("decline_model_v1", "decline_model_v2")
CASES = ("online_1", "online_50", "online_1+to_numpy", "online_50+to_numpy", "online_50+to_dict", "vector_1")


def _requests(ids: list[int], calls: int, per: int, seed: int) -> list[dict[str, list[Any]]]:
    rng = random.Random(f"{seed}:{per}")
    out: list[dict[str, list[Any]]] = []
    for _ in range(calls):
        keys = rng.sample(ids, per)
        out.append({"driver_id": keys, "pickup_distance_km": [round(rng.uniform(0.2, 6), 2) for _ in keys],
                    "surge_multiplier": [1.0] * per, "hour_of_day": [rng.randrange(24)] * per})
    return out


def _case(store: Any, service: str, case: str, reqs: list[dict[str, list[Any]]]) -> Callable[[int], Any]:
    get = store.get_online_features
    if case in ("online_1", "online_50"):
        return lambda i: get(service=service, entities=reqs[i])
    if case.endswith("+to_numpy"):
        return lambda i: get(service=service, entities=reqs[i]).to_numpy()
    if case.endswith("+to_dict"):
        return lambda i: get(service=service, entities=reqs[i]).to_dict()
    vec = store.get_feature_vector
    one = [({k: v[0] for k, v in r.items() if k != "driver_id"}, r["driver_id"][0]) for r in reqs]
    return lambda i: vec(service, request=one[i][0], driver_id=one[i][1])


def _time(fn: Callable[[int], Any], lo: int, hi: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for i in range(lo, hi):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)
    return out


def _child(repo: Path, n_drivers: int, calls: int) -> None:
    """The program `--instructions` runs under callgrind: a dump (`time.sleep(0)`) after the warm-up
    and after each (case, service) phase, in `CASES` x `SERVICES` order."""
    from fsplug.store import FeatureStore

    ids = list(range(100_001, 100_001 + n_drivers))  # examples/generate_data.py's DRIVER_ID_BASE + 1 ...
    reqs = {1: _requests(ids, calls, 1, 0), 50: _requests(ids, calls, 50, 0)}
    with FeatureStore(repo) as store:
        fns = [_case(store, s, case, reqs[50 if "_50" in case else 1]) for case in CASES for s in SERVICES]
        for fn in fns:  # warm: compiled plans, caches, the statement cache
            for i in range(20):
                fn(i)
        time.sleep(0)
        for fn in fns:
            for i in range(calls):
                fn(i)
            time.sleep(0)


def instructions(repo: Path, n_drivers: int, calls: int, codes: list[Path],
                 cache: bool = False) -> dict[str, dict[str, Any]]:
    """Per checkout in `codes`: per case, instructions per call of each service and the ratio v2 / v1;
    with `cache`, also level-1 instruction- and data-cache misses per call (`i1`, `d1`: the same)."""
    from benchmarks.instructions import callgrind_events

    out = {}
    for code in codes:
        totals = callgrind_events([sys.executable, str(Path(__file__).resolve()), "--child", str(repo), "--drivers",
                                   str(n_drivers), "--calls", str(calls)], len(CASES) * len(SERVICES), ROOT,
                                  code.resolve(), cache)
        per = iter(totals)
        table: dict[str, Any] = {}
        for case in CASES:
            events = {s: next(per) for s in SERVICES}
            counts = {"Ir": lambda e: e["Ir"], "i1": lambda e: e["I1mr"], "d1": lambda e: e["D1mr"] + e["D1mw"]}
            row: dict[str, Any] = {}
            for key, get in counts.items():
                if key != "Ir" and not cache:
                    continue
                vals = {s: round(get(events[s]) / calls) for s in SERVICES}
                ratio = round(vals[SERVICES[1]] / vals[SERVICES[0]], 3)
                row.update({**vals, "ratio": ratio} if key == "Ir" else {key: {**vals, "ratio": ratio}})
            table[case] = row
        out[str(code)] = table
    return out


def run_once(store: Any, ids: list[int], calls: int, rounds: int, warmup: int, seed: int) -> dict[str, Any]:
    """One run: per case, p50 (us) of each service, calls alternating block by block."""
    reqs = {1: _requests(ids, calls + warmup, 1, seed), 50: _requests(ids, calls + warmup, 50, seed)}
    out: dict[str, Any] = {}
    for case in CASES:
        per = 50 if "_50" in case else 1
        fns = {s: _case(store, s, case, reqs[per]) for s in SERVICES}
        for s in SERVICES:  # warm-up: calls after the measured ones
            _time(fns[s], calls, calls + warmup)
        samples: dict[str, list[int]] = {s: [] for s in SERVICES}
        bounds = [round(calls * r / rounds) for r in range(rounds + 1)]
        for r in range(rounds):
            order = SERVICES if r % 2 == 0 else SERVICES[::-1]
            for s in order:
                samples[s].extend(_time(fns[s], bounds[r], bounds[r + 1]))
        out[case] = {s: summarize(v) for s, v in samples.items()}
    return out


def _report_instructions(args: argparse.Namespace, ds: Any, results: dict[str, dict[str, Any]]) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"derived_instructions_{stamp}.json"
    path.write_text(json.dumps({"calls": args.calls, "data": ds.describe(), "results": results}, indent=2,
                               default=str))
    print(f"\ninstructions per call (callgrind, {args.calls} calls per case), {args.drivers:,} drivers, SQLite; "
          f"results: {path}\n")
    for code, table in results.items():
        print(f"{code}:\n")
        print("| case | decline_model_v1 | decline_model_v2 (+3 derived) | v2 / v1 |")
        print("|---|---:|---:|---:|")
        for case, row in table.items():
            print(f"| {case} | {row[SERVICES[0]]:,} | {row[SERVICES[1]]:,} | {row['ratio']} |")
        print()
        if "i1" in next(iter(table.values())):
            print("level-1 cache misses per call (callgrind's simulation), instruction / data:\n")
            print("| case | v1 I1 | v2 I1 | v2 / v1 | v1 D1 | v2 D1 | v2 / v1 |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for case, row in table.items():
                i1, d1 = row["i1"], row["d1"]
                print(f"| {case} | {i1[SERVICES[0]]:,} | {i1[SERVICES[1]]:,} | {i1['ratio']} "
                      f"| {d1[SERVICES[0]]:,} | {d1[SERVICES[1]]:,} | {d1['ratio']} |")
            print()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks derived", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drivers", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=3_000, help="measured calls per case and service in a run")
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks per case")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--runs", type=int, default=5, help="whole runs; the table shows the medians of their p50s")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per call under callgrind instead of timing (needs valgrind)")
    ap.add_argument("--cache", action="store_true",
                    help="with --instructions: also simulate the caches and report level-1 misses per call")
    ap.add_argument("--code", type=Path, action="append",
                    help="with --instructions: an fsplug checkout whose package runs the calls (repeatable; "
                         "default this one)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.drivers, args.calls)
        return 0
    if args.instructions and "--calls" not in (argv if argv is not None else sys.argv):
        args.calls = 200

    from fsplug.store import FeatureStore

    ds = dataset(args.drivers, 1, 0.0, 7, fresh_end(), root=args.out)
    ids = list(ds.driver_ids())
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_fsplug_repo(Path(tmp) / "repo", ds, {"type": "sqlite", "path": "data/online.db"})
        with FeatureStore(repo) as store:
            store.apply()
            store.materialize_incremental(datetime.now(UTC), progress=False)
            if args.instructions:
                return _report_instructions(args, ds, instructions(repo, args.drivers, args.calls,
                                                                  args.code or [ROOT], args.cache))
            runs = []
            for r in range(args.runs):
                runs.append(run_once(store, ids, args.calls, args.rounds, args.warmup, seed=r))
                print(f"  run {r + 1}/{args.runs} done", flush=True)
    table = {}
    for case in CASES:
        p50 = {s: median_of([run[case][s]["p50_us"] for run in runs]) for s in SERVICES}
        ratios = [run[case][SERVICES[1]]["p50_us"] / run[case][SERVICES[0]]["p50_us"] for run in runs]
        table[case] = {**p50, "ratio": median_of(ratios)}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"derived_{stamp}.json"
    path.write_text(json.dumps({"argv": argv, "data": ds.describe(), "runs": runs, "medians": table}, indent=2,
                               default=str))
    print(f"\nmedians of {args.runs} runs' p50 (us), {args.drivers:,} drivers, SQLite; results: {path}\n")
    print("| case | decline_model_v1 | decline_model_v2 (+3 derived) | v2 / v1 (median of runs) |")
    print("|---|---:|---:|---:|")
    for case, row in table.items():
        print(f"| {case} | {row[SERVICES[0]]} | {row[SERVICES[1]]} | {row['ratio']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
