"""The `fsplug` command line: plan, apply, materialize, serve and inspect a feature repo.

Exit codes: 0 success, 1 user or store error (message on stderr, no traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

from fsplug.errors import EntityKeyError, FsplugError

__all__ = ["main"]


def _parse_time(text: str) -> datetime:
    """ISO-8601 date/time (naive = UTC) or `now`."""
    if text == "now":
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time like 2026-11-01T00:00:00 or 'now'")
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _entity(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} must look like key=value, e.g. driver_id=42")
    return key, value


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fsplug", description="A declarative feature store for real-time ML serving.")
    p.add_argument("--repo", default=".", help="feature repo folder (default: the current directory)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("plan", help="show what apply would change, or explain a retrieval plan",
                        description="Without options: the diff of the YAML against the applied registry. "
                                    "With --features/--service: the retrieval plan for them.")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--features", type=_csv, help="comma-separated refs, e.g. driver_stats:trips_30d,driver_activity:*")
    g.add_argument("--service", help="a feature service name")
    sp.add_argument("--full-feature-names", action="store_true", help="name outputs view__feature")

    sub.add_parser("apply", help="compile the YAML into the registry and prepare the online store",
                   description="Validate every definition, print the diff, write the registry and create or "
                               "update the online store's tables. Applying twice is a no-op.")
    sub.add_parser("registry-dump", help="print the applied registry as JSON")

    sp = sub.add_parser("materialize", help="load the latest rows in [START, END) into the online store")
    sp.add_argument("start", type=_parse_time, help="ISO-8601 start (inclusive)")
    sp.add_argument("end", type=_parse_time, help="ISO-8601 end (exclusive), or 'now'")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all online views)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("materialize-incremental", help="materialize each view from its watermark up to END")
    sp.add_argument("end", type=_parse_time, help="ISO-8601 end (exclusive), or 'now'")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all online views)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("get-online-features", help="read features for entities and print JSON")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--features", type=_csv, help="comma-separated refs")
    g.add_argument("--service", help="a feature service name")
    sp.add_argument("--entity", type=_entity, action="append", required=True,
                    help="key=value; repeat for several entities or keys (e.g. --entity driver_id=1 --entity driver_id=2)")
    sp.add_argument("--request", type=_entity, action="append", default=[],
                    help="request-time feature key=value (JSON value), applied to every entity")
    sp.add_argument("--full-feature-names", action="store_true")

    sp = sub.add_parser("teardown", help="delete the online data of every entity in the registry")
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return p


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _entities(plan: Any, pairs: list[tuple[str, str]], request: list[tuple[str, str]]) -> dict[str, list[Any]]:
    """Columns from repeated --entity k=v: a key repeated starts a new row."""
    dtypes = {k: d for g in plan.groups for k, d in zip(g.join_keys, g.key_dtypes)}
    cols: dict[str, list[Any]] = {}
    for key, value in pairs:
        v: Any = value
        if key in dtypes and dtypes[key].value == "int64":
            try:
                v = int(value)
            except ValueError:
                raise EntityKeyError(f"--entity {key}={value}: {key} is int64") from None
        cols.setdefault(key, []).append(v)
    n = max(len(v) for v in cols.values())
    for key, value in request:
        cols[key] = [_coerce(value)] * n
    return cols


def _run(args: argparse.Namespace) -> int:
    from fsplug.store import FeatureStore

    store = FeatureStore(args.repo)
    out = sys.stdout
    if args.command == "plan":
        if args.features or args.service:
            print(store.plan(args.features, args.service, args.full_feature_names).explain(), file=out)
            return 0
        d, warnings = store.changes()
        for w in warnings:
            print(w, file=sys.stderr)
        print(d.render(), file=out)
        return 0
    if args.command == "apply":
        res = store.apply()
        for w in res.warnings:
            print(w, file=sys.stderr)
        print(res.diff.render(), file=out)
        for line in res.store_actions:
            print(f"online store: {line}", file=out)
        print(f"Registry {res.registry.hash[:12]} written to {store.config.registry_path}", file=out)
        return 0
    if args.command == "registry-dump":
        out.write(store.registry.to_json())
        return 0
    if args.command in ("materialize", "materialize-incremental"):
        progress = False if args.quiet else None
        if args.command == "materialize":
            report = store.materialize(args.start, args.end, views=args.views, progress=progress)
        else:
            report = store.materialize_incremental(args.end, views=args.views, progress=progress)
        print(report.summary(), file=out)
        return 0
    if args.command == "get-online-features":
        plan = store.plan(args.features, args.service, args.full_feature_names)
        cols = _entities(plan, args.entity, args.request)
        res = store.get_online_features(args.features, args.service, entities=cols,
                                        full_feature_names=args.full_feature_names)
        data = {**cols, **res.to_dict()}
        data["statuses"] = res.status_names()
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
        return 0
    if args.command == "teardown":
        if not args.yes:
            if not sys.stdin.isatty():
                print("teardown deletes online data; pass --yes to confirm", file=sys.stderr)
                return 1
            answer = input(f"Delete all online data of project {store.registry.project!r}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("aborted", file=sys.stderr)
                return 1
        for line in store.teardown():
            print(line, file=out)
        return 0
    raise AssertionError(args.command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fsplug` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except FsplugError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fsplug registry-dump | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        pass


if __name__ == "__main__":
    sys.exit(main())
