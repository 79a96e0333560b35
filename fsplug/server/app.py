"""The feature server's ASGI application: fsplug's compiled plans over HTTP/JSON.

A plain ASGI callable, no web framework: the endpoints are few, and a framework's routing and
request objects cost more than the read itself at one entity (measured: uvicorn with this app
answered a canned response about twice as fast as with Starlette). uvicorn (httptools, uvloop)
parses HTTP, keeps connections alive and runs the workers; orjson encodes and decodes.

Endpoints:

- `POST /get-online-features`: Feast's request and response (`features` or `feature_service`,
  `entities` with request-feature values as further columns, `full_feature_names`); `results` holds
  one entry per output column, join keys first, each with `values`, `statuses` and
  `event_timestamps` per entity, in request order (`bytes` values as base64 text, as Feast writes them).
- `POST /get-feature-vector`: one entity of a feature service (`FeatureStore.get_feature_vector`),
  `{"feature_service": s, "entity": {key: value}, "request": {...}}` ->
  `{"feature_names": [...], "values": [floats], "statuses": [...]}`.
- `POST /push` (only with `enable_push`, always behind the token): rows for one feature view.
- `POST /write-to-online-store` (as `/push`): Feast's form of it, which Feast's remote online store
  writes through (`feature_view_name`, and Feast's column names).
- `GET /health` (the process answers), `GET /ready` (registry loaded, store reachable), `GET /metrics`.
- `GET /ui/...`: the web console (fsplug.console); `GET /` leads there (307).

Errors are JSON `{"error": kind, "detail": message}` with the Python API's message: 400 for a body
that is not the expected JSON shape, 422 for a request the API refuses (unknown feature, wrong key
type, missing request feature, too many entities), 413 for a body over the limit, 408 for a body
not received in time, 401 without the token, 404/405, 503 with `Retry-After` for a transient store
failure, 504 for a read past its budget, 500 (no detail) for anything else. No response carries a
stack trace; fsplug's errors never hold credentials.

`fsplug serve` runs it on uvicorn with fsplug.server.protocol, which hands a complete read request of the
two read endpoints to `answer()` directly (the same checks, errors and metrics, without the ASGI round).

Each request uses the plan of the registry current when it started; a newly applied registry is
picked up by a poll (`registry_poll_s`) that compiles the new plans first and then swaps one
reference, so no request fails or mixes two registries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hmac
import logging
import os
import time
from datetime import datetime
from operator import itemgetter
from typing import Any
from collections.abc import Awaitable, Callable, Sequence

import orjson

from fsplug.errors import (
    EntityKeyError,
    FsplugError,
    OutputNameClashError,
    ReferenceNotFoundError,
    RequestFeatureError,
    StoreTimeoutError,
    TransientError,
    UserInputError,
)
from fsplug.result import STATUS_NAMES
from fsplug.server import metrics as m
from fsplug.server.config import ServerConfig
from fsplug.types import DType, as_utc

__all__ = ["FeatureServerApp", "create_app", "app_from_env"]

log = logging.getLogger("fsplug.server")

_EPOCH = "1970-01-01T00:00:00Z"
_VECTOR_KEYWORDS = frozenset({"self", "service", "request", "timeout_ms"})
"""The names of `FeatureStore.get_feature_vector`'s own parameters, which an entity's keys cannot be."""
_JSON = [(b"content-type", b"application/json")]
_RETRY_AFTER_S = b"1"

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class HTTPError(Exception):
    """A request answered with an error status: `kind` names it in the body and the metrics."""

    def __init__(self, status: int, kind: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or []


def _error_of(exc: FsplugError) -> HTTPError:
    """The HTTP answer to an fsplug error raised by a request."""
    if isinstance(exc, UserInputError):
        kind = (
            "unknown_reference"
            if isinstance(exc, ReferenceNotFoundError)
            else "entity_key"
            if isinstance(exc, EntityKeyError)
            else "request_feature"
            if isinstance(exc, RequestFeatureError)
            else "invalid_request"
        )
        return HTTPError(422, kind, str(exc))
    if isinstance(exc, StoreTimeoutError):
        return HTTPError(504, "store_timeout", str(exc))
    if isinstance(exc, TransientError):
        return HTTPError(503, "store_unavailable", str(exc), [(b"retry-after", _RETRY_AFTER_S)])
    return HTTPError(
        500, "store_error" if type(exc).__name__.startswith("Store") else "server_error", str(exc)
    )


class FeatureServerApp:
    """The ASGI application of one worker: a FeatureStore opened at startup, its endpoints and metrics.

    Args:
        config: the server's settings (`ServerConfig`).
    """

    def __init__(self, config: ServerConfig):
        self.config = config
        self.store: Any = None  # FeatureStore, opened in startup()
        # (surrounding whitespace dropped: a secret file's trailing newline can never arrive in a header)
        self._token = (os.environ.get(config.token_env) or "").strip().encode() or None
        self._marker: Any = None  # what the registry poll compares (published hash or file stamp)
        self._poll_error: str | None = None  # the registry poll's last failure, logged once
        self._poll_task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None  # cancels requests whose body is late
        self._flush_task: asyncio.Task[None] | None = None  # writes the metrics every FLUSH_S
        self._frozen = False  # the heap was frozen (see _freeze_heap)
        self._awaiting: dict[Any, float] = {}  # request task -> deadline of the body it waits for
        self._expired: set[Any] = set()  # tasks the watchdog cancelled
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[tuple[int, bytes, list[Any]]]]] = {
            ("POST", "/get-online-features"): self._get_online_features,
            ("POST", "/get-feature-vector"): self._get_feature_vector,
            ("POST", "/push"): self._push,
            ("POST", "/write-to-online-store"): self._write_to_online_store,
            ("GET", "/health"): self._health,
            ("GET", "/ready"): self._ready,
            ("GET", "/metrics"): self._metrics,
        }
        self._paths = {p for _, p in self._routes}
        self.console: Any = None  # the web console under /ui (fsplug.console), built in startup()

    # ---- lifecycle -----------------------------------------------------------------------
    def startup(self) -> None:
        """Open the store, load the registry, compile every service's plan and connect (each worker).

        Raises:
            FsplugError: no registry, or the store cannot be reached.
        """
        from fsplug.store import FeatureStore

        m.reap_dead_workers()
        self.store = FeatureStore(self.config.repo)
        reg = self.store.registry
        self._warn_uncompiled(self.store.use_registry(reg, list(reg.feature_services)))
        self.store.online_store.connect()
        self.store.materialization_state()  # the first read opens the connection (SQLite) here
        self._marker = self._registry_marker()
        from fsplug.console import Console

        self.console = Console(self.store, self, self._token, self.config.auth_reads, m.families)
        m.REGISTRY_SERVED.labels(reg.hash).set(1)
        log.info(
            "fsplug serve: project %r, registry %s, %d feature services",
            reg.project,
            reg.hash[:12],
            len(reg.feature_services),
        )

    @staticmethod
    def _warn_uncompiled(failed: dict[str, FsplugError]) -> None:
        for name, exc in failed.items():
            log.warning("feature service %r cannot be compiled as it is (its requests get this error): %s", name, exc)

    def shutdown(self) -> None:
        """Close the store (after uvicorn finished the requests in flight)."""
        if self.store is not None:
            self.store.close()

    def _registry_marker(self) -> Any:
        from fsplug.registry.published import ONLINE, published_hash

        if self.store.config.config.registry == ONLINE:
            return published_hash(self.store.online_store)
        try:
            st = self.store.config.registry_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def poll_registry(self) -> bool:
        """Swap to a newly applied registry, if there is one; returns whether it swapped.

        The new registry's service plans are compiled before the swap; a request in flight keeps
        the plan it started with. A failed check keeps the registry served now (and is logged).
        """
        try:
            marker = self._registry_marker()
            if marker == self._marker:
                self._poll_error = None
                return False
            new = self.store.registry_store.load()
        except FsplugError as exc:
            if str(exc) != self._poll_error:  # once per failure, not every poll (a torn-down project: forever)
                log.warning("registry poll failed (still serving %s): %s", self.store.registry.hash[:12], exc)
            self._poll_error = str(exc)
            return False
        self._poll_error = None
        old = self.store.registry
        self._marker = marker
        if new.hash == old.hash:
            return False
        self._warn_uncompiled(self.store.use_registry(new, list(new.feature_services)))
        m.REGISTRY_SERVED.labels(old.hash).set(0)
        m.REGISTRY_SERVED.labels(new.hash).set(1)
        m.REGISTRY_SWAPS.inc()
        log.info("serving the newly applied registry %s (was %s)", new.hash[:12], old.hash[:12])
        if self._frozen:
            del old
            gc.unfreeze()  # the old registry's objects may be collected now
            self._freeze_heap()
        return True

    def _freeze_heap(self) -> None:
        """Collect once, then move every object alive to the collector's permanent generation.

        What a worker holds from its start (modules, the registry, the compiled plans) is tens of
        thousands of objects; a full collection walks all of them (tens of milliseconds) and stalls
        whichever request is running. Frozen, they are never walked again;
        requests' own objects are still collected. Done at startup (from the lifespan, so an app
        built in-process by tests leaves the test process alone) and after each registry swap, when
        the old registry is unfrozen first so it can be freed.
        """
        gc.collect()
        gc.freeze()
        self._frozen = True

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.registry_poll_s)
            self.poll_registry()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(m.FLUSH_S)
            m.flush()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:  # the worker cannot serve: say why, without a traceback
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                self._freeze_heap()
                loop = asyncio.get_running_loop()
                if self.config.registry_poll_s > 0:
                    self._poll_task = loop.create_task(self._poll_loop())
                self._flush_task = loop.create_task(self._flush_loop())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                for task in (self._poll_task, self._watchdog, self._flush_task):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                m.flush()  # the last samples of this worker
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP ----------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        # HEAD is GET without the body (uvicorn leaves the body out), as load balancers' health checks send it
        handler = self._routes.get(("GET" if method == "HEAD" else method, path))
        if handler is None and self.console is not None:
            if path == "/ui" or path.startswith("/ui/"):
                await self.console(scope, receive, send)
                return
            if path == "/" and scope["method"] in ("GET", "HEAD"):  # the root leads to the console
                await send({"type": "http.response.start", "status": 307,
                            "headers": [(b"location", b"/ui/"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        endpoint = path if path in self._paths else "other"
        m.request_started()
        try:
            if handler is None:
                if path in self._paths:
                    allowed = [m for m, p in self._routes if p == path]
                    allowed += ["HEAD"] if "GET" in allowed else []  # (RFC 9110: a 405 says what is allowed)
                    raise HTTPError(405, "method_not_allowed", f"{scope['method']} is not allowed on {path}",
                                    [(b"allow", ", ".join(allowed).encode())])
                raise HTTPError(
                    404, "not_found", f"no endpoint {path}; see GET /health, POST /get-online-features"
                )
            status, body, headers = await handler(scope, receive)
        except Exception as exc:
            status, body, headers = self._failure(endpoint, exc)
        finally:
            m.request_finished()
        m.child(m.REQUESTS, endpoint, str(status)).inc()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _failure(endpoint: str, exc: Exception) -> tuple[int, bytes, list[Any]]:
        """The answer to a request that raised `exc`: its HTTPError, or 500 without detail for a bug (logged
        here with its traceback, never sent); counted in the error metrics."""
        if isinstance(exc, HTTPError):
            m.child(m.ERRORS, endpoint, exc.kind).inc()
            return exc.status, orjson.dumps({"error": exc.kind, "detail": exc.detail}), _JSON + exc.headers
        log.exception("internal error answering %s", endpoint, exc_info=exc)
        m.child(m.ERRORS, endpoint, "internal").inc()
        return 500, b'{"error":"internal","detail":"internal server error"}', _JSON

    # ---- the read endpoints' direct path (fsplug.server.protocol) -------------------------
    READ_PATHS = ("/get-online-features", "/get-feature-vector")
    """The endpoints `answer` serves: a complete POST body in, a response out, no ASGI round."""

    def answer(self, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes, list[Any]]:
        """Answer a POST to one of `READ_PATHS` whose whole body has arrived, as the ASGI path would.

        The same checks, errors, metrics and response as `POST path` through `__call__`, without the
        ASGI messages: fsplug's uvicorn protocol calls it when the request's last byte is in.

        Args:
            path: one of `READ_PATHS`.
            headers: the request's headers, names in lower case.
            body: the request's body.

        Returns:
            (status, response body, response headers without content-length).
        """
        t0 = time.perf_counter()
        m.request_started()
        try:
            if self.config.auth_reads:
                self._check_token(headers)
            req = self._parse_body(body)
            if path == "/get-online-features":
                status, out, out_headers = self._online_features(req, t0)
            else:
                status, out, out_headers = self._feature_vector(req, t0)
        except Exception as exc:
            status, out, out_headers = self._failure(path, exc)
        finally:
            m.request_finished()
        m.child(m.REQUESTS, path, str(status)).inc()
        return status, out, out_headers

    def body_late(self, path: str) -> tuple[int, bytes, list[Any]]:
        """The answer (408) to a request to `path` whose body did not arrive within `body_timeout_s`."""
        status, out, headers = self._failure(path, HTTPError(
            408, "body_timeout", f"request body not received within {self.config.body_timeout_s} s"))
        m.child(m.REQUESTS, path, str(status)).inc()
        return status, out, headers

    def _authorize(self, scope: dict[str, Any]) -> None:
        self._check_token(scope["headers"])

    def _check_token(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if (
                    self._token is not None
                    and scheme.lower() == b"bearer"
                    and hmac.compare_digest(token.strip(), self._token)
                ):
                    return
                break
        raise HTTPError(
            401,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <token>`",
            [(b"www-authenticate", b"Bearer")],
        )

    async def _body(self, scope: dict[str, Any], receive: Receive) -> Any:
        limit = self.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise HTTPError(400, "invalid_request", "Content-Length is not a number") from None
                if declared > limit:
                    raise HTTPError(
                        413, "body_too_large", f"request body of {declared} bytes; the limit is {limit}"
                    )
        deadline = time.monotonic() + self.config.body_timeout_s  # for the whole body, not each chunk
        try:
            msg = await self._receive(receive, deadline)
            body = msg.get("body", b"")
            if msg.get("more_body"):
                parts = [body]
                size = len(body)
                while msg.get("more_body"):
                    msg = await self._receive(receive, deadline)
                    chunk = msg.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise HTTPError(
                            413, "body_too_large", f"request body over the limit of {limit} bytes"
                        )
                    parts.append(chunk)
                body = b"".join(parts)
        except TimeoutError:  # (and the connection is closed: a client still trickling its body would
            # otherwise keep it open, each byte restarting uvicorn's keep-alive timer; RFC 9110 15.5.9)
            raise HTTPError(
                408, "body_timeout", f"request body not received within {self.config.body_timeout_s} s",
                [(b"connection", b"close")],
            ) from None
        return self._parse_body(body)

    def _parse_body(self, body: bytes) -> Any:
        """A request body as the JSON object it must be (400/413 otherwise)."""
        limit = self.config.max_body_bytes
        if len(body) > limit:
            raise HTTPError(413, "body_too_large", f"request body of {len(body)} bytes; the limit is {limit}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, "invalid_json", f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "invalid_request", "the request body must be a JSON object")
        return data

    async def _receive(self, receive: Receive, deadline: float) -> dict[str, Any]:
        """`receive()`, cancelled by the body watchdog past `deadline` (`time.monotonic()`; then
        TimeoutError): the request's whole body must arrive within `body_timeout_s`, so a client
        trickling it a byte at a time gets 408 too.

        One watchdog task per worker checks the waiting requests a few times per timeout, instead of
        a timer per request (`asyncio.wait_for` costs about 13 us a call, more than parsing the body).
        """
        task = asyncio.current_task()
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._body_watchdog())
        self._awaiting[task] = deadline
        try:
            return await receive()
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()  # type: ignore[union-attr]
            raise TimeoutError from None
        finally:
            self._awaiting.pop(task, None)

    async def _body_watchdog(self) -> None:
        period = min(1.0, self.config.body_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for task, deadline in list(self._awaiting.items()):
                if deadline <= now:
                    del self._awaiting[task]
                    self._expired.add(task)
                    task.cancel()

    # ---- endpoints -----------------------------------------------------------------------
    async def _get_online_features(
        self, scope: dict[str, Any], receive: Receive
    ) -> tuple[int, bytes, list[Any]]:
        if self.config.auth_reads:
            self._authorize(scope)
        req = await self._body(scope, receive)
        return self._online_features(req, time.perf_counter())  # (timed from the body on)

    def _online_features(self, req: Any, t0: float) -> tuple[int, bytes, list[Any]]:
        features = req.get("features")
        service = req.get("feature_service")
        entities = req.get("entities")
        full = req.get("full_feature_names", False)
        label = "?"
        if features == [] and service is not None:  # Feast's request model sends its default [] with a service
            features = None
        if (features is None) == (service is None):
            raise HTTPError(
                400,
                "invalid_request",
                'give exactly one of "features": ["view:feature", ...] or "feature_service": "name"',
            )
        if features is not None and (type(features) is not list or not all(type(f) is str for f in features)):
            raise HTTPError(400, "invalid_request", '"features" must be a list of "view:feature" strings')
        if service is not None and type(service) is not str:
            raise HTTPError(400, "invalid_request", '"feature_service" must be a string')
        if type(entities) is not dict:
            raise HTTPError(
                400,
                "invalid_request",
                '"entities" must map each join key (and request feature) '
                'to a list of values, like {"driver_id": [1001, 1002]}',
            )
        if type(full) is not bool:
            raise HTTPError(400, "invalid_request", '"full_feature_names" must be true or false')
        try:
            store = self.store
            if service is not None and service in store.registry.feature_services:
                label = service
            elif features is not None:
                label = ""
            t1 = time.perf_counter()
            res = store.get_online_features(
                features=features,
                service=service,
                entities=entities,
                full_feature_names=full,
                timeout_ms=self.config.read_timeout_ms,
            )
            m.child(m.STORE_READ_SECONDS, "/get-online-features").observe(time.perf_counter() - t1)
            body = feast_response(res, entities)
        except FsplugError as exc:
            m.child(m.REQUEST_SECONDS, "/get-online-features", label).observe(time.perf_counter() - t0)
            if isinstance(exc, EntityKeyError) and any(type(v) is not list for v in entities.values()):
                # not the request's shape (a column that is no list): 400, as for `entities` itself (checked
                # here, once the API refused it, so that a well-formed request pays nothing for it)
                raise HTTPError(400, "invalid_request", str(exc)) from None
            if isinstance(exc, OutputNameClashError):  # worded for a JSON client
                exc = exc.with_fix('"full_feature_names": true')
            raise _error_of(exc) from None
        m.child(m.ENTITIES, "/get-online-features").observe(res.n)
        m.child(m.REQUEST_SECONDS, "/get-online-features", label).observe(time.perf_counter() - t0)
        return 200, body, _JSON

    async def _get_feature_vector(
        self, scope: dict[str, Any], receive: Receive
    ) -> tuple[int, bytes, list[Any]]:
        if self.config.auth_reads:
            self._authorize(scope)
        req = await self._body(scope, receive)
        return self._feature_vector(req, time.perf_counter())  # (timed from the body on)

    def _feature_vector(self, req: Any, t0: float) -> tuple[int, bytes, list[Any]]:
        service = req.get("feature_service")
        entity = req.get("entity")
        request = req.get("request")
        if type(service) is not str:
            raise HTTPError(400, "invalid_request", '"feature_service" must name a feature service')
        if type(entity) is not dict or not entity:
            raise HTTPError(
                400,
                "invalid_request",
                '"entity" must map the join key to one value, like {"driver_id": 1001}',
            )
        if request is not None and type(request) is not dict:
            raise HTTPError(400, "invalid_request", '"request" must map request features to values')
        store = self.store
        label = service if service in store.registry.feature_services else "?"
        reserved = set(entity) & _VECTOR_KEYWORDS
        if reserved:  # (get_feature_vector's own parameters: passed as join keys, they would clash)
            raise HTTPError(422, "entity_key", f"no entity has a join key named {', '.join(sorted(reserved))}")
        try:
            t1 = time.perf_counter()
            vec = store.get_feature_vector(
                service, request=request, timeout_ms=self.config.read_timeout_ms, **entity
            )
            m.child(m.STORE_READ_SECONDS, "/get-feature-vector").observe(time.perf_counter() - t1)
        except FsplugError as exc:
            m.child(m.REQUEST_SECONDS, "/get-feature-vector", label).observe(time.perf_counter() - t0)
            raise _error_of(exc) from None
        body = orjson.dumps(
            {
                "feature_names": vec.names,
                "values": vec.values,
                "statuses": [STATUS_NAMES[s] for s in vec.statuses.tolist()],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        m.child(m.ENTITIES, "/get-feature-vector").observe(1)
        m.child(m.REQUEST_SECONDS, "/get-feature-vector", label).observe(time.perf_counter() - t0)
        return 200, body, _JSON

    async def _push(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, list[Any]]:
        req = await self._write_request(scope, receive)
        view = req.get("feature_view", req.get("push_source_name"))
        df = req.get("df")
        if type(view) is not str or type(df) is not dict:
            raise HTTPError(
                400,
                "invalid_request",
                'give "feature_view": name and "df": {column: [values]} (event times as ISO-8601 strings)',
            )
        if req.get("to", "online") != "online":  # Feast's push modes: online, offline, online_and_offline
            raise HTTPError(
                400, "invalid_request", f'"to": {req["to"]!r}: fsplug\'s /push writes the online store only ("online")'
            )
        return self._write("/push", view, df, lambda v: df)

    async def _write_to_online_store(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, list[Any]]:
        """Feast's `/write-to-online-store`, which Feast's remote online store writes through: rows whose
        columns are the join keys, the feature names, `event_timestamp` and `created` (Feast's names)."""
        req = await self._write_request(scope, receive)
        view = req.get("feature_view_name")
        df = req.get("df")
        if type(view) is not str or type(df) is not dict:
            raise HTTPError(400, "invalid_request", 'give "feature_view_name": name and "df": {column: [values]}')
        return self._write("/write-to-online-store", view, df, lambda v: _source_columns(df, v))

    async def _write_request(self, scope: dict[str, Any], receive: Receive) -> Any:
        """The body of a write request, once the server takes writes and the token is right."""
        if not self.config.enable_push:
            raise HTTPError(404, "push_disabled", f"POST {scope['path']} is off; start the server with --enable-push")
        self._authorize(scope)
        return await self._body(scope, receive)

    def _write(self, endpoint: str, view: str, df: dict[str, Any],
               columns: Callable[[Any], dict[str, Any]]) -> tuple[int, bytes, list[Any]]:
        """Push `columns(view)` (the source's columns of `df`) into the view's online rows."""
        t0 = time.perf_counter()
        try:
            view_obj = self.store.registry.view(view)
            table = _push_table(columns(view_obj), view_obj)
            written = self.store.push(view, table)
        except FsplugError as exc:
            raise _error_of(exc) from None
        m.child(m.REQUEST_SECONDS, endpoint, "").observe(time.perf_counter() - t0)
        return 200, orjson.dumps({"written": written}), _JSON

    async def _health(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, list[Any]]:
        return 200, b'{"status":"ok"}', _JSON

    async def _ready(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, list[Any]]:
        if self.store is None:
            raise HTTPError(
                503, "not_ready", "the registry is not loaded yet", [(b"retry-after", _RETRY_AFTER_S)]
            )
        try:
            self.store.materialization_state()  # one small read: the store answers
        except FsplugError as exc:
            raise HTTPError(
                503,
                "store_unavailable",
                f"the online store is not reachable: {exc}",
                [(b"retry-after", _RETRY_AFTER_S)],
            ) from None
        reg = self.store.registry
        return (
            200,
            orjson.dumps(
                {"status": "ready", "project": reg.project, "registry": reg.hash, "worker": os.getpid()}
            ),
            _JSON,
        )

    async def _metrics(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, list[Any]]:
        if self.config.auth_reads:
            self._authorize(scope)
        body = m.render(self.store.materialization_state, lambda: self.store.registry.hash)
        return 200, body, [(b"content-type", m.CONTENT_TYPE.encode())]


def feast_response(res: Any, entities: dict[str, list[Any]]) -> bytes:
    """Feast's response body (JSON) for an OnlineResult: join keys first, then one entry per output column.

    Args:
        res: the OnlineResult of the request.
        entities: the request's `entities` (its join key columns are echoed, as Feast does).

    Returns:
        `{"metadata": {"feature_names": [...]}, "results": [{"values", "statuses", "event_timestamps"}]}`
        as JSON. What repeats is encoded once and inserted pre-encoded: the metadata (per plan), a
        view's event times (shared by its columns), all-PRESENT statuses and statuses columns share.
    """
    plan = res.plan
    names, views, distinct, encoders = _layout(plan)
    present, epoch = _constant_lists(res.n)
    results = [{"values": entities[key], "statuses": present, "event_timestamps": epoch} for key in plan.join_keys]
    values, codes = res.python_columns()
    stamps: dict[str | None, Any] = {None: epoch}  # request columns: the epoch, as Feast answers
    if distinct:
        times = res.event_times_us()
        for v in distinct:
            stamps[v] = orjson.Fragment(_iso(times[v]))
    # the columns of a view without nulls share one codes list; others often have equal codes
    by_list: dict[int, Any] = {}
    by_codes: dict[tuple[int, ...], Any] = {}
    for view, column, st, encode in zip(views, values, codes, encoders, strict=True):
        vals = column if encode is None else encode(column)
        if st is None:  # (always for request columns)
            statuses = present
        else:
            statuses = by_list.get(id(st))
            if statuses is None:
                key = tuple(st)
                statuses = by_codes.get(key)
                if statuses is None:
                    statuses = by_codes[key] = orjson.Fragment(orjson.dumps(_lookup(STATUS_NAMES, key)))
                by_list[id(st)] = statuses
        results.append({"values": vals, "statuses": statuses, "event_timestamps": stamps[view]})
    return orjson.dumps({"metadata": names, "results": results}, option=orjson.OPT_SERIALIZE_NUMPY)


def _layout(plan: Any) -> tuple[Any, tuple[str | None, ...], tuple[str, ...], tuple[Any, ...]]:
    """Per plan: its response's metadata, pre-encoded; per output column the view whose event times it
    answers with (None: a request column, answered with the epoch); those views, once each; and per
    output column the function that makes its values JSON (None: orjson writes them as they are)."""
    hit = _LAYOUTS.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1:]
    names = orjson.Fragment(orjson.dumps({"feature_names": [*plan.join_keys, *(c.name for c in plan.columns)]}))
    views = tuple(None if c.is_request else c.view for c in plan.columns)
    distinct = tuple(dict.fromkeys(v for v in views if v is not None))
    encoders = tuple(_ENCODERS.get(c.dtype) for c in plan.columns)
    if len(_LAYOUTS) >= 1024:
        _LAYOUTS.clear()
    # (the plan is kept: its id is not reused meanwhile)
    _LAYOUTS[id(plan)] = (plan, names, views, distinct, encoders)
    return names, views, distinct, encoders


_LAYOUTS: dict[int, tuple[Any, Any, tuple[str | None, ...], tuple[str, ...], tuple[Any, ...]]] = {}


def _base64_values(values: list[Any]) -> list[Any]:
    """A bytes column's values as JSON holds them: base64 text (RFC 4648), as Feast's server writes them
    (a request feature's value given as text in the request is written as it came)."""
    return [base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for v in values]


def _epoch_seconds(values: list[Any]) -> list[Any]:
    """Timestamp values as Feast's server writes them (its `unix_timestamp_val`): whole seconds since the
    epoch, so Feast's clients read them back (Feast's remote online store takes them with `int()`)."""
    return [int(v.timestamp()) if isinstance(v, datetime) else v for v in values]


_ENCODERS: dict[DType, Callable[[list[Any]], list[Any]]] = {DType.BYTES: _base64_values,
                                                             DType.TIMESTAMP: _epoch_seconds}
"""Per dtype whose Python values JSON has no form for: the function that writes a column's values."""


def _constant_lists(n: int) -> tuple[Any, Any]:
    """`["PRESENT"] * n` and `[epoch] * n` as pre-encoded JSON fragments (kept for small n)."""
    hit = _CONSTANT_LISTS.get(n)
    if hit is None:
        hit = (orjson.Fragment(orjson.dumps(["PRESENT"] * n)), orjson.Fragment(orjson.dumps([_EPOCH] * n)))
        if n <= 1024:
            _CONSTANT_LISTS[n] = hit
    return hit


_CONSTANT_LISTS: dict[int, tuple[Any, Any]] = {}


def _lookup(table: Any, keys: Any) -> Any:
    """`[table[k] for k in keys]` as a sequence, in one C-level pass (KeyError for a key not in it)."""
    if len(keys) > 1:
        return itemgetter(*keys)(table)
    return [table[k] for k in keys]


def _iso(times: Sequence[int | None]) -> bytes:
    """The JSON list of RFC 3339 UTC strings of event times in microseconds, as Feast writes them (None:
    the epoch).

    Entities of a view share few event times (one per materialization or push), so each distinct
    time is formatted and encoded once and cached; a list is the cached texts joined (one C-level
    lookup pass and one join).
    """
    cache = _TS_CACHE
    try:
        return b"[" + b",".join(_lookup(cache, times)) + b"]"  # the texts seen before
    except KeyError:
        pass
    if len(cache) >= 100_000:
        cache.clear()
        cache[None] = orjson.dumps(_EPOCH)
    for us in times:
        if us not in cache:
            cache[us] = orjson.dumps(_format_us(us))
    return b"[" + b",".join(_lookup(cache, times)) + b"]"


_TS_CACHE: dict[int | None, bytes] = {None: orjson.dumps(_EPOCH)}
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()
_DATES: dict[int, str] = {}
"""Per day since the epoch: its ISO date, `YYYY-MM-DD` (filled as days are seen; a day's entities share it)."""
_HOURS_MINUTES = tuple(f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))


def _format_us(us: int | None) -> str:
    """One time (microseconds since the epoch) as protobuf's JSON writes a Timestamp: 0, 3 or 6 decimals.

    Put together from per-day, per-minute and per-second texts: about a fifth of `strftime`'s cost, and
    an entity's event time is often one no earlier request had (so the caller's cache misses).
    """
    if us is None:
        return _EPOCH
    seconds, frac = divmod(us, 1_000_000)
    day, second = divmod(seconds, 86_400)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= 100_000:
            _DATES.clear()
        date = _DATES[day] = datetime.fromordinal(_EPOCH_ORDINAL + day).date().isoformat()
    base = date + _HOURS_MINUTES[second // 60] + _SECONDS[second % 60]
    if not frac:
        return base + "Z"
    if not frac % 1000:
        return f"{base}.{frac // 1000:03d}Z"
    return f"{base}.{frac:06d}Z"


def _source_columns(df: dict[str, Any], view: Any) -> dict[str, Any]:
    """Feast's write columns under the view's source names: `event_timestamp` -> the source's timestamp
    field, `created` -> its created-timestamp field (dropped without one), a feature's name -> its column."""
    src = view.source
    names = {"event_timestamp": src.timestamp_field, **{f.name: f.column for f in view.features}}
    if src.created_timestamp_field:
        names["created"] = src.created_timestamp_field
    out = {}
    for name, values in df.items():
        if name == "created" and name not in names:
            continue
        out[names.get(name, name)] = values
    return out


def _push_table(df: dict[str, Any], view: Any) -> Any:
    """A pyarrow table of pushed JSON columns: event-time columns parsed from ISO-8601 strings, whole
    numbers of float features as floats, bytes features decoded from base64 (as the responses give them)."""
    import pyarrow as pa

    from fsplug.errors import SourceDataError

    cols: dict[str, Any] = {}
    times = {view.source.timestamp_field, view.source.created_timestamp_field}
    times |= {f.column for f in view.features if f.dtype.value == "timestamp"}
    floats = {f.column for f in view.features if f.dtype in (DType.FLOAT64, DType.FLOAT32)}
    float_lists = {f.column for f in view.features if f.dtype is DType.FLOAT64_LIST}
    raw = {f.column for f in view.features if f.dtype is DType.BYTES}
    for name, values in df.items():
        if type(values) is not list:
            raise UserInputError(f"push: df[{name!r}] must be a list of values, one per row")
        if name in times and values and any(type(v) is str for v in values):
            try:
                parsed = [None if v is None else datetime.fromisoformat(v) for v in values]
            except (TypeError, ValueError) as exc:
                raise SourceDataError(f"push: df[{name!r}]: not an ISO-8601 time ({exc})") from None
            cols[name] = pa.array([None if t is None else as_utc(t) for t in parsed], type=pa.timestamp("us", tz="UTC"))
        elif name in floats:
            cols[name] = _json_floats(values)
        elif name in float_lists:
            cols[name] = [_json_floats(v) if type(v) is list else v for v in values]
        elif name in raw:
            try:
                cols[name] = [base64.b64decode(v, validate=True) if type(v) is str else v for v in values]
            except ValueError as exc:
                raise SourceDataError(f"push: df[{name!r}]: not base64 text ({exc})") from None
        else:
            cols[name] = values
    return cols


def _json_floats(values: list[Any]) -> list[Any]:
    """JSON numbers meant as floats: whole ones (JSON writes 2.0 as 2 in many languages) as floats."""
    return [float(v) if type(v) is int else v for v in values]


def create_app(config: ServerConfig) -> FeatureServerApp:
    """The ASGI app for `config` (started by any ASGI server; `serve()` runs it on uvicorn).

    Raises:
        ConfigError: the settings are refused (see `ServerConfig.check`).
    """
    config.check()
    return FeatureServerApp(config)


def app_from_env() -> FeatureServerApp:
    """uvicorn's factory in each worker: the app for the ServerConfig `serve()` put in the environment."""
    config = ServerConfig.from_env()
    _log_like_uvicorn(config.log_level)
    return create_app(config)


def _log_like_uvicorn(level: str) -> None:
    """Send fsplug's own log records (the startup line, registry swaps, failed polls, 500s' tracebacks) to
    stderr in uvicorn's format, at the server's log level: uvicorn configures only its own loggers, so
    without this fsplug's INFO records were dropped and its warnings printed bare by logging's last resort.
    Left alone when the application configured the `fsplug` logger itself."""
    logger = logging.getLogger("fsplug")
    if logger.handlers:
        return
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
