"""The Aerospike online store: one record per entity, one bin per feature, one batch read per request.

Layout (see design.md): an entity's record lives in the set named after the entity (or the
`sets` override), keyed by its join key value (int or string; composite keys are encoded as
the compact JSON array of the values, e.g. `[42,"sfo"]`). Every feature view writes its own
bins plus its timestamp bin `_ts_<view>` (event time in microseconds) into that record, so
views never clobber each other. Keys are sent with writes (POLICY_KEY_SEND) so records can be
inspected with standard tools.

Writes are `batch_write`s of bin-level write operations, each guarded by a filter expression
"timestamp bin missing, or stored timestamp <= this row's": re-running an old
materialization cannot roll data back (such rows come back FILTERED_OUT and are skipped).

The `aerospike` driver is imported only when the store connects, and every driver exception
becomes an fsplug error in exactly one place: `_translate`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import Field, field_validator, model_validator

from fsplug.definitions import parse_ttl
from fsplug.errors import (
    ConfigError,
    NamespaceNotFoundError,
    RecordTooBigError,
    StoreDriverMissingError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
    TTLNotAllowedError,
)
from fsplug.online.base import Capabilities, KeyList, OnlineStore, StoreConfig, WriteBatch
from fsplug.types import DType

if TYPE_CHECKING:
    from fsplug.plan import RetrievalPlan
    from fsplug.registry import Registry, RegistryDiff

__all__ = ["AerospikeConfig", "TLSConfig", "AerospikeOnlineStore", "encode_key"]

MAX_NAMESPACE_BYTES = 31
MAX_SET_BYTES = 63

# Aerospike result codes used here (as_status.h)
OK, KEY_NOT_FOUND, RECORD_TOO_BIG, TIMEOUT, NAMESPACE_NOT_FOUND, FORBIDDEN, FILTERED_OUT = 0, 2, 13, 9, 20, 22, 27
SECURITY_NOT_SUPPORTED, NO_MORE_CONNECTIONS = 51, -7
# Client-side codes of a node that cannot be reached. The client reports them per record when a
# node of a batch fails (NO_RESPONSE -15 for its keys, the batch's own result says why: -10, 9...);
# batch calls do not raise for them.
UNREACHABLE = frozenset({-16, -15, -14, -12, -11, -10, -8, -7, -6, -4, 11})


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(v: Any) -> str | None:
    # The message never repeats the value: a secret pasted here by mistake must not be echoed.
    if v is not None and not (isinstance(v, str) and _ENV_NAME.match(v)):
        raise ValueError("must be the name of an environment variable (letters, digits and '_'), not the "
                         "value itself")
    return v


class TLSConfig(StoreConfig):
    """TLS settings; file paths only (never key material inline)."""

    type: str = "tls"
    enable: bool = Field(default=True, description="Use TLS to talk to the cluster.")
    name: str | None = Field(default=None, description="TLS name of the nodes (for certificate checks).")
    cafile: str | None = Field(default=None, description="CA bundle path.")
    certfile: str | None = Field(default=None, description="Client certificate path (mutual TLS).")
    keyfile: str | None = Field(default=None, description="Client private key path (mutual TLS).")
    keyfile_password_env: str | None = Field(default=None, description="Env var holding the key's password.")

    @field_validator("keyfile_password_env", mode="before")
    @classmethod
    def _env_name(cls, v: Any) -> str | None:
        return _check_env_name(v)


class AerospikeConfig(StoreConfig):
    """`online_store` settings for `type: aerospike`. Credentials come from environment variables."""

    type: str = "aerospike"
    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:3000"],
                             description="Seed nodes as host:port (or host:tls_name:port).")
    hosts_env: str | None = Field(default="FSPLUG_AEROSPIKE_HOSTS",
                                  description="Env var that, when set, overrides hosts (comma-separated).")
    namespace: str = Field(default="test", description="Namespace holding fsplug's sets (at most 31 bytes).")
    sets: dict[str, str] = Field(default_factory=dict, description="Per-entity set name overrides.")
    record_ttl: str | int = Field(
        default="never",
        description="Record TTL: `never` (default; works with nsup-period 0), `namespace-default`, or a "
                    "duration like 30d. Feature freshness is the view's ttl, checked at read time.")
    read_total_timeout_ms: int = Field(default=50, ge=0, description="Total budget of a batch read, retries included.")
    read_socket_timeout_ms: int = Field(default=20, ge=0, description="Budget of one read attempt; retries fire inside the total.")
    write_total_timeout_ms: int = Field(default=5000, ge=0, description="Total budget of one batch_write chunk.")
    write_socket_timeout_ms: int = Field(default=2000, ge=0, description="Budget of one write attempt.")
    max_retries: int = Field(default=2, ge=0, description="Retries of a read within its total timeout.")
    sleep_between_retries_ms: int = Field(default=0, ge=0, description="Pause between retries.")
    connect_timeout_ms: int = Field(default=1000, ge=1, description="Timeout of the initial connection to a seed.")
    min_conns_per_node: int = Field(default=4, ge=0, description="Connections opened per node at connect (warm-up).")
    max_conns_per_node: int = Field(default=100, ge=1, description="Connection pool cap per node.")
    write_batch_size: int = Field(default=5000, ge=1, le=100_000, description="Records per batch_write call.")
    max_read_batch: int = Field(default=5000, ge=1, description="Keys per batch_read; larger requests are chunked.")
    tend_interval_ms: int = Field(default=1000, ge=250, description="Cluster tend interval.")
    user_env: str | None = Field(default=None, description="Env var holding the user name (security enabled clusters).")
    password_env: str | None = Field(default=None, description="Env var holding the password.")
    tls: TLSConfig | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    use_services_alternate: bool = Field(default=False, description="Use nodes' alternate addresses (NAT).")

    @field_validator("user_env", "password_env", "hosts_env", mode="before")
    @classmethod
    def _env_name(cls, v: Any) -> str | None:
        return _check_env_name(v)

    @model_validator(mode="after")
    def _credentials(self) -> "AerospikeConfig":
        if (self.user_env is None) != (self.password_env is None):
            raise ValueError("user_env and password_env go together: name both environment variables, or neither")
        return self

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        if not v or len(v.encode()) > MAX_NAMESPACE_BYTES:
            raise ValueError(f"namespace {v!r} is {len(v.encode())} bytes; Aerospike allows 1 to {MAX_NAMESPACE_BYTES}")
        return v

    @field_validator("sets")
    @classmethod
    def _sets(cls, v: dict[str, str]) -> dict[str, str]:
        for entity, name in v.items():
            if not name or len(name.encode()) > MAX_SET_BYTES:
                raise ValueError(f"set {name!r} for entity {entity!r} is {len(name.encode())} bytes; "
                                 f"Aerospike allows 1 to {MAX_SET_BYTES}")
        return v

    @field_validator("record_ttl")
    @classmethod
    def _ttl(cls, v: str | int) -> str | int:
        if v in ("never", "namespace-default"):
            return v
        try:
            if parse_ttl(v) is None:
                raise ValueError("a record_ttl of 0 is ambiguous: write `never` or `namespace-default`")
        except ValueError as exc:
            raise ValueError(f"record_ttl: {exc}; or `never` / `namespace-default`") from None
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("hosts needs at least one host:port")
        for h in v:
            parse_host(h)
        return v

    def seed_hosts(self) -> list[str]:
        env = os.environ.get(self.hosts_env) if self.hosts_env else None
        if env:
            hosts = [h.strip() for h in env.split(",") if h.strip()]
            for h in hosts:
                parse_host(h)
            return hosts
        return list(self.hosts)

    def ttl_seconds(self) -> int:
        """The TTL written with records: -1 never expire, 0 namespace default, else seconds."""
        if self.record_ttl == "never":
            return -1
        if self.record_ttl == "namespace-default":
            return 0
        return int(parse_ttl(self.record_ttl))


def parse_host(text: str) -> tuple[Any, ...]:
    """`host:port` or `host:tls_name:port` -> a tuple for the client's config."""
    parts = text.rsplit(":", 2) if text.count(":") >= 2 and not text.startswith("[") else text.rsplit(":", 1)
    try:
        port = int(parts[-1])
    except (ValueError, IndexError):
        raise ConfigError(f"host {text!r} must look like host:port (e.g. 127.0.0.1:3000)") from None
    if not 0 < port < 65536:
        raise ConfigError(f"host {text!r}: port {port} is out of range")
    if len(parts) == 3:
        return (parts[0], port, parts[1])
    return (parts[0], port)


def encode_key(values: tuple[Any, ...]) -> Any:
    """The Aerospike user key of an entity: the value itself, or a compact JSON array for composite keys."""
    if len(values) == 1:
        return values[0]
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def _translate(exc: Exception, what: str, hosts: Sequence[str], budget_ms: int | None = None,
               view: str | None = None) -> StoreError:
    """The one place Aerospike driver exceptions become fsplug errors."""
    from aerospike import exception as ae

    code = getattr(exc, "code", None)
    msg = getattr(exc, "msg", None) or str(exc)
    if isinstance(exc, ae.TimeoutError) or code == TIMEOUT:
        return StoreTimeoutError(f"Aerospike {what} timed out" +
                                 (f" (total budget {budget_ms} ms)" if budget_ms is not None else "") + f": {msg}")
    if isinstance(exc, ae.NamespaceNotFound) or code == NAMESPACE_NOT_FOUND:
        return NamespaceNotFoundError(f"Aerospike {what}: namespace not found ({msg}); check online_store.namespace "
                                      "against `asinfo -v namespaces`")
    if isinstance(exc, ae.RecordTooBig) or code == RECORD_TOO_BIG:
        return RecordTooBigError(f"Aerospike {what}: record too big" + (f" writing view {view!r}" if view else "")
                                 + f" ({msg}); the namespace's max-record-size caps a whole entity record")
    if isinstance(exc, ae.ForbiddenError) or code == FORBIDDEN:
        return TTLNotAllowedError(_ttl_hint(what))
    if code == SECURITY_NOT_SUPPORTED:
        return StoreError(f"Aerospike {what}: the cluster has no security (access control) enabled, but "
                          "online_store.user_env is set; remove user_env/password_env for this cluster")
    if isinstance(exc, (ae.ClusterError, ae.ConnectionError, ae.InvalidNodeError, ae.InvalidHostError,
                        ae.NoMoreConnectionsError, ae.MaxRetriesExceeded, ae.MaxErrorRateExceeded,
                        ae.ClientAbortError)) or code in UNREACHABLE:
        return StoreUnavailableError(f"Aerospike {what}: cluster unreachable (hosts tried: {', '.join(hosts)}): {msg}")
    return StoreError(f"Aerospike {what} failed (code {code}): {msg}")


def _ttl_hint(what: str) -> str:
    return (f"Aerospike {what}: the server refused a record TTL (result code 22, FAIL_FORBIDDEN). The namespace "
            "has nsup-period 0, so records with a TTL are not allowed. Either set `record_ttl: never` under "
            "online_store in feature_store.yaml, or configure the namespace with a non-zero nsup-period (or "
            "allow-ttl-without-nsup true).")


class AerospikeOnlineStore(OnlineStore):
    """Online store on an Aerospike cluster."""

    config_model = AerospikeConfig
    capabilities = Capabilities(max_read_batch=5000, conditional_writes=True, record_ttl=True, partial_results=True)
    config: AerospikeConfig

    def __init__(self, config: AerospikeConfig, repo_root: Path):
        super().__init__(config, repo_root)
        self._client: Any = None
        self._lock = threading.Lock()
        self._plan_reads: dict[int, tuple[Any, list[str], list[str]]] = {}  # id(plan) -> (plan, sets, bins)
        self._connecting: _ConnectAttempt | None = None
        self._connect_failed = False  # then callers stop waiting past their budget for a connect
        self._generation = 0  # bumped by close(): a connect that ends afterwards is discarded
        self._guards: dict[str, list[Any]] = {}
        self._hosts = config.seed_hosts()

    # ---- connection ------------------------------------------------------------------------
    def _aero(self) -> Any:
        try:
            import aerospike
        except ImportError as exc:
            raise StoreDriverMissingError(
                "online_store type aerospike needs the `aerospike` Python client: pip install 'aerospike>=19'"
            ) from exc
        return aerospike

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
        return self._client_within(wait_ms)[0]

    def _client_within(self, wait_ms: float | None) -> tuple[Any, bool]:
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
                f"Aerospike connect to {', '.join(self._hosts)} did not finish within this call's {wait_ms:g} ms "
                "budget (the cluster is not answering); it goes on in the background")
        if attempt.error is not None:
            err = copy.copy(attempt.error)  # several callers may raise it: one instance each
            raise err.with_traceback(None) from None
        return attempt.client, wait_ms is not None

    def connect(self) -> None:
        self.client()

    def _connect(self, attempt: "_ConnectAttempt") -> None:
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
        aerospike = self._aero()
        c = self.config
        cfg: dict[str, Any] = {
            "hosts": [parse_host(h) for h in self._hosts],
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
                tls["keyfile_pw"] = _env(c.tls.keyfile_password_env, "tls.keyfile_password_env")
            cfg["tls"] = tls
        if c.user_env and c.password_env:
            # The client connects (and logs in) in its constructor: credentials go in the config.
            cfg["user"] = _env(c.user_env, "user_env")
            cfg["password"] = _env(c.password_env, "password_env")
        try:
            client = aerospike.client(cfg)
            client.connect()  # a no-op for clients that connected in the constructor
        except Exception as exc:  # driver errors only; translated below
            if not isinstance(exc, aerospike.exception.AerospikeError):
                raise
            raise _translate(exc, "connect", self._hosts, c.connect_timeout_ms) from None
        finally:
            cfg.pop("password", None)
            cfg.get("tls", {}).pop("keyfile_pw", None)
        return client

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            if self._client is not None:
                _close_quietly(self._client)
                self._client = None

    def set_name(self, entity: str) -> str:
        return self.config.sets.get(entity, entity)

    def _call(self, what: str, fn: Any, *args: Any, budget_ms: int | None = None, view: str | None = None,
              **kwargs: Any) -> Any:
        aerospike = self._aero()
        try:
            return fn(*args, **kwargs)
        except aerospike.exception.AerospikeError as exc:
            raise _translate(exc, what, self._hosts, budget_ms, view) from None

    # ---- schema ----------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        cl = self.client()
        replies = self._call("info namespaces", cl.info_all, "namespaces")
        for _node, (err, text) in replies.items():
            if err is None and text:
                return [n for n in text.strip().split(";") if n]
        raise StoreUnavailableError(f"Aerospike info namespaces: no node answered (hosts: {', '.join(self._hosts)})")

    def apply(self, registry: "Registry", diff: "RegistryDiff") -> list[str]:
        ns = self.config.namespace
        names = self.namespaces()
        if ns not in names:
            raise NamespaceNotFoundError(
                f"Aerospike namespace {ns!r} does not exist on the cluster (it has: {', '.join(names) or 'none'}); "
                "fix online_store.namespace in feature_store.yaml")
        return [f"namespace {ns!r} found; sets: " + ", ".join(self.set_name(e) for e in registry.entities)]

    def teardown(self, registry: "Registry") -> list[str]:
        cl = self.client()
        out = []
        for entity in registry.entities:
            s = self.set_name(entity)
            # The same info command client.truncate() sends, to every node: each answers at once
            # (client.truncate waits on one random node and can time out while the node works).
            cmd = f"truncate:namespace={self.config.namespace};set={s}"
            replies = self._call(f"truncate of set {s!r}", cl.info_all, cmd)
            errors = [text for _node, (err, text) in replies.items() if err is not None or "ERROR" in (text or "")]
            if errors:
                raise StoreError(f"Aerospike truncate of set {s!r} failed: {errors[0]}")
            out.append(f"truncated set {self.config.namespace}.{s}")
        return out

    # ---- writes ----------------------------------------------------------------------------
    def _guard(self, ts_bin: str) -> list[Any]:
        """Compiled filter "ts bin missing or <= NEW", with NEW as a placeholder at index `_guard_slot`."""
        g = self._guards.get(ts_bin)
        if g is None:
            from aerospike_helpers import expressions as exp

            g = exp.Or(exp.Not(exp.BinExists(ts_bin)), exp.LE(exp.IntBin(ts_bin), _PLACEHOLDER)).compile()
            self._guards[ts_bin] = g
        return g

    def write(self, batch: WriteBatch) -> int:
        aerospike = self._aero()
        from aerospike_helpers.batch.records import BatchRecords, Write

        cl = self.client()
        view = batch.view
        ns, set_name = self.config.namespace, self.set_name(view.entity)
        guard = self._guard(view.timestamp_bin)
        slot = next(i for i, t in enumerate(guard) if isinstance(t[2], dict) and t[2].get("val") == _PLACEHOLDER)
        ttl = self.config.ttl_seconds()
        columns = [_to_aerospike(f.dtype, col) for f, col in zip(view.features, batch.columns)]
        bins = [f.bin for f in view.features] + [view.timestamp_bin]
        ts_list = batch.event_ts_us.tolist() if hasattr(batch.event_ts_us, "tolist") else list(batch.event_ts_us)
        key_cols = [k.tolist() if hasattr(k, "tolist") else list(k) for k in batch.keys]
        keys = [encode_key(t) for t in zip(*key_cols)]
        write_op = aerospike.OPERATOR_WRITE
        send_key = aerospike.POLICY_KEY_SEND
        written = 0
        step = self.config.write_batch_size
        n = len(keys)
        for start in range(0, n, step):
            recs = []
            for i in range(start, min(n, start + step)):
                ts = ts_list[i]
                ops = [{"op": write_op, "bin": b, "val": col[i]} for b, col in zip(bins, columns)]
                ops.append({"op": write_op, "bin": view.timestamp_bin, "val": ts})
                expr = list(guard)
                t = expr[slot]
                expr[slot] = (t[0], t[1], {"val": ts}, t[3])
                recs.append(Write((ns, set_name, keys[i]), ops,
                                  policy={"key": send_key, "expressions": expr, "ttl": ttl}))
            res = self._call(f"batch_write of view {view.name!r}", cl.batch_write, BatchRecords(recs),
                             {"total_timeout": self.config.write_total_timeout_ms,
                              "socket_timeout": self.config.write_socket_timeout_ms,
                              "max_retries": self.config.max_retries},
                             budget_ms=self.config.write_total_timeout_ms, view=view.name)
            for i, r in enumerate(res.batch_records):
                if r.result == OK:
                    written += 1
                elif r.result == FILTERED_OUT:
                    continue  # a newer event is already stored
                else:
                    raise self._record_error(r.result, view.name, recs[i].key, getattr(res, "result", None))
        return written

    def _record_error(self, code: int, view: str, key: Any, batch_code: int | None = None) -> StoreError:
        what = f"batch_write of view {view!r}"
        entity = f"entity key {key[2]!r}"
        if code in UNREACHABLE and batch_code == TIMEOUT:
            code = TIMEOUT  # the node of this key did not answer in time
        if code == FORBIDDEN:
            return TTLNotAllowedError(_ttl_hint(what))
        if code == RECORD_TOO_BIG:
            return RecordTooBigError(f"Aerospike {what}: record of {entity} is too big for the namespace's "
                                     "max-record-size")
        if code == TIMEOUT:
            return StoreTimeoutError(f"Aerospike {what}: {entity} timed out (budget "
                                     f"{self.config.write_total_timeout_ms} ms)")
        if code == NAMESPACE_NOT_FOUND:
            return NamespaceNotFoundError(f"Aerospike {what}: namespace {self.config.namespace!r} not found")
        if code in UNREACHABLE:
            return StoreUnavailableError(f"Aerospike {what}: {entity}: its node is unreachable (code {code}); "
                                         "the write may or may not have landed: run it again")
        return StoreError(f"Aerospike {what}: {entity} failed with result code {code}")

    # ---- reads -----------------------------------------------------------------------------
    def _keys(self, plan: "RetrievalPlan", keys_by_group: Sequence[Sequence[tuple[Any, ...]]]) -> tuple[list, list]:
        """The client keys of every group's keys, in order, and the union of the groups' bins."""
        hit = self._plan_reads.get(id(plan))
        if hit is None or hit[0] is not plan:  # per plan: its sets and bins (the plan object is kept and compared)
            bins: list[str] = []
            for g in plan.groups:
                bins.extend(b for b in g.bins if b not in bins)
            hit = (plan, [self.set_name(g.set_name) for g in plan.groups], bins)
            if len(self._plan_reads) > 1024:
                self._plan_reads.clear()
            self._plan_reads[id(plan)] = hit
        _, sets, bins = hit
        ns = self.config.namespace
        keys: list[tuple[Any, ...]] = []
        for g, s, group_keys in zip(plan.groups, sets, keys_by_group):
            if len(g.join_keys) == 1:
                col = group_keys.columns[0] if type(group_keys) is KeyList else [k[0] for k in group_keys]
                keys += [(ns, s, k) for k in col]
            else:
                keys += [(ns, s, encode_key(k)) for k in group_keys]
        return keys, bins

    def _batch_read(self, keys: list, bins: list[str], timeout_ms: int | None = None,
                    partial: bool = False) -> tuple[list[Any], int, int]:
        """Every key's BatchRecord in order, the first non-zero batch result code, and the budget (ms).

        One deadline covers the connect (if any) and every chunk: the call never runs past its budget.
        With `partial`, chunks the budget does not reach come back as timed-out records instead of
        failing the keys already read.
        """
        c = self.config
        budget = c.read_total_timeout_ms
        if timeout_ms is not None and (budget == 0 or timeout_ms < budget):
            budget = max(1, int(timeout_ms))
        t0 = time.monotonic()
        cl, counted = self._client_within(budget or None)
        if not counted:
            t0 = time.monotonic()
        out: list[Any] = []
        batch_code = OK
        step = c.max_read_batch
        for i in range(0, len(keys), step):
            policy = None
            left = budget - (time.monotonic() - t0) * 1000 if budget else 0
            if budget and (budget != c.read_total_timeout_ms or left < budget - 1):
                if left < 1:
                    if not partial:
                        raise StoreTimeoutError(f"Aerospike batch_read ran out of its {budget} ms budget")
                    out.extend(_TimedOut for _ in range(len(keys) - i))
                    batch_code = batch_code or TIMEOUT
                    break
                left_ms = int(left)
                sock = c.read_socket_timeout_ms
                policy = {"total_timeout": left_ms, "socket_timeout": min(left_ms, sock) if sock else 0,
                          "max_retries": c.max_retries, "sleep_between_retries": c.sleep_between_retries_ms}
            res = self._call("batch_read", cl.batch_read, keys[i:i + step], bins, policy, budget_ms=budget)
            out.extend(res.batch_records)
            if batch_code == OK:
                batch_code = getattr(res, "result", OK) or OK
        return out, batch_code, budget

    def read(self, plan: "RetrievalPlan", keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
             timeout_ms: int | None = None) -> list[list[Any]]:
        keys, bins = self._keys(plan, keys_by_group)
        recs, batch_code, budget = self._batch_read(keys, bins, timeout_ms)
        out = []
        pos = 0
        for g, group_keys in zip(plan.groups, keys_by_group, strict=True):
            rows = []
            group_bins = g.bins
            for r in recs[pos:pos + len(group_keys)]:
                if r.result == OK:  # the record's bins -> a tuple aligned to the group's bins
                    rows.append(tuple(map(r.record[2].get, group_bins)))
                elif r.result == KEY_NOT_FOUND:
                    rows.append(None)
                else:
                    raise self._read_error(r.result, batch_code, budget)
            out.append(rows)
            pos += len(group_keys)
        return out

    def read_partial(self, plan: "RetrievalPlan", keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
                     timeout_ms: int | None = None) -> tuple[list[list[Any]], list[list[Any]]]:
        """Like `read`, but a key whose node failed gets an error entry instead of failing the batch.

        The client splits a batch by node and reports a failed node's keys per record (it does not
        raise), so the keys on live nodes keep their values. Only a failure of the whole call (no
        node reachable at connect, a budget spent before the read) raises.
        """
        keys, bins = self._keys(plan, keys_by_group)
        recs, batch_code, budget = self._batch_read(keys, bins, timeout_ms, partial=True)
        out, errors = [], []
        seen: dict[int, StoreError] = {}  # one error instance per result code
        pos = 0
        for g, group_keys in zip(plan.groups, keys_by_group, strict=True):
            rows, errs = [], []
            group_bins = g.bins
            for r in recs[pos:pos + len(group_keys)]:
                if r.result == OK:  # the record's bins -> a tuple aligned to the group's bins
                    rows.append(tuple(map(r.record[2].get, group_bins)))
                    errs.append(None)
                else:
                    rows.append(None)
                    if r.result == KEY_NOT_FOUND:
                        errs.append(None)
                    else:
                        err = seen.get(r.result)
                        if err is None:
                            err = seen[r.result] = self._read_error(r.result, batch_code, budget)
                        errs.append(err)
            out.append(rows)
            errors.append(errs)
            pos += len(group_keys)
        return out, errors

    def _read_error(self, code: int, batch_code: int = OK, budget: int | None = None) -> StoreError:
        budget = self.config.read_total_timeout_ms if budget is None else budget
        if code == TIMEOUT or (code in UNREACHABLE and batch_code == TIMEOUT):
            c = self.config
            return StoreTimeoutError(f"Aerospike batch_read: no answer in time (total budget {budget} ms, "
                                     f"{c.read_socket_timeout_ms} ms per attempt, {c.max_retries} retries; "
                                     f"result code {code})")
        if code == NAMESPACE_NOT_FOUND:
            return NamespaceNotFoundError(f"Aerospike batch_read: namespace {self.config.namespace!r} not found")
        if NO_MORE_CONNECTIONS in (code, batch_code):
            return StoreUnavailableError(f"Aerospike batch_read: no free connection to the node holding the key "
                                         f"(max_conns_per_node={self.config.max_conns_per_node} are busy: the node "
                                         "answers slower than requests arrive)")
        if code in UNREACHABLE:
            why = f"code {code}" + (f", batch result {batch_code}" if batch_code not in (OK, code) else "")
            return StoreUnavailableError(f"Aerospike batch_read: the node holding the key is unreachable ({why}; "
                                         f"hosts {', '.join(self._hosts)})")
        return StoreError(f"Aerospike batch_read failed for a key with result code {code}")


class _TimedOut:
    """Stands for the BatchRecord of a key whose chunk the read's budget did not reach."""

    result = TIMEOUT
    record = None


class _ConnectAttempt:
    """One connect in flight: callers wait on `done`, then read `client` or `error`."""

    def __init__(self, generation: int):
        self.generation = generation
        self.done = threading.Event()
        self.client: Any = None
        self.error: BaseException | None = None


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing a broken client must not raise
        pass


def _env(name: str, key: str) -> str:
    """The value of environment variable `name` (named by online_store.`key`); never echoed in errors."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"online_store.{key} names the environment variable {name}, which is not set")
    return value


_PLACEHOLDER = -0x5EED_F5F5_1234  # stands for "this row's event timestamp" in the compiled guard


def _to_aerospike(dtype: DType, col: Sequence[Any]) -> list[Any]:
    """Python/numpy values to what the client writes; None (and NaN) delete the bin (= null)."""
    vals = col.tolist() if hasattr(col, "tolist") else list(col)
    if dtype in (DType.FLOAT64, DType.FLOAT32):
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in vals]
    if dtype is DType.FLOAT64_LIST:
        return [None if v is None else [float(x) for x in v] for v in vals]
    if dtype is DType.BYTES:
        return [None if v is None else bytes(v) for v in vals]
    return vals
