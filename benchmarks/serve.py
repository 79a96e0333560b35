"""`python -m benchmarks serve`: `fsplug serve` under HTTP load from wrk (a load generator not ours).

The same data as the read benchmarks (`examples/generate_data.py`, seed 7; default 100,000 drivers,
1 day), the `decline_model_v1` service (11 stored features over 2 views + 3 request features),
SQLite. `fsplug serve` runs as its own process (`--workers`, default 1); wrk (Debian's `wrk`
package: `apt-get install wrk`) drives `POST /get-online-features` in Feast's format at 1 and 50
entities with 1 and 8 connections, and `POST /get-feature-vector` at 1 entity. Each request body
is drawn from a fixed, seeded list of random driver ids (a Lua script cycles through them).

Reported per case (the median of `--runs` wrk runs per figure): requests/s, p50, p99 (wrk's
latency distribution), non-2xx responses and socket errors; and, for the same requests, the
in-process p50 in this process (`get_online_features(...).to_dict()`, or `get_feature_vector` for
the vector endpoint; measured beside each wrk run of the case, the median kept) and the server's p50
minus it, so the HTTP server's own cost is visible.
`--with-feast` runs `feast serve` with the same `--workers`; `--canned` runs uvicorn as `fsplug serve`
runs it, answering every request with a response `fsplug serve` gave for that case (the HTTP stack's
own floor: `benchmarks/canned_app.py`). Results go to
`benchmarks/results/serve_<stamp>.json` and `.md` (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.data import RESULTS, ROOT, SERVICE, dataset, fresh_end, make_fsplug_repo

TOKEN_ENV = "FSPLUG_SERVE_TOKEN"  # fsplug serve's default token variable
TOKEN = "benchmark-token"  # (a benchmark's server on loopback; with --with-feast it takes writes for the client check)

__all__ = ["main"]

_LUA = """\
local bodies = {}
local f = io.open("%(bodies)s", "r")
for line in f:lines() do bodies[#bodies + 1] = line end
f:close()
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
"""


def free_port() -> int:
    """A TCP port free on the loopback now (the servers the benchmarks start listen there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bodies(
    ids: list[int], n_entities: int, count: int, vector: bool, seed: int, feast: bool = False
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        keys = rng.sample(ids, n_entities)
        dist = [round(rng.uniform(0.2, 8.0), 2) for _ in keys]
        hour = [rng.randrange(24) for _ in keys]
        if feast:  # Feast's service has no request features: the same drivers, keys only
            out.append({"feature_service": SERVICE, "entities": {"driver_id": keys}})
        elif vector:
            out.append(
                {
                    "feature_service": SERVICE,
                    "entity": {"driver_id": keys[0]},
                    "request": {"pickup_distance_km": dist[0], "hour_of_day": hour[0]},
                }
            )
        else:
            out.append(
                {
                    "feature_service": SERVICE,
                    "entities": {"driver_id": keys, "pickup_distance_km": dist, "hour_of_day": hour},
                }
            )
    return out


def _wrk(
    url: str, path: str, bodies: list[dict[str, Any]], connections: int, seconds: int, work: Path
) -> dict:
    body_file = work / "bodies.txt"
    body_file.write_text("\n".join(json.dumps(b, separators=(",", ":")) for b in bodies) + "\n")
    script = work / "load.lua"
    script.write_text(_LUA % {"bodies": body_file, "path": path})
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {"command": " ".join(cmd[:-3] + ["<script>", url]), **_parse_wrk(out)}


_UNITS = {"us": 1.0, "ms": 1_000.0, "s": 1_000_000.0}


def _parse_wrk(text: str) -> dict[str, Any]:
    def micros(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)$", v)
        assert m, v
        return float(m.group(1)) * _UNITS[m.group(2)]

    def found(pattern: str) -> re.Match[str]:
        m = re.search(pattern, text)
        if m is None:
            raise RuntimeError(f"wrk's output has no {pattern!r}:\n{text}")
        return m

    pct = {int(p): micros(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    rps = float(found(r"Requests/sec:\s+([\d.]+)").group(1))
    total = int(found(r"(\d+) requests in").group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests_per_s": rps,
        "requests": total,
        "p50_us": pct.get(50),
        "p99_us": pct.get(99),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errs.groups())) if errs else 0,
    }


def _in_process_p50(repo: Path, bodies: list[dict[str, Any]], calls: int, vector: bool) -> float:
    """p50 (us) of the same requests in this process: `get_online_features(...).to_dict()`, or
    `get_feature_vector(...)` for the vector endpoint's bodies."""
    from fsplug.store import FeatureStore

    with FeatureStore(repo) as fs:
        times = []
        for i in range(calls + 200):
            b = bodies[i % len(bodies)]
            t0 = time.perf_counter_ns()
            if vector:
                fs.get_feature_vector(SERVICE, request=b["request"], **b["entity"])
            else:
                fs.get_online_features(service=SERVICE, entities=b["entities"]).to_dict()
            if i >= 200:
                times.append((time.perf_counter_ns() - t0) / 1000)
    times.sort()
    return times[len(times) // 2]


def _median_of_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's runs: the median of each figure (requests/s, p50, p99), errors summed, runs kept."""
    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    for key in ("requests_per_s", "p50_us", "p99_us"):
        vals = sorted(r[key] for r in results)
        out[key] = vals[len(vals) // 2]
    for key in ("requests", "non_2xx", "socket_errors"):
        out[key] = sum(r[key] for r in results)
    out["runs"] = results
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a server, then wait for it (killed if it takes more than 30 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited before it was ready ({proc.args!r})")
        try:
            with urllib.request.urlopen(url + path, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server was not ready in time ({proc.args!r})")


def _canned_rows(
    cases: list[tuple[int, list[dict[str, Any]], bytes]], work: Path, conns: list[int], seconds: int,
    workers: int, runs: int,
) -> list[dict[str, Any]]:
    """uvicorn with `fsplug serve`'s options (httptools, uvloop, no access log) and `workers`, answering
    each case's requests with a response fsplug serve gave for that case (benchmarks/canned_app.py)."""
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"  # as fsplug serve picks it
    rows = []
    for n, bodies, response in cases:
        canned = work / f"canned_{n}.json"
        canned.write_bytes(response)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FSPLUG_BENCH_CANNED": str(canned)}
        cmd = [sys.executable, "-m", "uvicorn", "benchmarks.canned_app:app", "--port", str(port), "--http",
               "httptools", "--loop", loop, "--no-access-log", "--no-server-header", "--log-level", "warning",
               "--workers", str(workers)]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(url, proc, path="/")
            _wrk(url, "/get-online-features", bodies, 1, 1, work)  # warm-up
            for c in conns:
                res = _median_of_runs([_wrk(url, "/get-online-features", bodies, c, seconds, work)
                                       for _ in range(runs)])
                rows.append({"system": "uvicorn, canned response", "endpoint": "/get-online-features",
                             "entities": n, "connections": c, **res, "in_process_p50_us": None,
                             "response_bytes": len(response)})
                print(f"canned {n:3d} entities ({len(response):,} bytes), {c} conn: "
                      f"{res['requests_per_s']:9,.0f} req/s  p50 {res['p50_us']:8.0f} us  p99 {res['p99_us']:8.0f} us")
        finally:
            _stop(proc)
    return rows


WRITTEN_ROW = {"trips_today": 7, "hours_on_shift": 2.5, "consecutive_trips": 3, "acceptance_rate_1h": 0.5,
               "declines_1h": 1}
"""driver_activity's features in the row Feast's client writes through fsplug serve (a new driver)."""


def _feast_client_check(ds: Any, ids: list[int], work: Path, url: str, repo: Path) -> dict[str, Any]:
    """Feast's own client for a feature server (its `remote` online store, run in the Feast venv) against
    `fsplug serve` at `url`: it writes one row of a new driver (`write_to_online_store`, with the server's
    token) and reads 50 drivers, that one and one that does not exist; the values must be fsplug's
    in-process ones, the written row's included (a client written for `feast serve` works unchanged)."""
    from benchmarks.feast_side import ensure_venv, remote_read, spec_for
    from fsplug.store import FeatureStore

    ensure_venv()
    new = max(ids) + 2
    keys = [*random.Random(11).sample(ids, 50), new, max(ids) + 1]
    written_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0).isoformat()
    spec = {**spec_for(ds, work / "feast_client_repo", {"type": "remote", "path": url}), "keys": keys,
            "token_env": TOKEN_ENV,
            "write": {"view": "driver_activity",
                      "row": {"driver_id": new, "event_timestamp": written_at, **WRITTEN_ROW}}}
    reply = remote_read(spec, env={TOKEN_ENV: TOKEN})
    got, features = reply["result"], reply["features"]
    with FeatureStore(repo) as fs:
        want = fs.get_online_features(features=features, entities={"driver_id": keys}).to_dict()
    differ = sorted(name for name, values in want.items() if got.get(name) != values)
    written = all(want[name][-2] == value for name, value in WRITTEN_ROW.items())
    same = not differ and got.get("driver_id") == keys and written
    verdict = ("the same values as in-process, the row it wrote included" if same
               else "DIFFERENT in " + ", ".join(differ or (["driver_id"] if written else ["the written row"])))
    print(f"Feast's own client (remote online store) against fsplug serve, a row written and {len(keys)} "
          f"drivers x {len(want)} features read: {verdict}")
    return {"drivers": len(keys), "features": len(want), "written": written, "same": same, "differ": differ}


def _feast_rows(
    ds: Any, ids: list[int], work: Path, entity_counts: list[int], conns: list[int], seconds: int,
    workers: int, runs: int,
) -> list[dict[str, Any]]:
    """`feast serve` (Feast in benchmarks/.feast-venv) on the same data and store kind, under the same wrk."""
    from benchmarks.feast_side import VENV, ensure_venv, spec_for
    from benchmarks.feast_side import materialize as feast_materialize

    version = ensure_venv()
    spec = spec_for(ds, work / "feast_repo", {"type": "sqlite"})
    feast_materialize(spec)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(VENV / "bin" / "feast"), "-c", spec["repo"], "serve", "-p", str(port), "--no-access-log",
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    try:
        _wait_ready(url, proc, path="/health")
        for n in entity_counts:
            bodies = _bodies(ids, n, 2000, False, seed=n, feast=True)
            _wrk(url, "/get-online-features", bodies, 1, 1, work)
            for c in conns:
                res = _median_of_runs([_wrk(url, "/get-online-features", bodies, c, seconds, work)
                                       for _ in range(runs)])
                rows.append(
                    {
                        "system": f"feast serve {version}",
                        "endpoint": "/get-online-features",
                        "entities": n,
                        "connections": c,
                        **res,
                        "in_process_p50_us": None,
                    }
                )
                print(
                    f"feast serve {n:3d} entities, {c} conn: {res['requests_per_s']:9,.0f} req/s  "
                    f"p50 {res['p50_us']:8.0f} us  p99 {res['p99_us']:8.0f} us  non-2xx {res['non_2xx']}"
                )
    finally:
        _stop(proc)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the serve benchmark; prints a Markdown table and writes results/serve_<stamp>.json/.md."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 drivers, 2 s per case (a smoke run)")
    ap.add_argument("--drivers", type=int, help="drivers in the data set (default 100,000)")
    ap.add_argument("--seconds", type=int, help="wrk duration per case (default 10)")
    ap.add_argument("--workers", type=int, default=1, help="server processes, for both servers (default 1)")
    ap.add_argument("--runs", type=int, default=3,
                    help="wrk runs per case; the table shows each figure's median (default 3)")
    ap.add_argument(
        "--connections", default="1,8", help="comma-separated wrk connection counts (default 1,8)"
    )
    ap.add_argument("--entities", default="1,50", help="comma-separated entities per request (default 1,50)")
    ap.add_argument(
        "--canned",
        action="store_true",
        help="also uvicorn (as fsplug serve runs it) answering a recorded response: the HTTP stack's floor",
    )
    ap.add_argument(
        "--with-feast",
        action="store_true",
        help="also `feast serve` on the same data (Feast installed into benchmarks/.feast-venv)",
    )
    args = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    drivers = args.drivers or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (2 if args.quick else 10)
    conns = [int(c) for c in args.connections.split(",")]
    entity_counts = [int(e) for e in args.entities.split(",")]

    from fsplug.store import FeatureStore

    work = RESULTS / "serve"
    work.mkdir(parents=True, exist_ok=True)
    ds = dataset(drivers, 1, 0.5, 7, fresh_end())
    repo = make_fsplug_repo(work / "repo", ds, {"type": "sqlite", "path": "data/online.db"})
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.materialize_incremental(datetime.now(UTC), progress=False)
    ids = list(ds.driver_ids())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN}  # (the token: for the Feast client's write)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fsplug.cli",
            "--repo",
            str(repo),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--registry-poll",
            "0",
            *(["--enable-push"] if args.with_feast else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows: list[dict[str, Any]] = []
    client_check: dict[str, Any] | None = None
    url_canned_bodies: list[tuple[int, list[dict[str, Any]], bytes]] = []
    try:
        _wait_ready(url, proc)
        cases = [("/get-online-features", n, False) for n in entity_counts] + [
            ("/get-feature-vector", 1, True)
        ]
        for path, n, vector in cases:
            bodies = _bodies(ids, n, 2000, vector, seed=n)
            if not vector:  # a response of this size, for --canned
                req = urllib.request.Request(url + path, data=json.dumps(bodies[0]).encode(),
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    url_canned_bodies.append((n, bodies, r.read()))
            _wrk(url, path, bodies, 1, 1, work)  # warm-up
            # the in-process p50 is measured beside every wrk run and its median kept: one measurement
            # moved by up to 1.8x with the host's speed between two runs of the benchmark
            refs: list[float] = []
            case_rows = []
            for c in conns:
                runs = []
                for _ in range(args.runs):
                    refs.append(_in_process_p50(repo, bodies, 2000, vector))
                    runs.append(_wrk(url, path, bodies, c, seconds, work))
                case_rows.append({"system": "fsplug serve", "endpoint": path, "entities": n, "connections": c,
                                  **_median_of_runs(runs)})
            ref = statistics.median(refs)
            for row in case_rows:
                rows.append({**row, "in_process_p50_us": ref, "in_process_p50s_us": refs})
                print(
                    f"{path:22s} {n:3d} entities, {row['connections']} conn: {row['requests_per_s']:9,.0f} req/s  "
                    f"p50 {row['p50_us']:8.0f} us  p99 {row['p99_us']:8.0f} us  non-2xx {row['non_2xx']}  "
                    f"socket errors {row['socket_errors']}  (in-process p50 {ref:.0f} us)"
                )
        if args.with_feast:
            client_check = _feast_client_check(ds, ids, work, url, repo)
    finally:
        _stop(proc)
    if args.canned:
        rows += _canned_rows(url_canned_bodies, work, conns, seconds, args.workers, args.runs)
    if args.with_feast:
        rows += _feast_rows(ds, ids, work, entity_counts, conns, seconds, args.workers, args.runs)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    meta = {
        "drivers": drivers,
        "workers": args.workers,
        "runs": args.runs,
        "seconds": seconds,
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.splitlines()[0:1],
        "feast_client_check": client_check,
    }
    (RESULTS / f"serve_{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = [
        "| system | endpoint | entities | connections | requests/s | p50 (us) | p99 (us) | errors "
        "| in-process p50 (us) | p50 - in-process (us) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        inproc = r["in_process_p50_us"]
        inproc_s = f"{inproc:.0f}" if inproc else "-"
        gap = f"{r['p50_us'] - inproc:,.0f}" if inproc and r["connections"] == 1 else "-"  # 8: queueing
        md.append(
            f"| {r['system']} | `{r['endpoint']}` | {r['entities']} | {r['connections']} | "
            f"{r['requests_per_s']:,.0f} | "
            f"{r['p50_us']:,.0f} | {r['p99_us']:,.0f} | {r['non_2xx'] + r['socket_errors']} | {inproc_s} | {gap} |"
        )
    (RESULTS / f"serve_{stamp}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {RESULTS / f'serve_{stamp}.json'}")
    return 0 if client_check is None or client_check["same"] else 1
