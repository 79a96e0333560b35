"""The console in a real browser (headless Chromium): pages, objects, stale views, lookup, charts, escaping.

Run: `.venv/bin/python -m pytest -q tests/console` (needs /usr/bin/chromium: `apt-get install -y chromium`).
"""

from __future__ import annotations

import time

import httpx

from fsplug.store import FeatureStore
from tests.conftest import stale_generated_views
from tests.console.site import HOSTILE_TEXT, HOSTILE_VIEW, STALE_VIEW

PAGES = ["/ui/", "/ui/entities", "/ui/sources", "/ui/views", "/ui/services", "/ui/freshness", "/ui/serving",
         "/ui/lookup", "/ui/search?q=driver"]


def _texts(tab, selector: str) -> list[str]:
    return [t.strip() for t in tab.page.locator(selector).all_inner_texts()]


def test_every_page_loads_without_console_errors_and_shows_the_registry(tab, console_repo):
    reg = FeatureStore(console_repo).registry
    for path in PAGES:
        tab.goto(path)
        assert tab.page.locator("main h1").count() == 1
    tab.goto("/ui/views")
    assert _texts(tab, "#views tbody tr td:first-child") == list(reg.feature_views)
    tab.goto("/ui/entities")
    assert _texts(tab, "#entities tbody tr td:first-child") == list(reg.entities)
    tab.goto("/ui/services")
    assert _texts(tab, "#services tbody tr td:first-child") == list(reg.feature_services)
    tab.goto("/ui/sources")
    assert _texts(tab, "#sources tbody tr td:first-child") == list(reg.sources)
    assert _texts(tab, "#request-sources tbody tr td:first-child") == list(reg.request_sources)
    tab.goto("/ui/")
    assert reg.hash in tab.page.inner_text("main")
    assert "sqlite" in tab.page.inner_text("main")


def test_object_pages_show_every_property_and_link_to_each_other(tab, console_repo):
    reg = FeatureStore(console_repo).registry
    for view in reg.feature_views.values():
        tab.goto(f"/ui/views/{view.name}")
        text = tab.page.inner_text("main")
        for f in view.features:
            assert f.name in text and f.bin in text and f.dtype.value in text
        assert view.owner in text
        for k, v in view.tags:
            assert f"{k}={v}" in text
    tab.goto("/ui/views/driver_stats")
    tab.page.click("table.props a[href='/ui/entities/driver']")
    assert tab.page.url.endswith("/ui/entities/driver")
    assert "driver_activity" in _texts(tab, "table.props a")
    tab.page.click("table.props a[href='/ui/views/driver_activity']")
    tab.page.click("table.props a[href='/ui/services/decline_model_v1']")
    plan = tab.page.inner_text("pre.plan")
    with FeatureStore(console_repo) as store:
        expected = store.plan(service="decline_model_v1").explain(store.online_store.location)
    assert plan.strip() == expected.strip()


def test_search_finds_objects_by_feature_name_owner_and_tag(tab):
    tab.goto("/ui/search?q=legacy_risk")
    assert _texts(tab, "#results tbody tr td:nth-child(2)") == ["driver_legacy_scores"]
    tab.goto("/ui/views?q=team%3Drisk")
    assert set(_texts(tab, "#views tbody tr td:first-child")) == {"driver_legacy_scores"}
    tab.page.fill("header input[name=q]", "decline")
    tab.page.press("header input[name=q]", "Enter")
    tab.page.wait_for_url("**/ui/search?q=decline")
    assert "decline_model_v1" in _texts(tab, "#results tbody tr td:nth-child(2)")


def test_a_stale_view_is_marked_on_the_overview_and_the_freshness_page(tab, console_repo):
    tab.goto("/ui/")
    # both read the legacy source, whose newest event is three days old under a one-day ttl (and, at
    # night, the hourly activity has no event within its ttl either)
    night = stale_generated_views(console_repo)
    stale = _texts(tab, "#stale-views tbody tr.stale td:first-child")
    assert sorted(stale) == sorted([STALE_VIEW, HOSTILE_VIEW, *night])
    tab.goto("/ui/freshness")
    rows = tab.page.locator("#freshness tbody tr")
    marked = {r.locator("td").first.inner_text().strip(): (r.get_attribute("class") or "")
              for r in rows.all()}
    assert marked[STALE_VIEW] == "stale"
    assert [v for v in ("driver_stats", "driver_activity") if marked[v] == "stale"] == night
    assert marked["driver_stats"] == ""
    assert tab.page.locator("#freshness tr.stale .badge").first.inner_text() == "stale"


def test_the_lookup_form_answers_what_the_api_answers(tab, console_server):
    tab.goto("/ui/lookup?service=decline_model_v1")
    tab.page.fill("#f-driver_id", "1001, 1002, 999999")
    tab.page.fill("#f-pickup_distance_km", "1.2")
    tab.page.fill("#f-hour_of_day", "8")
    tab.page.click("#lookup-submit")
    tab.page.wait_for_selector("#lookup-result")
    assert tab.errors == []
    api = httpx.post(console_server.url + "/get-online-features", json={
        "feature_service": "decline_model_v1",
        "entities": {"driver_id": [1001, 1002, 999999], "pickup_distance_km": [1.2] * 3, "hour_of_day": [8] * 3},
    }).json()
    names = api["metadata"]["feature_names"]
    assert _texts(tab, "#lookup-result tbody th") == names
    statuses = set()
    for name, col in zip(names, api["results"], strict=True):
        for i in range(3):
            cell = tab.page.locator(f"#lookup-result td[data-feature='{name}'][data-entity='{i}']")
            value = col["values"][i]
            shown = cell.locator(".value").inner_text()
            assert shown == (value if isinstance(value, str) else httpx._models.jsonlib.dumps(value)), (name, i)
            assert cell.get_attribute("data-status") == col["statuses"][i]
            assert cell.get_attribute("data-ts") == col["event_timestamps"][i]
            statuses.add(col["statuses"][i])
    assert {"PRESENT", "NOT_FOUND"} <= statuses  # a known and an unknown driver


def test_a_refused_lookup_shows_the_apis_message(tab, console_server):
    for query, entities in [
        ("driver_id=abc&pickup_distance_km=1&hour_of_day=8",  # a key of the wrong type
         {"driver_id": ["abc"], "pickup_distance_km": [1.0], "hour_of_day": [8]}),
        ("driver_id=1001", {"driver_id": [1001]}),  # missing request features
    ]:
        tab.goto(f"/ui/lookup?service=decline_model_v1&{query}")
        api = httpx.post(console_server.url + "/get-online-features",
                         json={"feature_service": "decline_model_v1", "entities": entities})
        assert api.status_code == 422
        shown = tab.page.inner_text("#lookup-error")
        assert shown == f"HTTP 422 {api.json()['error']}: {api.json()['detail']}"


def test_the_latency_charts_draw_the_servers_metrics_of_every_worker(tab, console_server):
    pids = {httpx.get(console_server.url + "/ready").json()["worker"] for _ in range(20)}
    assert len(pids) == 2  # new connections reach both workers, so the counts below span both
    n = 40
    for _ in range(n):  # a new connection each time: the two workers share the requests
        r = httpx.post(console_server.url + "/get-online-features",
                       json={"feature_service": "legacy_compare", "entities": {"driver_id": [1001, 1002]}})
        assert r.status_code == 200
    httpx.post(console_server.url + "/get-online-features",
               json={"feature_service": "legacy_compar", "entities": {"driver_id": [1001]}})
    def count() -> str:
        tab.goto("/ui/serving")
        rows = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(1).inner_text()
                for r in tab.page.locator("#latency tbody tr").all()}
        return rows.get("/get-online-features · legacy_compare", "")

    deadline = time.monotonic() + 10  # each worker writes its samples every second (metrics.FLUSH_S)
    while (count() != str(n) or "unknown_reference" not in tab.page.inner_text("#errors")) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(4):  # whichever worker renders the page, it counts every worker's requests
        assert count() == str(n)
    bars = tab.page.locator("svg.histogram rect.bar")
    assert bars.count() > 0
    heights = [float(b.get_attribute("height")) for b in bars.all()]
    assert max(heights) > 0
    assert tab.page.locator("svg.percentiles rect.bar").count() >= 3
    box = tab.page.locator("svg.histogram").first.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 50
    assert "unknown_reference" in tab.page.inner_text("#errors")


def test_markup_in_names_descriptions_and_tags_is_shown_as_text(tab, console_server):
    raw = httpx.get(console_server.url + f"/ui/views/{HOSTILE_VIEW}").text
    assert HOSTILE_TEXT not in raw and "<b>bold</b>" not in raw
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in raw
    for path in (f"/ui/views/{HOSTILE_VIEW}", "/ui/views", "/ui/search?q=script", "/ui/freshness"):
        tab.goto(path)
        assert tab.page.evaluate("typeof window.__xss") == "undefined"
        assert tab.page.locator("script").count() == 0
        assert tab.page.locator("main img").count() == 0
    tab.goto(f"/ui/views/{HOSTILE_VIEW}")
    assert HOSTILE_TEXT in tab.page.inner_text("main")  # shown as the text it is
    assert "team=<b>bold</b>" in tab.page.inner_text("main")


def test_a_browser_signs_in_with_the_token_and_stays_signed_in(browser, guarded):
    from tests.server.conftest import TOKEN

    page = browser.new_page()
    try:
        response = page.goto(guarded.url + "/ui/views?q=deprecated")
        assert response is not None and response.status == 401
        assert page.locator("#views").count() == 0
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        assert "not the token" in page.inner_text("#login-error")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/views?q=deprecated")
        assert page.locator("#views tbody tr").count() == 1  # back where it was asked for, filtered
        assert page.goto(guarded.url + "/ui/serving").status == 200  # the cookie opens every page
        cookie = next(c for c in page.context.cookies() if c["name"] == "fsplug_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
        page.goto(guarded.url + "/ui/logout")
        assert page.goto(guarded.url + "/ui/").status == 401
    finally:
        page.context.clear_cookies()
        page.close()
