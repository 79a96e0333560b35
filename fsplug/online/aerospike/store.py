"""The Aerospike online store: one record per entity, one bin per feature, one batch read per request.

Layout (see design.md): an entity's record lives in the set `<project>-<entity>` (or the `sets`
override), so projects sharing a namespace never share records; keyed by its join key value (int
or string; composite keys are encoded as the compact JSON array of the values, e.g. `[42,"sfo"]`;
a string holding a NUL goes by its digest, see `client_key`).
Every feature view writes its own bins plus its timestamp bin `_ts_<view>` (event time in
microseconds) into that record, so views never clobber each other. Keys are sent with writes
(POLICY_KEY_SEND) so records can be inspected with standard tools.

Writes are `batch_write`s of bin-level write operations, each guarded by a filter expression
"timestamp bin missing, or stored timestamp <= this row's": re-running an old
materialization cannot roll data back (such rows come back FILTERED_OUT and are skipped).

Materialization state: one record per (project, view) in the set `state_set` (default
`fsplug_state`), key `<project>/<view>`, its JSON in the bin `state`.

The `aerospike` driver is imported only when the store connects (connection.py), and every driver
failure becomes an fsplug error in one place (errors.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from fsplug.errors import NamespaceNotFoundError, StoreError, StoreTimeoutError, StoreUnavailableError
from fsplug.online.aerospike.config import MAX_SET_BYTES, AerospikeConfig
from fsplug.online.aerospike.connection import Connection, driver
from fsplug.online.aerospike.errors import FILTERED_OUT, KEY_NOT_FOUND, OK, TIMEOUT, Context, store_error
from fsplug.online.base import Capabilities, OnlineStore, WriteBatch
from fsplug.request import KeyList
from fsplug.types import DType

if TYPE_CHECKING:
    from fsplug.plan import RetrievalPlan
    from fsplug.registry import Registry, RegistryDiff

__all__ = ["AerospikeOnlineStore", "encode_key"]


def encode_key(values: tuple[Any, ...]) -> Any:
    """The Aerospike user key of an entity: the value itself, or a compact JSON array for composite keys."""
    if len(values) == 1:
        return values[0]
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)


def client_key(ns: str, set_name: str, user_key: Any) -> tuple[Any, ...]:
    """The client's key tuple of a record.

    A string key holding a NUL character goes by its digest, computed here: the client cuts a string
    key at its first NUL ('u\\x00x' would be the record of 'u'), while the digest of the whole string is
    the one other client libraries compute for it (RIPEMD-160 of the set name, the string type and the
    UTF-8 bytes). Such a record is stored without its user key.
    """
    if type(user_key) is str and "\x00" in user_key:
        h = hashlib.new("ripemd160", set_name.encode() + _STRING_KEY_TYPE + user_key.encode())
        return (ns, set_name, None, bytearray(h.digest()))
    return (ns, set_name, user_key)


_STRING_KEY_TYPE = b"\x03"  # (the particle type of a string key in the digest)


def _has_nul(keys: Sequence[Any]) -> bool:
    """Whether a column of single keys holds a string with a NUL character (one C-level pass)."""
    try:
        return "\x00" in "".join(keys)
    except TypeError:  # not all strings
        return any(type(k) is str and "\x00" in k for k in keys)



class AerospikeOnlineStore(OnlineStore):
    """Online store on an Aerospike cluster."""

    config_model = AerospikeConfig
    capabilities = Capabilities(partial_results=True, multi_process_writes=True)
    config: AerospikeConfig

    def __init__(self, config: AerospikeConfig, repo_root: Path, project: str):
        super().__init__(config, repo_root, project)
        self._conn = Connection(config)
        self._hosts = self._conn.hosts
        self._plan_reads: dict[int, tuple[Any, list[str], list[str]]] = {}  # id(plan) -> (plan, sets, bins)
        self._guards: dict[str, list[Any]] = {}

    # ---- connection ------------------------------------------------------------------------
    def client(self, wait_ms: float | None = None) -> Any:
        """The connected client (see `Connection.client`)."""
        return self._conn.client(wait_ms)

    def connect(self) -> None:
        self._conn.client()

    def close(self) -> None:
        self._conn.close()

    def set_name(self, entity: str) -> str:
        """The set of an entity's records: the `sets` override, else `<project>-<entity>`."""
        return self.config.sets.get(entity) or self.default_name(self.project, entity)

    def address(self) -> str:
        tls = ", TLS" if self.config.tls is not None and self.config.tls.enable else ""
        return f"{', '.join(self._hosts)} (namespace {self.config.namespace}{tls})"

    def location(self, entity: str) -> str:
        return f"Aerospike set {self.config.namespace}.{self.set_name(entity)}"

    def entity_name_problems(self, entities: Sequence[str]) -> dict[str, str]:
        out = {}
        for e in entities:
            name = self.set_name(e)
            if e not in self.config.sets and len(name.encode()) > MAX_SET_BYTES:
                out[e] = (f"the entity's Aerospike set {name!r} (project-entity) is {len(name.encode())} bytes; "
                          f"Aerospike allows {MAX_SET_BYTES}: shorten the project or entity name, or name the set "
                          f"in online_store.sets of feature_store.yaml")
        return out

    def _call(self, what: str, fn: Any, *args: Any, budget_ms: int | None = None, view: str | None = None,
              **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` with the driver's exceptions translated (raised from the original)."""
        aerospike = driver()
        try:
            return fn(*args, **kwargs)
        except aerospike.exception.AerospikeError as exc:
            raise store_error(Context(what, self._hosts, self.config.namespace, budget_ms, view), exc=exc) from exc

    # ---- schema ----------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        cl = self.client()
        replies = self._call("info namespaces", cl.info_all, "namespaces")
        for _node, (err, text) in replies.items():
            if err is None and text:
                return [n for n in text.strip().split(";") if n]
        raise StoreUnavailableError(f"Aerospike info namespaces: no node answered (hosts: {', '.join(self._hosts)})")

    def apply(self, registry: Registry, diff: RegistryDiff) -> list[str]:
        ns = self.config.namespace
        names = self.namespaces()
        if ns not in names:
            raise NamespaceNotFoundError(
                f"Aerospike namespace {ns!r} does not exist on the cluster (it has: {', '.join(names) or 'none'}); "
                "fix online_store.namespace in feature_store.yaml")
        out = [f"namespace {ns!r} found; sets: " + ", ".join(self.set_name(e) for e in registry.entities)
               + f"; materialization state in set {self.config.state_set!r}"]
        by_set: dict[str, list[str]] = {}
        for entity, b in diff.stale:  # bins another definition wrote: emptied, as SQLite's columns
            by_set.setdefault(self.set_name(entity), []).append(b)
        for set_name, bins in by_set.items():
            n = self._empty_bins(set_name, bins)
            out.append(f"emptied bins {', '.join(bins)} of set {ns}.{set_name} that another definition wrote "
                       f"({n} records; their values are gone until the next materialization)")
        return out

    def _empty_bins(self, set_name: str, bins: list[str]) -> int:
        """Delete `bins` from every record of the set holding one; returns how many records held one.

        Per slice of the partitions (so a large set is never held whole): a scan whose filter
        expression, evaluated on the nodes, returns only the keys of records holding one of them (a set
        where none does sends nothing back and is not written), then batch writes deleting the bins by
        digest (a record left without bins is gone); a record removed meanwhile is skipped."""
        aerospike = driver()
        from aerospike_helpers import expressions as exp
        from aerospike_helpers.batch.records import BatchRecords, Write

        cl = self.client()
        ns = self.config.namespace
        holds = [exp.BinExists(b) for b in bins]
        holding = (holds[0] if len(holds) == 1 else exp.Or(*holds)).compile()
        ops = [{"op": aerospike.OPERATOR_WRITE, "bin": b, "val": None} for b in bins]
        policy = {"exists": aerospike.POLICY_EXISTS_UPDATE}
        step = self.config.write_batch_size
        what = f"batch_write emptying bins of set {set_name!r}"
        n = 0
        for begin in range(0, _PARTITIONS, _PARTITIONS_PER_SCAN):
            query = cl.query(ns, set_name)
            found = self._call(f"scan of set {set_name!r}", query.results,
                               {"total_timeout": self.config.teardown_timeout_ms, "expressions": holding,
                                "partition_filter": {"begin": begin, "count": _PARTITIONS_PER_SCAN}},
                               {"nobins": True})
            n += len(found)
            for start in range(0, len(found), step):
                recs = [Write((ns, set_name, None, key[3]), ops, policy=policy)
                        for key, _, _ in found[start:start + step]]
                res = self._call(what, cl.batch_write, BatchRecords(recs),
                                 {"total_timeout": self.config.write_total_timeout_ms,
                                  "max_retries": self.config.max_retries})
                for r in res.batch_records:
                    if r.result not in (OK, KEY_NOT_FOUND):
                        raise store_error(Context(what, self._hosts, ns, self.config.write_total_timeout_ms, key=r.key),
                                          r.result, batch_code=getattr(res, "result", None))
        return n

    def teardown(self, registry: Registry) -> list[str]:
        """Truncate the project's sets and wait until every node holds none of their records.

        A real node removes only records whose last-update time (ms) is before the truncate's, and
        counts them down in the background (`truncating=true`); so: truncate on every node, wait
        for `truncating=false` and `objects=0` everywhere, and truncate again what a write in the
        truncate's own millisecond kept. Then the project's materialization state is removed.
        Raises StoreTimeoutError when records remain past `teardown_timeout_ms` (a writer still
        running).
        """
        cl = self.client()
        ns = self.config.namespace
        sets = list(dict.fromkeys(self.set_name(e) for e in registry.entities))
        sets += [s for s in self._project_sets(cl) if s not in sets]  # of entities an apply deleted since
        deadline = time.monotonic() + self.config.teardown_timeout_ms / 1000
        for s in sets:
            self._truncate(cl, s)
        pending = set(sets)
        rounds = 1
        while pending:
            left = {}
            busy = False
            for s in sorted(pending):
                objects, truncating = self._set_objects(cl, s)
                busy |= truncating
                if objects:
                    left[s] = objects
            if not left:
                break
            if time.monotonic() > deadline:
                raise StoreTimeoutError(
                    f"Aerospike teardown: records remain after {self.config.teardown_timeout_ms} ms in "
                    + ", ".join(f"{ns}.{s} ({n} objects)" for s, n in sorted(left.items()))
                    + "; is something still writing to the project? Stop it and run teardown again")
            if busy:
                time.sleep(0.01)
                continue
            # Every node is done and records remain: written in a truncate's millisecond (or
            # after it). A new truncate, a millisecond later, takes them.
            time.sleep(0.002)
            for s in left:
                self._truncate(cl, s)
            rounds += 1
            pending = set(left)
        self.delete_state(list(registry.feature_views))
        out = [f"truncated set {ns}.{s}" for s in sets]
        if rounds > 1:
            out.append(f"({rounds} truncate rounds: records written during the truncate were removed too)")
        out.append(f"cleared the materialization state of project {self.project!r}")
        return out

    def _truncate(self, cl: Any, set_name: str) -> None:
        # The info command client.truncate() sends, to every node: each answers at once
        # (client.truncate waits on one random node and can time out while the node works).
        cmd = f"truncate:namespace={self.config.namespace};set={set_name}"
        replies = self._call(f"truncate of set {set_name!r}", cl.info_all, cmd)
        errors = [text for _node, (err, text) in replies.items() if err is not None or "ERROR" in (text or "")]
        if errors:
            raise StoreError(f"Aerospike truncate of set {set_name!r} failed: {errors[0]}")

    def _project_sets(self, cl: Any) -> list[str]:
        """The namespace's sets named `<project>-<entity>` that hold records on some node."""
        replies = self._call("info of the namespace's sets", cl.info_all, f"sets/{self.config.namespace}")
        found: set[str] = set()
        for _node, (err, text) in replies.items():
            if err is not None or (text or "").startswith("ERROR"):
                raise StoreError(f"Aerospike info of the sets of namespace {self.config.namespace!r} failed: "
                                 f"{err or text}")
            for entry in (text or "").split(";"):
                fields = dict(item.partition("=")[::2] for item in entry.strip().split(":"))
                name = fields.get("set", "")
                if (fields.get("objects", "0") != "0" and name != self.config.state_set
                        and self.is_default_name(self.project, name)):
                    found.add(name)
        return sorted(found)

    def _set_objects(self, cl: Any, set_name: str) -> tuple[int, bool]:
        """(objects on all nodes together, whether any node is still truncating) of one set."""
        replies = self._call(f"info of set {set_name!r}", cl.info_all, f"sets/{self.config.namespace}/{set_name}")
        objects, truncating = 0, False
        for _node, (err, text) in replies.items():
            if err is not None or (text or "").startswith("ERROR"):
                raise StoreError(f"Aerospike info of set {set_name!r} failed: {err or text}")
            for item in (text or "").strip().rstrip(";").split(":"):
                key, _, value = item.partition("=")
                if key == "objects":
                    objects += int(value)
                elif key == "truncating":
                    truncating |= value == "true"
        return objects, truncating

    # ---- materialization state ---------------------------------------------------------------
    def _state_key(self, view: str) -> tuple[str, str, str]:
        return (self.config.namespace, self.config.state_set, f"{self.project}/{view}")

    def read_state(self, views: Sequence[str]) -> dict[str, str]:
        if not views:
            return {}
        cl = self.client()
        keys = [self._state_key(v) for v in views]
        res = self._call("read of the materialization state", cl.batch_read, keys, ["state"],
                         {"total_timeout": max(self.config.read_total_timeout_ms, 1000),
                          "max_retries": self.config.max_retries})
        out = {}
        for view, rec in zip(views, res.batch_records, strict=True):
            if rec.result == OK and rec.record is not None and rec.record[2].get("state") is not None:
                out[view] = rec.record[2]["state"]
            elif rec.result not in (OK, KEY_NOT_FOUND):
                raise self._read_error(rec.result, getattr(res, "result", OK))
        return out

    def write_state(self, view: str, text: str) -> None:
        aerospike = driver()
        cl = self.client()
        self._call(f"write of the materialization state of view {view!r}", cl.put, self._state_key(view),
                   {"project": self.project, "view": view, "state": text},
                   # state never expires (-1 writes no TTL, so nsup-period 0 namespaces accept it)
                   policy={"key": aerospike.POLICY_KEY_SEND, "ttl": -1,
                           "total_timeout": self.config.write_total_timeout_ms})

    def delete_state(self, views: Sequence[str]) -> None:
        aerospike = driver()
        cl = self.client()
        for v in views:
            try:
                cl.remove(self._state_key(v), policy={"total_timeout": self.config.write_total_timeout_ms})
            except aerospike.exception.RecordNotFound:
                continue
            except aerospike.exception.AerospikeError as exc:
                raise store_error(Context(f"delete of the materialization state of view {v!r}", self._hosts),
                                  exc=exc) from exc

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
        aerospike = driver()
        from aerospike_helpers.batch.records import BatchRecords, Write

        cl = self.client()
        view = batch.view
        ns, set_name = self.config.namespace, self.set_name(view.entity)
        guard = self._guard(view.timestamp_bin)
        slot = next(i for i, t in enumerate(guard) if isinstance(t[2], dict) and t[2].get("val") == _PLACEHOLDER)
        ttl = self.config.ttl_seconds()
        columns = [_to_aerospike(f.dtype, col) for f, col in zip(view.features, batch.columns, strict=True)]
        bins = [f.bin for f in view.features]
        ts_list = batch.event_ts_us.tolist() if hasattr(batch.event_ts_us, "tolist") else list(batch.event_ts_us)
        key_cols = [k.tolist() if hasattr(k, "tolist") else list(k) for k in batch.keys]
        if len(key_cols) == 1 and _has_nul(key_cols[0]):
            keys = [client_key(ns, set_name, k) for k in key_cols[0]]  # (rare: see client_key)
        else:
            keys = [(ns, set_name, encode_key(t)) for t in zip(*key_cols, strict=True)]
        write_op = aerospike.OPERATOR_WRITE
        # (a key that goes by its digest alone has no user key to send: the client crashes on KEY_SEND there)
        key_policy = {3: aerospike.POLICY_KEY_SEND, 4: aerospike.POLICY_KEY_DIGEST}
        written = 0
        step = self.config.write_batch_size
        n = len(keys)
        for start in range(0, n, step):
            recs = []
            for i in range(start, min(n, start + step)):
                ts = ts_list[i]
                ops = [{"op": write_op, "bin": b, "val": col[i]} for b, col in zip(bins, columns, strict=True)]
                ops.append({"op": write_op, "bin": view.timestamp_bin, "val": ts})
                expr = list(guard)
                t = expr[slot]
                expr[slot] = (t[0], t[1], {"val": ts}, t[3])
                recs.append(Write(keys[i], ops,
                                  policy={"key": key_policy[len(keys[i])], "expressions": expr, "ttl": ttl}))
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
                    raise store_error(Context(f"batch_write of view {view.name!r}", self._hosts, ns,
                                              self.config.write_total_timeout_ms, view.name, recs[i].key),
                                      r.result, batch_code=getattr(res, "result", None))
        return written

    # ---- reads -----------------------------------------------------------------------------
    def _keys(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]]) -> tuple[list, list]:
        """The client keys of every group's keys, in order, and the union of the groups' bins."""
        hit = self._plan_reads.get(id(plan))
        if hit is None or hit[0] is not plan:  # per plan: its sets and bins (the plan object is kept and compared)
            bins: list[str] = []
            for g in plan.groups:
                bins.extend(b for b in g.bins if b not in bins)
            hit = (plan, [self.set_name(g.entity) for g in plan.groups], bins)
            if len(self._plan_reads) > 1024:
                self._plan_reads.clear()
            self._plan_reads[id(plan)] = hit
        _, sets, bins = hit
        ns = self.config.namespace
        keys: list[tuple[Any, ...]] = []
        for g, s, group_keys in zip(plan.groups, sets, keys_by_group, strict=True):
            if len(g.join_keys) == 1:
                col = group_keys.columns[0] if type(group_keys) is KeyList else [k[0] for k in group_keys]
                if g.key_dtypes[0] is DType.STRING and _has_nul(col):  # (rare: see client_key)
                    keys += [client_key(ns, s, k) for k in col]
                else:
                    keys += [(ns, s, k) for k in col]
            else:
                keys += [(ns, s, encode_key(k)) for k in group_keys]
        return keys, bins

    def _batch_read(self, keys: list, bins: list[str], timeout_ms: float | None = None,
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
        cl, counted = self._conn.client_within(budget or None)
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

    def read(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
             timeout_ms: float | None = None) -> list[list[Any]]:
        keys, bins = self._keys(plan, keys_by_group)
        recs, batch_code, budget = self._batch_read(keys, bins, timeout_ms)
        out = []
        pos = 0
        for g, group_keys in zip(plan.groups, keys_by_group, strict=True):
            rows: list[tuple[Any, ...] | None] = []
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

    def read_partial(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
                     timeout_ms: float | None = None) -> tuple[list[list[Any]], list[list[Any]]]:
        """Like `read`, but a key whose node failed gets an error entry instead of failing the batch.

        The client splits a batch by node and reports a failed node's keys per record (it does not
        raise), so the keys on live nodes keep their values. Only a failure of the whole call (no
        node reachable at connect, a budget spent before the read) raises.
        """
        keys, bins = self._keys(plan, keys_by_group)
        recs, batch_code, budget = self._batch_read(keys, bins, timeout_ms, partial=True)
        out: list[list[Any]] = []
        errors: list[list[Any]] = []
        seen: dict[int, StoreError] = {}  # one error instance per result code
        pos = 0
        for g, group_keys in zip(plan.groups, keys_by_group, strict=True):
            rows: list[Any] = []
            errs: list[StoreError | None] = []
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
        c = self.config
        return store_error(Context("batch_read", self._hosts, c.namespace,
                                   c.read_total_timeout_ms if budget is None else budget,
                                   socket_timeout_ms=c.read_socket_timeout_ms, max_retries=c.max_retries,
                                   max_conns_per_node=c.max_conns_per_node), code, batch_code=batch_code)


class _TimedOut:
    """Stands for the BatchRecord of a key whose chunk the read's budget did not reach."""

    result = TIMEOUT
    record = None



_PARTITIONS = 4096  # an Aerospike namespace's partitions
_PARTITIONS_PER_SCAN = 256  # apply's scans for bins to empty, a 16th of the set at a time

_PLACEHOLDER = -0x5EED_F5F5_1234  # stands for "this row's event timestamp" in the compiled guard


def _to_aerospike(dtype: DType, col: Sequence[Any]) -> list[Any]:
    """Python/numpy values to what the client writes; None (and NaN) delete the bin (= null); a null
    element of a list is NaN."""
    vals = col.tolist() if hasattr(col, "tolist") else list(col)
    if dtype in (DType.FLOAT64, DType.FLOAT32):
        return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in vals]
    if dtype is DType.FLOAT64_LIST:
        # a null element (Parquet allows one) is NaN, as SQLite's little-endian f8 blob holds it
        return [None if v is None else [math.nan if x is None else float(x) for x in v] for v in vals]
    if dtype is DType.BYTES:
        return [None if v is None else bytes(v) for v in vals]
    return vals
