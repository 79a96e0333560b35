"""fsplug's uvicorn protocol (fsplug.server.protocol): which requests it answers directly, and how.

The protocol is driven here as uvicorn drives it (a connection's transport, bytes in), with a transport
that records what is written, so each test sees whether a request was answered in the callback that
completed it (one write, no task) or went through uvicorn's ASGI path. The server tests
(tests/server/test_server.py) run every endpoint through both paths in a real `fsplug serve`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.server.test_server import service_request

READ = json.dumps(service_request([1001, 1002, 99999])).encode()


class RecordingTransport(asyncio.Transport):
    """A connection's transport that keeps what the server writes (`sock`: the socket it says it has)."""

    def __init__(self, sock: Any = None) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"sockname": ("127.0.0.1", 6566), "peername": ("127.0.0.1", 50000), "socket": self.sock}
        return info.get(name, default)

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def app(served_repo):
    from fsplug.server.app import create_app
    from fsplug.server.config import ServerConfig

    app = create_app(ServerConfig(repo=str(served_repo), registry_poll_s=0, body_timeout_s=0.3))
    app.startup()
    yield app
    app.shutdown()


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 responses in `data`, in order: (status, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        n = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:n]))
        data = rest[n:]
    return out


def run(app, script, sock: Any = None):
    """Run `script(protocol, transport, server_state)` (a coroutine function) on a connection of a fresh loop
    (whose transport says its socket is `sock`)."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from fsplug.server.protocol import FeatureServerProtocol

    async def main() -> Any:
        config = Config(app=app, http=FeatureServerProtocol, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        proto = FeatureServerProtocol(config=config, server_state=state, app_state={},
                                      _loop=asyncio.get_running_loop())
        transport = RecordingTransport(sock)
        proto.connection_made(transport)
        return await script(proto, transport, state)

    return in_own_loop(main())


def in_own_loop(coro: Any) -> Any:
    """`asyncio.run(coro)` in a thread of its own: the test process's main thread may hold a running loop
    (the console's browser tests leave Playwright's)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def asgi_answer(app, path: str, body: bytes) -> tuple[int, bytes]:
    """The same request through the app's ASGI interface: (status, body)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict) -> None:
        sent.append(msg)

    in_own_loop(app({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_a_complete_read_is_answered_in_the_callback_in_one_write(app):
    async def script(proto, transport, state):
        proto.data_received(post("/get-online-features", READ))
        writes = list(transport.writes)  # before the loop ran anything else
        assert not state.tasks
        return writes

    writes = run(app, script)
    assert len(writes) == 1
    [(status, headers, body)] = responses(writes[0])
    assert status == 200 and headers["content-type"] == "application/json"
    expected_status, expected = asgi_answer(app, "/get-online-features", READ)
    assert (status, json.loads(body)) == (expected_status, json.loads(expected))


def test_the_vector_endpoint_and_errors_take_the_direct_path_with_the_apis_answers(app):
    vector = json.dumps({"feature_service": "decline_model_v1", "entity": {"driver_id": 1001},
                         "request": {"pickup_distance_km": 2.0, "hour_of_day": 9}}).encode()
    cases = [("/get-feature-vector", vector), ("/get-online-features", b"{not json"),
             ("/get-online-features", json.dumps({"features": ["driver_stats:nope"],
                                                   "entities": {"driver_id": [1]}}).encode())]
    statuses = []
    for path, body in cases:
        async def script(proto, transport, state, path=path, body=body):
            proto.data_received(post(path, body))
            return list(transport.writes)

        writes = run(app, script)
        assert len(writes) == 1, path
        [(status, _, out)] = responses(writes[0])
        expected_status, expected = asgi_answer(app, path, body)
        assert (status, json.loads(out)) == (expected_status, json.loads(expected))
        statuses.append(status)
    assert statuses == [200, 400, 422]


def test_a_body_in_pieces_is_answered_when_its_last_byte_arrives(app):
    async def script(proto, transport, state):
        data = post("/get-online-features", READ)
        proto.data_received(data[:-10])
        before = list(transport.writes)
        proto.data_received(data[-10:])
        return before, list(transport.writes)

    before, after = run(app, script)
    assert before == [] and len(after) == 1 and responses(after[0])[0][0] == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        post("/get-online-features", READ, "Expect: 100-continue"),
        post("/get-online-features", b"%x\r\n%s\r\n0\r\n\r\n" % (len(READ), READ), "Transfer-Encoding: chunked"),
        post("/get-online-features?x=1", READ),
    ],
    ids=["expect-100", "chunked", "query-string"],
)
def test_other_reads_go_through_uvicorns_path_and_get_the_same_answer(app, request_bytes):
    async def script(proto, transport, state):
        proto.data_received(request_bytes)
        direct = list(transport.writes)
        tasks = len(state.tasks)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not state.tasks:
                break
        return direct, tasks, b"".join(transport.writes)

    direct, tasks, written = run(app, script)
    assert tasks == 1  # an ASGI task
    assert not any(w.startswith(b"HTTP/1.1 200") and b"content-length" in w and len(w) > 200 for w in direct)
    answers = [r for r in responses(written.replace(b"HTTP/1.1 100 Continue\r\n\r\n", b"")) if r[0] != 100]
    assert [a[0] for a in answers] == [200]
    assert json.loads(answers[0][2]) == json.loads(asgi_answer(app, "/get-online-features", READ)[1])


def test_a_read_pipelined_behind_an_asgi_request_is_answered_after_it(app):
    async def script(proto, transport, state):
        proto.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post("/get-online-features", READ))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(responses(b"".join(transport.writes))) == 2:
                break
        return b"".join(transport.writes)

    first, second = responses(run(app, script))
    assert (first[0], json.loads(first[2])) == (200, {"status": "ok"})
    assert second[0] == 200 and "results" in json.loads(second[2])


@pytest.mark.parametrize("variant", ["connection-close", "http-1.0"])
def test_a_read_that_ends_the_connection_is_answered_then_closed(app, variant):
    data = post("/get-online-features", READ, "Connection: close")
    if variant == "http-1.0":
        data = data.replace(b"HTTP/1.1", b"HTTP/1.0", 1).replace(b"Connection: close\r\n", b"")

    async def script(proto, transport, state):
        proto.data_received(data)
        return list(transport.writes), transport.closed

    writes, closed = run(app, script)
    [(status, headers, _)] = responses(writes[0])
    assert status == 200 and headers["connection"] == "close" and closed


def test_a_keep_alive_read_leaves_the_connection_open(app):
    async def script(proto, transport, state):
        proto.data_received(post("/get-online-features", READ) + post("/get-online-features", READ))
        return b"".join(transport.writes), transport.closed, proto.timeout_keep_alive_task is not None

    written, closed, timer = run(app, script)
    assert [r[0] for r in responses(written)] == [200, 200] and not closed and timer


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(app):
    async def script(proto, transport, state):
        proto.data_received(post("/get-online-features", READ)[:-5])
        await asyncio.sleep(0.6)  # the app's body_timeout_s is 0.3
        return list(transport.writes), transport.closed

    writes, closed = run(app, script)
    [(status, _, body)] = responses(writes[0])
    assert status == 408 and json.loads(body)["error"] == "body_timeout" and closed


def test_shutdown_while_a_read_arrives_answers_it_then_closes(app):
    async def script(proto, transport, state):
        data = post("/get-online-features", READ)
        proto.data_received(data[:-5])
        proto.shutdown()
        still_open = not transport.closed
        proto.data_received(data[-5:])
        return still_open, list(transport.writes), transport.closed

    still_open, writes, closed = run(app, script)
    [(status, headers, _)] = responses(writes[0])
    assert still_open and status == 200 and headers["connection"] == "close" and closed


def test_shutdown_answers_a_request_whose_bytes_wait_unread_then_closes(app):
    """SIGTERM while the loop was busy with another connection: this one's request is in its socket,
    not yet read. It is answered (then the connection closes); an idle connection closes at once."""
    import socket

    server_end, client_end = socket.socketpair()
    try:
        data = post("/get-online-features", READ)
        client_end.sendall(data)  # in the server end's buffer, unread

        async def script(proto, transport, state):
            proto.shutdown()
            still_open = not transport.closed
            proto.data_received(server_end.recv(len(data) + 1))  # the loop reads it
            return still_open, list(transport.writes), transport.closed

        still_open, writes, closed = run(app, script, server_end)
        [(status, headers, _)] = responses(writes[0])
        assert still_open and status == 200 and headers["connection"] == "close" and closed

        async def idle(proto, transport, state):
            proto.shutdown()
            return transport.closed

        assert run(app, idle, server_end)  # nothing unread now: closed at once
    finally:
        server_end.close()
        client_end.close()
