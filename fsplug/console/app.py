"""The console's ASGI handler: routes `/ui/...` to its pages, applies the token rule, runs lookups through the API.

The feature server (fsplug.server.app) hands every request under `/ui` to `Console`, built in each
worker once its store is open. The console only reads: the registry the worker serves (a newly
applied one shows on the next page, as it does for the API), the materialization state and the
published registry record from the store, and the server's metrics. A lookup is sent to the
feature server's own ASGI app as `POST /get-online-features`, so it is validated, read, counted in
the metrics and answered by the very code that answers API clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs

import orjson

from fsplug.console import catalog_pages, ops_pages
from fsplug.console.auth import TokenRule
from fsplug.console.context import PageContext, RegistryIndex
from fsplug.console.lookup import feast_request, form_fields
from fsplug.console.serving import serving_stats
from fsplug.errors import FsplugError, OutputNameClashError, UserInputError

__all__ = ["Console", "applied_at"]

log = logging.getLogger("fsplug.console")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    # No script runs on these pages (charts are SVG drawn here): a script that got in anyway would not run.
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
_MAX_FORM_BYTES = 8192
_FORM_TIMEOUT_S = 10.0
"""The login form's limits: a larger body answers 413, one not received in time 408 (as the API's)."""

_LISTS = {
    "entities": catalog_pages.entities_page,
    "sources": catalog_pages.sources_page,
    "views": catalog_pages.views_page,
    "services": catalog_pages.services_page,
}


def applied_at(store: Any) -> datetime | None:
    """When the registry served was applied: the time `apply` published it in the online store, else
    (a registry published by an older fsplug) the registry file's modification time, else None."""
    from fsplug.registry.published import ONLINE, published_applied_at

    reg = store.registry
    try:
        at = published_applied_at(store.online_store, reg.hash)
    except FsplugError:
        at = None
    if at is None and store.config.config.registry != ONLINE:
        try:
            at = datetime.fromtimestamp(store.config.registry_path.stat().st_mtime, UTC)
        except OSError:
            return None
    return at


class Console:
    """The web console of one feature-server worker (an ASGI app for the paths under `/ui`).

    Args:
        store: the worker's FeatureStore (opened; read only).
        api: the feature server's ASGI app: lookups are sent to its `POST /get-online-features`.
        token: the server's API token (None: none configured).
        auth_reads: the server guards reads; the console then needs the token too (see auth.py).
        metrics: returns the server's collected Prometheus metric families, every worker merged.
    """

    def __init__(self, store: Any, api: ASGIApp, token: bytes | None, auth_reads: bool,
                 metrics: Callable[[], Iterable[Any]]):
        self.store = store
        self.api = api
        self.rule = TokenRule(token, auth_reads)
        self.metrics = metrics
        self._index: RegistryIndex | None = None

    def _context(self, query: dict[str, str]) -> PageContext:
        reg = self.store.registry
        if self._index is None or self._index.hash != reg.hash:
            self._index = RegistryIndex(reg)
        return PageContext(reg, self._index, self.store, datetime.now(UTC), query)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                                keep_blank_values=True).items()}
        if path == "/ui":
            return await _respond(send, 308, b"", [(b"location", b"/ui/")])
        if path == "/ui/login":
            return await self._login(scope, receive, send, method, query)
        if path == "/ui/logout":
            return await _respond(send, 303, b"", [(b"location", b"/ui/"),
                                                   (b"set-cookie", self.rule.clear_cookie(scope).encode())])
        if method not in ("GET", "HEAD"):
            return await _html(send, 405, ops_pages.message_page("Not allowed", f"{method} is not allowed on "
                                                                  f"{path}: the console only reads"),
                               [(b"allow", b"GET, HEAD")])
        if not self.rule.allows(scope):
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            return await _html(send, 401, ops_pages.login_page(target, False),
                               [(b"www-authenticate", b'Bearer realm="fsplug console"')])
        try:
            status, body = await self._page(path, query)
        except UserInputError as exc:  # the request asked for something wrong: 422 with why, as the API answers
            status, body = 422, ops_pages.message_page("Invalid request", str(exc))
        except FsplugError as exc:  # the store failed: say so, as the API would (no traceback)
            log.warning("console page %s failed: %s", path, exc)
            status, body = 503, ops_pages.message_page("Unavailable", f"{type(exc).__name__}: {exc}")
        except Exception:  # a bug: logged here with its traceback, never sent
            log.exception("internal error rendering console page %s", path)
            status, body = 500, ops_pages.message_page("Internal error", "internal error; see the server's log")
        await _html(send, status, body if method == "GET" else b"")

    async def _page(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        parts = [p for p in path[len("/ui/"):].split("/") if p] if path.startswith("/ui/") else []
        ctx = self._context(query)
        if not parts:
            return 200, ops_pages.overview_page(ctx, self.store.config.store.type,
                                                self.store.online_store.address(), applied_at(self.store))
        head = parts[0]
        if len(parts) == 1 and head in _LISTS:
            return 200, _LISTS[head](ctx)
        if len(parts) == 2 and head in _LISTS:
            try:
                return 200, catalog_pages.object_page(ctx, head, parts[1])
            except catalog_pages.NotFound as exc:
                return 404, ops_pages.message_page("Not found", str(exc), ctx.registry.project)
        if len(parts) == 1 and head == "freshness":
            return 200, ops_pages.freshness_page(ctx)
        if len(parts) == 1 and head == "serving":
            return 200, ops_pages.serving_page(ctx, serving_stats(self.metrics()))
        if len(parts) == 1 and head == "search":
            return 200, catalog_pages.search_page(ctx)
        if len(parts) == 1 and head == "lookup":
            return await self._lookup(ctx, query)
        return 404, ops_pages.message_page("Not found", f"no console page {path}", ctx.registry.project)

    async def _lookup(self, ctx: PageContext, query: dict[str, str]) -> tuple[int, bytes]:
        services = list(ctx.registry.feature_services)
        service = query.get("service") or (services[0] if services else "")
        if service and service not in ctx.registry.feature_services:
            return 404, ops_pages.message_page("Not found", f"no feature service {service!r}", ctx.registry.project)
        fields = []
        full = False
        if service:
            try:
                plan = self.store.plan(service=service)
            except OutputNameClashError:  # two of its outputs share a name: it is read with view__feature names
                plan, full = self.store.plan(service=service, full_feature_names=True), True
            descriptions = {f.name: f.description for r in ctx.registry.request_sources.values() for f in r.features}
            fields = form_fields(plan, descriptions)
        asked = "choose" not in query and any(query.get(f.name, "").strip() for f in fields if f.is_key)
        request = status = answer = None
        if asked:
            request = feast_request(service, fields, query, full)
            try:
                body = orjson.dumps(request)
            except TypeError:  # an int past 64 bits (typed in a key field): JSON has it, orjson does not
                body = json.dumps(request).encode()  # sent as typed: the API refuses it with its message
            status, answer = await self._call_api(body)
        return 200, ops_pages.lookup_page(ctx, service, fields, query, request, status, answer)

    async def _call_api(self, body: bytes) -> tuple[int, Any]:
        """`POST /get-online-features` with `body`, answered by the feature server's own handler."""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.rule.token is not None:
            headers.append((b"authorization", b"Bearer " + self.rule.token))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/get-online-features", "raw_path": b"/get-online-features",
                 "query_string": b"", "root_path": "", "headers": headers, "client": None, "server": None}
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return pending.pop() if pending else {"type": "http.disconnect"}

        out: dict[str, Any] = {"status": 500, "body": []}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                out["status"] = msg["status"]
            elif msg["type"] == "http.response.body":
                out["body"].append(msg.get("body", b""))

        await self.api(scope, receive, send)
        raw = b"".join(out["body"])
        try:
            return out["status"], orjson.loads(raw)
        except orjson.JSONDecodeError:
            return out["status"], raw.decode("utf-8", "replace")

    async def _login(self, scope: dict[str, Any], receive: Receive, send: Send, method: str,
                     query: dict[str, str]) -> None:
        if method == "GET":
            return await _html(send, 200, ops_pages.login_page(_safe_next(query.get("next", "/ui/")), False))
        if method != "POST":
            return await _html(send, 405, ops_pages.message_page("Not allowed", f"{method} /ui/login"),
                               [(b"allow", b"GET, POST")])
        form = await _form(receive)
        if isinstance(form, int):  # too large or too slow: answered, and the connection closed (the
            # rest of the body is not read)
            title = "Too large" if form == 413 else "Too slow"
            detail = (f"the sign-in form is larger than {_MAX_FORM_BYTES} bytes" if form == 413
                      else f"the sign-in form was not received within {_FORM_TIMEOUT_S:g} s")
            return await _html(send, form, ops_pages.message_page(title, detail), [(b"connection", b"close")])
        nxt = _safe_next(form.get("next", "/ui/"))
        if not self.rule.check_token(form.get("token", "")):
            return await _html(send, 401, ops_pages.login_page(nxt, True))
        cookie = self.rule.set_cookie(scope).encode()
        await _respond(send, 303, b"", [(b"location", nxt.encode()), (b"set-cookie", cookie)])


def _safe_next(target: str) -> str:
    """Where to go after signing in: a console path only (never another site), and no control character
    (a CR or LF would end the Location header: uvicorn refuses to send it and drops the connection)."""
    if not target.startswith("/ui/") or "\\" in target or any(c < " " or c == "\x7f" for c in target):
        return "/ui/"
    return target


async def _form(receive: Receive) -> dict[str, str] | int:
    """A small url-encoded form body; 413 when it is larger than _MAX_FORM_BYTES, 408 when it is not
    received within _FORM_TIMEOUT_S (the rest is not read: a client cannot hold the worker's
    attention with an endless or trickled body)."""
    chunks, size = [], 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _FORM_TIMEOUT_S
    while True:
        try:
            msg = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return 408
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return 413
        chunks.append(chunk)
        if not msg.get("more_body"):
            break
    return {k: v[0] for k, v in parse_qs(b"".join(chunks).decode("utf-8", "replace")).items()}


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _html(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _respond(send, status, body, _HEADERS + (headers or []))


