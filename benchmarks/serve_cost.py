"""`python -m benchmarks serve-cost`: what `fsplug serve` adds to a request, in instructions.

The issue's latency goal compares the server's p50 with the in-process call for the same request,
and wall-clock figures move with the host's speed. This counts instructions instead (valgrind's
callgrind, repeatable on a busy machine; see benchmarks/instructions.py): per request, the server's
app called in process as `fsplug serve`'s protocol calls it for a read (`FeatureServerApp.answer`: the
body parsed, checked, read, the Feast response encoded, metrics updated; uvicorn's parsing and the
socket are not in it)
against `get_online_features(...).to_dict()`, and the vector endpoint against `get_feature_vector`,
at 1 and 50 entities. The data is `python -m benchmarks serve`'s (`examples/generate_data.py`, seed
7, 1 day, SQLite, `decline_model_v1`), the requests its seeded bodies. `--code DIR` (repeatable)
runs the calls with the fsplug package of another checkout (an unpacked `git archive`, say) on the
same repo, so versions compare case by case. Results go to `benchmarks/results/serve_cost_<stamp>.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import RESULTS, ROOT, SERVICE, dataset, fresh_end, make_fsplug_repo

CASES = (("/get-online-features", 1), ("/get-online-features", 50), ("/get-feature-vector", 1))
SIDES = ("in-process", "server app")


def _child(repo: Path, calls: int) -> None:
    """The program run under callgrind: a dump (`time.sleep(0)`) after the warm-up and after each
    (case, side) phase, in `CASES` x `SIDES` order."""
    import orjson

    from benchmarks.serve import _bodies
    from fsplug.server.app import create_app
    from fsplug.server.config import ServerConfig

    app = create_app(ServerConfig(repo=str(repo), registry_poll_s=0))
    app.startup()
    store = app.store
    ids = json.loads((repo / "ids.json").read_text())

    def phase(path: str, n: int, side: str) -> Any:
        vector = path == "/get-feature-vector"
        bodies = _bodies(ids, n, calls, vector, 11)
        if side == "in-process":
            if vector:
                return lambda i: store.get_feature_vector(SERVICE, request=bodies[i]["request"], **bodies[i]["entity"])
            return lambda i: store.get_online_features(service=SERVICE, entities=bodies[i]["entities"]).to_dict()
        raw = [orjson.dumps(b) for b in bodies]
        headers = [(b"content-type", b"application/json")]

        def many(rng: tuple[int, int]) -> None:
            for i in range(*rng):
                status = app.answer(path, headers, raw[i])[0]
                if status != 200:
                    raise SystemExit(f"the server answered {status}")

        return many

    fns = [(side, phase(path, n, side)) for path, n in CASES for side in SIDES]
    for side, fn in fns:  # warm: compiled plans, caches, the statement cache
        if side == "in-process":
            for i in range(20):
                fn(i)
        else:
            fn((0, 20))
    time.sleep(0)
    for side, fn in fns:
        if side == "in-process":
            for i in range(calls):
                fn(i)
        else:
            fn((0, calls))
        time.sleep(0)


def count(repo: Path, calls: int, code: Path) -> dict[str, dict[str, int]]:
    """Per case: instructions per request of each side, and the server's addition, for checkout `code`."""
    from benchmarks.instructions import callgrind_events

    totals = iter(callgrind_events([sys.executable, str(Path(__file__).resolve()), "--child", str(repo),
                                    "--calls", str(calls)], len(CASES) * len(SIDES), ROOT, code.resolve()))
    out = {}
    for path, n in CASES:
        row = {side: round(next(totals)["Ir"] / calls) for side in SIDES}
        out[f"{path} {n}"] = {**row, "added": row[SIDES[1]] - row[SIDES[0]]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks serve-cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drivers", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=200, help="requests per case and side (default 200)")
    ap.add_argument("--code", type=Path, action="append",
                    help="an fsplug checkout whose package runs the calls (repeatable; default this one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, args.calls)
        return 0
    from fsplug.store import FeatureStore

    ds = dataset(args.drivers, 1, 0.5, 7, fresh_end(), root=args.out)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_fsplug_repo(Path(tmp) / "repo", ds, {"type": "sqlite", "path": "data/online.db"})
        with FeatureStore(repo) as fs:
            fs.apply()
            fs.materialize_incremental(datetime.now(UTC), progress=False)
        (repo / "ids.json").write_text(json.dumps(list(ds.driver_ids())))
        for code in args.code or [ROOT]:
            results[str(code)] = count(repo, args.calls, code)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"serve_cost_{stamp}.json"
    path.write_text(json.dumps({"calls": args.calls, "data": ds.describe(), "results": results}, indent=2,
                               default=str))
    print(f"\ninstructions per request (callgrind, {args.calls} requests per case), {args.drivers:,} drivers, "
          f"SQLite, {SERVICE}; results: {path}\n")
    for code, table in results.items():
        print(f"{code}:\n")
        print("| endpoint, entities | in-process call | server app | added by the server |")
        print("|---|---:|---:|---:|")
        for case, row in table.items():
            print(f"| {case} | {row[SIDES[0]]:,} | {row[SIDES[1]]:,} | {row['added']:,} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
