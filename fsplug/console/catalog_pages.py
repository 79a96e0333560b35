"""The registry's pages: entities, sources, feature views and feature services, listed and one by one, and search.

Lists come from the registry and its `RegistryIndex`; an object's own page shows every property
`fsplug describe` gives (fsplug.catalog), so a property added there shows here too, with links to
the objects it names. A feature service's page also shows its compiled retrieval plan as
`fsplug plan --service` explains it (`RetrievalPlan.explain`).
"""

from __future__ import annotations

from typing import Any

from fsplug import catalog
from fsplug.console.context import KIND_PATHS, PageContext
from fsplug.console.freshness import freshness
from fsplug.console.html import Html, el, href, join
from fsplug.console.layout import badge, fmt_age, fmt_time, link, page, props_table, table
from fsplug.errors import FsplugError, ReferenceNotFoundError
from fsplug.types import format_ttl

__all__ = ["entities_page", "sources_page", "views_page", "services_page", "object_page", "search_page",
           "NotFound"]


class NotFound(Exception):
    """No object of that kind and name: the console answers 404 with this message."""


def _search_form(path: str, query: str, what: str) -> Html:
    return el("form", el("input", type="search", name="q", value=query, placeholder=f"Filter {what}",
                         aria_label=f"Filter {what}"), el("button", "Filter", type="submit"),
              method="get", action=href(path), class_="filter")


def _tags(tags: Any) -> Html:
    return join([el("code", f"{k}={v}") for k, v in (tags.items() if isinstance(tags, dict) else tags)], " ")


def _links(kind: str, names: list[str], limit: int = 8) -> Html:
    shown = [link(kind, n) for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return Html(join(shown) + more)


def _shown(ctx: PageContext, kind: str, names: list[str]) -> tuple[list[str], Html]:
    q = ctx.q("q")
    hits = ctx.index.matches(q, kind)
    kept = names if hits is None else [n for n in names if n in hits]
    note = el("p", f"{len(kept)} of {len(names)}" + (f" matching {q!r}" if q else ""), class_="note")
    return kept, note


def entities_page(ctx: PageContext) -> bytes:
    """Every entity: join keys, description, the views keyed by it."""
    reg, idx = ctx.registry, ctx.index
    names, note = _shown(ctx, "entity", list(reg.entities))
    rows = [[link("entities", n), join(f"{k.name}: {k.dtype.value}" for k in reg.entities[n].join_keys),
             reg.entities[n].description, _links("views", idx.views_of_entity.get(n, []))] for n in names]
    body = [_search_form("entities", ctx.q("q"), "entities"), note,
            table(["entity", "join keys", "description", "feature views"], rows, id="entities")]
    return page("Entities", "entities", body, reg.project, ctx.q("q"))


def sources_page(ctx: PageContext) -> bytes:
    """Every batch source and request source."""
    reg, idx = ctx.registry, ctx.index
    names, note = _shown(ctx, "source", list(reg.sources))
    rows = [[link("sources", n), s.type, el("code", s.location), s.timestamp_field, s.created_timestamp_field or "-",
             s.description, _links("views", idx.views_of_source.get(n, []))]
            for n in names for s in [reg.sources[n]]]
    rnames, rnote = _shown(ctx, "request source", list(reg.request_sources))
    rrows = [[link("sources", n), join(f"{f.name}: {f.dtype.value}" for f in r.features), r.description]
             for n in rnames for r in [reg.request_sources[n]]]
    body = [_search_form("sources", ctx.q("q"), "sources"), el("h2", "Batch sources"), note,
            table(["source", "type", "path or table", "event time", "created time", "description", "feature views"],
                  rows, id="sources"),
            el("h2", "Request sources"), rnote,
            table(["request source", "features", "description"], rrows, id="request-sources")]
    return page("Sources", "sources", body, reg.project, ctx.q("q"))


def views_page(ctx: PageContext) -> bytes:
    """Every feature view, with its freshness status."""
    reg, idx = ctx.registry, ctx.index
    names, note = _shown(ctx, "feature view", list(reg.feature_views))
    fresh = {f.view: f for f in freshness(reg, ctx.states(), ctx.now)}
    rows, classes = [], []
    for n in names:
        v = reg.feature_views[n]
        f = fresh[n]
        rows.append([link("views", n), link("entities", v.entity), link("sources", v.source.name),
                     format_ttl(v.ttl_seconds), len(v.features), v.owner, _tags(v.tags),
                     badge(f.status, f.status.split()[0]), _links("services", idx.services_of_view.get(n, []), 4)])
        classes.append("stale" if f.stale else None)
    body = [_search_form("views", ctx.q("q"), "feature views"), note,
            table(["feature view", "entity", "source", "ttl", "features", "owner", "tags", "freshness",
                   "feature services"], rows, classes, id="views")]
    return page("Feature views", "views", body, reg.project, ctx.q("q"))


def services_page(ctx: PageContext) -> bytes:
    """Every feature service."""
    reg = ctx.registry
    names, note = _shown(ctx, "feature service", list(reg.feature_services))
    rows = [[link("services", n), s.description, s.owner, _tags(s.tags), len(s.refs),
             _links("views", [v for v in dict.fromkeys(r.split(":")[0] for r in s.refs)
                              if v in reg.feature_views], 6),
             el("a", "look up", href=href("lookup", service=n))]
            for n in names for s in [reg.feature_services[n]]]
    body = [_search_form("services", ctx.q("q"), "feature services"), note,
            table(["feature service", "description", "owner", "tags", "refs", "feature views", ""], rows,
                  id="services")]
    return page("Feature services", "services", body, reg.project, ctx.q("q"))


_LINKED = {"entity": "entities", "source": "sources", "feature_views": "views", "feature_services": "services"}
_LABELS = {"ttl_seconds": "ttl", "timestamp_bin": "timestamp bin", "feature_views": "feature views",
           "feature_services": "feature services", "join_keys": "join keys", "timestamp_field": "event time field",
           "created_timestamp_field": "created time field"}


def _ref(ctx: PageContext, ref: str) -> Html:
    view = ref.split(":")[0]
    if view in ctx.registry.feature_views:
        return el("a", ref, href=href("views", view))
    if view in ctx.registry.request_sources:
        return el("a", ref, href=href("sources", view))
    return el("code", ref)


def _value(ctx: PageContext, obj: dict[str, Any], key: str, value: Any) -> Any:
    if key in _LINKED:
        names = value if isinstance(value, list) else [value]
        return join([link(_LINKED[key], n) for n in names]) if names and names != [None] else "-"
    if key == "ttl_seconds":
        return format_ttl(value) + ("" if value is None else f" ({value:,} s)")
    if key == "features" and obj["kind"] == "feature service":
        return el("ol", *[el("li", _ref(ctx, r)) for r in value])
    if isinstance(value, dict):
        return _tags(value) if value else "-"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        cols = list(dict.fromkeys(k for item in value for k in item))
        return table(cols, [[_cell(item.get(c)) for c in cols] for item in value])
    if isinstance(value, list):
        return join(value) if value else "-"
    if value is None or value == "":
        return "-"
    return value


def _cell(v: Any) -> Any:
    return "-" if v is None or v == "" else v


def object_page(ctx: PageContext, path: str, name: str) -> bytes:
    """One object's page: every property `fsplug describe` gives, linked; a view's freshness; a
    service's compiled plan.

    Raises:
        NotFound: no object of that kind (path) is called `name`.
    """
    reg = ctx.registry
    try:
        found = [o for o in catalog.describe(reg, name) if KIND_PATHS[o["kind"]] == path]
    except ReferenceNotFoundError as exc:
        raise NotFound(str(exc)) from None
    if not found:
        raise NotFound(f"no {path[:-1]} called {name!r}")
    obj = found[0]
    rows = [("kind", obj["kind"])] + [(_LABELS.get(k, k.replace("_", " ")), _value(ctx, obj, k, v))
                                      for k, v in obj.items() if k not in ("kind", "name")]
    body: list[Any] = [props_table(rows)]
    if obj["kind"] == "feature view":
        body += _view_freshness(ctx, name)
    if obj["kind"] == "feature service":
        body += _service_plan(ctx, name)
    return page(f"{obj['kind'].capitalize()} {name}", path, body, reg.project)


def _view_freshness(ctx: PageContext, name: str) -> list[Any]:
    f = freshness(ctx.registry, ctx.store.materialization_state([name]), ctx.now, [name])[0]
    run = f.last_run
    rows = [("status", badge(f.status, f.status.split()[0])), ("newest event", fmt_time(f.newest_event)),
            ("age", fmt_age(f.age_seconds)), ("ttl", format_ttl(f.ttl_seconds)), ("watermark", fmt_time(f.watermark))]
    if run is not None:
        rows += [("last run", f"{fmt_time(run.finished_at)}: {run.entities:,} entities, {run.rows_read:,} rows "
                  f"read, {run.written:,} written in {run.seconds:.2f} s"),
                 ("last run window", f"{fmt_time(run.start)} to {fmt_time(run.end)}")]
    return [el("h2", "Freshness"), props_table(rows)]


def _service_plan(ctx: PageContext, name: str) -> list[Any]:
    try:
        text = ctx.store.plan(service=name).explain(ctx.store.online_store.location)
    except FsplugError as exc:
        text = f"the plan does not compile: {exc}"
    return [el("h2", "Compiled retrieval plan"),
            el("p", "What ", el("code", f"fsplug plan --service {name}"), " prints: the bins read per entity "
               "set, the output columns in order, their defaults. ",
               el("a", "Look this service up", href=href("lookup", service=name)), class_="note"),
            el("pre", text, class_="plan")]


def search_page(ctx: PageContext) -> bytes:
    """Every object matching the search box's words, of any kind."""
    q = ctx.q("q")
    hits = ctx.index.search(q) if q.strip() else []
    rows = [[kind, el("a", name, href=href(KIND_PATHS[kind], name))] for kind, name in hits]
    body = [el("p", f"{len(hits)} objects match {q!r}" if q.strip() else "Type words to search for.",
               class_="note"), table(["kind", "name"], rows, id="results")]
    return page("Search", "search", body, ctx.registry.project, q)
