"""Feast in its own virtual environment (never a dependency of fsplug), driven through a worker process.

`ensure_venv()` creates `benchmarks/.feast-venv` with `python -m venv` and pip-installs Feast
(`FEAST_SPEC`, default `feast`: whatever version pip resolves here, which is recorded in the
results), plus the `aerospike` client when an Aerospike comparison is asked for. `FeastSystem`
starts `benchmarks/feast_worker.py serve` with that venv's python and forwards the harness's
blocks to it; the worker times each call itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.data import ROOT, SERVICE, STORED_FEATURES, VIEW_SCHEMAS, VIEW_SOURCE, VIEW_TTL_S, Dataset, data_start
from benchmarks.materialize import run_child
from benchmarks.reads import Workload

VENV = ROOT / "benchmarks" / ".feast-venv"
WORKER = ROOT / "benchmarks" / "feast_worker.py"
FEAST_SPEC = os.environ.get("FSPLUG_BENCH_FEAST_SPEC", "feast")


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def _pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
                   check=True)


def ensure_venv(aerospike: bool = False, venv: Path = VENV, log: Any = print) -> str:
    """Create/complete the Feast venv; returns the installed Feast version."""
    py = venv_python(venv)
    if not py.exists():
        log(f"  creating {venv} (python -m venv) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import importlib.metadata as m; print(m.version('feast'))"
    p = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        log(f"  pip install {FEAST_SPEC} into {venv.name} (a few minutes the first time) ...")
        _pip(venv, FEAST_SPEC)
        p = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True)
    if aerospike:
        q = subprocess.run([str(py), "-c", "import aerospike"], capture_output=True, check=False)
        if q.returncode != 0:
            log("  pip install aerospike into the Feast venv (Feast's aerospike extra) ...")
            _pip(venv, "aerospike")
    return p.stdout.strip()


def spec_for(ds: Dataset, repo: Path, online_store: dict[str, Any]) -> dict[str, Any]:
    """The worker's spec: feature_repo's definitions over `ds`, in a Feast repo at `repo`."""
    return {
        "repo": str(repo),
        "project": "fsplug_bench",
        "online_store": online_store,
        "views": {v: {"source": str(ds.path(VIEW_SOURCE[v])), "ttl_s": VIEW_TTL_S[v], "schema": VIEW_SCHEMAS[v]}
                  for v in VIEW_SCHEMAS},
        "service": {"name": SERVICE, "features": {v: list(f) for v, f in STORED_FEATURES.items()}},
        "start": data_start(ds).isoformat(),
        "end": ds.end.isoformat(),
    }


def _write_spec(spec: dict[str, Any]) -> Path:
    path = Path(spec["repo"]).with_suffix(".spec.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1))
    return path


def materialize(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Feast's materialization of the spec's data, measured in its own process."""
    return run_child([str(WORKER), "materialize", "--spec", str(_write_spec(spec))], python=str(venv_python()),
                     timeout=timeout)


def remote_read(spec: dict[str, Any], timeout: float | None = 300, env: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """Feast's own feature-server client (its `remote` online store) reading `spec["keys"]`: the features
    it named (`features`, "view:feature") and its `to_dict()` (`result`); with `spec["write"]`, after writing
    that row through the same client (see benchmarks/feast_worker.py). `env`: for the worker (a token)."""
    return run_child([str(WORKER), "remote_read", "--spec", str(_write_spec(spec))], python=str(venv_python()),
                     env=env, timeout=timeout)


class FeastSystem:
    """Proxy to a `feast_worker.py serve` process; samples are measured inside the worker."""

    name = "feast"

    def __init__(self, spec: dict[str, Any]):
        path = _write_spec(spec)
        self.dir = path.parent
        self.proc = subprocess.Popen([str(venv_python()), str(WORKER), "serve", "--spec", str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=ROOT)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPEs
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        hello = self._read()
        self.version = hello.get("feast_version")

    def _read(self) -> dict[str, Any]:
        line = self._stdout.readline()
        if not line:
            raise RuntimeError(f"the Feast worker exited (code {self.proc.poll()})")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"Feast worker: {msg['error']}")
        return msg

    def _call(self, **msg: Any) -> dict[str, Any]:
        self._stdin.write(json.dumps(msg) + "\n")
        self._stdin.flush()
        return self._read()

    def supports(self, case: str) -> bool:
        return case in ("one", "fifty_dict")  # its reads end in .to_dict(), like fsplug's fifty_dict

    def load(self, wl: Workload) -> None:
        f = self.dir / f"keys_{wl.case}.json"
        f.write_text(json.dumps(wl.keys))
        self._call(cmd="load", case=wl.case, keys_file=str(f))

    def run(self, case: str, lo: int, hi: int) -> list[int]:
        return self._call(cmd="run", case=case, lo=lo, hi=hi)["samples"]

    def check(self, keys: list[int]) -> dict[str, list[Any]]:
        return self._call(cmd="check", keys=keys)["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
