"""The registry: specs compiled into immutable, typed, content-hashed objects, persisted as JSON.

`compile_repo` turns a loaded repo into a Registry after the cross-object checks (references,
duplicate names, bin collisions, source paths). `diff` compares two registries for `plan` and
`apply`; `RegistryStore` persists one atomically (temp file + rename, under a file lock so two
applies cannot interleave) together with each view's materialization state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from fsplug.config import resolve_repo_path
from fsplug.definitions import (
    KINDS,
    MAX_BIN_BYTES,
    RESERVED_BIN_PREFIX,
    LoadedRepo,
    Located,
)
from fsplug.errors import ConfigError, DefinitionError, Problem, ReferenceNotFoundError, RegistryError, did_you_mean
from fsplug.types import DType, parse_ttl

__all__ = [
    "JoinKey",
    "Entity",
    "Source",
    "Feature",
    "FeatureView",
    "RequestFeature",
    "RequestSource",
    "FeatureService",
    "ViewState",
    "Registry",
    "Change",
    "RegistryDiff",
    "compile_repo",
    "diff",
    "RegistryStore",
    "timestamp_bin",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class JoinKey:
    name: str
    dtype: DType


@dataclass(frozen=True)
class Entity:
    """An entity; its records live in the set/table named `name`."""

    name: str
    join_keys: tuple[JoinKey, ...]
    description: str = ""


@dataclass(frozen=True)
class Source:
    name: str
    path: str
    timestamp_field: str
    created_timestamp_field: str | None = None
    description: str = ""
    type: str = "parquet"


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: DType
    bin: str
    column: str
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity from one source; `timestamp_bin` stores each row's event time (us)."""

    name: str
    entity: str
    source: Source
    ttl_seconds: int | None
    features: tuple[Feature, ...]
    timestamp_bin: str
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise ReferenceNotFoundError(
            f"feature view {self.name!r} has no feature {name!r}"
            f"{did_you_mean(name, [f.name for f in self.features])}"
        )


@dataclass(frozen=True)
class RequestFeature:
    name: str
    dtype: DType
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class RequestSource:
    name: str
    features: tuple[RequestFeature, ...]
    description: str = ""


@dataclass(frozen=True)
class FeatureService:
    """An ordered list of feature refs; `refs` as written, expanded when a plan is compiled."""

    name: str
    refs: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ViewState:
    """Materialization state of one view: stored only after a run's writes fully succeeded."""

    watermark: str | None = None  # ISO-8601 end of the last successful run
    last_run: dict[str, Any] | None = None


@dataclass(frozen=True)
class Registry:
    """Everything `apply` compiled: immutable; `hash` covers the definitions, not the state."""

    project: str
    entities: dict[str, Entity]
    sources: dict[str, Source]
    feature_views: dict[str, FeatureView]
    request_sources: dict[str, RequestSource]
    feature_services: dict[str, FeatureService]
    state: dict[str, ViewState] = field(default_factory=dict)
    hash: str = ""

    # ---- lookups with helpful errors -------------------------------------------------
    def view(self, name: str) -> FeatureView:
        try:
            return self.feature_views[name]
        except KeyError:
            raise ReferenceNotFoundError(
                f"unknown feature view {name!r}{did_you_mean(name, list(self.feature_views))}"
            ) from None

    def service(self, name: str) -> FeatureService:
        try:
            return self.feature_services[name]
        except KeyError:
            raise ReferenceNotFoundError(
                f"unknown feature service {name!r}{did_you_mean(name, list(self.feature_services))}"
            ) from None

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise ReferenceNotFoundError(f"unknown entity {name!r}{did_you_mean(name, list(self.entities))}") from None

    def with_state(self, view: str, state: ViewState) -> "Registry":
        return replace(self, state={**self.state, view: state})

    # ---- persistence -------------------------------------------------------------------
    def definitions(self) -> dict[str, Any]:
        """The definitions as canonical JSON-ready data (what `hash` is computed over)."""

        def enc(obj: Any) -> Any:
            if isinstance(obj, DType):
                return obj.value
            if isinstance(obj, dict):
                return {k: enc(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [enc(v) for v in obj]
            return obj

        return {
            "project": self.project,
            "entities": [enc(asdict(e)) for e in self.entities.values()],
            "sources": [enc(asdict(s)) for s in self.sources.values()],
            "feature_views": [enc(asdict(v)) for v in self.feature_views.values()],
            "request_sources": [enc(asdict(r)) for r in self.request_sources.values()],
            "feature_services": [enc(asdict(s)) for s in self.feature_services.values()],
        }

    def to_json(self) -> str:
        data = {
            "format": FORMAT_VERSION,
            "hash": self.hash,
            **self.definitions(),
            "state": {k: asdict(v) for k, v in sorted(self.state.items())},
        }
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Registry":
        data = json.loads(text)
        if data.get("format") != FORMAT_VERSION:
            raise RegistryError(f"registry format {data.get('format')!r} is not {FORMAT_VERSION}; run `fsplug apply`")
        entities = {
            e["name"]: Entity(e["name"], tuple(JoinKey(k["name"], DType(k["dtype"])) for k in e["join_keys"]),
                              e.get("description", ""))
            for e in data["entities"]
        }
        sources = {s["name"]: Source(**s) for s in data["sources"]}
        views = {}
        for v in data["feature_views"]:
            feats = tuple(Feature(**{**f, "dtype": DType(f["dtype"])}) for f in v["features"])
            views[v["name"]] = FeatureView(
                **{**v, "source": Source(**v["source"]), "features": feats, "tags": tuple(map(tuple, v["tags"]))}
            )
        requests = {
            r["name"]: RequestSource(
                r["name"], tuple(RequestFeature(**{**f, "dtype": DType(f["dtype"])}) for f in r["features"]),
                r.get("description", ""),
            )
            for r in data["request_sources"]
        }
        services = {
            s["name"]: FeatureService(**{**s, "refs": tuple(s["refs"]), "tags": tuple(map(tuple, s["tags"]))})
            for s in data["feature_services"]
        }
        state = {k: ViewState(**v) for k, v in data.get("state", {}).items()}
        reg = cls(data["project"], entities, sources, views, requests, services, state, data["hash"])
        if reg.hash != _hash(reg):
            raise RegistryError("registry file content does not match its hash (edited by hand?); run `fsplug apply`")
        return reg


def _hash(reg: Registry) -> str:
    canonical = json.dumps(reg.definitions(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def timestamp_bin(view_name: str) -> str:
    """The reserved bin/column holding a view's event timestamps: `_ts_<view>`, shortened to 15 bytes."""
    name = RESERVED_BIN_PREFIX + view_name
    if len(name.encode()) <= MAX_BIN_BYTES:
        return name
    digest = hashlib.sha1(view_name.encode()).hexdigest()[:4]
    return f"{RESERVED_BIN_PREFIX}{view_name[:6]}_{digest}"


# ---- compile ---------------------------------------------------------------------------


def compile_repo(repo: LoadedRepo, project: str, *, check_paths: bool, problems: list[Problem] | None = None,
                 warnings: list[str] | None = None) -> Registry:
    """Compile loaded specs into a Registry; raise DefinitionError listing every problem."""
    problems = [] if problems is None else problems
    warnings = [] if warnings is None else warnings
    objs = repo.objects

    # duplicate names, per kind; views and request sources share one namespace (refs name either)
    by_name: dict[str, dict[str, Located]] = {}
    for kind in KINDS:
        space = "feature_views" if kind == "request_sources" else kind
        seen = by_name.setdefault(space, {})
        for item in objs[kind]:
            name = item.spec.name
            if name in seen:
                first = seen[name]
                problems.append(item.problem(
                    f"duplicate {KINDS[kind]} name {name!r}: already defined at "
                    f"{first.doc.file}:{first.doc.where(first.loc + ('name',))[0]}", "name"))
            else:
                seen[name] = item
    entities_l = {i.spec.name: i for i in objs["entities"]}
    sources_l = {i.spec.name: i for i in objs["sources"]}
    views_l = {i.spec.name: i for i in objs["feature_views"]}
    requests_l = {i.spec.name: i for i in objs["request_sources"]}

    entities = {
        n: Entity(n, tuple(JoinKey(k.name, k.dtype) for k in i.spec.keys()), i.spec.description)
        for n, i in entities_l.items()
    }
    sources: dict[str, Source] = {}
    for n, i in sources_l.items():
        s = i.spec
        sources[n] = Source(n, s.path, s.timestamp_field, s.created_timestamp_field, s.description, s.type)
        try:
            full = resolve_repo_path(repo.root, s.path)
        except ConfigError as exc:
            problems.append(i.problem(f"source {n!r}: {exc}", "path"))
            continue
        if not full.exists():
            msg = f"source {n!r}: path {s.path!r} does not exist (resolved to {full})"
            if check_paths:
                problems.append(i.problem(msg, "path"))
            else:
                warnings.append(f"{i.doc.file}:{i.doc.where(i.loc + ('path',))[0]}: warning: {msg}")

    views: dict[str, FeatureView] = {}
    bins_by_entity: dict[str, dict[str, tuple[Located, tuple, str]]] = {}
    for n, i in views_l.items():
        s = i.spec
        ok = True
        if s.entity not in entities:
            problems.append(i.problem(
                f"feature view {n!r}: unknown entity {s.entity!r}{did_you_mean(s.entity, list(entities))}", "entity"))
            ok = False
        if s.source not in sources_l:
            problems.append(i.problem(
                f"feature view {n!r}: unknown source {s.source!r}{did_you_mean(s.source, list(sources_l))}", "source"))
            ok = False
        seen_f: dict[str, int] = {}
        for j, f in enumerate(s.features):
            if f.name in seen_f:
                problems.append(i.problem(
                    f"feature view {n!r}: duplicate feature name {f.name!r}", "features", j, "name"))
                ok = False
            seen_f[f.name] = j
        ts_bin = timestamp_bin(n)
        bins = bins_by_entity.setdefault(s.entity, {})
        if ts_bin in bins:
            other = bins[ts_bin]
            problems.append(i.problem(
                f"feature view {n!r}: its timestamp bin {ts_bin!r} collides with {other[2]}; rename the view",
                "name"))
            ok = False
        else:
            bins[ts_bin] = (i, ("name",), f"the timestamp bin of view {n!r}")
        for j, f in enumerate(s.features):
            b = f.bin_name
            sub = ("features", j, "bin" if f.bin else "name")
            if b in bins:
                other_i, other_sub, other_what = bins[b]
                line = other_i.doc.where(other_i.loc + other_sub)[0]
                problems.append(i.problem(
                    f"bin {b!r} of feature {n}:{f.name} is already used by {other_what} "
                    f"({other_i.doc.file}:{line}); bins are unique per entity because all views of "
                    f"entity {s.entity!r} share one record", *sub))
                ok = False
            else:
                bins[b] = (i, sub, f"feature {n}:{f.name}")
        if not ok:
            continue
        views[n] = FeatureView(
            name=n,
            entity=s.entity,
            source=sources[s.source] if s.source in sources else None,
            ttl_seconds=parse_ttl(s.ttl),
            features=tuple(
                Feature(f.name, f.dtype, f.bin_name, f.column or f.name, f.default, f.description) for f in s.features
            ),
            timestamp_bin=ts_bin,
            online=s.online,
            description=s.description,
            owner=s.owner,
            tags=tuple(sorted(s.tags.items())),
        )

    requests = {
        n: RequestSource(n, tuple(RequestFeature(f.name, f.dtype, f.default, f.description) for f in i.spec.features),
                         i.spec.description)
        for n, i in requests_l.items()
    }
    for n, i in requests_l.items():
        names = [f.name for f in i.spec.features]
        for j, name in enumerate(names):
            if name in names[:j]:
                problems.append(i.problem(f"request source {n!r}: duplicate feature name {name!r}",
                                          "features", j, "name"))

    services: dict[str, FeatureService] = {}
    for i in objs["feature_services"]:
        s = i.spec
        for j, ref in enumerate(s.features):
            err = check_ref(ref, views_l, requests_l)
            if err:
                problems.append(i.problem(f"feature service {s.name!r}: {err}", "features", j))
        services.setdefault(s.name, FeatureService(s.name, tuple(s.features), s.description, s.owner,
                                                   tuple(sorted(s.tags.items()))))

    if problems:
        raise DefinitionError(problems)
    reg = Registry(project, entities, sources, views, requests, services)
    return replace(reg, hash=_hash(reg))


def check_ref(ref: str, views: dict[str, Any], requests: dict[str, Any]) -> str | None:
    """Why `ref` (`view:feature` or `view:*`) does not resolve, or None when it does."""
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


# ---- diff ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One created, updated or deleted object; `props` lists (property, old, new) for updates."""

    action: str  # "create" | "update" | "delete"
    kind: str
    name: str
    props: tuple[tuple[str, Any, Any], ...] = ()
    invalidating: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryDiff:
    changes: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def invalidating(self) -> bool:
        return any(c.invalidating for c in self.changes)

    def of(self, kind: str, action: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.kind == kind and (action is None or c.action == action)]

    def render(self) -> str:
        if not self.changes:
            return "No changes"
        mark = {"create": "+", "update": "~", "delete": "-"}
        word = {"create": "create", "update": "update", "delete": "delete"}
        lines = []
        for c in self.changes:
            lines.append(f"{mark[c.action]} {word[c.action]} {KINDS[c.kind]} {c.name}")
            for prop, old, new in c.props:
                flag = "   ! invalidates stored data: re-materialize this view" if prop in c.invalidating else ""
                lines.append(f"    {prop}: {_show(old)} -> {_show(new)}{flag}")
            if c.action == "delete" and c.kind == "feature_views":
                lines.append("    ! its online data stays until `fsplug teardown`")
        n = {a: sum(1 for c in self.changes if c.action == a) for a in mark}
        lines.append(f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete"
                     + (" (some changes invalidate stored data)" if self.invalidating else ""))
        return "\n".join(lines)


def _show(v: Any) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def _flatten(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if k == "name":
            continue
        if k == "features" and kind in ("feature_views", "request_sources"):
            for f in v:
                for fk, fv in f.items():
                    if fk != "name":
                        out[f"features.{f['name']}.{fk}"] = fv
        elif kind == "feature_views" and k == "source":
            out["source"] = v["name"]
        else:
            out[k] = v
    return out


def _invalidating(kind: str, prop: str, old: Any) -> bool:
    if kind == "feature_views":
        return prop == "entity" or (prop.startswith("features.") and prop.rsplit(".", 1)[1] in ("dtype", "bin")
                                    and old is not None)
    return kind == "entities" and prop == "join_keys"


def diff(old: Registry | None, new: Registry) -> RegistryDiff:
    """What changes from `old` (None = nothing applied yet) to `new`, in a stable order."""
    old_defs = old.definitions() if old else {k: [] for k in KINDS}
    new_defs = new.definitions()
    changes: list[Change] = []
    for kind in KINDS:
        before = {o["name"]: _flatten(kind, o) for o in old_defs[kind]}
        after = {o["name"]: _flatten(kind, o) for o in new_defs[kind]}
        for name in after:
            if name not in before:
                changes.append(Change("create", kind, name))
        for name in after:
            if name in before and before[name] != after[name]:
                props = tuple(
                    (p, before[name].get(p), after[name].get(p))
                    for p in sorted(set(before[name]) | set(after[name]))
                    if before[name].get(p) != after[name].get(p)
                )
                inval = tuple(p for p, o, _ in props if _invalidating(kind, p, o))
                changes.append(Change("update", kind, name, props, inval))
        for name in before:
            if name not in after:
                changes.append(Change("delete", kind, name))
    return RegistryDiff(tuple(changes))


# ---- persistence -----------------------------------------------------------------------


class RegistryStore:
    """Reads and writes the registry file atomically; `locked()` serializes read-modify-write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> Registry:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RegistryError(f"no registry at {self.path}: run `fsplug apply` first") from None
        except UnicodeDecodeError as exc:
            raise RegistryError(f"registry {self.path} is unreadable (not UTF-8 JSON: {exc}); run `fsplug apply` "
                                "again") from None
        try:
            return Registry.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"registry {self.path} is unreadable ({exc}); run `fsplug apply` again") from exc

    def load_or_none(self) -> Registry | None:
        return self.load() if self.exists() else None

    def save(self, registry: Registry) -> None:
        """Write atomically: a crash leaves either the old or the new file, never a torn one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(registry.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on `<registry>.lock` (blocks other applies/watermark updates)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            # Every writer holds this lock, so a temp file seen now is a crashed writer's leftover.
            for stale in self.path.parent.glob(".registry-*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def update_state(self, view: str, state: ViewState) -> Registry:
        """Record one view's materialization state (read-modify-write under the lock)."""
        with self.locked():
            reg = self.load()
            new = reg.with_state(view, state)
            self.save(new)
            return new


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
