"""The operating pages: Overview, Freshness, Serving, Lookup, and the login page of a guarded console."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from fsplug.console.charts import fmt_seconds, histogram_chart, percentile_chart
from fsplug.console.context import PageContext
from fsplug.console.freshness import FRESH, NEVER, STALE, freshness
from fsplug.console.html import Html, el, href
from fsplug.console.layout import badge, fmt_age, fmt_time, link, page, props_table, table
from fsplug.console.lookup import FormField
from fsplug.console.serving import ServingStats
from fsplug.types import format_ttl

__all__ = ["overview_page", "freshness_page", "serving_page", "lookup_page", "login_page", "message_page"]


def _status_badge(status: str) -> Html:
    return badge(status, status.split()[0])


def overview_page(ctx: PageContext, store_kind: str, store_address: str, applied_at: datetime | None) -> bytes:
    """Project, online store (kind and address, never credentials), registry hash and applied time,
    counts, and the views that are stale against their ttl (highlighted)."""
    reg = ctx.registry
    fresh = freshness(reg, ctx.states(), ctx.now)
    stale = [f for f in fresh if f.status == STALE]
    never = [f for f in fresh if f.status == NEVER]
    applied = "-" if applied_at is None else (
        f"{fmt_time(applied_at)} ({fmt_age((ctx.now - applied_at).total_seconds())} ago)")
    props = props_table([
        ("project", reg.project), ("online store", store_kind), ("address", el("code", store_address)),
        ("registry hash", el("code", reg.hash)), ("registry applied", applied),
        ("answered by", f"worker pid {os.getpid()} at {fmt_time(ctx.now)}"),
    ])
    counts = [("entities", len(reg.entities), "entities"), ("batch sources", len(reg.sources), "sources"),
              ("request sources", len(reg.request_sources), "sources"),
              ("feature views", len(reg.feature_views), "views"), ("features", ctx.index.features, "views"),
              ("feature services", len(reg.feature_services), "services"),
              ("stale views", len(stale), "freshness")]
    cards = el("div", *[el("a", el("div", f"{n:,}", class_="n"), el("div", label, class_="l"),
                           href=href(path), class_="card", style="text-decoration:none;color:inherit")
                        for label, n, path in counts], class_="cards")
    body: list[Any] = [props, cards]
    if stale:
        rows = [[link("views", f.view), format_ttl(f.ttl_seconds), fmt_time(f.newest_event), fmt_age(f.age_seconds)]
                for f in stale]
        body.append(el("div", el("strong", f"{len(stale)} stale view{'s' if len(stale) > 1 else ''}: "),
                       "their newest materialized event is older than their ttl, so they serve OUTSIDE_MAX_AGE "
                       "(defaults). ", el("a", "Freshness", href=href("freshness", status=STALE)),
                       table(["feature view", "ttl", "newest event", "age"], rows, ["stale"] * len(rows),
                             id="stale-views"), class_="alert", id="stale"))
    else:
        body.append(el("p", badge("no stale views", FRESH), class_="note"))
    if never:
        body.append(el("p", f"{len(never)} view(s) never materialized into this store: ",
                       Html(", ".join(link("views", f.view) for f in never[:20])), class_="note"))
    return page("Overview", "", body, reg.project)


def freshness_page(ctx: PageContext) -> bytes:
    """Per view: the materialization state from the store, and its newest event's age against the ttl."""
    reg = ctx.registry
    want = ctx.q("status")
    q = ctx.q("q")
    hits = ctx.index.matches(q, "feature view")
    rows, classes = [], []
    fresh = freshness(reg, ctx.states(), ctx.now)
    for f in fresh:
        if (want and f.status != want) or (hits is not None and f.view not in hits):
            continue
        run = f.last_run
        rows.append([link("views", f.view), link("entities", f.entity), format_ttl(f.ttl_seconds),
                     _status_badge(f.status), fmt_time(f.newest_event), fmt_age(f.age_seconds),
                     fmt_time(f.watermark), fmt_time(run.finished_at) if run else "-",
                     f"{run.entities:,}" if run else "-", f"{run.rows_read:,}" if run else "-",
                     f"{run.written:,}" if run else "-", f"{run.seconds:.2f} s" if run else "-"])
        classes.append("stale" if f.stale else None)
    by_status: dict[str, int] = {}
    for f in fresh:
        by_status[f.status] = by_status.get(f.status, 0) + 1
    filters = [el("a", "all", href=href("freshness"))] + [
        el("a", f"{s} ({n})", href=href("freshness", status=s)) for s, n in sorted(by_status.items())]
    body = [el("p", "Read from the online store's materialization state now. A view is stale when its newest "
               "materialized event is older than its ttl. Show: ", Html(" · ".join(filters)), class_="note"),
            table(["feature view", "entity", "ttl", "status", "newest event", "age", "watermark", "last run",
                   "entities", "rows read", "written", "duration"], rows, classes, id="freshness")]
    return page("Freshness", "freshness", body, reg.project, q)


def serving_page(ctx: PageContext, stats: ServingStats) -> bytes:
    """Latency percentiles and histograms per endpoint and feature service, store read latency,
    requests by status and errors by kind, from the server's own metrics (every worker)."""
    body: list[Any] = [el("p", "From this server's Prometheus metrics (the same series as ", el("code", "/metrics"),
                          "), summed over every worker. Percentiles are estimated from the histogram buckets, "
                          f"as Prometheus' histogram_quantile does. Requests in flight now: {stats.in_flight:g}.",
                          class_="note")]
    if not stats.latency:
        body.append(el("p", "No requests served yet.", class_="note", id="no-traffic"))
    else:
        rows, chart_rows = [], []
        for h in stats.latency:
            label = _series(h.labels)
            ps = [("p50", h.quantile(0.5)), ("p90", h.quantile(0.9)), ("p99", h.quantile(0.99))]
            chart_rows.append((label, ps))
            rows.append([label, f"{h.total:,.0f}", fmt_seconds(h.mean)] + [fmt_seconds(v) for _, v in ps])
        body += [el("h2", "Request latency"),
                 table(["endpoint · feature service", "requests", "mean", "p50", "p90", "p99"], rows, id="latency"),
                 percentile_chart(chart_rows, "Latency percentiles per endpoint and feature service")]
        for h in stats.latency:
            label = _series(h.labels)
            body += [el("h2", f"Latency histogram: {label}"),
                     histogram_chart(h.bounds, h.counts, [("p50", h.quantile(0.5)), ("p99", h.quantile(0.99))],
                                     f"Latency histogram of {label}")]
    if stats.store_reads:
        rows = [[h.labels.get("endpoint", ""), f"{h.total:,.0f}", fmt_seconds(h.mean),
                 fmt_seconds(h.quantile(0.5)), fmt_seconds(h.quantile(0.99))] for h in stats.store_reads]
        body += [el("h2", "Store reads"), table(["endpoint", "reads", "mean", "p50", "p99"], rows, id="store-reads")]
    body += [el("h2", "Requests by status"),
             table(["endpoint", "status", "requests"], [[e, c, f"{n:,.0f}"] for e, c, n in stats.requests],
                   id="requests"),
             el("h2", "Errors"),
             table(["endpoint", "kind", "count"], [[e, badge(k, "error"), f"{n:,.0f}"] for e, k, n in stats.errors],
                   id="errors") if stats.errors else el("p", "No errors.", class_="note", id="no-errors")]
    return page("Serving", "serving", body, ctx.registry.project)


def _series(labels: dict[str, str]) -> str:
    endpoint = labels.get("endpoint", "")
    service = labels.get("feature_service")
    if service is None:
        return endpoint
    if service == "?":
        return f"{endpoint} · (unknown service)"
    return f"{endpoint} · {service or '(feature list)'}"


def _text(v: Any) -> str:
    """A value as the lookup table shows it: strings as they are, everything else as JSON."""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def lookup_page(ctx: PageContext, service: str, fields: list[FormField], form: dict[str, str],
                request: dict[str, Any] | None, status: int | None, answer: Any) -> bytes:
    """The lookup form for `service`, and the answer of `POST /get-online-features` when one was asked.

    Args:
        service: the chosen feature service ('' when there is none).
        fields: the service's join keys and request features.
        form: the values typed.
        request: the Feast request sent (None: nothing asked yet).
        status: the HTTP status the feature server answered.
        answer: its decoded JSON body.
    """
    reg = ctx.registry
    choose = el("form", el("label", "Feature service", for_="service"),
                el("select", *[el("option", n, value=n, selected=n == service) for n in reg.feature_services],
                   name="service", id="service"),
                el("button", "Show its fields", type="submit", name="choose", value="1"),
                method="get", action=href("lookup"), class_="lookup")
    body: list[Any] = [el("p", "Values come from ", el("code", "POST /get-online-features"), ": the console "
                          "sends this form as that request, through the feature server's own handler.",
                          class_="note"), choose]
    if service:
        inputs: list[Any] = [el("input", type="hidden", name="service", value=service)]
        for f in fields:
            hint = "join key" if f.is_key else (
                "request feature" + ("" if f.default is None else f", default {f.default!r}"))
            inputs += [el("label", f"{f.name} ({f.dtype.value}, {hint})", for_=f"f-{f.name}"),
                       el("input", type="text", name=f.name, id=f"f-{f.name}", value=form.get(f.name, ""),
                          placeholder="one value per entity, comma-separated" if f.is_key else f.description)]
        body.append(el("form", *inputs, el("button", "Look up", type="submit", id="lookup-submit"),
                       method="get", action=href("lookup"), class_="lookup", id="lookup-form"))
    if request is not None:
        body += [el("h2", "Request"), el("pre", json.dumps(request), id="lookup-request")]
        if status != 200:
            detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
            kind = answer.get("error", "") if isinstance(answer, dict) else ""
            body.append(el("div", el("strong", f"HTTP {status} {kind}: "), str(detail), class_="alert",
                           id="lookup-error"))
        else:
            body += [el("h2", "Answer"), _answer_table(answer, [f.name for f in fields if f.is_key])]
    return page("Lookup", "lookup", body, reg.project)


def _answer_table(answer: dict[str, Any], keys: list[str]) -> Html:
    names = answer["metadata"]["feature_names"]
    results = answer["results"]
    n = len(results[0]["values"]) if results else 0
    key_cols = [(k, results[names.index(k)]["values"]) for k in keys if k in names]
    head = el("tr", el("th", "feature"), *[el("th", ", ".join(f"{k}={_text(v[i])}" for k, v in key_cols)
                                                 or f"entity {i + 1}") for i in range(n)])
    rows = []
    for name, col in zip(names, results, strict=True):
        cells = []
        for i in range(n):
            st = col["statuses"][i]
            ts = col["event_timestamps"][i]
            cells.append(el("td", el("span", _text(col["values"][i]), class_="value"), " ", badge(st, st),
                            el("span", ts, class_="cell-ts"), data_feature=name, data_entity=str(i),
                            data_status=st, data_ts=ts))
        rows.append(el("tr", el("th", name), *cells))
    return el("table", el("thead", head), el("tbody", *rows), id="lookup-result")


def login_page(next_path: str, wrong: bool, project: str = "") -> bytes:
    """The token form of a console whose server guards reads (`--auth-reads`)."""
    body = [el("p", "This feature server requires its API token for reads, and so does its console. "
                    "The token is the value of the server's token environment variable (FSPLUG_SERVE_TOKEN "
                    "unless --token-env says otherwise). Signing in sets an HttpOnly session cookie for /ui.",
               class_="note")]
    if wrong:
        body.append(el("div", "That is not the token.", class_="alert", id="login-error"))
    body.append(el("form", el("input", type="hidden", name="next", value=next_path),
                   el("label", "API token", for_="token"),
                   el("input", type="password", name="token", id="token", autocomplete="current-password"),
                   el("button", "Sign in", type="submit"), method="post", action="/ui/login", class_="lookup"))
    return page("Sign in", "login", body, project)


def message_page(title: str, message: str, project: str = "") -> bytes:
    """A page saying one thing (not found, the store failed, ...)."""
    return page(title, "", el("div", message, class_="alert"), project)
