"""uvicorn's httptools protocol, with fsplug's two read endpoints answered without the ASGI round.

For every request uvicorn builds an ASGI scope, a request-response cycle, an event and a task, runs the
app in a later turn of the event loop, and writes the response's head and body with two writes. For a
50-entity read that round costs about as much as the app's own work beyond the in-process call
(`python -m benchmarks serve`). This protocol keeps uvicorn for everything (sockets, parsing through
httptools, keep-alive, workers, signals, graceful shutdown, every other endpoint) but one case: a
`POST /get-online-features` or `POST /get-feature-vector` with a `Content-Length` within the body limit,
no `Expect` and nothing of an earlier request still unanswered on the connection. Its body is gathered
as it arrives and, once complete, `FeatureServerApp.answer` answers it in the same callback (the same
checks, errors and metrics as the ASGI path), in one write. Anything else goes through uvicorn's path
unchanged. `fsplug serve` passes this class as uvicorn's `http` protocol.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fsplug.server.app import FeatureServerApp

__all__ = ["FeatureServerProtocol"]

_READ_URLS = {path.encode(): path for path in FeatureServerApp.READ_PATHS}


def _feature_server(app: Any) -> FeatureServerApp | None:
    """The FeatureServerApp under uvicorn's middleware (None when the app is another one)."""
    while app is not None and not isinstance(app, FeatureServerApp):
        app = getattr(app, "app", None)
    return app


class FeatureServerProtocol(HttpToolsProtocol):
    """uvicorn's `HttpToolsProtocol`, answering complete reads of fsplug's endpoints directly."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._server_app: Any = _feature_server(self.app)  # (a direct request exists only when it is not None)
        self._direct: str | None = None  # the read endpoint of the request being received directly
        self._direct_body: list[bytes] = []
        self._direct_keep_alive = True
        self._direct_timer: asyncio.TimerHandle | None = None
        self._closing = False  # shut down with a request still to answer: close after answering it

    def _direct_path(self) -> str | None:
        """The read endpoint this request may be answered at directly, or None (uvicorn's path)."""
        path = _READ_URLS.get(self.url)
        if (
            path is None
            or self._server_app is None
            or self.parser.get_method() != b"POST"
            or self.expect_100_continue
            or self.limit_concurrency is not None
            or self.transport.is_closing()
            or self.flow.write_paused
            or self.pipeline
            or (self.cycle is not None and not self.cycle.response_complete)
        ):
            return None
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif name == b"transfer-encoding":
                return None
        if length is None or length > self._server_app.config.max_body_bytes:
            return None  # (uvicorn's path answers these: 411-like cases and 413 with the app's message)
        return path

    # ---- parser callbacks --------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        path = self._direct_path()
        if path is None:
            super().on_headers_complete()
            if self._closing and self.cycle is not None:
                self.cycle.keep_alive = False
            return
        self._direct = path
        self._direct_body = []
        self._direct_keep_alive = (not self._closing and self.parser.get_http_version() != "1.0"
                                   and self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._direct is None:
            super().on_body(body)
        else:
            self._direct_body.append(body)

    def on_message_complete(self) -> None:
        path = self._direct
        if path is None:
            super().on_message_complete()
            return
        self._direct = None
        if self._direct_timer is not None:
            self._direct_timer.cancel()
            self._direct_timer = None
        body = self._direct_body[0] if len(self._direct_body) == 1 else b"".join(self._direct_body)
        self._direct_body = []
        self._respond(path, *self._server_app.answer(path, self.headers, body))

    # ---- the response --------------------------------------------------------------------------
    def _respond(self, path: str, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Write one response (head and body in one write), then keep the connection or close it."""
        if self.access_log:  # uvicorn's access line
            client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', client, "POST", path, self.parser.get_http_version(),
                                    status)  # (the five arguments uvicorn's access formatter takes)
        keep_alive = self._direct_keep_alive
        head = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            head += (name, b": ", value, b"\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        self.transport.write(b"".join(head))
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        elif not self.transport.is_closing():  # as uvicorn after a response: the keep-alive timeout
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._direct is not None and self._direct_timer is None:  # a body still on its way: a deadline
            self._direct_timer = self.loop.call_later(self._server_app.config.body_timeout_s, self._body_late)

    def _body_late(self) -> None:
        path, self._direct, self._direct_timer = self._direct, None, None
        if path is None or self.transport.is_closing():
            return
        self._direct_keep_alive = False
        self._respond(path, *self._server_app.body_late(path))

    # ---- connection events ---------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful shutdown: a request being received, or whose bytes wait unread in the socket (the
        loop was busy answering another connection when the signal came), is answered first, then the
        connection closes (uvicorn waits for connections to close); an idle connection closes now."""
        if self._direct is not None or self._unread_bytes():
            self._direct_keep_alive = False
            self._closing = True
        else:
            super().shutdown()

    def _unread_bytes(self) -> bool:
        """Whether the connection's socket holds bytes the loop has not read yet."""
        sock = self.transport.get_extra_info("socket")
        try:
            return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0] > 0
        except (AttributeError, OSError, ValueError):
            return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._direct_timer is not None:
            self._direct_timer.cancel()
            self._direct_timer = None
        self._direct = None
        super().connection_lost(exc)
