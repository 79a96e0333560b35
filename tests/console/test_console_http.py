"""The console over plain HTTP: the token rule, read-only routes, not-found pages (no browser needed)."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
from fsplug.console.auth import COOKIE, session_value
from tests.server.conftest import TOKEN, Server, start


def _get(srv: Server, path: str, **kw) -> httpx.Response:
    return httpx.get(srv.url + path, follow_redirects=False, **kw)


def test_a_guarded_console_asks_for_the_token(guarded):
    r = _get(guarded, "/ui/views?q=driver")
    assert r.status_code == 401
    assert 'action="/ui/login"' in r.text and 'value="/ui/views?q=driver"' in r.text
    assert "driver_stats" not in r.text  # nothing of the registry without the token
    assert TOKEN not in r.text
    for path in ("/ui/", "/ui/serving", "/ui/lookup?service=decline_model_v1&driver_id=1001",
                 "/ui/views/driver_stats", "/ui/freshness"):
        assert _get(guarded, path).status_code == 401, path


def test_a_wrong_token_is_refused_and_sets_no_cookie(guarded):
    r = httpx.post(guarded.url + "/ui/login", data={"token": "not-it", "next": "/ui/views"})
    assert r.status_code == 401 and "not the token" in r.text
    assert "set-cookie" not in r.headers
    assert _get(guarded, "/ui/", headers={"authorization": "Bearer not-it"}).status_code == 401
    assert _get(guarded, "/ui/", cookies={COOKIE: session_value(b"not-it")}).status_code == 401


def test_signing_in_sets_a_session_cookie_that_is_not_the_token(guarded):
    r = httpx.post(guarded.url + "/ui/login", data={"token": TOKEN, "next": "/ui/views?q=driver"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/views?q=driver"
    cookie = r.headers["set-cookie"]
    assert TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    value = r.cookies[COOKIE]
    page = _get(guarded, "/ui/views?q=driver", cookies={COOKIE: value})
    assert page.status_code == 200 and "driver_stats" in page.text
    # the lookup goes through the guarded API: the console passes the token on
    look = _get(guarded, "/ui/lookup?service=decline_model_v1&driver_id=1001&pickup_distance_km=1&hour_of_day=8",
                cookies={COOKIE: value})
    assert look.status_code == 200 and 'id="lookup-result"' in look.text and "HTTP 401" not in look.text
    assert _get(guarded, "/ui/logout").headers["set-cookie"].startswith(f"{COOKIE}=;")


def test_the_bearer_header_opens_the_console_too(guarded):
    r = _get(guarded, "/ui/freshness", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "driver_stats" in r.text


def test_login_goes_back_only_to_console_pages(guarded):
    for target in ("https://evil.example/", "//evil.example/ui/", "/get-online-features", "/ui\\..\\x",
                   "/ui/\r\nSet-Cookie: x=1", "/ui/\x00", "/ui/\x7f"):
        r = httpx.post(guarded.url + "/ui/login", data={"token": TOKEN, "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/ui/", target


def test_the_login_form_has_a_size_limit_and_closes_an_endless_body(guarded):
    # the sign-in form is read before the token is known: an endless (chunked) body must not be read on
    # and on, as the API's endpoints stop at --max-body-bytes
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as s:
        s.sendall(b"POST /ui/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n\r\n")
        s.setblocking(False)
        reply, t0 = b"", time.monotonic()
        while time.monotonic() - t0 < 5 and not reply:
            with contextlib.suppress(OSError):  # (BlockingIOError: the server is not reading)
                s.sendall(b"1000\r\n" + b"a" * 4096 + b"\r\n")
            time.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"connection: close" in reply.lower()
    r = httpx.post(guarded.url + "/ui/login", data={"token": TOKEN, "next": "/ui/"})  # a real form still signs in
    assert r.status_code == 303


def test_an_open_server_has_an_open_console_that_only_reads(console_server):
    assert _get(console_server, "/ui").headers["location"] == "/ui/"
    page = _get(console_server, "/ui/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    for method in ("POST", "PUT", "DELETE"):
        r = httpx.request(method, console_server.url + "/ui/views")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"  # (RFC 9110: a 405 says what is allowed)
    r = httpx.put(console_server.url + "/ui/login")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


def test_a_lookup_of_a_key_past_64_bits_shows_the_apis_refusal(console_server):
    # an int64 key typed with more digits than 64 bits hold: the API's refusal, not a 500 page
    r = _get(console_server, "/ui/lookup?service=decline_model_v1&driver_id=99999999999999999999999"
                             "&pickup_distance_km=1&hour_of_day=8")
    assert r.status_code == 200, r.text
    assert 'id="lookup-error"' in r.text and "driver_id" in r.text


def test_the_root_leads_to_the_console(console_server):
    r = _get(console_server, "/")
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    assert httpx.post(console_server.url + "/", json={}).status_code == 404


def test_fsplug_ui_serves_the_console_and_takes_no_writes(console_repo):
    srv = start(console_repo, command="ui")
    try:
        assert _get(srv, "/").headers["location"] == "/ui/"
        page = _get(srv, "/ui/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert srv.post("/push", {"feature_view": "driver_stats", "df": {}}).json()["error"] == "push_disabled"
        assert _get(srv, "/ready").json()["status"] == "ready"
    finally:
        srv.stop()
    assert f"fsplug console: http://127.0.0.1:{srv.port}/ui/" in srv.output()


def test_unknown_objects_and_pages_answer_404_with_a_hint(console_server):
    r = _get(console_server, "/ui/views/driver_stat")
    assert r.status_code == 404 and "did you mean" in r.text.lower() and "driver_stats" in r.text
    assert _get(console_server, "/ui/entities/driver_stats").status_code == 404  # a view, not an entity
    assert _get(console_server, "/ui/nope").status_code == 404
    assert _get(console_server, "/ui/lookup?service=nope").status_code == 404
    # the API's own 404 is unchanged for paths outside /ui
    assert httpx.get(console_server.url + "/uinope").json()["error"] == "not_found"


def test_a_registry_of_hundreds_of_views_is_listed_whole_with_its_stale_views(tmp_path):
    """The benchmark's generated repo (300 views, 40 services; views 0, 3, 6, ... hold week-old data
    under a 1h ttl). Page times are measured by `python -m benchmarks console`, not here."""
    import re

    from benchmarks.console import make_repo

    repo = make_repo(tmp_path / "big", views=300, rows=5)
    srv = start(repo)
    try:
        views = _get(srv, "/ui/views")
        assert views.status_code == 200
        listed = re.findall(r'<tr(?: class="stale")?><td><a href="/ui/views/(v\d+)"', views.text)
        assert listed == [f"v{i}" for i in range(300)]
        fresh = _get(srv, "/ui/freshness?status=stale").text
        stale = re.findall(r'<tr class="stale"><td><a href="/ui/views/(v\d+)"', fresh)
        assert stale == [f"v{i}" for i in range(0, 300, 3)]
        overview = _get(srv, "/ui/").text
        assert '<div class="n">300</div><div class="l">feature views</div>' in overview
        assert '<div class="n">3,000</div><div class="l">features</div>' in overview
        assert '<div class="n">100</div><div class="l">stale views</div>' in overview
        for path in ("/ui/services/s39", "/ui/views/v299", "/ui/entities/e19", "/ui/search?q=team3"):
            assert _get(srv, path).status_code == 200, path
    finally:
        srv.stop()


def test_lookup_of_a_service_whose_outputs_share_a_name_answers_with_full_names(tmp_path):
    """A service of two views that both have a feature `score` is served with full_feature_names; the
    console's lookup asked without them, and answered every lookup of it with 503 "Unavailable"."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsplug.store import FeatureStore
    from tests.conftest import write_repo

    repo = write_repo(tmp_path / "r", {"defs.yaml": """\
        entities: [{name: user, join_key: user_id, dtype: string}]
        sources: [{name: s, path: data/s.parquet, timestamp_field: ts}]
        feature_views:
          - {name: daily, entity: user, source: s, features: [{name: score, dtype: float64, bin: d_score}]}
          - {name: hourly, entity: user, source: s, features: [{name: score, dtype: float64, bin: h_score}]}
        feature_services:
          - {name: both, features: ["daily:score", "hourly:score"]}
        """})
    (repo / "data").mkdir()
    pq.write_table(pa.table({"user_id": ["u1"], "ts": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
                             "score": [0.25]}), repo / "data" / "s.parquet")
    with FeatureStore(repo) as store:
        store.apply()
        store.materialize_incremental(datetime.now(UTC), progress=False)
    srv = start(repo, command="ui")
    try:
        page = _get(srv, "/ui/lookup?service=both&user_id=u1")
        assert page.status_code == 200, page.text
        assert "daily__score" in page.text and "hourly__score" in page.text and "0.25" in page.text
    finally:
        srv.stop()
