"""The registry: specs compiled into immutable, typed, content-hashed objects, persisted as JSON.

- model.py: the compiled objects (`Registry`, `FeatureView`, ...), `content_hash`, `timestamp_bin`;
- codec.py: their generic JSON (de)serialization, driven by the dataclass fields and type hints;
- compile.py: `compile_repo` (loaded YAML specs -> Registry, after the cross-object checks), `check_ref`;
- diff.py: `diff` and `RegistryDiff`, what `plan` shows and `apply` does;
- persist.py: `RegistryStore`, the registry file (atomic writes under a lock).
"""

from fsplug.registry.compile import check_ref, compile_repo
from fsplug.registry.diff import Change, RegistryDiff, diff
from fsplug.registry.model import (
    FORMAT_VERSION,
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    JoinKey,
    Registry,
    RequestFeature,
    RequestSource,
    DerivedFeature,
    DerivedView,
    Source,
    content_hash,
    timestamp_bin,
)
from fsplug.registry.persist import RegistryStore

__all__ = [
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
    "Change",
    "RegistryDiff",
    "compile_repo",
    "check_ref",
    "diff",
    "RegistryStore",
    "timestamp_bin",
    "content_hash",
    "FORMAT_VERSION",
]
