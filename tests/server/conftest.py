"""Fixtures of the server tests: `fsplug serve` started as a real process, spoken to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ROOT, build_served_repo

TOKEN = "s3cret-token-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `fsplug serve` (or `command`: `fsplug ui`) process, with its workers, and an HTTP client for it."""

    def __init__(self, repo: Path, *args: str, env: dict[str, str] | None = None, command: str = "serve"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = repo.parent / f"serve-{self.port}.log"
        self._log_fh = open(self.log, "wb")  # noqa: SIM115 - the child writes to it until stop() closes it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fsplug.cli",
                "--repo",
                str(repo),
                command,
                "--port",
                str(self.port),
                *args,
            ],
            env=full_env,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.client.get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kw)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.client.close()
        self._log_fh.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(repo: Path, *args: str, env: dict[str, str] | None = None, command: str = "serve") -> Server:
    srv = Server(repo, *args, env=env, command=command)
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    return srv


SQLITE_YAML = (
    "project: srv\nregistry: data/registry.json\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
)


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory) -> Path:
    """The shipped ride-hailing repo with 200 drivers of data, applied and materialized (SQLite)."""
    return build_served_repo(tmp_path_factory.mktemp("served") / "repo", SQLITE_YAML, n_drivers=200, days=2)


@pytest.fixture(scope="module")
def server(served_repo) -> Iterator[Server]:
    """`fsplug serve --workers 2 --enable-push` on the served repo, polling the registry every 0.2 s."""
    srv = start(
        served_repo,
        "--workers",
        "2",
        "--enable-push",
        "--registry-poll",
        "0.2",
        env={"FSPLUG_SERVE_TOKEN": TOKEN},
    )
    yield srv
    srv.stop()
