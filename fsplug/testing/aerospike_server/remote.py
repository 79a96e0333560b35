"""Run the test server in a child process and drive it from the parent.

An in-process server shares the GIL with the test and with the ``aerospike`` client.  That is
fine for almost everything, but a client call that keeps the GIL while it waits for the server
(``client.truncate()`` in aerospike 19.x) can never be answered by an in-process server and times
out; and latency measured in-process includes GIL contention.  ``spawn_server()`` runs
``python -m fsplug.testing.aerospike_server --control`` instead and forwards the fault-injection
methods over the child's stdin/stdout::

    with spawn_server(namespaces={"test": {"nsup_period": 60}}) as srv:
        client = aerospike.client({"hosts": [("127.0.0.1", srv.port)]}).connect()
        client.truncate("test", "demo", 0)       # answered
        srv.fail_next(1, commands={"put"}, action=14)
        srv.stats["put"]

``spawn_server(nodes=3)`` runs a cluster: ``srv.ports``/``srv.hosts``, ``srv.stop_node(i)``,
``srv.start_node(i)``, and ``srv.node(i)`` for one node's fault injection and stats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import contextlib


class RemoteError(RuntimeError):
    """The child process refused a control request."""


class _Channel:
    def __init__(self, proc):
        self.proc = proc
        self.lock = threading.Lock()

    def call(self, method, node=None, *args, **kwargs):
        if "commands" in kwargs and isinstance(kwargs["commands"], (set, frozenset, tuple)):
            kwargs["commands"] = sorted(kwargs["commands"])
        req = {"method": method, "node": node, "args": list(args), "kwargs": kwargs}
        with self.lock:
            if self.proc.poll() is not None:
                raise RemoteError("the test server process has exited")
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RemoteError("the test server process closed its control channel")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RemoteError(reply["error"])
        return reply["result"]


class RemoteNode:
    """Fault injection and counters of one server (or one cluster node) in the child."""

    def __init__(self, channel: _Channel, port: int, node=None):
        self._ch = channel
        self.host = "127.0.0.1"
        self.port = port
        self._node = node

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _call(self, method, *args, **kwargs):
        return self._ch.call(method, self._node, *args, **kwargs)

    def set_latency(self, seconds, commands=None):
        return self._call("set_latency", seconds, commands=commands)

    def refuse_connections(self, refuse=True):
        return self._call("refuse_connections", refuse)

    def drop_connections(self):
        return self._call("drop_connections")

    def pause(self):
        return self._call("pause")

    def resume(self):
        return self._call("resume")

    def fail_next(self, n=1, commands=None, action="drop"):
        return self._call("fail_next", n, commands=commands, action=action)

    def clear_faults(self):
        return self._call("clear_faults")

    @property
    def stats(self) -> dict:
        return self._call("stats")

    def reset_stats(self):
        return self._call("reset_stats")

    def open_connections(self) -> int:
        return self._call("open_connections")


class RemoteServer(RemoteNode):
    """A test server (or cluster) running in a child process. Use as a context manager."""

    def __init__(self, proc, ports):
        super().__init__(_Channel(proc), ports[0])
        self._proc = proc
        self.ports = ports
        self.hosts = [f"127.0.0.1:{p}" for p in ports]

    def client_hosts(self):
        return [("127.0.0.1", p) for p in self.ports]

    def node(self, i: int) -> RemoteNode:
        return RemoteNode(self._ch, self.ports[i], node=i)

    def record_count(self, namespace="test", set=None):  # noqa: A002
        return self._call("record_count", namespace, set)

    def advance_clock(self, seconds):
        return self._call("advance_clock", seconds)

    def freeze_clock(self):
        return self._call("freeze_clock")

    def unfreeze_clock(self):
        return self._call("unfreeze_clock")

    def truncating(self, namespace="test") -> bool:
        return self._call("truncating", namespace)

    def stop_node(self, i: int, rebalance: bool = False):
        return self._call("stop_node", i, rebalance=rebalance)

    def start_node(self, i: int):
        return self._call("start_node", i)

    def stop(self, timeout: float = 10) -> None:
        """End the child process (closing stdin makes it stop its server and exit)."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        for f in (self._proc.stdout,):
            with contextlib.suppress(OSError):
                f.close()

    close = stop

    def __enter__(self) -> RemoteServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn_server(namespaces=("test",), *, nodes: int = 1, port: int = 0, nsup_period: int = 0,
                 default_ttl: int = 0, max_record_size: int = 1024 * 1024,
                 truncate_seconds: float | None = None, durable_delete: str = "refuse",
                 python: str | None = None) -> RemoteServer:
    """Start a test server (``nodes > 1``: a cluster) in a child process; returns when it listens."""
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    ns_json = json.dumps(namespaces if isinstance(namespaces, dict) else list(namespaces))
    cmd = [python or sys.executable, "-m", "fsplug.testing.aerospike_server", "--control",
           "--port", str(port), "--nodes", str(nodes), "--namespaces-json", ns_json,
           "--nsup-period", str(nsup_period), "--default-ttl", str(default_ttl),
           "--max-record-size", str(max_record_size), "--durable-delete", durable_delete]
    if truncate_seconds is not None:
        cmd += ["--truncate-seconds", str(truncate_seconds)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline()
    if "listening on 127.0.0.1 only" not in line:
        proc.kill()
        proc.wait()
        raise RemoteError(f"the test server did not start: {line!r}")
    ports = [int(p) for p in line.split("port ", 1)[1].split(",", 1)[0].split(";")]
    return RemoteServer(proc, ports)
