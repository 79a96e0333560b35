"""`fsplug serve` as a deployed process: every endpoint over real HTTP, Feast's format, the error table,
metrics, the token rule, registry hot swaps, a host without the repo, SIGTERM, dead workers, Aerospike."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, UTC
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsplug.store import FeatureStore
from tests.conftest import build_served_repo, write_repo
from tests.server.conftest import SQLITE_YAML, TOKEN, Server, start

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def service_request(ids: list[int], service: str = "decline_model_v1") -> dict:
    n = len(ids)
    return {
        "feature_service": service,
        "entities": {"driver_id": ids, "pickup_distance_km": [1.5] * n, "hour_of_day": [8] * n},
    }


def columns(resp: dict) -> dict[str, dict]:
    """Feast's columnar response as {name: result entry}."""
    return dict(zip(resp["metadata"]["feature_names"], resp["results"], strict=True))


# ---- Feast's format ---------------------------------------------------------------------------
FEAST_DOC_DEFS = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: driver_hourly, path: data/driver_stats.parquet, timestamp_field: event_timestamp}
feature_views:
  - name: driver_hourly_stats
    entity: driver
    source: driver_hourly
    ttl: none
    features:
      - {name: conv_rate, dtype: float64}
      - {name: acc_rate, dtype: float64}
      - {name: avg_daily_trips, dtype: int64}
"""

# Recorded from Feast's documentation (docs/reference/feature-servers/python-feature-server.md): the
# request as documented, and the documented values. That page prints them one entity per entry (an
# older rendering); Feast's GetOnlineFeaturesResponse holds one entry per feature ("length of results
# should match length of requested features", values per entity), which is what `feast serve` sends
# and what is pinned here: the same names, values, statuses and timestamps, join key first.
FEAST_DOC_REQUEST = {
    "features": [
        "driver_hourly_stats:conv_rate",
        "driver_hourly_stats:acc_rate",
        "driver_hourly_stats:avg_daily_trips",
    ],
    "entities": {"driver_id": [1001, 1002, 1003]},
}
FEAST_DOC_VALUES = {  # driver_id: (conv_rate, avg_daily_trips, acc_rate), event time 2021-12-31T23:00:00Z
    1001: (0.7037263512611389, 308, 0.8724706768989563),
    1002: (0.038169607520103455, 332, 0.48534533381462097),
    1003: (0.9665873050689697, 779, 0.7793770432472229),
}
FEAST_DOC_RESPONSE = {
    "metadata": {"feature_names": ["driver_id", "conv_rate", "acc_rate", "avg_daily_trips"]},
    "results": [
        {
            "values": [1001, 1002, 1003],
            "statuses": ["PRESENT"] * 3,
            "event_timestamps": ["1970-01-01T00:00:00Z"] * 3,
        },
        {
            "values": [v[0] for v in FEAST_DOC_VALUES.values()],
            "statuses": ["PRESENT"] * 3,
            "event_timestamps": ["2021-12-31T23:00:00Z"] * 3,
        },
        {
            "values": [v[2] for v in FEAST_DOC_VALUES.values()],
            "statuses": ["PRESENT"] * 3,
            "event_timestamps": ["2021-12-31T23:00:00Z"] * 3,
        },
        {
            "values": [v[1] for v in FEAST_DOC_VALUES.values()],
            "statuses": ["PRESENT"] * 3,
            "event_timestamps": ["2021-12-31T23:00:00Z"] * 3,
        },
    ],
}


def test_feast_documented_request_gets_feasts_response(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = write_repo(tmp_path / "feast_doc", {"defs.yaml": FEAST_DOC_DEFS})
    (repo / "data").mkdir()
    ts = datetime(2021, 12, 31, 23, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array(list(FEAST_DOC_VALUES), pa.int64()),
                "event_timestamp": pa.array([ts] * 3, pa.timestamp("us", tz="UTC")),
                "conv_rate": [v[0] for v in FEAST_DOC_VALUES.values()],
                "acc_rate": [v[2] for v in FEAST_DOC_VALUES.values()],
                "avg_daily_trips": pa.array([v[1] for v in FEAST_DOC_VALUES.values()], pa.int64()),
            }
        ),
        repo / "data" / "driver_stats.parquet",
    )
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.materialize(None, datetime.now(UTC), progress=False)
    srv = start(repo, "--registry-poll", "0")
    try:
        r = srv.post("/get-online-features", FEAST_DOC_REQUEST)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.json() == FEAST_DOC_RESPONSE
        # the feature-service form of the same request, and full feature names
        r = srv.post("/get-online-features", {**FEAST_DOC_REQUEST, "full_feature_names": True})
        assert r.json()["metadata"]["feature_names"] == [
            "driver_id",
            "driver_hourly_stats__conv_rate",
            "driver_hourly_stats__acc_rate",
            "driver_hourly_stats__avg_daily_trips",
        ]
    finally:
        srv.stop()


def test_service_response_matches_the_python_api(server, served_repo):
    ids = [1001, 1002, 1003, 99_999_999]
    r = server.post("/get-online-features", service_request(ids))
    assert r.status_code == 200, r.text
    body = r.json()
    with FeatureStore(served_repo) as fs:
        res = fs.get_online_features(service="decline_model_v1", entities=service_request(ids)["entities"])
        want_values = res.to_dict()
        want_status = res.status_names()
        stamps = res.event_timestamps
        plan = res.plan
    assert body["metadata"]["feature_names"] == ["driver_id", *plan.names]  # join key first, then plan order
    cols = columns(body)
    assert cols["driver_id"]["values"] == ids
    for c in plan.columns:
        got = cols[c.name]
        assert got["values"] == pytest.approx(want_values[c.name], nan_ok=True), c.name
        assert got["statuses"] == want_status[c.name], c.name
        assert all(ISO.match(t) for t in got["event_timestamps"])
        if not c.is_request:
            for t, want in zip(got["event_timestamps"], stamps[c.view], strict=True):
                expect = "1970-01-01T00:00:00Z" if str(want) == "NaT" else str(want)[:19] + "Z"
                assert t == expect
    assert set(cols["acceptance_rate_7d"]["statuses"][:3]) == {"PRESENT"}
    assert cols["acceptance_rate_7d"]["statuses"][3] == "NOT_FOUND"


def test_feature_vector_endpoint_matches_get_feature_vector(server, served_repo):
    req = {"pickup_distance_km": 2.5, "hour_of_day": 7}
    r = server.post(
        "/get-feature-vector",
        {"feature_service": "decline_model_v1", "entity": {"driver_id": 1005}, "request": req},
    )
    assert r.status_code == 200, r.text
    with FeatureStore(served_repo) as fs:
        vec = fs.get_feature_vector("decline_model_v1", request=req, driver_id=1005)
    body = r.json()
    assert body["feature_names"] == list(vec.names)
    assert body["values"] == pytest.approx([None if v != v else v for v in vec.values.tolist()], nan_ok=True)
    assert body["statuses"] == [
        ("INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE")[s] for s in vec.statuses.tolist()
    ]
    # a key the service does not take is refused, as /get-online-features refuses it, not ignored
    r = server.post("/get-feature-vector", {"feature_service": "decline_model_v1",
                                            "entity": {"driver_id": 1005, "surge_multiplyer": 2.0}, "request": req})
    assert r.status_code == 422 and "did you mean 'surge_multiplier'" in r.json()["detail"], r.text


@pytest.mark.parametrize("name", ["self", "service", "request", "timeout_ms"])
def test_feature_vector_entity_named_like_a_parameter_is_refused_not_a_500(server, name):
    # the entity's keys become get_feature_vector's keyword arguments: one named like its own
    # parameters (`self` included) is the client's mistake (422), not a server error
    r = server.post("/get-feature-vector", {"feature_service": "decline_model_v1",
                                            "entity": {"driver_id": 1005, name: 2}})
    assert (r.status_code, r.json()["error"]) == (422, "entity_key"), r.text
    assert name in r.json()["detail"]


def test_derived_features_flow_through_the_server(server, served_repo):
    """decline_model_v2 carries the derived trip_context: the server serves it from the same plan."""
    body = service_request([1001, 1002, 1003, 99_999_999], "decline_model_v2")
    body["entities"]["hour_of_day"] = [8, 13, 22, 17]
    r = server.post("/get-online-features", body)
    assert r.status_code == 200, r.text
    req = {"pickup_distance_km": 2.5, "hour_of_day": 8}
    v = server.post("/get-feature-vector",
                    {"feature_service": "decline_model_v2", "entity": {"driver_id": 1001}, "request": req})
    assert v.status_code == 200, v.text
    with FeatureStore(served_repo) as fs:
        res = fs.get_online_features(service="decline_model_v2", entities=body["entities"])
        want, want_status, stamps = res.to_dict(), res.status_names(), res.event_timestamps
        vec = fs.get_feature_vector("decline_model_v2", request=req, driver_id=1001)
    cols = columns(r.json())
    assert r.json()["metadata"]["feature_names"][-3:] == ["is_peak_hour", "is_night", "trips_per_hour"]
    assert cols["is_peak_hour"]["values"] == [True, False, False, True]
    assert cols["is_night"]["values"] == [False, False, True, False]
    for name in ("is_peak_hour", "is_night", "trips_per_hour"):
        assert cols[name]["values"] == pytest.approx(want[name]), name
        assert cols[name]["statuses"] == want_status[name], name
        # a derived view's event time is the newest of its stored inputs' (here driver_activity's)
        expect = ["1970-01-01T00:00:00Z" if str(t) == "NaT" else str(t)[:19] + "Z" for t in stamps["trip_context"]]
        assert [t[:19] + "Z" for t in cols[name]["event_timestamps"]] == expect, name
    got = v.json()
    assert got["feature_names"] == list(vec.names) and got["feature_names"][-3:] == ["is_peak_hour", "is_night",
                                                                                     "trips_per_hour"]
    assert got["values"] == pytest.approx([None if x != x else x for x in vec.values.tolist()], nan_ok=True)
    assert got["values"][-3] == 1.0  # 8 h is a peak hour


def test_the_servers_own_log_lines_reach_its_log(server):
    # uvicorn configures only its own loggers: fsplug's INFO records (this line, registry swaps) must
    # still reach the log, one startup line per worker, in uvicorn's format
    line = "fsplug.server: fsplug serve: project 'srv', registry "
    deadline = time.monotonic() + 30  # (ready means one worker is: the other may still be starting)
    while server.output().count(line) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    out = server.output()
    assert out.count(line) == 2, out
    assert re.search(r"^INFO: +fsplug\.server: fsplug serve: project", out, re.M), out


def test_health_ready_and_routing(server):
    assert server.client.get("/health").json() == {"status": "ok"}
    ready = server.client.get("/ready").json()
    assert ready["status"] == "ready" and ready["project"] == "srv" and len(ready["registry"]) == 64
    assert server.client.get("/nope").status_code == 404
    r = server.client.get("/get-online-features")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert r.headers["allow"] == "POST"  # RFC 9110 15.5.6: a 405 lists the methods the resource takes
    r = server.client.post("/health")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    for path in ("/health", "/ready"):  # HEAD (load balancers' health checks): GET's status and headers, no body
        head, get = server.client.head(path), server.client.get(path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        assert head.headers["content-type"] == get.headers["content-type"]
    assert server.client.head("/get-online-features").status_code == 405


# ---- errors -----------------------------------------------------------------------------------
def _api_message(served_repo: Path, **kw) -> str:
    with FeatureStore(served_repo) as fs, pytest.raises(ValueError) as exc:
        fs.get_online_features(**kw)
    return str(exc.value)


ERROR_CASES = [
    # (name, body, status, kind, API call giving the same message or a substring)
    (
        "unknown service",
        service_request([1001], "decline_model_v9"),
        422,
        "unknown_reference",
        dict(service="decline_model_v9", entities={"driver_id": [1001]}),
    ),
    (
        "unknown feature",
        {"features": ["driver_stats:acceptance_rate_7"], "entities": {"driver_id": [1]}},
        422,
        "unknown_reference",
        dict(features=["driver_stats:acceptance_rate_7"], entities={"driver_id": [1]}),
    ),
    (
        "wrong key type",
        {"features": ["driver_stats:trips_30d"], "entities": {"driver_id": ["1001"]}},
        422,
        "entity_key",
        dict(features=["driver_stats:trips_30d"], entities={"driver_id": ["1001"]}),
    ),
    (
        "missing request feature",
        {"feature_service": "decline_model_v1", "entities": {"driver_id": [1001]}},
        422,
        "request_feature",
        dict(service="decline_model_v1", entities={"driver_id": [1001]}),
    ),
    (
        "too many entities",
        {"features": ["driver_stats:trips_30d"], "entities": {"driver_id": list(range(10_001))}},
        422,
        "invalid_request",
        dict(features=["driver_stats:trips_30d"], entities={"driver_id": list(range(10_001))}),
    ),
    (
        "both features and service",
        {**service_request([1]), "features": ["driver_stats:trips_30d"]},
        400,
        "invalid_request",
        "exactly one of",
    ),
    (
        "entities not a mapping",
        {"feature_service": "decline_model_v1", "entities": [1001]},
        400,
        "invalid_request",
        '"entities" must map',
    ),
    (
        "an entities column that is no list",
        {"features": ["driver_stats:trips_30d"], "entities": {"driver_id": 1001}},
        400,
        "invalid_request",
        dict(features=["driver_stats:trips_30d"], entities={"driver_id": 1001}),
    ),
    (
        "an entities column that is a mapping",
        {"features": ["driver_stats:trips_30d"], "entities": {"driver_id": [1001], "x": {"a": 1}}},
        400,
        "invalid_request",
        dict(features=["driver_stats:trips_30d"], entities={"driver_id": [1001], "x": {"a": 1}}),
    ),
]


@pytest.mark.parametrize("name,body,status,kind,expect", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_table(server, served_repo, name, body, status, kind, expect):
    r = server.post("/get-online-features", body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] == kind
    if isinstance(expect, dict):
        assert err["detail"] == _api_message(served_repo, **expect)
    else:
        assert expect in err["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_a_service_with_feasts_default_empty_feature_list_is_served(server):
    """Feast's request model has `features: []` by default: a client serializing it with a feature service
    sends both keys, and Feast serves the service."""
    plain = server.post("/get-online-features", service_request([1001, 1002]))
    with_default = server.post("/get-online-features", {**service_request([1001, 1002]), "features": []})
    assert with_default.status_code == 200, with_default.text
    assert columns(with_default.json()) == columns(plain.json())
    neither = server.post("/get-online-features", {"features": [], "entities": {"driver_id": [1001]}})
    assert neither.status_code in (400, 422), neither.text  # an empty list alone names nothing


def test_did_you_mean_reaches_the_client(server):
    r = server.post(
        "/get-online-features",
        {"features": ["driver_stats:acceptance_rate_7"], "entities": {"driver_id": [1]}},
    )
    assert "did you mean 'acceptance_rate_7d'" in r.json()["detail"]


def test_body_limits_and_bad_json(server):
    big = b'{"features": ["driver_stats:trips_30d"], "entities": {"driver_id": [' + b"1," * 600_000 + b"1]}}"
    r = server.client.post("/get-online-features", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = server.client.post(
        "/get-online-features", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    r = server.client.post("/get-online-features", content=b"[1, 2]")
    assert r.status_code == 400
    # the server is still fine afterwards
    assert server.post("/get-online-features", service_request([1001])).status_code == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_that_does_not_arrive_in_time_gets_408_and_others_are_served(served_repo, framing):
    """With a Content-Length the read is answered by fsplug's protocol directly; chunked, through uvicorn's
    ASGI path: both time the whole body."""
    chunked = framing == "chunked"

    def request_head(n: int) -> bytes:
        length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % n
        return (b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + length + b"\r\n\r\n")

    def piece(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    srv = start(served_repo, "--body-timeout", "0.6", "--registry-poll", "0")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
            slow.sendall(request_head(100) + piece(b"{\"feature_service\": "))  # and then nothing
            t0 = time.monotonic()
            # the stalled request does not hold up another connection
            assert srv.post("/get-online-features", service_request([1001])).status_code == 200
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = slow.recv(4096)
                if not chunk:
                    break
                reply += chunk
            waited = time.monotonic() - t0
            # and the connection is closed, not kept for a client that would trickle on (its bytes would
            # keep restarting the keep-alive timer)
            slow.settimeout(2)
            assert slow.recv(1) == b""
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), reply
        assert b"connection: close" in head.lower()
        assert b'"body_timeout"' in body
        assert 0.5 <= waited < 5, waited  # the timeout (0.6 s) plus at most the watchdog's period
        # a body trickled a byte at a time (each byte well within the timeout) must still arrive whole in time
        body = json.dumps(service_request([1001])).encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
            slow.sendall(request_head(len(body)))
            t0 = time.monotonic()
            slow.setblocking(False)
            reply = b""
            for i in range(len(body)):  # 0.1 s a byte: the whole body would take several seconds
                try:
                    slow.sendall(piece(body[i:i + 1]))
                except OSError:  # the server answered and may have closed the connection
                    break
                time.sleep(0.1)
                with contextlib.suppress(BlockingIOError):
                    reply += slow.recv(4096)
                if reply:
                    break
            waited = time.monotonic() - t0
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert waited < 3, waited
    finally:
        srv.stop()


def test_the_access_log_has_a_line_for_each_request_on_either_path(served_repo):
    """A read with a Content-Length (answered by fsplug's protocol directly), a chunked one and a
    health check (uvicorn's ASGI path) each get uvicorn's access line."""
    srv = start(served_repo, "--access-log", "--registry-poll", "0")
    try:
        assert srv.post("/get-online-features", service_request([1001])).status_code == 200
        body = json.dumps(service_request([1002])).encode()
        r = srv.client.post("/get-online-features", content=iter([body]))  # (an iterator: sent chunked)
        assert r.status_code == 200 and r.request.headers["transfer-encoding"] == "chunked"
        assert srv.client.post("/get-feature-vector", content=b"{}").status_code == 400
        assert srv.client.get("/health").status_code == 200
    finally:
        srv.stop()
    lines = [line for line in srv.output().splitlines() if '" 200' in line or '" 400' in line]
    assert sum('"POST /get-online-features HTTP/1.1" 200' in line for line in lines) == 2, srv.output()
    assert any('"POST /get-feature-vector HTTP/1.1" 400' in line for line in lines), srv.output()
    assert any('"GET /health HTTP/1.1" 200' in line for line in lines), srv.output()


# ---- push and the token -----------------------------------------------------------------------
def test_push_needs_the_token_and_writes(server, served_repo):
    now = datetime.now(UTC).replace(microsecond=0)
    push = {
        "feature_view": "driver_activity",
        "df": {
            "driver_id": [1007],
            "event_timestamp": [now.isoformat()],
            "trips_today": [41],
            "hours_on_shift": [3.5],
            "consecutive_trips": [2],
            "acceptance_rate_1h": [0.5],
            "declines_1h": [1],
        },
    }
    assert server.post("/push", push).status_code == 401
    r = server.post("/push", push, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = server.post("/push", push, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"written": 1}
    got = columns(
        server.post(
            "/get-online-features",
            {"features": ["driver_activity:trips_today"], "entities": {"driver_id": [1007]}},
        ).json()
    )
    assert got["trips_today"]["values"] == [41] and got["trips_today"]["event_timestamps"] == [
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ]
    # reads need no token on this server (no --auth-reads); the token never reaches the log
    assert TOKEN not in server.output()


def test_push_refuses_to_start_without_token(served_repo):
    env = dict(os.environ)
    env.pop("FSPLUG_SERVE_TOKEN", None)
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsplug.cli",
            "--repo",
            str(served_repo),
            "serve",
            "--enable-push",
            "--port",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60, check=False)
    assert out.returncode == 1 and "FSPLUG_SERVE_TOKEN" in out.stderr and "Traceback" not in out.stderr


def test_a_token_with_a_trailing_newline_still_matches(tmp_path, monkeypatch):
    # a token read from a secret file often ends with a newline, which no header can carry: it is
    # compared without its surrounding whitespace (else every guarded request is 401, with no hint why)
    from fsplug.errors import ConfigError
    from fsplug.server.app import create_app
    from fsplug.server.config import ServerConfig
    from tests.conftest import write_empty_sources

    repo = write_repo(tmp_path / "nl", {"defs.yaml": EVERY_DTYPE}, config=SQLITE_YAML)
    write_empty_sources(repo)
    with FeatureStore(repo) as fs:
        fs.apply()
    monkeypatch.setenv("FSPLUG_SERVE_TOKEN", TOKEN + "\n")
    app = create_app(ServerConfig(repo=str(repo), registry_poll_s=0, enable_push=True, auth_reads=True))
    app.startup()
    try:
        status, body = call_app(app, "/get-online-features", {"features": ["every:i"], "entities": {"thing_id": ["a"]}})
        assert status == 200, body
    finally:
        app.shutdown()
    monkeypatch.setenv("FSPLUG_SERVE_TOKEN", " \n")  # only whitespace: no token at all
    with pytest.raises(ConfigError, match="needs an API token"):
        ServerConfig(repo=str(repo), enable_push=True).check()


# ---- metrics ----------------------------------------------------------------------------------
def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} {labels} not in /metrics"
    return total


def test_metrics_present_and_moving(server):
    server.post("/get-online-features", service_request([1001]))  # every series exists
    before = server.client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    t0 = before.text
    for _ in range(6):  # two workers: the merged series must count every request
        assert server.post("/get-online-features", service_request([1001, 1002])).status_code == 200
    server.post("/get-online-features", service_request([1], "nope"))
    ep = "/get-online-features"
    key = dict(endpoint=ep, feature_service="decline_model_v1")
    # each worker writes its samples every metrics.FLUSH_S (1 s), the answering one before the scrape
    deadline = time.monotonic() + 10
    while True:
        t1 = server.client.get("/metrics").text
        done = _metric(t1, "fsplug_requests_total", endpoint=ep, code="200") >= (
            _metric(t0, "fsplug_requests_total", endpoint=ep, code="200") + 6)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (
        _metric(t1, "fsplug_request_duration_seconds_count", **key)
        >= _metric(t0, "fsplug_request_duration_seconds_count", **key) + 6
    )
    assert (
        _metric(t1, "fsplug_request_entities_sum", endpoint=ep)
        >= _metric(t0, "fsplug_request_entities_sum", endpoint=ep) + 12
    )
    assert (
        _metric(t1, "fsplug_store_read_duration_seconds_count", endpoint=ep)
        >= _metric(t0, "fsplug_store_read_duration_seconds_count", endpoint=ep) + 6
    )
    assert _metric(t1, "fsplug_request_errors_total", endpoint=ep, kind="unknown_reference") >= 1
    assert _metric(t1, "fsplug_requests_in_flight") >= 1  # the scrape itself
    assert _metric(t1, "fsplug_requests_total", endpoint=ep, code="200") >= 6
    for view in ("driver_stats", "driver_activity"):
        age = _metric(t1, "fsplug_feature_freshness_seconds", view=view)
        assert 0 <= age < 3 * 86400
    ready = server.client.get("/ready").json()
    assert _metric(t1, "fsplug_registry_info", hash=ready["registry"]) == 1
    assert _metric(t1, "fsplug_registry_served", hash=ready["registry"]) == 1
    assert 'fsplug_request_duration_seconds_bucket{endpoint="/get-online-features",' in t1


# ---- registry: hot swap and a host without the repo -------------------------------------------
def _set_service(repo: Path, drop: str | None) -> None:
    path = next((repo / "features").glob("*.yaml"))
    text = path.read_text()
    marker = "      - driver_stats:tenure_days\n"
    if drop is None and "#dropped" in text:
        text = text.replace("#dropped\n", marker)
    elif drop is not None:
        assert marker in text
        text = text.replace(marker, "#dropped\n")
    path.write_text(text)


_FREEZE_CHILD = """
import asyncio, gc, pathlib, sys, weakref
from fsplug.server.app import create_app
from fsplug.server.config import ServerConfig
from fsplug.store import FeatureStore
from tests.server.test_server import _set_service

repo = pathlib.Path(sys.argv[1])
app = create_app(ServerConfig(repo=str(repo), registry_poll_s=0))


def apply(drop):
    _set_service(repo, drop=drop)
    with FeatureStore(repo) as fs:
        fs.apply()


class Cycle:
    pass


cyc = Cycle()
cyc.me = cyc
alive = weakref.ref(cyc)
keep = [cyc]  # alive when the heap is frozen
del cyc


async def main():
    inbox, out = asyncio.Queue(), []
    inbox.put_nowait({"type": "lifespan.startup"})

    async def send(msg):
        out.append(msg["type"])

    task = asyncio.get_running_loop().create_task(app._lifespan(inbox.get, send))
    while not out:
        await asyncio.sleep(0.01)
    assert out == ["lifespan.startup.complete"], out
    assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
    assert gc.is_tracked(keep) and alive() is not None
    keep.clear()  # frozen, now cyclic garbage: only a collection of unfrozen objects frees it
    gc.collect()
    assert alive() is not None  # frozen objects are not collected...
    old = weakref.ref(app.store.registry)
    try:
        apply("tenure_days")
        assert app.poll_registry()
    finally:
        apply(None)
    assert old() is None, "the old registry outlived the swap"
    assert alive() is None, "a swap must unfreeze, so what the old heap dropped can be freed"
    assert gc.get_freeze_count() > 1000
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await task
    assert out[-1] == "lifespan.shutdown.complete", out


asyncio.run(main())
print("ok")
"""


def test_workers_freeze_their_heap_and_a_swap_frees_the_old_registry(tmp_path):
    # in a child process: freezing the heap is for server workers, not for the test process
    repo = build_served_repo(tmp_path / "repo", SQLITE_YAML, n_drivers=20, days=2)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", _FREEZE_CHILD, str(repo)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_registry_applied_while_requests_flow(server, served_repo, tmp_path):
    old = tuple(columns(server.post("/get-online-features", service_request([1001])).json()))
    assert "tenure_days" in old
    # a second host with no repo files: only feature_store.yaml naming the store and the project
    host = tmp_path / "host2"
    host.mkdir()
    (host / "feature_store.yaml").write_text(
        "project: srv\nregistry: online\nonline_store:\n  type: sqlite\n"
        f"  path: {served_repo}/data/online.db\n"
    )
    second = start(host, "--registry-poll", "0.2", "--auth-reads", env={"FSPLUG_SERVE_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert second.post("/get-online-features", service_request([1001])).status_code == 401
        same = second.post("/get-online-features", service_request([1001, 1002]), headers=auth)
        assert same.json() == server.post("/get-online-features", service_request([1001, 1002])).json()

        seen: list[tuple[int, tuple[str, ...] | None]] = []
        stop = threading.Event()

        def load(srv: Server, headers: dict) -> None:
            with httpx.Client(base_url=srv.url, timeout=10) as c:
                while not stop.is_set():
                    r = c.post(
                        "/get-online-features", json=service_request([1001, 1002, 1003]), headers=headers
                    )
                    names = tuple(r.json()["metadata"]["feature_names"]) if r.status_code == 200 else None
                    seen.append((r.status_code, names))

        threads = [
            threading.Thread(target=load, args=(s, h))
            for s, h in ((server, {}), (server, {}), (second, auth))
        ]
        for t in threads:
            t.start()
        time.sleep(0.5)
        try:
            _set_service(served_repo, drop="tenure_days")
            with FeatureStore(served_repo) as fs:
                fs.apply()
            new = tuple(n for n in old if n != "tenure_days")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                a = tuple(columns(server.post("/get-online-features", service_request([1001])).json()))
                b = tuple(
                    columns(second.post("/get-online-features", service_request([1001]), headers=auth).json())
                )
                if a == new and b == new:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert a == new and b == new, (a, b)
        assert seen and all(code == 200 for code, _ in seen), {c for c, _ in seen}
        kinds = {names for _, names in seen}
        assert kinds <= {old, new} and new in kinds
        assert _metric(server.client.get("/metrics").text, "fsplug_registry_swaps_total") >= 1
    finally:
        second.stop()
        _set_service(served_repo, drop=None)
        with FeatureStore(served_repo) as fs:
            fs.apply()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "tenure_days" not in columns(
            server.post("/get-online-features", service_request([1001])).json()
        ):
            time.sleep(0.1)


def test_host_without_repo_needs_a_published_registry(tmp_path):
    host = tmp_path / "empty_host"
    host.mkdir()
    (host / "feature_store.yaml").write_text(
        f"project: never_applied\nregistry: online\nonline_store:\n  type: sqlite\n  path: {tmp_path}/x.db\n"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "fsplug.cli", "--repo", str(host), "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60, check=False)
    assert out.returncode == 1 and "no registry published" in out.stderr


# ---- operations -------------------------------------------------------------------------------
def test_dead_worker_is_replaced(server):
    pids = set()
    deadline = time.monotonic() + 10
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client(base_url=server.url) as c:  # a new connection may land on the other worker
            pids.add(c.get("/ready").json()["worker"])
    assert len(pids) == 2
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    new: set[int] = set()
    while time.monotonic() < deadline and not (new - pids):
        try:
            with httpx.Client(base_url=server.url) as c:
                new.add(c.get("/ready").json()["worker"])
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    assert new - pids, "no new worker answered"
    assert server.post("/get-online-features", service_request([1001])).status_code == 200


def test_sigterm_finishes_requests_in_flight(served_repo):
    """Requests the server has received when SIGTERM arrives are all answered in full; then it exits.

    The clients' connections are opened (and accepted) first, then each sends one large request: with
    one worker, the first is being read from the store when SIGTERM arrives and the others wait in
    their connections; none may be lost. The requests are written to the sockets before SIGTERM is
    sent (not by threads that a busy machine may start late), and read back afterwards. (A connection
    still in the kernel's accept queue when the listening socket closes is reset by the OS, as with any
    server: take a host out of the load balancer before stopping it.)
    """
    import http.client
    import json

    srv = start(served_repo, "--registry-poll", "0")
    big = json.dumps(service_request(list(range(1001, 1201)) * 50))  # 10,000 entities: each takes a while
    port = int(srv.url.rsplit(":", 1)[1])
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(3)]
    for c in conns:
        c.request("GET", "/health")
        r = c.getresponse()
        assert r.status == 200 and r.read()  # the connection is accepted and kept alive
    for c in conns:  # each request in full, on its socket, before the signal
        c.request("POST", "/get-online-features", body=big, headers={"content-type": "application/json"})
    answered = select.select([c.sock for c in conns], [], [], 0)[0]  # (with one worker, one at a time)
    srv.proc.send_signal(signal.SIGTERM)
    assert len(answered) <= 1, "the requests were not in flight at SIGTERM"
    done: list[tuple[int, int]] = []
    lost: list[str] = []

    def one(c: http.client.HTTPConnection) -> None:
        try:
            r = c.getresponse()
            body = json.loads(r.read())
            done.append((r.status, len(body["results"][1]["values"])))
        except Exception as exc:  # noqa: BLE001
            lost.append(repr(exc))

    threads = [threading.Thread(target=one, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    code = srv.proc.wait(30)
    for c in conns:
        c.close()
    srv.stop()
    assert code in (0, -signal.SIGTERM), srv.output()  # uvicorn re-raises SIGTERM once it is done
    assert not lost, lost
    assert done == [(200, 10_000)] * 3
    assert "Finished server process" in srv.output()
    with pytest.raises(httpx.ConnectError):  # and it accepts nothing new
        httpx.get(srv.url + "/health")


# ---- Aerospike --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aerospike_server():
    from fsplug.testing.aerospike_server import AerospikeTestServer

    with AerospikeTestServer(namespaces=["test"]) as srv:
        yield srv


def test_aerospike_store_from_the_published_registry(aerospike_server, tmp_path):
    yaml = (
        f"project: srv_as\nregistry: data/registry.json\nonline_store:\n  type: aerospike\n"
        f"  hosts: ['{aerospike_server.address}']\n  namespace: test\n  read_total_timeout_ms: 100\n"
        f"  read_socket_timeout_ms: 100\n  max_retries: 0\n"
    )
    repo = build_served_repo(tmp_path / "as_repo", yaml, n_drivers=50, days=2)
    host = tmp_path / "as_host"
    host.mkdir()
    (host / "feature_store.yaml").write_text(yaml.replace("registry: data/registry.json", "registry: online"))
    srv = start(host, "--registry-poll", "0", "--read-timeout-ms", "100")
    try:
        r = srv.post("/get-online-features", service_request([1001, 1002]))
        assert r.status_code == 200, r.text
        with FeatureStore(repo) as fs:
            want = fs.get_online_features(
                service="decline_model_v1", entities=service_request([1001, 1002])["entities"]
            ).to_dict()
        for name, col in columns(r.json()).items():
            if name != "driver_id":
                assert col["values"] == pytest.approx(want[name], nan_ok=True)
        v = srv.post(
            "/get-feature-vector",
            {
                "feature_service": "decline_model_v1",
                "entity": {"driver_id": 1001},
                "request": {"pickup_distance_km": 1.0, "hour_of_day": 3},
            },
        )
        assert v.status_code == 200
        # a read past its budget: 504
        aerospike_server.set_latency(0.3)
        r = srv.post("/get-online-features", service_request([1001]))
        assert r.status_code == 504 and r.json()["error"] == "store_timeout", r.text
        aerospike_server.set_latency(0)
        # the store down: 503 with Retry-After, /ready says so; back up: served again
        aerospike_server.stop()
        r = srv.post("/get-online-features", service_request([1001]))
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1" and r.json()["error"] == "store_unavailable"
        assert srv.client.get("/ready").status_code == 503
        assert "Traceback" not in r.text
        aerospike_server.start(keep_data=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if srv.post("/get-online-features", service_request([1001])).status_code == 200:
                break
            time.sleep(0.2)
        assert srv.post("/get-online-features", service_request([1001])).status_code == 200
        m = srv.client.get("/metrics").text
        assert (
            _metric(m, "fsplug_request_errors_total", endpoint="/get-online-features", kind="store_timeout")
            >= 1
        )
    finally:
        srv.stop()


def test_event_times_are_written_as_protobuf_json_timestamps():
    import numpy as np
    import orjson

    from fsplug.server.app import _iso

    arr = np.array(
        ["2021-12-31T23:00:00", "2021-12-31T23:00:00.5", "2021-12-31T23:00:00.000007", "1969-12-31T23:59:59"],
        dtype="datetime64[us]",
    )
    times = arr.astype(np.int64).tolist()
    assert orjson.loads(_iso([times[0], None, *times[1:]])) == [
        "2021-12-31T23:00:00Z",
        "1970-01-01T00:00:00Z",
        "2021-12-31T23:00:00.500Z",
        "2021-12-31T23:00:00.000007Z",
        "1969-12-31T23:59:59Z",
    ]
    assert orjson.loads(_iso(times[:1])) == ["2021-12-31T23:00:00Z"]  # the cached text is the same (one: still a list)
    assert _iso([]) == b"[]"


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))
def test_event_time_text_is_the_calendar_time_of_its_microseconds(us):
    """The server's formatter (per-day and per-minute texts) against datetime's own calendar, years 1 to 9999."""
    from fsplug.server.app import _format_us

    dt = datetime(1970, 1, 1) + timedelta(microseconds=us)
    digits = f"{dt.microsecond:06d}".rstrip("0")
    frac = "" if not digits else "." + (digits.ljust(3, "0") if len(digits) <= 3 else digits.ljust(6, "0"))
    assert _format_us(us) == f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt:%H:%M:%S}{frac}Z"


CLASHING = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: a_src, path: data/a.parquet, timestamp_field: ts}
  - {name: b_src, path: data/b.parquet, timestamp_field: ts}
feature_views:
  - {name: a, entity: driver, source: a_src, ttl: 1d, features: [{name: rate, dtype: float64}]}
  - {name: b, entity: driver, source: b_src, ttl: 1d, features: [{name: rate, dtype: float64, bin: b_rate}]}
feature_services:
  - {name: both, features: ["a:rate", "b:rate"]}
  - {name: one, features: ["a:rate"]}
"""


def test_a_service_with_clashing_names_does_not_stop_the_server(tmp_path):
    """Two views' `rate` in one service: the server starts, serves the other services, and answers
    that service's requests with the API's error unless they ask for full feature names."""
    from fsplug.store import FeatureStore
    from tests.conftest import write_empty_sources

    repo = write_repo(tmp_path / "clash", {"defs.yaml": CLASHING}, config=SQLITE_YAML)
    write_empty_sources(repo)
    with FeatureStore(repo) as fs:
        fs.apply()
    srv = start(repo)
    try:
        ok = srv.post("/get-online-features", {"feature_service": "one", "entities": {"driver_id": [1]}})
        assert ok.status_code == 200, ok.text
        bad = srv.post("/get-online-features", {"feature_service": "both", "entities": {"driver_id": [1]}})
        assert bad.status_code in (400, 422), bad.text
        assert '"full_feature_names": true' in bad.json()["detail"]  # (in the request's terms, not Python's)
        full = srv.post(
            "/get-online-features",
            {"feature_service": "both", "entities": {"driver_id": [1]}, "full_feature_names": True},
        )
        assert full.status_code == 200, full.text
        assert full.json()["metadata"]["feature_names"] == ["driver_id", "a__rate", "b__rate"]
    finally:
        srv.stop()
    assert "'both' cannot be compiled as it is" in srv.output()
    assert "full_feature_names" in srv.output()


WITH_UDF = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: a_src, path: data/a.parquet, timestamp_field: ts}
feature_views:
  - {name: a, entity: driver, source: a_src, ttl: 1d, features: [{name: rate, dtype: float64}]}
derived_views:
  - name: d
    inputs: [a]
    features:
      - {name: doubled, dtype: float64, udf: "srv_udfs.calc:double"}
feature_services:
  - {name: with_udf, features: ["a:rate", "d:doubled"]}
  - {name: plain, features: ["a:rate"]}
"""


def test_a_udf_missing_on_the_serving_host_is_reported_at_startup(tmp_path):
    """A host whose deployment lacks a UDF's module starts, says so in its log at once (not at the
    first request), serves the other services, and answers the affected one with the import error."""
    import shutil

    from fsplug.store import FeatureStore
    from tests.conftest import write_empty_sources

    repo = write_repo(
        tmp_path / "udf",
        {
            "defs.yaml": WITH_UDF,
            "srv_udfs/__init__.py": "",
            "srv_udfs/calc.py": "def double(rate):\n    return rate * 2\n",
        },
        config=SQLITE_YAML,
    )
    write_empty_sources(repo)
    with FeatureStore(repo) as fs:
        fs.apply()
    shutil.rmtree(repo / "srv_udfs")  # the serving host was deployed without the module
    srv = start(repo)
    try:
        assert "'with_udf' cannot be compiled as it is" in srv.output()
        ok = srv.post("/get-online-features", {"feature_service": "plain", "entities": {"driver_id": [1]}})
        assert ok.status_code == 200, ok.text
        bad = srv.post("/get-online-features", {"feature_service": "with_udf", "entities": {"driver_id": [1]}})
        assert bad.status_code == 500, bad.text
        assert "srv_udfs" in bad.json()["detail"]
    finally:
        srv.stop()


# ---- values of every dtype in Feast's JSON (the app called in process) ------------------------
EVERY_DTYPE = """\
entities:
  - {name: thing, join_key: thing_id, dtype: string}
sources:
  - {name: things, path: data/things.parquet, timestamp_field: ts}
feature_views:
  - name: every
    entity: thing
    source: things
    ttl: 0
    features:
      - {name: i, dtype: int64}
      - {name: f, dtype: float64}
      - {name: f32, dtype: float32}
      - {name: s, dtype: string}
      - {name: b, dtype: bool}
      - {name: raw, dtype: bytes}
      - {name: t, dtype: timestamp}
      - {name: v, dtype: "list[float64]"}
request_sources:
  - {name: req, features: [{name: tag, dtype: bytes, default: "x"}]}
"""


@pytest.fixture
def every_dtype_app(tmp_path, monkeypatch):
    """The server app, started in process, of a repo with a view holding a feature of every dtype."""
    from fsplug.server.app import create_app
    from fsplug.server.config import ServerConfig
    from tests.conftest import write_empty_sources

    repo = write_repo(tmp_path / "every", {"defs.yaml": EVERY_DTYPE}, config=SQLITE_YAML)
    write_empty_sources(repo)
    with FeatureStore(repo) as fs:
        fs.apply()
    monkeypatch.setenv("FSPLUG_SERVE_TOKEN", TOKEN)
    app = create_app(ServerConfig(repo=str(repo), registry_poll_s=0, enable_push=True))
    app.startup()
    yield app
    app.shutdown()


def call_app(app, path: str, body: dict) -> tuple[int, dict]:
    """POST `body` (JSON) to `path` of the in-process app, with the token: (status, decoded JSON body)."""
    import asyncio
    import json
    from concurrent.futures import ThreadPoolExecutor

    async def run() -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

        async def send(msg: dict) -> None:
            sent.append(msg)

        headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
        await app({"type": "http", "method": "POST", "path": path, "headers": headers}, receive, send)
        return sent

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whatever the test process's thread holds
        start_msg, body_msg = pool.submit(asyncio.run, run()).result()
    return start_msg["status"], json.loads(body_msg["body"])


@pytest.mark.parametrize("path,body", [
    ("/get-online-features", {"features": ["every:i"], "entities": {"thing_id": ["a"]}}),
    ("/get-feature-vector", {"feature_service": "nope", "entity": {"thing_id": "a"}}),
])
def test_request_duration_starts_once_the_body_is_in(every_dtype_app, path, body):
    # fsplug_request_duration_seconds is the server's time from the request's body to its response (as
    # /push's): a client that takes 0.5 s to upload its body must not show as a 0.5 s request
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fsplug.server import metrics as m

    series = m.child(m.REQUEST_SECONDS, path, "" if "features" in body else "?")

    def observed() -> float:  # pending in this process, plus what was flushed to the client's series
        return series.total + series.child._sum.get()

    raw = json.dumps(body).encode()
    parts = [(raw[:5], True, 0.0), (raw[5:], False, 0.5)]  # the body's second part comes 0.5 s later

    async def run() -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            chunk, more, delay = parts.pop(0)
            await asyncio.sleep(delay)
            return {"type": "http.request", "body": chunk, "more_body": more}

        async def send(msg: dict) -> None:
            sent.append(msg)

        await every_dtype_app({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)
        return sent[0]["status"]

    before = observed()
    with ThreadPoolExecutor(1) as pool:
        status = pool.submit(asyncio.run, run()).result()
    assert status in (200, 422) and not parts
    assert 0 < observed() - before < 0.25, observed() - before


def test_bytes_features_are_served_as_base64_as_feasts_server_does(every_dtype_app):
    import pyarrow as pa

    ts = datetime(2026, 11, 30, 12, tzinfo=UTC)
    every_dtype_app.store.push("every", {
        "thing_id": ["a", "b"], "ts": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
        "i": [1, 2], "f": [1.5, 2.5], "f32": pa.array([1.5, 2.5], pa.float32()), "s": ["x", "y"],
        "b": [True, False], "raw": pa.array([b"\x00\xff\x10", None], pa.binary()),
        "t": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
        "v": pa.array([[1.0], [2.0]], pa.list_(pa.float64())),
    })
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["every:raw", "every:i"], "entities": {"thing_id": ["a", "b", "zz"]}})
    assert status == 200, body
    raw = columns(body)["raw"]
    assert raw["values"] == ["AP8Q", None, None]  # base64 of b"\x00\xff\x10"; null, then not found
    assert raw["statuses"] == ["PRESENT", "NULL_VALUE", "NOT_FOUND"]
    # a bytes request feature: its default is bytes; a value given in JSON is base64 text, as in responses
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["req:tag", "every:i"], "entities": {"thing_id": ["a"]}})
    assert status == 200 and columns(body)["tag"]["values"] == ["eA=="], body
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["req:tag"], "entities": {"tag": ["AP8Q"]}})
    assert status == 200 and columns(body)["tag"]["values"] == ["AP8Q"], body
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["req:tag"], "entities": {"tag": ["abc"]}})
    assert status == 422 and "'abc' is not base64 text" in body["detail"], body


def test_timestamp_features_are_served_as_feasts_server_writes_them(every_dtype_app):
    """Feast writes a timestamp value (its unix_timestamp_val) as whole seconds since the epoch, and its
    remote online store reads it back with int(): an ISO string would break Feast's clients."""
    import pyarrow as pa

    ts = datetime(2026, 11, 30, 12, tzinfo=UTC)
    at = datetime(2026, 11, 30, 11, 59, 58, 750_000, tzinfo=UTC)
    every_dtype_app.store.push("every", {
        "thing_id": ["a", "b"], "ts": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
        "i": [1, 2], "f": [1.5, 2.5], "f32": pa.array([1.5, 2.5], pa.float32()), "s": ["x", "y"],
        "b": [True, False], "raw": pa.array([None, None], pa.binary()),
        "t": pa.array([at, None], pa.timestamp("us", tz="UTC")),
        "v": pa.array([[1.0], [2.0]], pa.list_(pa.float64())),
    })
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["every:t"], "entities": {"thing_id": ["a", "b", "zz"]}})
    assert status == 200, body
    t = columns(body)["t"]
    assert t["values"] == [int(at.timestamp()), None, None] and type(t["values"][0]) is int
    assert t["statuses"] == ["PRESENT", "NULL_VALUE", "NOT_FOUND"]
    assert t["event_timestamps"][0] == "2026-11-30T12:00:00Z"  # the event time stays RFC 3339, as Feast's


def test_feasts_remote_online_store_writes_through_write_to_online_store(every_dtype_app):
    """Feast's remote online store posts rows to /write-to-online-store under Feast's names: the join keys,
    the feature names, `event_timestamp` (naive UTC ISO) and `created` (None without one); the view's
    source names its time column `ts` here."""
    import numpy as np

    df = {"thing_id": ["w"], "i": [5], "f": [0.25], "f32": [0.5], "s": ["z"], "b": [False], "raw": [None],
          "t": [None], "v": [[3.0]], "event_timestamp": ["2026-11-30T10:00:00"], "created": [None]}
    status, body = call_app(every_dtype_app, "/write-to-online-store",
                            {"feature_view_name": "every", "df": df, "allow_registry_cache": False})
    assert status == 200 and body == {"written": 1}, body
    res = every_dtype_app.store.get_online_features(features=["every:i", "every:f", "every:v"],
                                                    entities={"thing_id": ["w"]})
    assert res.to_dict() == {"i": [5], "f": [0.25], "v": [[3.0]]}
    assert res.event_timestamps["every"][0] == np.datetime64("2026-11-30T10:00:00", "us")
    status, body = call_app(every_dtype_app, "/write-to-online-store", {"feature_view_name": "nope", "df": df})
    assert status == 422 and "nope" in body["detail"], body
    status, body = call_app(every_dtype_app, "/write-to-online-store", {"df": df})
    assert status == 400, body


def test_a_failing_registry_poll_is_logged_once_not_every_poll(every_dtype_app, caplog):
    import logging

    path = every_dtype_app.store.config.registry_path
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a registry file cut short: every poll fails the same way
    with caplog.at_level(logging.WARNING, logger="fsplug.server"):
        assert [every_dtype_app.poll_registry() for _ in range(3)] == [False] * 3
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1, caplog.text
    assert "registry poll failed" in caplog.records[0].getMessage() and len(caplog.records) == 1
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["every:i"], "entities": {"thing_id": ["a"]}})
    assert status == 200, body  # still serving the registry it has
    path.write_bytes(good)


def test_push_takes_whole_numbers_for_float_features(every_dtype_app):
    """JSON has one number type: a client in JavaScript writes 2.0 as 2, so a float feature (and a
    list[float64] element) takes whole numbers, as it takes them in a request."""
    status, body = call_app(every_dtype_app, "/push", {"feature_view": "every", "df": {
        "thing_id": ["n"], "ts": ["2026-11-30T12:00:00Z"], "i": [7], "f": [2], "f32": [3], "s": ["x"],
        "b": [True], "raw": [None], "t": ["2026-11-30T11:00:00Z"], "v": [[1, 2.5]]}})
    assert status == 200, body
    got = every_dtype_app.store.get_online_features(
        features=["every:f", "every:f32", "every:v", "every:i"], entities={"thing_id": ["n"]}).to_dict()
    assert got == {"f": [2.0], "f32": [3.0], "v": [[1.0, 2.5]], "i": [7]}
    assert type(got["f"][0]) is float
    status, body = call_app(every_dtype_app, "/push", {"feature_view": "every", "df": {
        "thing_id": ["n"], "ts": ["2026-11-30T12:00:00Z"], "i": [7.5], "f": [2], "f32": [3], "s": ["x"],
        "b": [True], "raw": [None], "t": ["2026-11-30T11:00:00Z"], "v": [[1]]}})
    assert status == 422 and "column 'i' has type double; feature 'i' declares int64" in body["detail"], body


def test_push_takes_bytes_as_base64_as_the_response_gives_them(every_dtype_app):
    row = {"thing_id": ["r"], "ts": ["2026-11-30T12:00:00Z"], "i": [1], "f": [1.5], "f32": [1.5], "s": ["x"],
           "b": [True], "raw": ["AP8Q"], "t": ["2026-11-30T11:00:00Z"], "v": [[1.0]]}
    status, body = call_app(every_dtype_app, "/push", {"feature_view": "every", "df": row})
    assert status == 200, body
    got = every_dtype_app.store.get_online_features(features=["every:raw"], entities={"thing_id": ["r"]})
    assert got.to_dict()["raw"] == [b"\x00\xff\x10"]
    status, body = call_app(every_dtype_app, "/get-online-features",
                            {"features": ["every:raw"], "entities": {"thing_id": ["r"]}})
    assert columns(body)["raw"]["values"] == ["AP8Q"]  # the round trip
    status, body = call_app(every_dtype_app, "/push", {"feature_view": "every", "df": {**row, "raw": ["not base64!"]}})
    assert status == 422 and "df['raw']: not base64 text" in body["detail"], body


def test_push_to_the_offline_store_is_refused_not_written_online(every_dtype_app):
    """Feast's push request names where it goes (`to`); fsplug writes only the online store, so a push
    meant for the offline store alone was written online instead."""
    row = {"thing_id": ["o"], "ts": ["2026-11-30T12:00:00Z"], "i": [1], "f": [1.5], "f32": [1.5], "s": ["x"],
           "b": [True], "raw": [None], "t": ["2026-11-30T11:00:00Z"], "v": [[1.0]]}
    for to in ("offline", "online_and_offline", 1):
        status, body = call_app(every_dtype_app, "/push", {"push_source_name": "every", "df": row, "to": to})
        assert status == 400 and "writes the online store only" in body["detail"], body
    got = every_dtype_app.store.get_online_features(features=["every:i"], entities={"thing_id": ["o"]})
    assert got.status_names()["i"] == ["NOT_FOUND"]
    status, body = call_app(every_dtype_app, "/push", {"push_source_name": "every", "df": row, "to": "online"})
    assert status == 200 and body == {"written": 1}, body
