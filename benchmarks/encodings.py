"""`python -m benchmarks encodings REPO`: what a response encoding costs the feature server, in process.

For the `decline_model_v1` service of a served repo (`python -m benchmarks run --quick --out DIR`
leaves one under `DIR/work/`) at 1, 50 and 500 entities: the read alone, the read plus Feast's JSON
response as `fsplug serve` writes it (`feast_response` + orjson), and the read plus an Arrow IPC
stream of `to_arrow()` (the candidate batch-client encoding: values only). Reported: the median
over `--rounds` of each round's fastest call in microseconds (the fastest call is the least
disturbed on a busy machine), and the response's size in bytes. This decides whether an Arrow IPC
response pays for itself.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVICE = "decline_model_v1"


def _fastest(f: Callable[[], Any], calls: int, rounds: int) -> float:
    best = []
    for _ in range(rounds):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            f()
            times.append(time.perf_counter_ns() - t0)
        best.append(min(times))
    return statistics.median(best) / 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks encodings", description=__doc__.split("\n")[0])
    ap.add_argument("repo", type=Path, help="a served feature repo with the decline_model_v1 service")
    ap.add_argument("--calls", type=int, default=200, help="calls per round (default 200)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7)")
    args = ap.parse_args(argv)

    import pyarrow as pa

    from fsplug.server.app import feast_response
    from fsplug.store import FeatureStore

    store = FeatureStore(args.repo)
    print("| entities | read (us) | + Feast JSON (us) | JSON bytes | + Arrow IPC (us) | Arrow bytes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (1, 50, 500):
        ent: dict[str, list[Any]] = {"driver_id": list(range(1000, 1000 + n)), "pickup_distance_km": [1.5] * n,
                                     "surge_multiplier": [1.0] * n, "hour_of_day": [8] * n}

        def read(ent: dict[str, list[Any]] = ent) -> Any:
            return store.get_online_features(service=SERVICE, entities=ent)

        def as_json(ent: dict[str, list[Any]] = ent) -> bytes:
            return feast_response(read(ent), ent)

        def as_arrow(ent: dict[str, list[Any]] = ent) -> bytes:
            table = read(ent).to_arrow()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
            return sink.getvalue().to_pybytes()

        r, j, a = (_fastest(f, args.calls, args.rounds) for f in (read, as_json, as_arrow))
        print(f"| {n} | {r:,.1f} | {j:,.1f} | {len(as_json()):,} | {a:,.1f} | {len(as_arrow()):,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
