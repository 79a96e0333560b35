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

    sp = sub.add_parser("materialize-incremental", help="materialize each view from its watermark up to END",
                        description="Each view runs from its watermark (kept in the online store; none: from the "
                                    "beginning) up to END. --from START rewinds: the views run from START and their "
                                    "watermark is set to END, even if it was later.")
    sp.add_argument("end", type=_parse_time, help="ISO-8601 end (exclusive), or 'now'")
    sp.add_argument("--from", dest="from_", type=_parse_time, metavar="START",
                    help="rewind: run from START instead of the watermark (use with --views to pick views)")
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

    sp = sub.add_parser("status", help="each view's materialization state, as the online store keeps it",
                        description="Per feature view: watermark, last run (finished at, entities, rows, duration), "
                                    "newest event time materialized and its age against the view's ttl.")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = sub.add_parser("teardown", help="delete the project's online data and materialization state")
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


def _status(store: Any, views: list[str] | None) -> list[dict[str, Any]]:
    """Per view: its stored materialization state, and the age of its newest event against its ttl."""
    reg = store.registry
    names = list(reg.feature_views) if not views else [reg.view(v).name for v in views]
    states = store.materialization_state(names)
    now = datetime.now(timezone.utc)
    rows = []
    for name in names:
        view = reg.feature_views[name]
        st = states.get(name)
        row: dict[str, Any] = {"view": name, "online": view.online, "ttl_seconds": view.ttl_seconds,
                               "watermark": None, "newest_event": None, "newest_event_age_seconds": None,
                               "stale": None, "last_run": None}
        if st is not None:
            row["watermark"] = st.watermark.isoformat() if st.watermark else None
            if st.newest_event is not None:
                age = (now - st.newest_event).total_seconds()
                row["newest_event"] = st.newest_event.isoformat()
                row["newest_event_age_seconds"] = round(age, 3)
                row["stale"] = bool(view.ttl_seconds) and age > view.ttl_seconds
            if st.last_run is not None:
                run = st.last_run
                row["last_run"] = {"start": run.start.isoformat() if run.start else None, "end": run.end.isoformat(),
                                   "finished_at": run.finished_at.isoformat(), "rows_read": run.rows_read,
                                   "entities": run.entities, "written": run.written, "seconds": run.seconds}
        rows.append(row)
    return rows


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 0:
        return f"{-s}s in the future"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d" if d else "") + (f"{h}h" if h else "") + (f"{m}m" if m and not d else "") + \
        (f"{s}s" if not d and not h else "") or "0s"


def _status_line(r: dict[str, Any]) -> str:
    if r["watermark"] is None:
        return f"{r['view']}: never materialized into this store" + ("" if r["online"] else " (offline view)")
    text = f"{r['view']}: watermark {r['watermark']}"
    run = r["last_run"]
    if run:
        text += (f"; last run finished {run['finished_at']}: {run['entities']:,} entities, {run['rows_read']:,} rows "
                 f"in {run['seconds']:.1f}s")
    if r["newest_event"] is None:
        text += "; no event materialized"
    else:
        ttl = r["ttl_seconds"]
        text += f"; newest event {r['newest_event']} ({_age(r['newest_event_age_seconds'])} old"
        text += (f", ttl {_age(ttl)}: {'STALE' if r['stale'] else 'fresh'})" if ttl else ", no ttl)")
    return text


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
            report = store.materialize_incremental(args.end, views=args.views, progress=progress, from_=args.from_)
        print(report.summary(), file=out)
        return 0
    if args.command == "status":
        rows = _status(store, args.views)
        if args.json:
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            for r in rows:
                out.write(_status_line(r) + "\n")
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
