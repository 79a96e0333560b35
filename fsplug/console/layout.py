"""The console's page shell (navigation, search box, style sheet) and the small formatters every page uses."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from fsplug.console.html import Html, el, href, raw

__all__ = ["page", "fmt_time", "fmt_age", "badge", "props_table", "table", "link", "NAV"]

NAV = (
    ("", "Overview"),
    ("entities", "Entities"),
    ("sources", "Sources"),
    ("views", "Feature views"),
    ("services", "Feature services"),
    ("freshness", "Freshness"),
    ("serving", "Serving"),
    ("lookup", "Lookup"),
)
"""(path under /ui/, title) of the pages in the navigation bar."""

_CSS = raw("""
:root{--fg:#1d2330;--muted:#5b6577;--line:#d9dee7;--bg:#f6f7f9;--accent:#2357c6;--bad:#b42318;--badbg:#fde8e6;
--ok:#1a7f37;--okbg:#e6f4ea;--warn:#9a6700;--warnbg:#fff4d6}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:0 20px;display:flex;align-items:center;gap:18px;flex-wrap:wrap}
header .brand{font-weight:700;padding:12px 0;color:#fff;text-decoration:none}header .project{color:#aab4c8}
nav a{color:#d5dbe7;text-decoration:none;padding:14px 8px;display:inline-block}
nav a.active{color:#fff;box-shadow:inset 0 -3px 0 #6ea0ff}
header form{margin-left:auto}header input{padding:5px 8px;border-radius:4px;border:0;width:220px}
main{padding:18px 24px;max-width:1400px}h1{font-size:22px;margin:4px 0 14px}h2{font-size:17px;margin:22px 0 8px}
a{color:var(--accent)}table{border-collapse:collapse;background:#fff;border:1px solid var(--line);margin:6px 0 12px}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#eef1f6;font-weight:600;white-space:nowrap}table.props th{width:190px;background:#f3f5f9}
tr.stale td{background:var(--badbg)}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:12.5px}pre{background:#fff;border:1px solid var(--line);padding:10px 12px;overflow:auto;white-space:pre-wrap}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.b-stale,.b-NOT_FOUND,.b-error{background:var(--badbg);color:var(--bad)}
.b-fresh,.b-PRESENT{background:var(--okbg);color:var(--ok)}
.b-OUTSIDE_MAX_AGE,.b-never,.b-NULL_VALUE{background:var(--warnbg);color:var(--warn)}
.b-muted{background:#eceff4;color:var(--muted)}
.alert{border:1px solid #f1b0a9;background:var(--badbg);padding:10px 14px;border-radius:6px;margin:10px 0}
.note{color:var(--muted)}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0 6px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 16px;min-width:130px}
.card .n{font-size:24px;font-weight:700}.card .l{color:var(--muted)}
form.lookup label{display:block;margin:8px 0 2px;font-weight:600}form.lookup input,form.lookup select{
padding:5px 8px;width:420px;border:1px solid var(--line);border-radius:4px}
button{padding:6px 14px;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:#fff;
cursor:pointer;margin-top:10px}
svg.chart{background:#fff;border:1px solid var(--line);max-width:760px;width:100%;display:block;margin:6px 0 14px}
svg .bar{fill:#5b8def}svg .bar.p90{fill:#f0a33a}svg .bar.p99{fill:#d9534f}svg .axis{stroke:#8a94a6}
svg .marker{stroke:#d9534f;stroke-dasharray:4 3}svg text{font-size:10px;fill:#465066}
svg .ylabel,svg .rlabel{text-anchor:end}svg .xlabel{text-anchor:middle}svg .mlabel{fill:#b42318}
#freshness td{white-space:nowrap}form.filter{display:flex;gap:6px;align-items:center;margin:4px 0}
form.filter input{padding:6px 8px;width:320px;border:1px solid var(--line);border-radius:4px}
form.filter button{margin:0}
.cell-ts{color:var(--muted);font-size:11.5px;display:block}
""")


def page(title: str, active: str, body: Any, project: str = "", query: str = "") -> bytes:
    """A whole HTML document: header with the navigation and the search box, then `body`.

    Args:
        title: the page's title (escaped).
        active: the NAV path of the page (highlighted).
        body: the page's content (markup or text).
        project: the project name shown in the header.
        query: the search box's text.
    """
    links = [el("a", name, href=href(path) if path else "/ui/", class_="active" if path == active else None)
             for path, name in NAV]
    head = el("header", el("a", "fsplug console", href="/ui/", class_="brand"),
              el("span", project, class_="project"), el("nav", *links),
              el("form", el("input", type="search", name="q", value=query, placeholder="Search names, "
                            "descriptions, tags", aria_label="Search"), action="/ui/search", method="get"))
    doc = el("html", el("head", el("meta", charset="utf-8"),
                        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
                        el("title", f"{title} · fsplug"), el("link", rel="icon", href="data:,"),
                        el("style", _CSS)),
             el("body", head, el("main", el("h1", title), body)), lang="en")
    return ("<!doctype html>\n" + doc).encode("utf-8")


def fmt_time(t: datetime | None) -> str:
    """An aware datetime as `2026-11-30 16:00:00 UTC`; `-` for None."""
    if t is None:
        return "-"
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(seconds: float | None) -> str:
    """An age for people: `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`; `-` for None."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s < 120:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min"
    if s < 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60} min"
    return f"{sign}{s // 86400} d {s % 86400 // 3600} h"


def badge(text: str, kind: str) -> Html:
    """A small coloured label; `kind` picks the colour (`stale`, `fresh`, `never`, `PRESENT`, ...)."""
    return el("span", text, class_=f"badge b-{kind}")


@lru_cache(maxsize=65536)
def link(kind: str, name: str) -> Html:
    """A link to an object's page (`kind`: entities, sources, views, services); kept, as list pages
    of a large registry draw the same links many times."""
    return el("a", name, href=href(kind, name))


def props_table(rows: list[tuple[str, Any]]) -> Html:
    """A two-column table of (property, value) rows."""
    return el("table", *[el("tr", el("th", k), el("td", v)) for k, v in rows], class_="props")


def table(headers: list[str], rows: list[list[Any]], row_classes: list[str | None] | None = None,
          **attrs: Any) -> Html:
    """A table with a header row; `row_classes` gives each row's class (e.g. `stale`)."""
    classes = row_classes or [None] * len(rows)
    body = [el("tr", *[el("td", c) for c in r], class_=cls) for r, cls in zip(rows, classes, strict=True)]
    return el("table", el("thead", el("tr", *[el("th", h) for h in headers])), el("tbody", *body), **attrs)
