"""The one boundary where the Aerospike driver's failures become fsplug errors.

Both kinds of failure pass through `store_error`: an exception the client raised (a call that
failed as a whole) and a per-record result code of a batch (batch calls do not raise for their
records). Callers raise its result `from` the driver's exception, so the cause stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fsplug.errors import (
    NamespaceNotFoundError,
    RecordTooBigError,
    StoreError,
    StoreTimeoutError,
    StoreUnavailableError,
    TTLNotAllowedError,
)

__all__ = ["OK", "KEY_NOT_FOUND", "RECORD_TOO_BIG", "TIMEOUT", "NAMESPACE_NOT_FOUND", "FORBIDDEN", "FILTERED_OUT",
           "SECURITY_NOT_SUPPORTED", "NO_MORE_CONNECTIONS", "UNREACHABLE", "Context", "store_error"]

# Aerospike result codes used here (as_status.h)
OK, KEY_NOT_FOUND, RECORD_TOO_BIG, TIMEOUT, NAMESPACE_NOT_FOUND, FORBIDDEN, FILTERED_OUT = 0, 2, 13, 9, 20, 22, 27
SECURITY_NOT_SUPPORTED, NO_MORE_CONNECTIONS = 51, -7
# Client-side codes of a node that cannot be reached. The client reports them per record when a
# node of a batch fails (NO_RESPONSE -15 for its keys, the batch's own result says why: -10, 9...);
# batch calls do not raise for them.
UNREACHABLE = frozenset({-16, -15, -14, -12, -11, -10, -8, -7, -6, -4, 11})


@dataclass(frozen=True)
class Context:
    """What an error message says about the operation that failed."""

    what: str  # "batch_read", "batch_write of view 'stats'", "connect", ...
    hosts: Sequence[str] = ()
    namespace: str | None = None
    budget_ms: int | None = None  # the call's total budget
    view: str | None = None
    key: Any = None  # the record's client key (ns, set, user key), for per-record codes
    socket_timeout_ms: int | None = None
    max_retries: int | None = None
    max_conns_per_node: int | None = None


def _ttl_hint(what: str) -> str:
    return (f"Aerospike {what}: the server refused a record TTL (result code 22, FAIL_FORBIDDEN). The namespace "
            "has nsup-period 0, so records with a TTL are not allowed. Either set `record_ttl: never` under "
            "online_store in feature_store.yaml, or configure the namespace with a non-zero nsup-period (or "
            "allow-ttl-without-nsup true).")


def _exception_kind(exc: BaseException) -> str | None:
    """The failure an exception class names when its code alone does not say it."""
    from aerospike import exception

    ae: Any = exception  # the client's stubs lack several of its exception classes

    if isinstance(exc, ae.TimeoutError):
        return "timeout"
    if isinstance(exc, ae.NamespaceNotFound):
        return "namespace"
    if isinstance(exc, ae.RecordTooBig):
        return "too_big"
    if isinstance(exc, ae.ForbiddenError):
        return "forbidden"
    if isinstance(exc, (ae.ClusterError, ae.ConnectionError, ae.InvalidNodeError, ae.InvalidHostError,
                        ae.NoMoreConnectionsError, ae.MaxRetriesExceeded, ae.MaxErrorRateExceeded,
                        ae.ClientAbortError)):
        return "unreachable"
    return None


def store_error(ctx: Context, code: int | None = None, *, exc: BaseException | None = None,
                batch_code: int | None = OK) -> StoreError:
    """The fsplug error for a failed Aerospike call (`exc`, the driver's exception) or record (`code`,
    its result code; `batch_code`, the batch's own result)."""
    what = ctx.what
    if exc is not None:
        code = getattr(exc, "code", None)
        msg = getattr(exc, "msg", None) or str(exc)
        kind = _exception_kind(exc)
        if kind == "timeout" or code == TIMEOUT:
            return StoreTimeoutError(f"Aerospike {what} timed out" + (
                f" (total budget {ctx.budget_ms} ms)" if ctx.budget_ms is not None else "") + f": {msg}")
        if kind == "namespace" or code == NAMESPACE_NOT_FOUND:
            return NamespaceNotFoundError(f"Aerospike {what}: namespace not found ({msg}); check "
                                          "online_store.namespace against `asinfo -v namespaces`")
        if kind == "too_big" or code == RECORD_TOO_BIG:
            return RecordTooBigError(f"Aerospike {what}: record too big" + (
                f" writing view {ctx.view!r}" if ctx.view else "")
                + f" ({msg}); the namespace's max-record-size caps a whole entity record")
        if kind == "forbidden" or code == FORBIDDEN:
            return TTLNotAllowedError(_ttl_hint(what))
        if code == SECURITY_NOT_SUPPORTED:
            return StoreError(f"Aerospike {what}: the cluster has no security (access control) enabled, but "
                              "online_store.user_env is set; remove user_env/password_env for this cluster")
        if kind == "unreachable" or code in UNREACHABLE:
            return StoreUnavailableError(f"Aerospike {what}: cluster unreachable (hosts tried: "
                                         f"{', '.join(ctx.hosts)}): {msg}")
        return StoreError(f"Aerospike {what} failed (code {code}): {msg}")
    return _record_error(ctx, int(code or 0), batch_code if batch_code is not None else OK)


def _record_error(ctx: Context, code: int, batch_code: int) -> StoreError:
    what = ctx.what
    entity = f": entity key {ctx.key[2]!r}" if ctx.key is not None else ""
    if code in UNREACHABLE and batch_code == TIMEOUT:
        code = TIMEOUT  # the node of this key did not answer in time
    if code == TIMEOUT:
        detail = f"total budget {ctx.budget_ms} ms"
        if ctx.socket_timeout_ms is not None:
            detail += f", {ctx.socket_timeout_ms} ms per attempt, {ctx.max_retries} retries; result code {code}"
        return StoreTimeoutError(f"Aerospike {what}{entity}: no answer in time ({detail})")
    if code == FORBIDDEN:
        return TTLNotAllowedError(_ttl_hint(what))
    if code == RECORD_TOO_BIG:
        return RecordTooBigError(f"Aerospike {what}: record of{entity.lstrip(':')} is too big for the namespace's "
                                 "max-record-size")
    if code == NAMESPACE_NOT_FOUND:
        return NamespaceNotFoundError(f"Aerospike {what}: namespace {ctx.namespace!r} not found")
    if NO_MORE_CONNECTIONS in (code, batch_code):
        return StoreUnavailableError(f"Aerospike {what}: no free connection to the node holding the key "
                                     f"(max_conns_per_node={ctx.max_conns_per_node} are busy: the node "
                                     "answers slower than requests arrive)")
    if code in UNREACHABLE:
        why = f"code {code}" + (f", batch result {batch_code}" if batch_code not in (OK, code) else "")
        if ctx.key is not None:  # a write: the client cannot know whether it landed
            return StoreUnavailableError(f"Aerospike {what}{entity}: its node is unreachable ({why}); "
                                         "the write may or may not have landed: run it again")
        return StoreUnavailableError(f"Aerospike {what}: the node holding the key is unreachable ({why}; "
                                     f"hosts {', '.join(ctx.hosts)})")
    return StoreError(f"Aerospike {what}{entity} failed with result code {code}")
