"""The whole reference pipeline on the repo's online store (what `make demo` runs, on SQLite).

generate data -> fsplug apply -> materialize -> train -> predict_decline_risk -> dispatch -> report.

    python examples/demo.py [--repo feature_repo] [--drivers 10000] [--days 28] [--calls 3000]

Works unchanged with `online_store.type: aerospike` in the repo's feature_store.yaml (point
`hosts` or FSPLUG_AEROSPIKE_HOSTS at the cluster). Latencies printed here are from a quick loop
for orientation; reproducible figures come from `python -m benchmarks run`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import SERVICE, DispatchService, RideRequest  # noqa: E402
from generate_data import DRIVER_ID_BASE, generate  # noqa: E402
from train import train  # noqa: E402

from fsplug.store import FeatureStore  # noqa: E402


def _pct(samples: list[float]) -> str:
    a = np.array(samples) * 1e6
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return f"p50 {p50:7.1f} us   p99 {p99:7.1f} us   p99.9 {p999:7.1f} us"


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default="feature_repo")
    ap.add_argument("--drivers", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--calls", type=int, default=3000, help="calls per latency measurement")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    repo = Path(args.repo).resolve()
    t_all = time.perf_counter()

    t = _step(f"1. generate {args.drivers:,} drivers x {args.days} days of data")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    summary = generate(repo / "data", n_drivers=args.drivers, days=args.days, seed=args.seed, end=end)
    for k, v in summary.get("rows", {}).items():
        print(f"   {k}: {v:,} rows")
    print(f"   ({time.perf_counter() - t:.1f}s)")

    t = _step("2. fsplug apply")
    store = FeatureStore(repo)
    res = store.apply()
    print("   " + res.diff.render().replace("\n", "\n   "))
    print(f"   ({time.perf_counter() - t:.1f}s)")

    t = _step("3. fsplug materialize-incremental (up to now)")
    report = store.materialize_incremental(datetime.now(UTC), progress=False)
    print("   " + report.summary())

    t = _step("4. train the decline-risk model (logistic regression, last 7 days held out)")
    m = train(repo, "logreg", holdout_days=7)
    print(f"   held-out AUC {m['auc_holdout']:.3f}; ground-truth model AUC {m['auc_ground_truth']:.3f}; "
          f"base decline rate {m['base_rate']:.3f}; {m['train_rows']:,} train / {m['test_rows']:,} test offers")
    print(f"   ({time.perf_counter() - t:.1f}s)")

    svc = DispatchService(repo)
    rng = random.Random(args.seed)
    drivers = list(range(DRIVER_ID_BASE + 1, DRIVER_ID_BASE + args.drivers + 1))

    _step("5. predict_decline_risk for a few drivers")
    for d in [drivers[0], drivers[1], drivers[len(drivers) // 2], 10**9]:
        req_values = {"pickup_distance_km": round(rng.uniform(0.2, 6), 2), "surge_multiplier": 1.0,
                      "hour_of_day": end.hour}
        r = svc.predict_decline_risk(d, req_values)
        tag = f"  [fallback: {r.fallback}]" if r.fallback else ""
        present = sum(1 for s in r.statuses.values() if s == "PRESENT")
        print(f"   driver {d:>10}: P(decline) = {r.probability:.3f}  ({present}/{len(r.statuses)} values present, "
              f"{r.elapsed_ms * 1e3:.0f} us){tag}")

    _step("6. dispatch: 3 ride requests, 20 candidates each")
    for i in range(3):
        cands = rng.sample(drivers, 20)
        req = RideRequest(f"req-{i}", end.hour, round(rng.choice([1.0, 1.0, 1.3, 1.8]), 1),
                          {c: round(rng.uniform(0.2, 6), 2) for c in cands})
        dec = svc.dispatch(req, cands)
        best = dec.ranking[0]
        nearest = min(dec.ranking, key=lambda r: r[2])
        print(f"   {req.request_id}: surge {req.surge_multiplier}, chose driver {dec.driver_id} "
              f"(P(accept) {best[1]:.3f}, {best[2]:.1f} km); nearest was {nearest[0]} "
              f"(P(accept) {nearest[1]:.3f}, {nearest[2]:.1f} km); {dec.elapsed_ms * 1e3:.0f} us"
              + (f" [fallback: {dec.fallback}]" if dec.fallback else ""))

    _step(f"7. latency over {args.calls:,} calls each (after warm-up; {store.config.store.type} store, this machine)")
    req1 = {"pickup_distance_km": 1.5, "surge_multiplier": 1.0, "hour_of_day": 8}
    fv, pr, dp = [], [], []
    for _ in range(200):  # warm-up
        store.get_feature_vector(SERVICE, request=req1, driver_id=rng.choice(drivers))
    for _ in range(args.calls):
        d = rng.choice(drivers)
        t0 = time.perf_counter()
        store.get_feature_vector(SERVICE, request=req1, driver_id=d)
        fv.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        svc.predict_decline_risk(d, req1)
        pr.append(time.perf_counter() - t0)
        cands = rng.sample(drivers, 50)
        req = RideRequest("bench", 8, 1.0, {c: rng.uniform(0.2, 6) for c in cands})
        t0 = time.perf_counter()
        svc.dispatch(req, cands)
        dp.append(time.perf_counter() - t0)
    print(f"   get_feature_vector (1 driver)     {_pct(fv)}")
    print(f"   predict_decline_risk (1 driver)   {_pct(pr)}")
    print(f"   dispatch (50 candidates)          {_pct(dp)}")

    svc.close()
    store.close()
    print(f"\nDemo finished in {time.perf_counter() - t_all:.1f}s. "
          "Reproducible benchmarks: python -m benchmarks run --quick")
    return 0


if __name__ == "__main__":
    sys.exit(main())
