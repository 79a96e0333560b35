"""The compiler: loaded YAML specs -> a content-hashed Registry, after the cross-object checks.

Shape checks happened when the specs were loaded (definitions.py); here come the rules that need
several objects: unique names per kind (views and request sources share one namespace, since refs
name either), references to entities, sources and features, bins unique per entity (all views of an
entity share one record), and source paths. Every problem is collected, located, and raised at once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from fsplug.config import resolve_repo_path
from fsplug.definitions import KINDS, LoadedRepo, Located
from fsplug.errors import ConfigError, DefinitionError, Problem, did_you_mean
from fsplug.registry.model import (
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    JoinKey,
    Registry,
    RequestFeature,
    RequestSource,
    Source,
    content_hash,
    timestamp_bin,
)
from fsplug.types import parse_ttl

__all__ = ["compile_repo", "check_ref"]


def compile_repo(repo: LoadedRepo, project: str, *, check_paths: bool, problems: list[Problem] | None = None,
                 warnings: list[str] | None = None) -> Registry:
    """Compile loaded specs into a Registry; raise DefinitionError listing every problem.

    A source path that does not exist is a problem when `check_paths`, else a line in `warnings`.
    """
    problems = [] if problems is None else problems
    warnings = [] if warnings is None else warnings
    objs = repo.objects
    _check_unique_names(objs, problems)
    views_l = _by_name(objs["feature_views"])
    requests_l = _by_name(objs["request_sources"])
    entities = _entities(objs["entities"])
    sources = _sources(objs["sources"], repo.root, check_paths, problems, warnings)
    views = _views(views_l, entities, sources, problems)
    requests = _request_sources(requests_l, problems)
    services = _services(objs["feature_services"], views_l, requests_l, problems)
    if problems:
        raise DefinitionError(problems)
    reg = Registry(project, entities, sources, views, requests, services)
    return replace(reg, hash=content_hash(reg))


def check_ref(ref: str, views: dict[str, Any], requests: dict[str, Any]) -> str | None:
    """Why `ref` (`view:feature` or `view:*`) does not resolve, or None when it does.

    `views`/`requests` map names to compiled objects or to Located specs (anything with `features`).
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        return f"feature ref {ref!r} must look like 'view:feature' or 'view:*'"
    view, feat = ref.split(":")
    target = views.get(view) or requests.get(view)
    if target is None:
        return f"unknown feature view {view!r} in {ref!r}{did_you_mean(view, list(views) + list(requests))}"
    spec = getattr(target, "spec", target)
    names = [f.name for f in spec.features]
    if feat != "*" and feat not in names:
        return f"feature view {view!r} has no feature {feat!r}{did_you_mean(feat, names)}"
    return None


def _by_name(items: list[Located]) -> dict[str, Located]:
    """Located specs by name (a duplicate name, already reported, keeps the last one)."""
    return {i.spec.name: i for i in items}


def _line(item: Located, *sub: Any) -> int:
    return item.doc.where(item.loc + sub)[0]


def _check_unique_names(objs: dict[str, list[Located]], problems: list[Problem]) -> None:
    by_space: dict[str, dict[str, Located]] = {}
    for kind in KINDS:
        seen = by_space.setdefault("feature_views" if kind == "request_sources" else kind, {})
        for item in objs[kind]:
            name = item.spec.name
            if name in seen:
                first = seen[name]
                problems.append(item.problem(
                    f"duplicate {KINDS[kind]} name {name!r}: already defined at "
                    f"{first.doc.file}:{_line(first, 'name')}", "name"))
            else:
                seen[name] = item


def _entities(items: list[Located]) -> dict[str, Entity]:
    return {
        n: Entity(n, tuple(JoinKey(k.name, k.dtype) for k in i.spec.keys()), i.spec.description)  # noqa: SIM118 - EntitySpec.keys(): its join keys
        for n, i in _by_name(items).items()
    }


def _sources(items: list[Located], root: Path, check_paths: bool, problems: list[Problem],
             warnings: list[str]) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for n, i in _by_name(items).items():
        s = i.spec
        sources[n] = Source(n, s.path, s.timestamp_field, s.created_timestamp_field, s.description, s.type)
        try:
            full = resolve_repo_path(root, s.path)
        except ConfigError as exc:
            problems.append(i.problem(f"source {n!r}: {exc}", "path"))
            continue
        if not full.exists():
            msg = f"source {n!r}: path {s.path!r} does not exist (resolved to {full})"
            if check_paths:
                problems.append(i.problem(msg, "path"))
            else:
                warnings.append(f"{i.doc.file}:{_line(i, 'path')}: warning: {msg}")
    return sources


class _BinClaims:
    """Which view or feature holds each bin of an entity's record, to report collisions."""

    def __init__(self) -> None:
        self._by_entity: dict[str, dict[str, tuple[Located, tuple[Any, ...], str]]] = {}

    def claim(self, entity: str, bin_name: str, item: Located, sub: tuple[Any, ...], what: str
              ) -> tuple[Located, tuple[Any, ...], str] | None:
        """Record that `what` (at `item`/`sub`) uses `bin_name`; the earlier holder when it was taken."""
        bins = self._by_entity.setdefault(entity, {})
        if bin_name in bins:
            return bins[bin_name]
        bins[bin_name] = (item, sub, what)
        return None


def _views(views_l: dict[str, Located], entities: dict[str, Entity], sources: dict[str, Source],
           problems: list[Problem]) -> dict[str, FeatureView]:
    claims = _BinClaims()
    views: dict[str, FeatureView] = {}
    for n, i in views_l.items():
        found = len(problems)
        _check_view_refs(n, i, entities, sources, problems)
        _check_feature_names(n, i, problems)
        _claim_bins(n, i, claims, problems)
        if len(problems) == found:
            views[n] = _view(n, i.spec, sources[i.spec.source])
    return views


def _check_view_refs(n: str, i: Located, entities: dict[str, Entity], sources: dict[str, Source],
                     problems: list[Problem]) -> None:
    s = i.spec
    if s.entity not in entities:
        problems.append(i.problem(
            f"feature view {n!r}: unknown entity {s.entity!r}{did_you_mean(s.entity, list(entities))}",
            "entity"))
    if s.source not in sources:
        problems.append(i.problem(
            f"feature view {n!r}: unknown source {s.source!r}{did_you_mean(s.source, list(sources))}",
            "source"))


def _check_feature_names(n: str, i: Located, problems: list[Problem]) -> None:
    seen: set[str] = set()
    for j, f in enumerate(i.spec.features):
        if f.name in seen:
            problems.append(i.problem(f"feature view {n!r}: duplicate feature name {f.name!r}",
                                      "features", j, "name"))
        seen.add(f.name)


def _claim_bins(n: str, i: Located, claims: _BinClaims, problems: list[Problem]) -> None:
    s = i.spec
    ts_bin = timestamp_bin(n)
    other = claims.claim(s.entity, ts_bin, i, ("name",), f"the timestamp bin of view {n!r}")
    if other:
        problems.append(i.problem(
            f"feature view {n!r}: its timestamp bin {ts_bin!r} collides with {other[2]}; rename the view",
            "name"))
    for j, f in enumerate(s.features):
        sub = ("features", j, "bin" if f.bin else "name")
        other = claims.claim(s.entity, f.bin_name, i, sub, f"feature {n}:{f.name}")
        if other:
            other_i, other_sub, other_what = other
            problems.append(i.problem(
                f"bin {f.bin_name!r} of feature {n}:{f.name} is already used by {other_what} "
                f"({other_i.doc.file}:{_line(other_i, *other_sub)}); bins are unique per entity because all "
                f"views of entity {s.entity!r} share one record", *sub))


def _view(n: str, s: Any, source: Source) -> FeatureView:
    return FeatureView(
        name=n,
        entity=s.entity,
        source=source,
        ttl_seconds=parse_ttl(s.ttl),
        features=tuple(
            Feature(f.name, f.dtype, f.bin_name, f.column or f.name, f.default, f.description)
            for f in s.features
        ),
        timestamp_bin=timestamp_bin(n),
        online=s.online,
        description=s.description,
        owner=s.owner,
        tags=tuple(sorted(s.tags.items())),
    )


def _request_sources(requests_l: dict[str, Located], problems: list[Problem]) -> dict[str, RequestSource]:
    requests: dict[str, RequestSource] = {}
    for n, i in requests_l.items():
        s = i.spec
        features = tuple(RequestFeature(f.name, f.dtype, f.default, f.description) for f in s.features)
        requests[n] = RequestSource(n, features, s.description)
        names = [f.name for f in s.features]
        for j, name in enumerate(names):
            if name in names[:j]:
                problems.append(i.problem(f"request source {n!r}: duplicate feature name {name!r}",
                                          "features", j, "name"))
    return requests


def _services(items: list[Located], views_l: dict[str, Located], requests_l: dict[str, Located],
              problems: list[Problem]) -> dict[str, FeatureService]:
    services: dict[str, FeatureService] = {}
    for i in items:
        s = i.spec
        for j, ref in enumerate(s.features):
            err = check_ref(ref, views_l, requests_l)
            if err:
                problems.append(i.problem(f"feature service {s.name!r}: {err}", "features", j))
        services.setdefault(s.name, FeatureService(s.name, tuple(s.features), s.description, s.owner,
                                                   tuple(sorted(s.tags.items()))))
    return services
