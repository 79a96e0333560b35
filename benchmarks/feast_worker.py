"""Feast side of the benchmark, run by the Feast virtual environment's python (never imports fsplug).

    <feast-venv>/bin/python benchmarks/feast_worker.py materialize --spec SPEC.json   (one JSON line)
    <feast-venv>/bin/python benchmarks/feast_worker.py serve --spec SPEC.json         (JSON lines on stdin/stdout)
    <feast-venv>/bin/python benchmarks/feast_worker.py remote_read --spec SPEC.json   (one JSON line)

SPEC (written by the harness) mirrors feature_repo's definitions: the `driver` entity (join key
`driver_id`, int64), the views `driver_stats` and `driver_activity` over the same Parquet files
(event_timestamp, created as tie-break, the same ttls and dtypes) and the feature service
`decline_model_v1` with the same 11 stored features. Request features have no Feast equivalent
without an on-demand view, so Feast reads the 11 stored features only (fsplug also returns the 3
request features: it does more work per call, not less).

`materialize` applies the definitions into a fresh Feast repo and times `FeatureStore.materialize`
in this process (peak RSS = this process's VmHWM). `serve` opens that repo and answers
commands, timing each call in-process with `perf_counter_ns` (no IPC inside the timings):
  {"cmd": "load", "case": "one"|"fifty_dict", "keys_file": PATH}   the case's key lists (JSON)
  {"cmd": "run", "case": C, "lo": i, "hi": j}                -> {"samples": [ns, ...]}
  {"cmd": "quit"}
Every read is `get_online_features(features=<FeatureService>, entity_rows=[...]).to_dict()`.

`remote_read` reads the spec's `keys` through Feast's own client for a feature server (the `remote`
online store whose `path` the spec's `online_store` names) and prints the features it named and its
`to_dict()` (one JSON line). With `write` in the spec (`{"view": name, "row": {column: value}}`, the
event time as `event_timestamp`), it first writes that row through the same client
(`write_to_online_store`), sending the bearer token of the environment variable `token_env` names (Feast's
`oidc` client auth with `token_env_var`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any


def _rss_mib() -> float:
    """Peak RSS of this process in MiB: VmHWM from /proc/self/status.

    (A copy of fsplug.materialize.peak_rss_bytes: this worker runs in Feast's venv, without fsplug.)

    Not `ru_maxrss`: on Linux that survives fork + exec, so a child reports its parent's peak when
    the parent was bigger (the harness holds samples and models: hundreds of MiB).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _feature_store_yaml(spec: dict[str, Any]) -> str:
    import yaml

    repo = Path(spec["repo"])
    online = dict(spec["online_store"])
    if online["type"] == "sqlite":
        online["path"] = str(repo / "data" / "online.db")
    cfg = {
        "project": spec.get("project", "fsplug_bench"),
        "registry": str(repo / "data" / "registry.db"),
        "provider": "local",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    if spec.get("token_env"):  # a static bearer token: Feast's oidc client auth sends it as it is
        cfg["auth"] = {"type": "oidc", "token_env_var": spec["token_env"]}
    return yaml.safe_dump(cfg, sort_keys=False)


def _objects(spec: dict[str, Any]) -> list[Any]:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float32, Float64, Int64

    types = {"float64": Float64, "float32": Float32, "int64": Int64}
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
    objs: list[Any] = [driver]
    views = {}
    for name, v in spec["views"].items():
        src = FileSource(name=f"{name}_source", path=v["source"], timestamp_field="event_timestamp",
                         created_timestamp_column="created")
        fv = FeatureView(name=name, entities=[driver], ttl=timedelta(seconds=v["ttl_s"]), source=src, online=True,
                         schema=[Field(name="driver_id", dtype=Int64)]
                         + [Field(name=f, dtype=types[t]) for f, t in v["schema"].items()])
        views[name] = fv
        objs += [src, fv]
    svc = FeatureService(name=spec["service"]["name"],
                         features=[views[v][list(fs)] for v, fs in spec["service"]["features"].items()])
    return objs + [svc]


def _open(spec: dict[str, Any], fresh: bool) -> Any:
    import shutil

    from feast import FeatureStore

    repo = Path(spec["repo"])
    if fresh and repo.exists():
        shutil.rmtree(repo)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(_feature_store_yaml(spec))
    return FeatureStore(repo_path=str(repo))


def materialize(spec: dict[str, Any]) -> dict[str, Any]:
    import feast

    store = _open(spec, fresh=True)
    store.apply(_objects(spec))
    if spec["online_store"]["type"] != "sqlite":
        store.teardown()
        store = _open(spec, fresh=False)
        store.apply(_objects(spec))
    start = datetime.fromisoformat(spec["start"])
    end = datetime.fromisoformat(spec["end"])
    rss0 = _rss_mib()
    t0 = time.perf_counter()
    store.materialize(start_date=start, end_date=end)
    secs = time.perf_counter() - t0
    rss = _rss_mib()
    entities = None
    if spec["online_store"]["type"] == "sqlite":
        import sqlite3

        conn = sqlite3.connect(Path(spec["repo"]) / "data" / "online.db")
        project = spec.get("project", "fsplug_bench")
        entities = sum(conn.execute(f'SELECT COUNT(DISTINCT entity_key) FROM "{project}_{v}"').fetchone()[0]
                       for v in spec["views"])
        conn.close()
    return {"system": "feast", "feast_version": feast.__version__, "seconds": round(secs, 3),
            "entities": entities, "entities_per_s": round(entities / secs, 1) if entities and secs > 0 else None,
            "peak_rss_mib": rss, "rss_before_mib": rss0}


def serve(spec: dict[str, Any], out: Any) -> None:
    import feast

    store = _open(spec, fresh=False)
    service = store.get_feature_service(spec["service"]["name"])
    keys: dict[str, list[list[int]]] = {}
    clock = time.perf_counter_ns
    out.write(json.dumps({"ready": True, "feast_version": feast.__version__}) + "\n")
    out.flush()
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "load":
                keys[msg["case"]] = json.loads(Path(msg["keys_file"]).read_text())
                reply: dict[str, Any] = {"ok": True}
            elif cmd == "run":
                ks = keys[msg["case"]][msg["lo"]:msg["hi"]]
                rows = [[{"driver_id": k} for k in k_list] for k_list in ks]
                get = store.get_online_features
                samples = []
                for r in rows:
                    t0 = clock()
                    get(features=service, entity_rows=r).to_dict()
                    samples.append(clock() - t0)
                reply = {"samples": samples}
            elif cmd == "check":  # one read, returned for a correctness cross-check
                res = store.get_online_features(features=service, entity_rows=[{"driver_id": k} for k in msg["keys"]])
                reply = {"result": res.to_dict()}
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the harness, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply, default=str) + "\n")
        out.flush()


def remote_read(spec: dict[str, Any]) -> dict[str, Any]:
    """Read `spec["keys"]` through Feast's own client for a feature server (its `remote` online store,
    at `spec["online_store"]["path"]`), the service's features named one by one: `to_dict()`."""
    store = _open(spec, fresh=True)
    store.apply(_objects(spec))
    if spec.get("write"):
        import pandas as pd

        row = dict(spec["write"]["row"])
        row["event_timestamp"] = datetime.fromisoformat(row["event_timestamp"])
        row["created"] = row["event_timestamp"]
        store.write_to_online_store(spec["write"]["view"], pd.DataFrame({k: [v] for k, v in row.items()}))
    features = [f"{v}:{f}" for v, fs in spec["service"]["features"].items() for f in fs]
    res = store.get_online_features(features=features, entity_rows=[{"driver_id": k} for k in spec["keys"]])
    return {"features": features, "result": res.to_dict()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["materialize", "serve", "remote_read"])
    ap.add_argument("--spec", type=Path, required=True)
    args = ap.parse_args()
    spec = json.loads(args.spec.read_text())
    # Replies go to the real stdout; anything Feast prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr
    if args.mode in ("materialize", "remote_read"):
        reply = materialize(spec) if args.mode == "materialize" else remote_read(spec)
        out.write(json.dumps(reply, default=str) + "\n")
        out.flush()
    else:
        serve(spec, out)


if __name__ == "__main__":
    main()
