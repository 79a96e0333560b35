"""The `fsplug` command line: plan, apply, materialize, serve and inspect a feature repo.

Exit codes: 0 success, 1 user or store error (message on stderr, no traceback), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, UTC
from typing import Any
from collections.abc import Sequence

from fsplug.errors import EntityKeyError, FsplugError, OutputNameClashError
from fsplug.types import as_utc, format_ttl

__all__ = ["main"]


def _parse_time(text: str) -> datetime:
    """ISO-8601 date/time (naive = UTC) or `now`."""
    if text == "now":
        return datetime.now(UTC)
    try:
        return as_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time like 2026-11-01T00:00:00 or 'now'") from None


def _entity(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} must look like key=value, e.g. driver_id=42")
    return key, value


def _csv(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:  # (`--views "$VIEWS"` with VIEWS unset would otherwise mean every view)
        raise argparse.ArgumentTypeError(f"{text!r} names nothing: give comma-separated names")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The `fsplug` argument parser: `--repo` goes before or after the command."""
    from fsplug import __version__

    p = argparse.ArgumentParser(prog="fsplug", description="A declarative feature store for real-time ML serving.")
    p.add_argument("--repo", default=".", help="feature repo folder (default: the current directory)")
    p.add_argument("--version", action="version", version=f"fsplug {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # the same option after the command
    common.add_argument("--repo", default=argparse.SUPPRESS,
                        help="feature repo folder (default: the current directory)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, parents=[common])

    sp = command("init", "create a small working feature repo with generated data",
                 "Write feature_store.yaml, a definitions file and a Parquet source of generated hourly rows up to "
                 "now into DIR (default: my_feature_repo); then run apply, materialize-incremental now and "
                 "get-online-features in it.")
    sp.add_argument("dir", nargs="?", default="my_feature_repo", help="folder of the new repo")
    sp.add_argument("--project", help="project name (default: the folder's name)")

    sp = command("plan", "show what apply would change, or explain a retrieval plan",
                 "Without options: the diff of the YAML against the applied registry. "
                 "With --features/--service: the retrieval plan for them.")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--features", type=_csv, help="comma-separated refs, e.g. driver_stats:trips_30d,driver_activity:*")
    g.add_argument("--service", help="a feature service name")
    sp.add_argument("--full-feature-names", action="store_true", help="name outputs view__feature")

    command("apply", "compile the YAML into the registry and prepare the online store",
            "Validate every definition and every source's schema, print the diff, write the registry and create "
            "or update the online store's tables. Applying twice is a no-op.")
    command("registry-dump", "print the applied registry as JSON",
            "Print the applied registry (the compiled definitions and their hash) as JSON.")

    sp = command("list", "list the entities, feature views, feature services or sources",
                 "One line per object of the applied registry (--json: every property).")
    sp.add_argument("kind", choices=["entities", "views", "services", "sources"])
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = command("describe", "show every property of an entity, view, service or source",
                 "Every object of the applied registry with this name, with all its properties.")
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = command("materialize", "load the latest rows in [START, END) into the online store",
                 "For each view, the latest row per entity with START <= event time < END is written to the "
                 "online store; each view's watermark becomes max(watermark, END).")
    sp.add_argument("start", type=_parse_time, help="ISO-8601 start (inclusive)")
    sp.add_argument("end", type=_parse_time, help="ISO-8601 end (exclusive), or 'now'")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all online views)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--engine", choices=["local", "spark"],
                    help="run on this engine (default: feature_store.yaml's materialization.engine, else local)")

    sp = command("materialize-incremental", "materialize each view from its watermark up to END",
                 "Each view runs from its watermark (kept in the online store; none: from the beginning) up to "
                 "END. --from START rewinds: the views run from START and their watermark is set to END, even if "
                 "it was later.")
    sp.add_argument("end", type=_parse_time, help="ISO-8601 end (exclusive), or 'now'")
    sp.add_argument("--from", dest="from_", type=_parse_time, metavar="START",
                    help="rewind: run from START instead of the watermark (use with --views to pick views)")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all online views)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--engine", choices=["local", "spark"],
                    help="run on this engine (default: feature_store.yaml's materialization.engine, else local)")

    sp = command("status", "each view's materialization state, as the online store keeps it",
                 "Per feature view: watermark, last run (finished at, entities, rows, duration), newest event "
                 "time materialized and its age against the view's ttl.")
    sp.add_argument("--views", type=_csv, help="comma-separated feature views (default: all)")
    sp.add_argument("--json", action="store_true", help="print JSON")

    sp = command("get-online-features", "read features for entities and print JSON",
                 "Read a service's (or features') values for one or more entities from the online store and "
                 "print them as JSON, with a status per value.")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--features", type=_csv, help="comma-separated refs")
    g.add_argument("--service", help="a feature service name")
    sp.add_argument("--entity", type=_entity, action="append", required=True,
                    help="key=value; repeat for several entities or keys "
                         "(e.g. --entity driver_id=1 --entity driver_id=2)")
    sp.add_argument("--request", type=_entity, action="append", default=[],
                    help="request-time feature key=value (JSON value), applied to every entity")
    sp.add_argument("--full-feature-names", action="store_true")

    sp = command("serve", "serve the registry over HTTP/JSON (Feast's format), with Prometheus metrics",
                 "Serve POST /get-online-features (Feast's request and response), POST "
                 "/get-feature-vector, GET /health, /ready and /metrics, and POST /push with "
                 "--enable-push. Needs the server extra: pip install 'fsplug[server]'. The repo may be a "
                 "folder holding only feature_store.yaml with `registry: online` (the registry `apply` "
                 "published in the online store).")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=6566, help="TCP port (default: 6566)")
    sp.add_argument("--workers", type=int, default=1, help="worker processes on the port (default: 1)")
    sp.add_argument("--read-timeout-ms", type=int, default=1000,
                    help="budget of a request's store read (504 past it; default 1000)")
    sp.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (413 past it)")
    sp.add_argument("--body-timeout", type=float, default=10.0, dest="body_timeout_s",
                    help="seconds a client has to send a request's body (408 past it; default 10)")
    sp.add_argument("--registry-poll", type=float, default=5.0, dest="registry_poll_s",
                    help="seconds between checks for a newly applied registry (0: never; default: 5)")
    sp.add_argument("--enable-push", action="store_true", help="serve POST /push (needs the token)")
    sp.add_argument("--token-env", default="FSPLUG_SERVE_TOKEN",
                    help="env variable holding the API token (default: FSPLUG_SERVE_TOKEN)")
    sp.add_argument("--auth-reads", action="store_true", help="require the token on the read endpoints too")
    sp.add_argument("--graceful-timeout", type=float, default=30.0, dest="graceful_timeout_s",
                    help="on SIGTERM, seconds requests in flight may still take (default: 30)")
    sp.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")

    sp = command("ui", "open the web console (as `feast ui`): a read-only server of its pages",
                 "Serve the web console at http://HOST:PORT/ui/ (GET / leads there), with the read endpoints "
                 "of `fsplug serve` and no POST /push. One worker, default port 8888 as `feast ui`. Needs "
                 "the server extra: pip install 'fsplug[server]'.")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8888, help="TCP port (default: 8888)")
    sp.add_argument("--registry-poll", type=float, default=5.0, dest="registry_poll_s",
                    help="seconds between checks for a newly applied registry (0: never; default: 5)")
    sp.add_argument("--token-env", default="FSPLUG_SERVE_TOKEN",
                    help="env variable holding the API token (default: FSPLUG_SERVE_TOKEN)")
    sp.add_argument("--auth-reads", action="store_true", help="require the token (sign-in) for every page")

    sp = command("teardown", "delete the project's online data and materialization state",
                 "Remove every record of the project from the online store (every entity's set or table) and "
                 "its materialization state; returns once no node holds any. Asks first unless --yes.")
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return p


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _entities(plan: Any, pairs: list[tuple[str, str]], request: list[tuple[str, str]]) -> dict[str, list[Any]]:
    """Columns from repeated --entity k=v: a key repeated starts a new row."""
    dtypes = {k: d for g in plan.groups for k, d in zip(g.join_keys, g.key_dtypes, strict=True)}
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


def _one_line(item: dict[str, Any]) -> str:
    kind = item["kind"]
    if kind == "entity":
        keys = ", ".join(f"{k['name']} ({k['dtype']})" for k in item["join_keys"])
        detail = f"keys {keys}; views: {', '.join(item['feature_views']) or 'none'}"
    elif kind == "feature view":
        detail = (f"entity {item['entity']}, source {item['source']}, {len(item['features'])} features, "
                  f"ttl {format_ttl(item['ttl_seconds'])}"
                  + ("" if item["online"] else ", offline only"))
    elif kind == "feature service":
        detail = f"{len(item['features'])} refs: {', '.join(item['features'])}"
    elif kind == "source":
        detail = f"{item['type']} {item.get('table') or item['path']}, event time {item['timestamp_field']}"
    elif kind == "derived view":
        detail = f"derived view of {', '.join(item['inputs']) or 'no inputs'}, {len(item['features'])} features"
    else:
        detail = f"request source, {len(item['features'])} features"
    text = f"{item['name']}: {detail}"
    return text + (f" — {item['description']}" if item.get("description") else "")


def _describe_text(item: dict[str, Any]) -> str:
    lines = [f"{item['kind']} {item['name']}"]
    for key, value in item.items():
        if key in ("kind", "name") or value in (None, "", [], {}):
            continue
        if key == "features" and value and isinstance(value[0], dict):
            lines.append("  features:")
            for f in value:
                extra = ", ".join(f"{k} {v}" for k, v in f.items() if k not in ("name", "description")
                                  and v is not None)
                lines.append(f"    {f['name']}: {extra}" + (f" — {f['description']}" if f.get("description") else ""))
        elif key == "join_keys":
            lines.append("  join keys: " + ", ".join(f"{k['name']} ({k['dtype']})" for k in value))
        elif isinstance(value, list):
            lines.append(f"  {key.replace('_', ' ')}: {', '.join(map(str, value))}")
        elif isinstance(value, dict):
            lines.append(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"  {key.replace('_', ' ')}: {value}")
    return "\n".join(lines)


def _status(store: Any, views: list[str] | None) -> list[dict[str, Any]]:
    """Per view: its stored materialization state, and the age of its newest event against its ttl."""
    reg = store.registry
    names = list(reg.feature_views) if not views else [reg.view(v).name for v in views]
    states = store.materialization_state(names)
    now = datetime.now(UTC)
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

    out = sys.stdout
    if args.command == "init":
        from fsplug.scaffold import init_repo

        written = init_repo(args.dir, args.project)
        print(f"Created a feature repo in {args.dir}: " + ", ".join(str(p) for p in written), file=out)
        print(f"Next: cd {args.dir} && fsplug apply && fsplug materialize-incremental now && "
              "fsplug get-online-features --service driver_activity_v1 --entity driver_id=1001", file=out)
        return 0
    if args.command == "serve":
        from fsplug.server import serve

        serve(args.repo, host=args.host, port=args.port, workers=args.workers,
              read_timeout_ms=args.read_timeout_ms, max_body_bytes=args.max_body_bytes,
              body_timeout_s=args.body_timeout_s, registry_poll_s=args.registry_poll_s,
              enable_push=args.enable_push, token_env=args.token_env, auth_reads=args.auth_reads,
              graceful_timeout_s=args.graceful_timeout_s, access_log=args.access_log)
        return 0
    if args.command == "ui":
        from fsplug.server import serve

        print(f"fsplug console: http://{args.host}:{args.port}/ui/ (Ctrl-C stops it)", file=sys.stderr)
        serve(args.repo, host=args.host, port=args.port, registry_poll_s=args.registry_poll_s,
              token_env=args.token_env, auth_reads=args.auth_reads)
        return 0
    store = FeatureStore(args.repo)
    if args.command == "plan":
        if args.features or args.service:
            plan = store.plan(args.features, args.service, args.full_feature_names)
            print(plan.explain(store.online_store.location), file=out)
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
        from fsplug.registry.published import ONLINE

        if store.config.config.registry == ONLINE:  # no file: the registry lives in the online store only
            where = f"in the online store {store.online_store.address()}"
            done = f"published {where}"
        else:
            where = f"at {store.config.registry_path}"
            done = f"written to {store.config.registry_path}"
        if res.written:
            print(f"Registry {res.registry.hash[:12]} {done}", file=out)
        else:
            print(f"Registry {res.registry.hash[:12]} {where} is up to date (not rewritten)", file=out)
        return 0
    if args.command in ("list", "describe"):
        from fsplug import catalog

        if args.command == "list":
            items = catalog.list_objects(store.registry, args.kind)
        else:
            items = catalog.describe(store.registry, args.name)
        if args.json:
            json.dump(items, out, indent=2, default=str)
            out.write("\n")
        elif args.command == "list":
            for item in items:
                print(_one_line(item), file=out)
        else:
            print("\n\n".join(_describe_text(item) for item in items), file=out)
        return 0
    if args.command == "registry-dump":
        out.write(store.registry.to_json())
        return 0
    if args.command in ("materialize", "materialize-incremental"):
        progress = False if args.quiet else None
        if args.command == "materialize":
            report = store.materialize(args.start, args.end, views=args.views, progress=progress,
                                       engine=args.engine)
        else:
            report = store.materialize_incremental(args.end, views=args.views, progress=progress, from_=args.from_,
                                                   engine=args.engine)
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
        online = store.get_online_features(args.features, args.service, entities=cols,
                                           full_feature_names=args.full_feature_names)
        data: dict[str, Any] = {**cols, **online.to_dict()}
        data["statuses"] = online.status_names()
        json.dump(data, out, indent=2, default=_json_default)
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


def _json_default(value: Any) -> Any:
    """JSON of a value `json` cannot write: bytes as base64 text (as `fsplug serve` writes them) and times in
    ISO-8601 (`fsplug serve` writes Feast's whole seconds; this output is read by people too)."""
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fsplug` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except OutputNameClashError as exc:  # (worded for the CLI: its flag, not the Python argument)
        print(f"error: {exc.with_fix('--full-feature-names')}", file=sys.stderr)
        return 1
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
