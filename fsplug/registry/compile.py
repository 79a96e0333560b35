"""The compiler: loaded YAML specs -> a content-hashed Registry, after the cross-object checks.

Shape checks happened when the specs were loaded (definitions.py); here come the rules that need
several objects: unique names per kind (views and request sources share one namespace, since refs
name either), references to entities, sources and features, bins unique per entity (all views of an
entity share one record), and source paths. Every problem is collected, located, and raised at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from fsplug.config import resolve_repo_path
from fsplug.definitions import KINDS, LoadedRepo, Located
from fsplug.derived import KIND_OF, ExpressionError, Kind, compile_expression, compile_udf, load_udf, udf_parameters
from fsplug.errors import ConfigError, DefinitionError, Problem, did_you_mean
from fsplug.registry.model import (
    DerivedFeature,
    DerivedView,
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
    invalid = repo.invalid  # objects with problems of their own: not reported again where they are named
    views = _views(views_l, entities, sources, problems, invalid)
    requests = _request_sources(requests_l, problems)
    derived_l = _by_name(objs["derived_views"])
    derived = _derived_views(derived_l, views_l, requests_l, repo.root, problems, invalid)
    services = _services(objs["feature_services"], views_l, requests_l, problems, derived_l, invalid)
    if problems:
        raise DefinitionError(problems)
    reg = Registry(project, entities, sources, views, requests, services, derived)
    return replace(reg, hash=content_hash(reg))


def check_ref(ref: str, views: dict[str, Any], requests: dict[str, Any],
              derived: dict[str, Any] | None = None,
              invalid: Mapping[str, frozenset[str]] | None = None) -> str | None:
    """Why `ref` (`view:feature` or `view:*`) does not resolve, or None when it does.

    `views`/`requests`/`derived` map names to compiled objects or to Located specs (anything with
    `features`); the view of a ref may be a feature view, a request source or a derived view. A view
    named in `invalid` (left out for problems of its own, already reported) gives None.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        return f"feature ref {ref!r} must look like 'view:feature' or 'view:*'"
    view, feat = ref.split(":")
    derived = derived or {}
    target = views.get(view) or requests.get(view) or derived.get(view)
    if target is None and view in (invalid or {}):
        return None
    if target is None:
        names = list(views) + list(requests) + list(derived)
        return f"unknown feature view {view!r} in {ref!r}{did_you_mean(view, names)}"
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
        space = "feature_views" if kind in ("request_sources", "derived_views") else kind  # refs name any of them
        seen = by_space.setdefault(space, {})
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
        sources[n] = Source(n, s.path or "", s.timestamp_field, s.created_timestamp_field, s.description, s.type,
                            s.table or "")
        if s.table:  # a catalog table: only a Spark session knows it (the Spark engine checks it before a job)
            continue
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
           problems: list[Problem],
           invalid: Mapping[str, frozenset[str]] | None = None) -> dict[str, FeatureView]:
    claims = _BinClaims()
    views: dict[str, FeatureView] = {}
    for n, i in views_l.items():
        found = len(problems)
        resolved = _check_view_refs(n, i, entities, sources, problems, invalid or {})
        _check_feature_names(n, i, problems)
        _claim_bins(n, i, claims, problems)
        if len(problems) == found and resolved:
            views[n] = _view(n, i.spec, sources[i.spec.source])
    return views


def _check_view_refs(n: str, i: Located, entities: dict[str, Entity], sources: dict[str, Source],
                     problems: list[Problem], invalid: Mapping[str, frozenset[str]]) -> bool:
    """Whether the view's entity and source resolve (one left out for its own problems is not reported)."""
    s = i.spec
    if s.entity not in entities and s.entity not in invalid:
        problems.append(i.problem(
            f"feature view {n!r}: unknown entity {s.entity!r}{did_you_mean(s.entity, list(entities))}",
            "entity"))
    if s.source not in sources and s.source not in invalid:
        problems.append(i.problem(
            f"feature view {n!r}: unknown source {s.source!r}{did_you_mean(s.source, list(sources))}",
            "source"))
    return s.entity in entities and s.source in sources


def _check_feature_names(n: str, i: Located, problems: list[Problem], what: str = "feature view") -> None:
    seen: set[str] = set()
    for j, f in enumerate(i.spec.features):
        if f.name in seen:
            problems.append(i.problem(f"{what} {n!r}: duplicate feature name {f.name!r}", "features", j, "name"))
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
              problems: list[Problem], derived_l: dict[str, Located],
              invalid: Mapping[str, frozenset[str]] | None = None) -> dict[str, FeatureService]:
    services: dict[str, FeatureService] = {}
    for i in items:
        s = i.spec
        for j, ref in enumerate(s.features):
            err = check_ref(ref, views_l, requests_l, derived_l, invalid)
            if err:
                problems.append(i.problem(f"feature service {s.name!r}: {err}", "features", j))
        services.setdefault(s.name, FeatureService(s.name, tuple(s.features), s.description, s.owner,
                                                   tuple(sorted(s.tags.items()))))
    return services


# ---- derived views ----------------------------------------------------------------------------------

class _Inputs:
    """The features one derived view may read by name: its inputs' and its own (fsplug.derived)."""

    def __init__(self, name: str, item: Located, tables: dict[str, dict[str, Any]], problems: list[Problem],
                 invalid: Mapping[str, frozenset[str]] | None = None):
        self.name = name
        self.features: list[tuple[str, dict[str, Any]]] = []  # (input, feature -> dtype), in `inputs` order
        self.left_out: set[str] = set()
        """Features of the inputs left out for problems of their own: names not reported as unknown."""
        self.unresolved = False
        """Set by `resolve` when a name is one of `left_out` (the feature is not reported)."""
        invalid = invalid or {}
        for j, inp in enumerate(item.spec.inputs):
            if inp == name or inp in [n for n, _ in self.features]:
                problems.append(item.problem(f"derived view {name!r}: input {inp!r} is listed twice"
                                             if inp != name else
                                             f"derived view {name!r}: it reads its own features without listing "
                                             "itself; remove it from inputs", "inputs", j))
                continue
            if inp not in tables and inp in invalid:
                self.left_out |= invalid[inp]
                continue
            if inp not in tables:
                problems.append(item.problem(
                    f"derived view {name!r}: unknown input {inp!r}{did_you_mean(inp, list(tables))}; inputs are "
                    "feature views, request sources and derived views", "inputs", j))
                continue
            self.features.append((inp, tables[inp]))
        self.features.append((name, tables[name]))

    def resolve(self, name: str, reader: str) -> tuple[str, Any]:
        """(ref, dtype) of `name` as derived feature `reader` uses it; ExpressionError when it is unknown,
        ambiguous, unreadable or the reader itself."""
        view, sep, feat = name.partition("__")
        own = [(v, t) for v, t in self.features]
        if sep and any(v == view and feat in t for v, t in own):
            hits = [(view, dict(own)[view][feat], feat)]
        else:
            hits = [(v, t[name], name) for v, t in own if name in t and not (v == self.name and name == reader)]
        if not hits:
            if name == reader:
                raise ExpressionError(f"{name!r} reads itself")
            if name in self.left_out:
                self.unresolved = True
            names = sorted({f for _, t in own for f in t} - {reader})
            inputs = ", ".join(v for v, _ in own[:-1]) or "none"
            raise ExpressionError(f"unknown name {name!r}{did_you_mean(name, names)} (inputs: {inputs})")
        if len(hits) > 1:
            raise ExpressionError(f"{name!r} is a feature of {' and '.join(v for v, _, _ in hits)}; write "
                                  f"{hits[0][0]}__{name} to say which")
        view, dtype, feat = hits[0]
        if KIND_OF.get(dtype) is None:
            raise ExpressionError(f"{view}:{feat} is {dtype.value}; derived features cannot read "
                                  f"{dtype.value} values")
        return f"{view}:{feat}", dtype


def _derived_views(derived_l: dict[str, Located], views_l: dict[str, Located], requests_l: dict[str, Located],
                   root: Path, problems: list[Problem],
                   invalid: Mapping[str, frozenset[str]] | None = None) -> dict[str, DerivedView]:
    tables = {n: {f.name: f.dtype for f in i.spec.features}
              for n, i in (*views_l.items(), *requests_l.items(), *derived_l.items())}
    out: dict[str, DerivedView] = {}
    reads_at: dict[str, tuple[Located, tuple[Any, ...], tuple[str, ...]]] = {}  # derived ref -> where, reads
    for n, i in derived_l.items():
        found = len(problems)
        inputs = _Inputs(n, i, tables, problems, invalid)
        features = []
        _check_feature_names(n, i, problems, "derived view")
        for j, f in enumerate(i.spec.features):
            key = "expr" if f.expr is not None else "udf"
            reads: dict[str, str] = {}

            def kind_of(name: str, reader: str = f.name, reads: dict[str, str] = reads,
                        inputs: _Inputs = inputs) -> Kind:
                ref, dtype = inputs.resolve(name, reader)
                reads[name] = ref
                return KIND_OF[dtype]

            inputs.unresolved = False
            try:
                if f.expr is not None:
                    compile_expression(f.expr, kind_of, f.dtype)
                else:
                    fn = load_udf(f.udf, root)
                    params = udf_parameters(fn, f.udf)
                    compile_udf(f.udf, fn, params, [kind_of(p) for p in params], f.dtype)
            except ExpressionError as exc:
                if inputs.unresolved:  # a feature of an input left out for its own problems: not built
                    continue
                problem = i.problem(f"derived feature {n}:{f.name}: {exc}", "features", j, key)
                if key == "expr" and exc.col is not None:
                    problem = _at_token(problem, root, f.expr, exc.col)
                problems.append(problem)
                continue
            features.append(DerivedFeature(f.name, f.dtype, f.expr, f.udf, tuple(reads.items()), f.default,
                                           f.description))
            reads_at[f"{n}:{f.name}"] = (i, ("features", j, key), tuple(reads.values()))
        if len(problems) == found and not inputs.left_out:
            s = i.spec
            out[n] = DerivedView(n, tuple(s.inputs), tuple(features), s.description, s.owner,
                                 tuple(sorted(s.tags.items())))
    _check_cycles(reads_at, problems)
    return out


def _at_token(problem: Problem, root: Path, expr: str, offset: int) -> Problem:
    """`problem` (at an expression's YAML node) moved to the column of the token it is about, when the
    expression is written on that line as it is (plain or quoted, no escapes); else unchanged."""
    try:
        line = (root / problem.file).read_text(encoding="utf-8").splitlines()[problem.line - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return problem
    start = problem.column - 1
    text = expr.strip()
    lead = len(expr) - len(expr.lstrip())
    for quote in ("", '"', "'"):
        if line[start:].startswith(quote + expr):
            return replace(problem, column=problem.column + len(quote) + lead + offset)
        if not quote and line[start:].startswith(text):
            return replace(problem, column=problem.column + offset)
    return problem


def _check_cycles(reads_at: dict[str, tuple[Located, tuple[Any, ...], tuple[str, ...]]],
                  problems: list[Problem]) -> None:
    """One located problem per cycle of derived features reading each other."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(ref: str) -> None:
        state[ref] = 1
        path.append(ref)
        for nxt in reads_at[ref][2]:
            if nxt not in reads_at:
                continue
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                item, sub, _ = reads_at[nxt]
                problems.append(item.problem(f"derived feature {nxt} reads itself through "
                                             f"{' -> '.join(loop)}; derived features cannot form a cycle", *sub))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[ref] = 2

    for ref in reads_at:
        if ref not in state:
            visit(ref)
