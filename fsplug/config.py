"""feature_store.yaml: the repo-level configuration model and its loader.

```yaml
project: dispatch              # required; names the registry and the store's tables/sets prefix-free
registry: data/registry.json   # where `fsplug apply` writes the compiled registry (relative to the repo)
online_store:                  # validated by the store's own config model (fsplug/online/factory.py)
  type: sqlite                 # sqlite | aerospike | package.module:Class
  path: data/online.db
materialization:               # optional: the engine of the batch jobs (materialize, training data)
  engine: local                # local (default) | spark
  spark: {master: "local[*]", conf: {spark.executor.memory: 4g}, partitions: 200}
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fsplug._yaml import YamlDoc, load_yaml
from fsplug.errors import ConfigError, DefinitionError, Problem

__all__ = ["RepoConfig", "LoadedConfig", "MaterializationConfig", "SparkConfig", "ENGINES", "check_engine",
           "load_repo_config", "CONFIG_FILE", "resolve_repo_path"]

CONFIG_FILE = "feature_store.yaml"


ENGINES = ("local", "spark")
"""The engines that run materialization and training data (`materialization.engine`, `--engine`)."""


def check_engine(name: str) -> str:
    """`name` if it is an engine fsplug has, else ValueError naming the engines (with "did you mean")."""
    from fsplug.errors import did_you_mean

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}{did_you_mean(name, ENGINES)}; engines: {', '.join(ENGINES)}")
    return name


class SparkConfig(BaseModel):
    """`materialization.spark`: how the Spark engine gets its session and splits its work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    master: str | None = Field(
        default=None,
        description="Spark master URL (`local[*]`, `spark://host:7077`, `yarn`, `k8s://...`); unset: the active "
                    "session's, or what spark-submit gives, else `local[*]`.")
    app_name: str = Field(default="fsplug", description="The Spark application name.")
    conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Spark settings passed through as they are (`spark.executor.memory: 4g`); keys start with "
                    "`spark.`.")
    partitions: int | None = Field(
        default=None, ge=1,
        description="Materialization: buckets of entities and tasks writing to the store (unset: one per 4M "
                    "source rows, at least one per core); training data: partitions of the point-in-time join "
                    "(unset: `spark.sql.shuffle.partitions`).")

    @field_validator("conf")
    @classmethod
    def _conf_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"Spark setting {bad[0]!r} does not start with 'spark.' (write spark.{bad[0]}); "
                             "only Spark's own settings are passed through")
        return v


class MaterializationConfig(BaseModel):
    """`materialization`: which engine runs materialization and training data, and its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str = Field(default="local", description="`local` (in this process, the default) or `spark`.")
    spark: SparkConfig = Field(default_factory=SparkConfig, description="The Spark engine's settings.")

    @field_validator("engine")
    @classmethod
    def _engine(cls, v: str) -> str:
        return check_engine(v)


class RepoConfig(BaseModel):
    """The top level of feature_store.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(description="Project name, recorded in the registry.")
    registry: str = Field(default="data/registry.json", description="Registry JSON path, relative to the repo.")
    online_store: dict[str, Any] = Field(
        default_factory=lambda: {"type": "sqlite"},
        description="Online store settings; `type` picks the store, the rest is the store's own config.",
    )
    materialization: MaterializationConfig = Field(
        default_factory=MaterializationConfig,
        description="The engine of materialization and training data (local or spark) and its settings.")

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        import re

        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", v or ""):
            raise ValueError(f"project {v!r} must start with an ASCII letter or '_', then ASCII letters, digits, "
                             "'_' and '-'")
        return v


@dataclass
class LoadedConfig:
    """A validated feature_store.yaml; `store` is the store's config model once the online layer has
    validated the `online_store` section (`fsplug.online.factory.load_config`), else None."""

    root: Path
    config: RepoConfig
    doc: YamlDoc
    store: Any = None

    @property
    def registry_path(self) -> Path:
        return resolve_repo_path(self.root, self.config.registry)


def resolve_repo_path(root: Path, path: str) -> Path:
    """A repo-relative path made absolute; relative paths may not climb out of the repo with `..`.

    An absolute path is taken as written: the user asked for it on purpose. The check is lexical,
    so a symlink the user placed inside the repo (e.g. data/ -> a big disk) is followed.
    """
    try:
        p = Path(path).expanduser()
    except RuntimeError:  # "~user" for a user this machine does not have
        raise ConfigError(f"path {path!r}: no home directory for {path.split('/')[0]!r} on this machine") from None
    if p.is_absolute():
        return p
    base = Path(os.path.abspath(root))
    full = Path(os.path.normpath(base / p))
    if not full.is_relative_to(base):
        raise ConfigError(f"path {path!r} escapes the feature repo {root}; write an absolute path to mean it")
    return full


def load_repo_config(root: Path) -> LoadedConfig:
    """Read and validate `root/feature_store.yaml` at the repo level; `online_store` is kept as written.

    The online store section is checked by the config model of the store it names, which this module
    does not know: `fsplug.online.factory.load_config` does both steps (what FeatureStore uses).
    """
    root = Path(root).resolve()
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{root} is not a feature repo: {CONFIG_FILE} not found (use --repo DIR)")
    problems: list[Problem] = []
    doc = load_yaml(path, CONFIG_FILE, problems)
    if doc is None:
        raise DefinitionError(problems)
    if not isinstance(doc.data, dict):
        raise DefinitionError([doc.problem((), f"{CONFIG_FILE} must be a mapping")])
    from fsplug.definitions import format_validation_error

    try:
        config = RepoConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise DefinitionError(
            [format_validation_error(dict(e), doc, RepoConfig) for e in exc.errors()]) from None
    try:
        resolve_repo_path(root, config.registry)
    except ConfigError as exc:
        raise DefinitionError([doc.problem(("registry",), str(exc))]) from None
    return LoadedConfig(root=root, config=config, doc=doc)
