"""Feature repo YAML: the spec models and the loader that reads a repo into them.

A feature repo is a folder with `feature_store.yaml` and any number of other `*.yaml`/`*.yml`
files (read recursively in sorted order, skipping `data/` and hidden folders) holding lists of
`entities`, `sources`, `feature_views`, `request_sources`, `derived_views` and `feature_services`.

Specs are shape-checked here (pydantic, `extra="forbid"`); cross-object rules (references,
duplicate names, bin collisions, source paths) are checked by the compiler in registry.py.
Every problem carries the `file:line:column` of the YAML node it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fsplug._yaml import YamlDoc, load_yaml
from fsplug.errors import DefinitionError, Problem, did_you_mean
from fsplug.types import DTYPE_NAMES, DType, check_default, parse_dtype, parse_ttl

__all__ = [
    "EntitySpec",
    "JoinKeySpec",
    "SourceSpec",
    "FeatureSpec",
    "FeatureViewSpec",
    "RequestFeatureSpec",
    "RequestSourceSpec",
    "DerivedFeatureSpec",
    "DerivedViewSpec",
    "FeatureServiceSpec",
    "RepoFileSpec",
    "LoadedRepo",
    "load_repo_definitions",
]

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BIN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_BIN_BYTES = 15
MAX_SET_BYTES = 63
RESERVED_BIN_PREFIX = "_ts_"
TABLE_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,2}$")
class Spec(BaseModel):
    """Base of every YAML spec: unknown keys are errors, values are immutable.

    A spec with a `name` field gets it checked as an identifier; `_kind` names it in errors.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    _kind: ClassVar[str] = "name"

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, cls._kind)


def _nonempty(v: list[Any], message: str) -> list[Any]:
    if not v:
        raise ValueError(message)
    return v


def _check_name(v: str, what: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"{what} {v!r} must start with a letter or '_' and use only letters, digits and '_'")
    return v


class _DTyped(Spec):
    dtype: DType

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> DType:
        if isinstance(v, DType):
            return v
        if not isinstance(v, str):
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}; got {v!r}")
        return parse_dtype(v)


class JoinKeySpec(_DTyped):
    """One join key column of an entity (int64 or string)."""

    _kind: ClassVar[str] = "join key"

    name: str


    @field_validator("dtype")
    @classmethod
    def _key_dtype(cls, v: DType) -> DType:
        if v not in (DType.INT64, DType.STRING):
            raise ValueError(f"join key dtype must be int64 or string; got {v.value!r}")
        return v


class EntitySpec(Spec):
    """An entity: what features describe, identified by one join key or several (composite)."""

    name: str
    join_key: str | None = None
    dtype: str | None = None
    join_keys: list[JoinKeySpec] | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _check_name(v, "entity name")
        if len(v.encode()) > MAX_SET_BYTES:
            raise ValueError(
                f"entity name {v!r} is {len(v.encode())} bytes; it names the Aerospike set, "
                f"which allows {MAX_SET_BYTES}"
            )
        return v

    @model_validator(mode="after")
    def _keys(self) -> EntitySpec:
        if self.join_keys is not None:
            if self.join_key is not None or self.dtype is not None:
                raise ValueError("give either join_key + dtype or join_keys, not both")
            if not self.join_keys:
                raise ValueError("join_keys cannot be empty")
            names = [k.name for k in self.join_keys]
            if len(set(names)) != len(names):
                raise ValueError(f"join_keys repeat a name: {names}")
        elif self.join_key is None:
            raise ValueError("an entity needs join_key (with dtype) or join_keys")
        else:
            _check_name(self.join_key, "join key")
            JoinKeySpec(name=self.join_key, dtype=self.dtype or "int64")  # type: ignore[arg-type]  # validated
        return self

    def keys(self) -> list[JoinKeySpec]:
        """The join keys in order, whichever form the YAML used."""
        if self.join_keys is not None:
            return list(self.join_keys)
        assert self.join_key is not None  # the model validator made sure of it
        return [JoinKeySpec(name=self.join_key, dtype=self.dtype or "int64")]  # type: ignore[arg-type]  # validated


class SourceSpec(Spec):
    """An offline source: Parquet (`path`: a file or a directory of files, hive partitions allowed), or a
    table of the Spark catalog (`type: spark_table`, `table: [catalog.]db.name`), which only the Spark
    engine reads."""

    _kind: ClassVar[str] = "source name"

    name: str
    type: Literal["parquet", "spark_table"] = "parquet"
    path: str | None = None
    table: str | None = None
    timestamp_field: str
    created_timestamp_field: str | None = None
    description: str = ""

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        if v is not None and not TABLE_RE.match(v):
            raise ValueError(f"table {v!r} must be a Spark catalog table name: `name`, `db.name` or "
                             "`catalog.db.name`, each part letters, digits and '_'")
        return v

    @model_validator(mode="after")
    def _location(self) -> SourceSpec:
        needs, other = ("table", "path") if self.type == "spark_table" else ("path", "table")
        if getattr(self, other) is not None:
            raise ValueError(f"a {self.type} source takes `{needs}:`, not `{other}:`"
                             + (" (or set `type: spark_table`)" if other == "table" else ""))
        if getattr(self, needs) is None:
            raise ValueError(f"required field {needs!r} is missing (a {self.type} source reads its {needs})")
        return self



def _str_tags(v: Any) -> Any:
    """Tag values as text (YAML may read `refresh: 1` as a number)."""
    if isinstance(v, dict):
        return {str(k): str(x) for k, x in v.items()}
    return v


def _check_bin(v: str) -> str:
    size = len(v.encode("utf-8"))
    if size > MAX_BIN_BYTES:
        raise ValueError(f"bin {v!r} is {size} bytes; Aerospike allows {MAX_BIN_BYTES}")
    if not BIN_RE.match(v):
        raise ValueError(f"bin {v!r} may use only A-Z, a-z, 0-9, '_' and '-'")
    if v.startswith(RESERVED_BIN_PREFIX):
        raise ValueError(f"bin {v!r} starts with {RESERVED_BIN_PREFIX!r}, reserved for fsplug's timestamp bins")
    return v


class FeatureSpec(_DTyped):
    """One feature of a view: its type, the Aerospike bin (and SQLite column) storing it, a default."""

    _kind: ClassVar[str] = "feature name"

    name: str
    bin: str | None = None
    column: str | None = Field(default=None, description="source column; defaults to the feature name")
    default: Any = None
    description: str = ""


    @field_validator("bin")
    @classmethod
    def _bin(cls, v: str | None) -> str | None:
        return None if v is None else _check_bin(v)

    @model_validator(mode="after")
    def _post(self) -> FeatureSpec:
        check_default(self.dtype, self.default)
        if self.bin is None:
            try:
                _check_bin(self.name)
            except ValueError as exc:
                raise ValueError(f"{exc}: the bin defaults to the feature name, so set `bin:` explicitly") from None
        return self

    @property
    def bin_name(self) -> str:
        return self.bin or self.name


class FeatureViewSpec(Spec):
    """A group of features of one entity, loaded from one source, with one freshness ttl."""

    _kind: ClassVar[str] = "feature view name"

    name: str
    entity: str
    source: str
    ttl: Any = None
    features: list[FeatureSpec]
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: Any) -> Any:
        parse_ttl(v)
        return v

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[Any]) -> list[Any]:
        return _nonempty(v, "a feature view needs at least one feature")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        return _str_tags(v)


class RequestFeatureSpec(_DTyped):
    """A value that arrives with the request (not stored), e.g. the pickup distance."""

    _kind: ClassVar[str] = "request feature name"

    name: str
    default: Any = None
    description: str = ""


    @model_validator(mode="after")
    def _post(self) -> RequestFeatureSpec:
        check_default(self.dtype, self.default)
        return self


class RequestSourceSpec(Spec):
    """A named group of request-time features."""

    _kind: ClassVar[str] = "request source name"

    name: str
    features: list[RequestFeatureSpec]
    description: str = ""


    @field_validator("features")
    @classmethod
    def _features(cls, v: list[Any]) -> list[Any]:
        return _nonempty(v, "a request source needs at least one feature")


class DerivedFeatureSpec(_DTyped):
    """A feature computed from others at read time: an expression (`expr`) or a Python function (`udf`)."""

    _kind: ClassVar[str] = "derived feature name"

    name: str
    expr: str | None = None
    udf: str | None = None
    default: Any = None
    description: str = ""

    @model_validator(mode="after")
    def _post(self) -> DerivedFeatureSpec:
        if (self.expr is None) == (self.udf is None):
            raise ValueError("a derived feature needs exactly one of expr: (an expression) or udf: "
                             "(package.module:function)")
        if self.dtype in (DType.BYTES, DType.FLOAT64_LIST):
            raise ValueError(f"a derived feature cannot be {self.dtype.value}; use int64, float64, float32, bool, "
                             "string or timestamp")
        check_default(self.dtype, self.default)
        return self


class DerivedViewSpec(Spec):
    """A named group of derived features and the views, request sources and derived views they read."""

    _kind: ClassVar[str] = "derived view name"

    name: str
    inputs: list[str] = Field(default_factory=list)
    features: list[DerivedFeatureSpec]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _features(cls, v: list[Any]) -> list[Any]:
        return _nonempty(v, "a derived view needs at least one feature")

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        return _str_tags(v)


class FeatureServiceSpec(Spec):
    """A named, ordered list of feature refs (`view:feature`, `view:*`) a model uses."""

    _kind: ClassVar[str] = "feature service name"

    name: str
    features: list[str]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


    @field_validator("features")
    @classmethod
    def _features(cls, v: list[Any]) -> list[Any]:
        return _nonempty(v, "a feature service needs at least one feature ref")


class RepoFileSpec(Spec):
    """The top level of a definitions file."""

    entities: list[EntitySpec] = Field(default_factory=list)
    sources: list[SourceSpec] = Field(default_factory=list)
    feature_views: list[FeatureViewSpec] = Field(default_factory=list)
    request_sources: list[RequestSourceSpec] = Field(default_factory=list)
    derived_views: list[DerivedViewSpec] = Field(default_factory=list)
    feature_services: list[FeatureServiceSpec] = Field(default_factory=list)


KINDS = {
    "entities": "entity",
    "sources": "source",
    "feature_views": "feature view",
    "request_sources": "request source",
    "derived_views": "derived view",
    "feature_services": "feature service",
}


@dataclass
class Located:
    """A spec and where it was defined (for cross-object error messages)."""

    spec: Any
    doc: YamlDoc
    loc: tuple[Any, ...]

    def problem(self, message: str, *sub: Any, key: bool = False) -> Problem:
        return self.doc.problem(self.loc + tuple(sub), message, key=key)


@dataclass
class LoadedRepo:
    """Every spec of a repo, by kind, in file order, with locations."""

    root: Path
    objects: dict[str, list[Located]]
    invalid: dict[str, frozenset[str]] = field(default_factory=dict)
    """Names of the objects (of any kind) left out for problems of their own, already reported (a
    reference to one is not reported again as unknown), with the feature names they list."""


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> type[BaseModel] | None:
    """The spec model that the pydantic error location `loc` points into."""
    model: Any = root or RepoFileSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        ann = info.annotation
        for _ in range(3):  # unwrap list[X] / X | None
            args = getattr(ann, "__args__", None)
            if args:
                ann = next((a for a in args if a is not type(None)), ann)
        model = ann
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _clean_loc(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[Any, ...]:
    """Drop the parts pydantic adds for union members, keeping list indexes and field names."""
    out: list[Any] = []
    model: Any = root
    for i, part in enumerate(loc):
        if isinstance(part, int) or i == len(loc) - 1:
            out.append(part)
            continue
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else None
        if fields is None:
            out.append(part)  # inside a free-form mapping (tags, online_store)
            continue
        if part in fields:
            out.append(part)
            model = _model_at((part,), model)
    return tuple(out)


def format_validation_error(
    err: dict[str, Any], doc: YamlDoc, root: type[BaseModel] = RepoFileSpec, prefix: tuple[Any, ...] = ()
) -> Problem:
    """Turn one pydantic error into a located, readable Problem that names field, value and what fits."""
    loc = _clean_loc(tuple(err["loc"]), root)
    typ = err["type"]
    full = prefix + loc
    field_path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in full).replace(".[", "[")
    if typ == "extra_forbidden":
        parent = _model_at(loc[:-1], root)
        names = list(parent.model_fields) if parent else []
        key = loc[-1]
        hint = did_you_mean(str(key), names)
        where = field_path.rsplit(".", 1)[0] if "." in field_path else ""
        msg = f"unknown field {key!r}" + (f" in {where}" if where else "")
        msg += hint if hint else (f"; allowed: {', '.join(names)}" if names else "")
        return doc.problem(full, msg, key=True)
    if typ == "missing":
        return doc.problem(full[:-1], f"{field_path}: required field {full[-1]!r} is missing")
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    elif typ == "model_type":
        message = f"expected a mapping; got {_describe_input(err.get('input'))}"
    elif "input" in err:
        message = f"{message}; got {_describe_input(err['input'])}"
    return doc.problem(full, f"{field_path}: {message}" if field_path else message)


IGNORE_FILE = ".fsplugignore"


def definition_files(root: Path) -> list[Path]:
    """The YAML files holding definitions, sorted.

    The rule: every `*.yaml` / `*.yml` under the repo, except configuration files
    (`feature_store*.yaml` / `.yml` anywhere, so a copy like `feature_store.sqlite.yaml` is never
    read as definitions), anything under `data/` or a hidden folder, hidden files, and the paths
    that `.fsplugignore` at the repo root lists (gitignore syntax).
    """
    ignore = _ignore_spec(root)
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or rel.parts[0] in ("data",):
            continue
        if path.suffix not in (".yaml", ".yml") or not path.is_file() or path.name.startswith("feature_store"):
            continue
        if ignore is not None and ignore.match_file(rel.as_posix()):
            continue
        files.append(path)
    return files


def _ignore_spec(root: Path) -> Any:
    """The compiled `.fsplugignore` of the repo, or None when it has none."""
    path = root / IGNORE_FILE
    if not path.is_file():
        return None
    import pathspec

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(IGNORE_FILE, 1, 1, f"cannot read {IGNORE_FILE}: {exc}")]) from None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def load_repo_definitions(root: Path, problems: list[Problem] | None = None) -> LoadedRepo:
    """Read and shape-check every definitions file of the repo at `root`.

    Problems are appended to `problems` when given (the caller reports them all together);
    otherwise a DefinitionError is raised if there are any.
    """
    own = problems is None
    problems = [] if problems is None else problems
    objects: dict[str, list[Located]] = {kind: [] for kind in KINDS}
    invalid: dict[str, frozenset[str]] = {}
    for path in definition_files(root):
        display = path.relative_to(root).as_posix()
        doc = load_yaml(path, display, problems)
        if doc is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(doc.problem((), f"a definitions file must be a mapping with keys {', '.join(KINDS)}"))
            continue
        # Validate object by object so that one bad object does not hide the others.
        for key, value in doc.data.items():
            if key not in KINDS:
                problems.append(
                    doc.problem((key,), f"unknown top-level key {key!r}{did_you_mean(str(key), list(KINDS))}"
                                + ("" if did_you_mean(str(key), list(KINDS)) else f"; allowed: {', '.join(KINDS)}"),
                                key=True)
                )
                continue
            if value is None:
                continue
            if not isinstance(value, list):
                problems.append(doc.problem((key,), f"{key} must be a list of {KINDS[key]} mappings; got "
                                                    f"{type(value).__name__}"))
                continue
            model = _model_at((key,))
            assert model is not None  # every top-level kind has its spec model
            for i, item in enumerate(value):
                try:
                    spec = model.model_validate(item)
                except ValidationError as exc:
                    for e in exc.errors():
                        err = dict(e)
                        loc: Any = err["loc"]
                        err["loc"] = (key, i, *loc)
                        problems.append(format_validation_error(err, doc))
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        feats = item.get("features")
                        invalid[item["name"]] = frozenset(
                            f["name"] for f in (feats if isinstance(feats, list) else [])
                            if isinstance(f, dict) and isinstance(f.get("name"), str))
                    continue
                objects[key].append(Located(spec, doc, (key, i)))
    if own and problems:
        raise DefinitionError(problems)
    return LoadedRepo(root=root, objects=objects, invalid=invalid)
