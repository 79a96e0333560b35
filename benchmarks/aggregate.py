"""Medians over several runs: `python -m benchmarks aggregate RESULT.json ... [--out STEM]`.

Every figure of the read and materialization tables (per store, data set, case and system) becomes
the median of that figure over the runs; targets are re-evaluated on the medians. The histogram
samples are those of the last run. Writes `<STEM>.json` and `<STEM>.md` (default
benchmarks/results/median_<N>runs).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import RESULTS


def _median_leaves(items: list[Any]) -> Any:
    first = items[-1]
    if isinstance(first, dict):
        keys = first.keys()
        return {k: _median_leaves([i[k] for i in items if isinstance(i, dict) and k in i]) for k in keys}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        vals = [float(i) for i in items if isinstance(i, (int, float)) and i == i]
        if not vals:
            return first
        m = float(np.median(vals))
        return round(m, 3) if isinstance(first, float) else m
    return first


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    from benchmarks.suite import targets

    out = copy.deepcopy(results[-1])
    for store, s in out["stores"].items():
        runs = [r["stores"][store] for r in results if store in r["stores"]]
        if s.get("base"):
            bases = [r["base"] for r in runs if r.get("base")]
            s["base"]["reads"] = _median_leaves([b["reads"] for b in bases])
            s["base"]["materialize"] = _median_leaves([b["materialize"] for b in bases])
        for i, sc in enumerate(s.get("scale") or []):
            same = [sc2 for r in runs for sc2 in (r.get("scale") or []) if sc2["drivers"] == sc["drivers"]]
            s["scale"][i]["reads"] = _median_leaves([x["reads"] for x in same])
            s["scale"][i]["materialize"] = _median_leaves([x["materialize"] for x in same])
            s["scale"][i]["runs"] = len(same)
    out["targets"] = targets(out)
    out["meta"]["mode"] = f"median of {len(results)} {results[-1]['meta']['mode']}"
    out["meta"]["runs"] = [{"started": r["meta"]["started"], "command": r["meta"]["command"],
                            "loadavg_start": r["meta"]["machine"].get("loadavg_start")} for r in results]
    out["meta"]["started"] = f"{results[0]['meta']['started']} .. {results[-1]['meta']['started']}"
    out["per_run_targets"] = [[(t["target"], t["store"], t["value"]) for t in r["targets"]] for r in results]
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks import report

    ap = argparse.ArgumentParser(prog="python -m benchmarks aggregate", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="output stem (default benchmarks/results/median_<N>runs)")
    args = ap.parse_args(argv)
    results = [json.loads(f.read_text()) for f in args.files]
    res = aggregate(results)
    stem = args.out or RESULTS / f"median_{len(results)}runs"
    paths = report.write(res, stem.parent, stem.name)
    print(paths["md"].read_text())
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0
