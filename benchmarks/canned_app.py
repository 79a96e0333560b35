"""A do-nothing ASGI app for `python -m benchmarks serve --canned`: the HTTP stack's own floor.

It reads the whole request body and answers every request with the same bytes (the file named by
`FSPLUG_BENCH_CANNED`: a response `fsplug serve` gave for such a request), so uvicorn, with the
options `fsplug serve` uses, is measured doing everything but the feature read and its encoding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_BODY = Path(os.environ["FSPLUG_BENCH_CANNED"]).read_bytes()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer any HTTP request with the canned body (after reading the request's body)."""
    if scope["type"] != "http":
        return
    msg = await receive()
    while msg.get("more_body"):
        msg = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
