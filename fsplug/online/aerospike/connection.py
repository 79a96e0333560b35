"""The connection to an Aerospike cluster: one client per store, connected in the background.

The first connect of a store is waited for (bounded by `connect_timeout_ms`); once a connect has
failed, callers wait at most their own budget while one background connect keeps trying, so a
cluster that accepts connections but does not answer costs each read its budget, not a connect
timeout. The `aerospike` driver is imported only here and in errors.py, when a store connects.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from typing import Any

from fsplug.errors import StoreDriverMissingError, StoreTimeoutError, StoreUnavailableError
from fsplug.extras import require
from fsplug.online.aerospike.config import AerospikeConfig, env_value, parse_host
from fsplug.online.aerospike.errors import Context, store_error

__all__ = ["Connection", "driver"]


def driver() -> Any:
    """The `aerospike` module; StoreDriverMissingError naming the install line when it is missing."""
    return require("aerospike", extra="aerospike", needed_for="online_store type aerospike",
                   error=StoreDriverMissingError)


class Connection:
    """The client of one store: connected on first use, again after a failed connect, closed by `close`."""

    def __init__(self, config: AerospikeConfig):
        self.config = config
        self.hosts = config.seed_hosts()
        self._client: Any = None
        self._lock = threading.Lock()
        self._connecting: _ConnectAttempt | None = None
        self._connect_failed = False  # then callers stop waiting past their budget for a connect
        self._generation = 0  # bumped by close(): a connect that ends afterwards is discarded

    def _policies(self) -> dict[str, Any]:
        c = self.config
        read = {"total_timeout": c.read_total_timeout_ms, "socket_timeout": c.read_socket_timeout_ms,
                "max_retries": c.max_retries, "sleep_between_retries": c.sleep_between_retries_ms}
        write = {"total_timeout": c.write_total_timeout_ms, "socket_timeout": c.write_socket_timeout_ms,
                 "max_retries": c.max_retries}
        return {"read": read, "batch": dict(read), "write": write, "operate": write, "apply": write,
                "remove": write, "info": {"timeout": max(c.write_total_timeout_ms, 1000)},
                "batch_parent_write": dict(write)}

    def client(self, wait_ms: float | None = None) -> Any:
        """The connected client; connects (again) on first use and after a failed connect.

        The connect runs in a background thread (one at a time). The first connect of the store is
        waited for (`connect_timeout_ms` bounds it: call `connect()` at startup to keep it out of
        the serving path). Once a connect has failed, a caller waits at most `wait_ms` (a read
        passes its own budget), so a cluster that accepts connections but does not answer costs
        each read its budget (StoreTimeoutError), not a connect timeout; a connect that finishes
        after its callers gave up is kept for the next call.
        """
        return self.client_within(wait_ms)[0]

    def client_within(self, wait_ms: float | None) -> tuple[Any, bool]:
        """`client(wait_ms)` and whether the time spent counts against the caller's budget.

        False after waiting for the first connect: that wait is on purpose, and the read that
        triggered it still gets its whole budget.
        """
        cl = self._client
        if cl is not None:
            return cl, True
        with self._lock:
            if self._client is not None:
                return self._client, True
            if not self._connect_failed:
                wait_ms = None
            attempt = self._connecting
            if attempt is None:
                attempt = self._connecting = _ConnectAttempt(self._generation)
                threading.Thread(target=self._connect, args=(attempt,), name="fsplug-aerospike-connect",
                                 daemon=True).start()
        if not attempt.done.wait(None if wait_ms is None else max(wait_ms, 0) / 1000):
            raise StoreTimeoutError(
                f"Aerospike connect to {', '.join(self.hosts)} did not finish within this call's {wait_ms:g} ms "
                "budget (the cluster is not answering); it goes on in the background")
        if attempt.error is not None:
            err = copy.copy(attempt.error)  # several callers may raise it: one instance each
            raise err.with_traceback(None) from None
        return attempt.client, wait_ms is not None

    def _connect(self, attempt: _ConnectAttempt) -> None:
        """Connect once (in the background thread started by `client`) and publish the outcome."""
        client = None
        try:
            client = self._new_client()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting callers
            attempt.error = exc
        with self._lock:
            if self._connecting is attempt:
                self._connecting = None
            self._connect_failed = client is None
            if client is not None:
                if attempt.generation != self._generation:  # close() was called meanwhile
                    attempt.error = StoreUnavailableError("Aerospike store was closed while connecting")
                    _close_quietly(client)
                else:
                    self._client = attempt.client = client
        attempt.done.set()

    def _new_client(self) -> Any:
        aerospike = driver()
        c = self.config
        cfg: dict[str, Any] = {
            "hosts": [parse_host(h) for h in self.hosts],
            "policies": self._policies(),
            "connect_timeout": c.connect_timeout_ms,
            "min_conns_per_node": c.min_conns_per_node,
            "max_conns_per_node": c.max_conns_per_node,
            "tend_interval": c.tend_interval_ms,
            "use_services_alternate": c.use_services_alternate,
        }
        if c.tls is not None and c.tls.enable:
            tls: dict[str, Any] = {"enable": True}
            for k in ("cafile", "certfile", "keyfile"):
                if getattr(c.tls, k):
                    tls[k] = getattr(c.tls, k)
            if c.tls.keyfile_password_env:
                tls["keyfile_pw"] = env_value(c.tls.keyfile_password_env, "tls.keyfile_password_env")
            cfg["tls"] = tls
        if c.user_env and c.password_env:
            # The client connects (and logs in) in its constructor: credentials go in the config.
            cfg["user"] = env_value(c.user_env, "user_env")
            cfg["password"] = env_value(c.password_env, "password_env")
        try:
            client = aerospike.client(cfg)
            client.connect()  # a no-op for clients that connected in the constructor
        except Exception as exc:  # driver errors only; translated below
            if not isinstance(exc, aerospike.exception.AerospikeError):
                raise
            # `from None` on purpose: the driver's exception was raised while `cfg` held the user
            # and password, so it is not chained (a traceback printer could show its frame).
            raise store_error(Context("connect", self.hosts, budget_ms=c.connect_timeout_ms), exc=exc) from None
        finally:
            cfg.pop("password", None)
            cfg.get("tls", {}).pop("keyfile_pw", None)
        return client

    def close(self) -> None:
        """Close the client; a connect still running is discarded when it ends."""
        with self._lock:
            self._generation += 1
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None


class _ConnectAttempt:
    """One connect in flight: callers wait on `done`, then read `client` or `error`."""

    def __init__(self, generation: int):
        self.generation = generation
        self.done = threading.Event()
        self.client: Any = None
        self.error: BaseException | None = None


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken client must not raise
        client.close()
