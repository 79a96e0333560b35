"""What a registry declares, as plain data: the listings behind `fsplug list` and `fsplug describe`.

Every function returns JSON-ready dicts (no fsplug objects), so the CLI prints them as text or
JSON and other front ends (the feature server, a console) can serve them as they are.
"""

from __future__ import annotations

from typing import Any

from fsplug.errors import ReferenceNotFoundError, did_you_mean
from fsplug.registry import DerivedView, Entity, FeatureService, FeatureView, Registry, RequestSource, Source

__all__ = ["KINDS", "list_objects", "describe"]

KINDS = {"entities": "entity", "views": "feature view", "services": "feature service", "sources": "source"}
"""`fsplug list` kinds and the word for one object of each. `sources` lists batch and request sources,
`views` feature views and derived views."""


def _entity(e: Entity, reg: Registry) -> dict[str, Any]:
    return {"kind": "entity", "name": e.name, "description": e.description,
            "join_keys": [{"name": k.name, "dtype": k.dtype.value} for k in e.join_keys],
            "feature_views": [v.name for v in reg.feature_views.values() if v.entity == e.name]}


def _source(s: Source, reg: Registry) -> dict[str, Any]:
    return {"kind": "source", "name": s.name, "type": s.type, **({"table": s.table} if s.table else {"path": s.path}),
            "description": s.description,
            "timestamp_field": s.timestamp_field, "created_timestamp_field": s.created_timestamp_field,
            "feature_views": [v.name for v in reg.feature_views.values() if v.source.name == s.name]}


def _request_source(r: RequestSource, reg: Registry) -> dict[str, Any]:
    return {"kind": "request source", "name": r.name, "description": r.description,
            "features": [{"name": f.name, "dtype": f.dtype.value, "default": f.default,
                          "description": f.description} for f in r.features],
            "feature_services": _services_using(reg, r.name)}


def _view(v: FeatureView, reg: Registry) -> dict[str, Any]:
    return {"kind": "feature view", "name": v.name, "entity": v.entity, "source": v.source.name,
            "ttl_seconds": v.ttl_seconds, "online": v.online, "owner": v.owner, "tags": dict(v.tags),
            "description": v.description, "timestamp_bin": v.timestamp_bin,
            "features": [{"name": f.name, "dtype": f.dtype.value, "bin": f.bin, "column": f.column,
                          "default": f.default, "description": f.description} for f in v.features],
            "feature_services": _services_using(reg, v.name)}


def _derived(d: DerivedView, reg: Registry) -> dict[str, Any]:
    return {"kind": "derived view", "name": d.name, "inputs": list(d.inputs), "owner": d.owner,
            "tags": dict(d.tags), "description": d.description,
            "features": [{"name": f.name, "dtype": f.dtype.value, "expr": f.expr, "udf": f.udf,
                          "reads": [ref for _, ref in f.reads], "default": f.default,
                          "description": f.description} for f in d.features],
            "feature_services": _services_using(reg, d.name)}


def _service(s: FeatureService, reg: Registry) -> dict[str, Any]:
    return {"kind": "feature service", "name": s.name, "description": s.description, "owner": s.owner,
            "tags": dict(s.tags), "features": list(s.refs)}


def _services_using(reg: Registry, view: str) -> list[str]:
    return [s.name for s in reg.feature_services.values() if any(r.split(":")[0] == view for r in s.refs)]


def list_objects(registry: Registry, kind: str) -> list[dict[str, Any]]:
    """Every object of one kind (`entities`, `views`, `services`, `sources`), in declaration order.

    Raises:
        ReferenceNotFoundError: an unknown kind (with "did you mean").
    """
    if kind == "entities":
        return [_entity(e, registry) for e in registry.entities.values()]
    if kind == "views":
        return ([_view(v, registry) for v in registry.feature_views.values()]
                + [_derived(d, registry) for d in registry.derived_views.values()])
    if kind == "services":
        return [_service(s, registry) for s in registry.feature_services.values()]
    if kind == "sources":
        return ([_source(s, registry) for s in registry.sources.values()]
                + [_request_source(r, registry) for r in registry.request_sources.values()])
    raise ReferenceNotFoundError(f"unknown kind {kind!r}{did_you_mean(kind, list(KINDS))}; "
                                 f"kinds: {', '.join(KINDS)}")


def describe(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every object called `name` (an entity and a view may share a name), with all its properties.

    Raises:
        ReferenceNotFoundError: nothing has that name (with "did you mean").
    """
    found: list[dict[str, Any]] = []
    if name in registry.entities:
        found.append(_entity(registry.entities[name], registry))
    if name in registry.sources:
        found.append(_source(registry.sources[name], registry))
    if name in registry.feature_views:
        found.append(_view(registry.feature_views[name], registry))
    if name in registry.request_sources:
        found.append(_request_source(registry.request_sources[name], registry))
    if name in registry.derived_views:
        found.append(_derived(registry.derived_views[name], registry))
    if name in registry.feature_services:
        found.append(_service(registry.feature_services[name], registry))
    if not found:
        every = [*registry.entities, *registry.sources, *registry.feature_views, *registry.request_sources,
                 *registry.derived_views, *registry.feature_services]
        raise ReferenceNotFoundError(f"nothing in the registry is called {name!r}{did_you_mean(name, every)}")
    return found
