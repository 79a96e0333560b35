"""How online stores are found and configured: the store named by `online_store.type` is looked up
(`store_class`) and validates the rest of the section with its own config model (`store_config`).

Stores are registered in the entry-point group `fsplug.online_stores` (`sqlite`, `aerospike`);
`online_store.type` may also be `package.module:Class` for a store outside fsplug. This lives in the
online layer so that fsplug/config.py knows no store classes, and apart from base.py so that the
interface does not name its implementations: config.py checks the repo-level settings, this module
the store section, each problem located at its `file:line:col`.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import ValidationError

from fsplug.config import LoadedConfig, load_repo_config
from fsplug.definitions import format_validation_error
from fsplug.errors import ConfigError, DefinitionError, did_you_mean
from fsplug.online.base import OnlineStore, StoreConfig

__all__ = ["load_config", "store_config", "store_class", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "fsplug.online_stores"


def load_config(root: Path) -> LoadedConfig:
    """Read and validate `root/feature_store.yaml`, including the online store's own config (`store`)."""
    loaded = load_repo_config(root)
    return replace(loaded, store=store_config(loaded))


def store_config(loaded: LoadedConfig) -> StoreConfig:
    """The `online_store` section validated by the config model of the store it names (default sqlite).

    Raises DefinitionError located in feature_store.yaml for an unknown type or a bad setting.
    """
    doc = loaded.doc
    raw = dict(loaded.config.online_store)
    kind = raw.get("type", "sqlite")
    try:
        cls = store_class(str(kind))
    except ConfigError as exc:
        raise DefinitionError([doc.problem(("online_store", "type"), str(exc))]) from None
    raw.setdefault("type", kind)
    try:
        return cls.config_model.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionError(
            [format_validation_error(dict(e), doc, cls.config_model, prefix=("online_store",))
             for e in exc.errors()]
        ) from None


_BUILTIN = {"sqlite": "fsplug.online.sqlite:SQLiteOnlineStore",
            "aerospike": "fsplug.online.aerospike:AerospikeOnlineStore"}


def _import(target: str) -> type[OnlineStore]:
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load online store {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, OnlineStore)):
        raise ConfigError(f"{target!r} is not an fsplug OnlineStore subclass")
    return cls


def store_class(kind: str) -> type[OnlineStore]:
    """The OnlineStore class for `online_store.type` (a registered name or `package.module:Class`)."""
    if ":" in kind:
        return _import(kind)
    registered = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if kind in registered:
        try:
            cls = registered[kind].load()
        except ImportError as exc:
            raise ConfigError(f"cannot load online store {kind!r}: {exc}") from exc
        return cls
    if kind in _BUILTIN:  # running from a source tree that was not pip-installed
        return _import(_BUILTIN[kind])
    known = sorted(set(registered) | set(_BUILTIN))
    raise ConfigError(
        f"unknown online store type {kind!r}{did_you_mean(kind, known)}; known types: {', '.join(known)}, "
        "or package.module:Class for your own store"
    )
