"""`python -m benchmarks run|scan|aggregate|serve|serve-cost|derived ...`: see `python -m benchmarks run --help`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path


_SUFFIX = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def sizes(text: str) -> tuple[int, ...]:
    """Driver counts like `10k,100k,1M,10M` (or plain numbers, `1e6`); '' is none."""
    out = []
    for part in text.split(","):
        word = part.strip().lower().replace("_", "")
        if not word:
            continue
        scale = _SUFFIX.get(word[-1], 1)
        try:
            value = float(word[:-1] if scale > 1 else word) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a size like 10k, 100k, 1M or 10000") from None
        if value < 1 or value != int(value):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a positive whole number of drivers")
        out.append(int(value))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "scan":
        from benchmarks import materialize_scan

        materialize_scan.main(argv[1:])
        return 0
    if argv and argv[0] == "materialize":
        from benchmarks import materialize_engines

        return materialize_engines.main(argv[1:])
    if argv and argv[0] == "serve":
        from benchmarks import serve

        return serve.main(argv[1:])
    if argv and argv[0] == "serve-cost":
        from benchmarks import serve_cost

        return serve_cost.main(argv[1:])
    if argv and argv[0] == "console":
        from benchmarks import console

        return console.main(argv[1:])
    if argv and argv[0] == "encodings":
        from benchmarks import encodings

        return encodings.main(argv[1:])
    if argv and argv[0] == "instructions":
        from benchmarks import instructions

        return instructions.main(argv[1:])
    if argv and argv[0] == "aggregate":
        from benchmarks import aggregate

        return aggregate.main(argv[1:])
    if argv and argv[0] == "derived":
        from benchmarks import derived

        return derived.main(argv[1:])
    from benchmarks import report, suite

    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="fsplug vs Feast vs the raw drivers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("scan", help="the Parquet scan_latest scale run (benchmarks/materialize_scan.py)")
    sub.add_parser("aggregate", help="medians of several result JSON files")
    sub.add_parser("serve", help="fsplug serve under wrk load (benchmarks/serve.py)")
    sub.add_parser("derived", help="derived features on the hot path: the reference service with and without them "
                                   "(benchmarks/derived.py)")
    sub.add_parser("encodings", help="Feast JSON vs Arrow IPC response cost, in process (benchmarks/encodings.py)")
    sub.add_parser("instructions", help="instructions per call under callgrind (benchmarks/instructions.py)")
    sub.add_parser("console", help="web console page times on a generated registry (benchmarks/console.py)")
    sub.add_parser("materialize", help="local and Spark engines side by side (benchmarks/materialize_engines.py)")
    r = sub.add_parser("run", help="run the suite; writes benchmarks/results/<stamp>.json and .md")
    r.add_argument("--quick", action="store_true", help="small sizes, fewer calls: under 2 minutes (CI smoke test)")
    r.add_argument("--store", action="append", choices=["sqlite", "aerospike"],
                   help="store(s) to run (repeatable; default sqlite). Aerospike uses FSPLUG_AEROSPIKE_HOSTS or the "
                        "bundled test server (functional only)")
    r.add_argument("--entities", type=int, help="drivers in the base data set (default 10,000; quick 5,000)")
    r.add_argument("--days", type=int, help="days of base data (default 7)")
    r.add_argument("--with-feast", action="store_true", help="install Feast into benchmarks/.feast-venv and compare")
    r.add_argument("--calls", type=int, help="measured calls per case and system (default 5,000; quick 1,000)")
    r.add_argument("--rounds", type=int, help="interleaved blocks per case (default 10; quick 4)")
    r.add_argument("--warmup", type=int, help="warm-up calls per case and system (default 500; quick 100)")
    r.add_argument("--scale-sizes", type=sizes,
                   help="comma-separated driver counts of the scale runs ('' for none; default 10k,100k,1M,10M; "
                        "quick 10k,100k)")
    r.add_argument("--scale-calls", type=int, help="measured calls per case at each scale size (default 3,000)")
    r.add_argument("--feast-scale-max", type=int, help="largest scale size Feast also runs (default 100k; quick 0)")
    r.add_argument("--reuse", action="store_true",
                   help="reuse already materialized scale stores and their recorded materialization figures "
                        "(the base data set is always materialized again)")
    r.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)

    opts = suite.Options(argv=argv)
    for k, v in suite.default_options(args.quick).items():
        setattr(opts, k, v)
    opts.quick = args.quick
    opts.stores = tuple(dict.fromkeys(args.store or ["sqlite"]))
    opts.with_feast = args.with_feast
    opts.reuse = args.reuse
    for name in ("entities", "days", "calls", "rounds", "warmup", "scale_sizes", "scale_calls", "feast_scale_max"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    if args.out is not None:
        opts.out_dir = args.out.resolve()
    opts.warmup = min(opts.warmup, max(1, opts.calls))
    opts.rounds = max(1, min(opts.rounds, opts.calls))
    result = suite.run(opts)
    stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("_quick" if opts.quick else "")
    paths = report.write(result, opts.out_dir, stem)
    print()
    print(paths["md"].read_text())
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    if "png" not in paths:
        print(f"histogram: {result['meta']['histogram']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
