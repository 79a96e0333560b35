"""The compiled registry: immutable, typed objects, their content hash and their JSON form.

`Registry.hash` covers the definitions only (every field not marked `definition=False`), so the same
YAML always gives the same hash. Materialization state is not here: it lives in the online store
(fsplug/state.py). JSON (de)serialization is
generic (codec.py): a field added to one of these classes is stored and hashed with no other change.

This module imports no pydantic model and no YAML (the config and the definitions load in the two
functions that need them): the Spark engine's tasks unpickle a `FeatureView` in every Python worker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fsplug.errors import ConfigError, ReferenceNotFoundError, RegistryError, did_you_mean
from fsplug.registry.codec import decode, encode
from fsplug.types import DType

__all__ = [
    "FORMAT_VERSION",
    "JoinKey",
    "Entity",
    "Source",
    "Feature",
    "FeatureView",
    "RequestFeature",
    "RequestSource",
    "DerivedFeature",
    "DerivedView",
    "FeatureService",
    "Registry",
    "content_hash",
    "timestamp_bin",
]

FORMAT_VERSION = 1
"""Version of the registry file's layout; a file of another version must be re-applied."""

_NOT_DEFINITION = {"definition": False}  # field metadata: not hashed, not diffed
_OMIT_EMPTY = {"omit_empty": True}  # field metadata: left out of the hash and the file when empty (codec.py),
# so registries written before the field existed keep their hash


@dataclass(frozen=True)
class JoinKey:
    """One join key column of an entity."""

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
    """An offline source: Parquet at `path` (relative to the repo as written in the YAML), or, with type
    `spark_table`, the Spark catalog table `table` (`path` empty), which only the Spark engine reads."""

    name: str
    path: str
    timestamp_field: str
    created_timestamp_field: str | None = None
    description: str = ""
    type: str = "parquet"
    table: str = field(default="", metadata=_OMIT_EMPTY)

    @property
    def location(self) -> str:
        """The path or the table, as written: what messages and listings show."""
        return self.table or self.path

    def local_path(self, repo_root: Path, spark_store: str = "") -> Path:
        """The Parquet file or directory this process reads; ConfigError for a catalog table, which only
        the Spark engine can read (`spark_store`: why the online store keeps that engine out, if it does)."""
        if self.table:
            fix = (f"; {spark_store}: materialize it into a store that takes writes from the Spark engine's "
                   "executors (aerospike), with `--engine spark`" if spark_store else
                   ": run it with `--engine spark` (engine=\"spark\"), or set materialization.engine: spark")
            raise ConfigError(f"source {self.name!r} is the Spark catalog table {self.table!r}, which only the "
                              f"Spark engine reads{fix}")
        from fsplug.config import resolve_repo_path

        return resolve_repo_path(repo_root, self.path)

    def spark_path(self, repo_root: Path) -> Path | None:
        """Where the Spark engine reads the source: its Parquet path, or None for a catalog table."""
        return None if self.table else self.local_path(repo_root)


@dataclass(frozen=True)
class Feature:
    """One feature of a view: its dtype, the bin storing it online, the source column, its default."""

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
        """The feature called `name`; ReferenceNotFoundError (with a hint) when there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise ReferenceNotFoundError(
            f"feature view {self.name!r} has no feature {name!r}"
            f"{did_you_mean(name, [f.name for f in self.features])}"
        )


@dataclass(frozen=True)
class RequestFeature:
    """A value that arrives with the request."""

    name: str
    dtype: DType
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class RequestSource:
    """A named group of request-time features."""

    name: str
    features: tuple[RequestFeature, ...]
    description: str = ""


@dataclass(frozen=True)
class DerivedFeature:
    """A feature computed at read time from other features (fsplug.derived): an expression or a UDF.

    `reads` maps each name the expression (or the UDF's parameters) uses to the ref it resolved to at
    apply (`view:feature`; a derived feature's ref names its derived view)."""

    name: str
    dtype: DType
    expr: str | None = None
    udf: str | None = None
    reads: tuple[tuple[str, str], ...] = ()
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class DerivedView:
    """A named group of derived features; `inputs` as written (views, request sources, derived views)."""

    name: str
    inputs: tuple[str, ...]
    features: tuple[DerivedFeature, ...]
    description: str = ""
    owner: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def feature(self, name: str) -> DerivedFeature:
        """The derived feature called `name`; ReferenceNotFoundError (with a hint) when there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise ReferenceNotFoundError(
            f"derived view {self.name!r} has no feature {name!r}{did_you_mean(name, [f.name for f in self.features])}")


@dataclass(frozen=True)
class FeatureService:
    """An ordered list of feature refs; `refs` as written, expanded when a plan is compiled."""

    name: str
    refs: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Registry:
    """Everything `apply` compiled: immutable; `hash` covers the definitions."""

    project: str
    entities: dict[str, Entity]
    sources: dict[str, Source]
    feature_views: dict[str, FeatureView]
    request_sources: dict[str, RequestSource]
    feature_services: dict[str, FeatureService]
    derived_views: dict[str, DerivedView] = field(default_factory=dict, metadata=_OMIT_EMPTY)
    hash: str = field(default="", metadata=_NOT_DEFINITION)

    # ---- lookups with helpful errors -------------------------------------------------
    def view(self, name: str) -> FeatureView:
        """The feature view `name`; ReferenceNotFoundError (with a hint) when unknown."""
        if name in self.derived_views and name not in self.feature_views:
            raise ReferenceNotFoundError(f"{name!r} is a derived view: its features are computed when they are read "
                                         "(from the views and request features they name), never stored; there "
                                         f"is no feature view {name!r} to materialize or push")
        return _lookup(self.feature_views, name, "feature view")

    def service(self, name: str) -> FeatureService:
        """The feature service `name`; ReferenceNotFoundError (with a hint) when unknown."""
        return _lookup(self.feature_services, name, "feature service")

    def entity(self, name: str) -> Entity:
        """The entity `name`; ReferenceNotFoundError (with a hint) when unknown."""
        return _lookup(self.entities, name, "entity")

    def derived(self, name: str) -> DerivedView:
        """The derived view `name`; ReferenceNotFoundError (with a hint) when unknown."""
        return _lookup(self.derived_views, name, "derived view")

    # ---- persistence -------------------------------------------------------------------
    def _encoded(self) -> dict[str, Any]:
        return encode(Registry, self)

    def definitions(self) -> dict[str, Any]:
        """The definitions as canonical JSON-ready data (what `hash` is computed over and `diff` compares)."""
        data = self._encoded()
        return {f.name: data[f.name] for f in fields(Registry) if f.metadata.get("definition", True) and f.name in data}

    def to_json(self) -> str:
        """The registry file's text: format version, hash and definitions, keys sorted."""
        data = {"format": FORMAT_VERSION, **self._encoded()}
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Registry:
        """Parse a registry file; RegistryError when its format is unknown or its hash does not match.

        Malformed content raises ValueError/TypeError naming the place (RegistryStore words it)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_VERSION:
            raise RegistryError(
                f"registry format {data.get('format')!r} is not {FORMAT_VERSION}; run `fsplug apply`")
        # "state": materialization state that fsplug 0.1 kept here; it lives in the online store now
        reg = decode(Registry, {k: v for k, v in data.items() if k not in ("format", "state")})
        if reg.hash != content_hash(reg):
            raise RegistryError(
                "registry file content does not match its hash (edited by hand?); run `fsplug apply`")
        return reg


def _lookup(objects: dict[str, Any], name: str, what: str) -> Any:
    try:
        return objects[name]
    except KeyError:
        raise ReferenceNotFoundError(f"unknown {what} {name!r}{did_you_mean(name, list(objects))}") from None


def content_hash(registry: Registry) -> str:
    """sha256 of the canonical JSON of the registry's definitions (compact, keys sorted, UTF-8)."""
    canonical = json.dumps(registry.definitions(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def timestamp_bin(view_name: str) -> str:
    """The reserved bin/column holding a view's event timestamps: `_ts_<view>`, shortened to 15 bytes."""
    from fsplug.definitions import MAX_BIN_BYTES, RESERVED_BIN_PREFIX

    name = RESERVED_BIN_PREFIX + view_name
    if len(name.encode()) <= MAX_BIN_BYTES:
        return name
    digest = hashlib.sha1(view_name.encode()).hexdigest()[:4]
    return f"{RESERVED_BIN_PREFIX}{view_name[:6]}_{digest}"
