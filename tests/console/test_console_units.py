"""The console's parts without a server: escaping, percentiles, freshness, the lookup form, the applied time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from fsplug.console.freshness import FRESH, NEVER, NO_TTL, STALE, freshness
from fsplug.console.html import Html, el, href
from fsplug.console.lookup import FormField, feast_request
from fsplug.console.serving import quantile, serving_stats
from fsplug.registry.published import published_applied_at
from fsplug.state import LastRun, ViewState
from fsplug.store import FeatureStore
from fsplug.types import DType


def test_el_escapes_text_and_attributes_but_not_markup_built_here():
    out = el("td", "<script>x</script>", el("b", "ok"), title='"><img src=x>', data_view="a&b")
    assert out == ('<td title="&quot;&gt;&lt;img src=x&gt;" data-view="a&amp;b">'
                   "&lt;script&gt;x&lt;/script&gt;<b>ok</b></td>")
    assert isinstance(out, Html)
    assert el("input", value="<v>", checked=True, disabled=False) == '<input value="&lt;v&gt;" checked>'
    assert href("views", "a/b c", q="x&y") == "/ui/views/a%2Fb%20c?q=x%26y"


@pytest.mark.parametrize("q, expected", [
    (0.5, 0.001),            # rank 10 falls at the top of the first bucket
    (0.75, 0.0055),          # rank 15: halfway through (0.001, 0.01]
    (1.0, 0.01),
])
def test_quantile_interpolates_within_the_bucket_like_prometheus(q, expected):
    assert quantile(q, [0.001, 0.01, float("inf")], [10, 20, 20]) == pytest.approx(expected)


def test_quantile_edges():
    assert quantile(0.5, [0.001, float("inf")], [0, 0]) is None
    assert quantile(0.99, [0.001, 0.01, float("inf")], [0, 0, 5]) == 0.01  # all above the last bound


def test_serving_stats_reads_histograms_counters_and_errors():
    reg = CollectorRegistry()
    h = Histogram("fsplug_request_duration_seconds", "x", ["endpoint", "feature_service"],
                  buckets=(0.001, 0.01, 0.1), registry=reg)
    errors = Counter("fsplug_request_errors_total", "x", ["endpoint", "kind"], registry=reg)
    for v in [0.0005] * 6 + [0.005] * 3 + [0.05]:
        h.labels("/get-online-features", "svc").observe(v)
    h.labels("/get-feature-vector", "svc").observe(0.002)
    errors.labels("/get-online-features", "unknown_reference").inc(2)
    stats = serving_stats(reg.collect())
    top = stats.latency[0]
    assert top.labels == {"endpoint": "/get-online-features", "feature_service": "svc"}
    assert top.total == 10 and top.counts == [6, 3, 1, 0]
    assert top.sum == pytest.approx(6 * 0.0005 + 3 * 0.005 + 0.05)
    assert top.quantile(0.5) == pytest.approx(0.001 * 5 / 6)
    assert [x.total for x in stats.latency] == [10, 1]
    assert stats.errors == [("/get-online-features", "unknown_reference", 2.0)]


def _f(name: str, dtype: DType, key: bool) -> FormField:
    return FormField(name, dtype, key)


def test_the_lookup_form_makes_a_typed_feast_request():
    fields = [_f("driver_id", DType.INT64, True), _f("city", DType.STRING, True),
              _f("distance", DType.FLOAT64, False), _f("hour", DType.INT64, False),
              _f("vec", DType.FLOAT64_LIST, False), _f("surge", DType.FLOAT64, False)]
    req = feast_request("svc", fields, {"driver_id": " 1001, 1002 ", "city": '["a, b", "c"]', "distance": "1.5",
                                        "hour": "8, 9", "vec": "[0.1, 0.2]", "surge": " "})
    assert req == {"feature_service": "svc", "entities": {
        "driver_id": [1001, 1002], "city": ["a, b", "c"], "distance": [1.5, 1.5], "hour": [8, 9],
        "vec": [[0.1, 0.2], [0.1, 0.2]]}}  # one value for every entity; blank fields left out
    # text that is not of the key's type goes to the API as it is, for the API's own message
    assert feast_request("svc", fields[:1], {"driver_id": "abc"})["entities"] == {"driver_id": ["abc"]}


def test_freshness_judges_each_view_against_its_ttl(applied_ride_repo):
    reg = FeatureStore(applied_ride_repo).registry
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    run = LastRun(None, now, now, 10, 5, 5, 0.1)
    states = {"driver_stats": ViewState(now, now - timedelta(days=1), run),          # ttl 2d: fresh
              "driver_activity": ViewState(now, now - timedelta(hours=3), run)}      # ttl 2h: stale
    by_view = {f.view: f for f in freshness(reg, states, now)}
    assert by_view["driver_stats"].status == FRESH and by_view["driver_stats"].age_seconds == 86400
    assert by_view["driver_activity"].status == STALE and by_view["driver_activity"].stale
    assert {f.status for f in freshness(reg, {}, now)} == {NEVER}
    reg2 = replace(reg, feature_views={"v": replace(reg.feature_views["driver_stats"], name="v", ttl_seconds=None)})
    assert freshness(reg2, {"v": ViewState(now, now - timedelta(days=300), run)}, now)[0].status == NO_TTL


def test_apply_records_when_the_registry_was_applied(applied_ride_repo):
    with FeatureStore(applied_ride_repo) as store:
        reg = store.registry
        at = published_applied_at(store.online_store, reg.hash)
        assert at is not None and abs((datetime.now(UTC) - at).total_seconds()) < 120
        assert published_applied_at(store.online_store, "0" * 64) is None  # another registry's time
        store.teardown()
        assert published_applied_at(store.online_store, reg.hash) is None


def test_the_store_address_names_hosts_and_namespace_but_no_credential(tmp_path, monkeypatch):
    from fsplug.online.aerospike import AerospikeOnlineStore
    from fsplug.online.aerospike.config import AerospikeConfig

    monkeypatch.setenv("CONSOLE_AS_USER", "admin-user")
    monkeypatch.setenv("CONSOLE_AS_PASSWORD", "hunter2-secret")
    monkeypatch.delenv("FSPLUG_AEROSPIKE_HOSTS", raising=False)
    cfg = AerospikeConfig(hosts=["10.1.2.3:3000", "10.1.2.4:3000"], namespace="features",
                          user_env="CONSOLE_AS_USER", password_env="CONSOLE_AS_PASSWORD")
    address = AerospikeOnlineStore(cfg, tmp_path, "dispatch").address()
    assert address == "10.1.2.3:3000, 10.1.2.4:3000 (namespace features)"
    assert "hunter2" not in address and "admin-user" not in address


def test_no_console_module_imports_the_server():
    """The server mounts the console and hands it what it needs; the console never reaches up."""
    from tests.core.test_imports import import_graph

    graph = import_graph()
    console = [m for m in graph if m == "fsplug.console" or m.startswith("fsplug.console.")]
    assert "fsplug.console.app" in console
    assert {(m, t) for m in console for t in graph[m] if t.startswith("fsplug.server")} == set()


def _get_page(console, path: str) -> tuple[int, str]:
    """(status, body) of a GET of `path` from the console's ASGI app, in process."""
    import asyncio

    sent: list[dict] = []

    async def send(msg):
        sent.append(msg)

    async def receive():
        return {"type": "http.request", "body": b""}

    from concurrent.futures import ThreadPoolExecutor

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    with ThreadPoolExecutor(1) as pool:  # a loop of its own (browser tests leave one running in this thread)
        pool.submit(lambda: asyncio.run(console(scope, receive, send))).result()
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]).decode()


@pytest.mark.parametrize(("error", "status"), [("user", 422), ("store", 503)])
def test_a_page_that_raises_answers_as_the_api_does(applied_ride_repo, monkeypatch, error, status):
    """A UserInputError raised while rendering a page was answered 503 "Unavailable", as a store failure:
    it is the request's fault, answered 422 with its message; a store failure stays 503."""
    from fsplug.console import ops_pages
    from fsplug.console.app import Console
    from fsplug.errors import StoreError, UserInputError

    def fail(ctx):
        raise (UserInputError if error == "user" else StoreError)(f"the {error} message")

    monkeypatch.setattr(ops_pages, "freshness_page", fail)
    with FeatureStore(applied_ride_repo) as store:
        got, body = _get_page(Console(store, api=None, token=None, auth_reads=False, metrics=list), "/ui/freshness")
    assert got == status and f"the {error} message" in body
