"""The registry: specs compiled into immutable, typed, content-hashed objects, persisted as JSON.

- model.py: the compiled objects (`Registry`, `FeatureView`, ...), `content_hash`, `timestamp_bin`;
- codec.py: their generic JSON (de)serialization, driven by the dataclass fields and type hints;
- compile.py: `compile_repo` (loaded YAML specs -> Registry, after the cross-object checks), `check_ref`;
- diff.py: `diff` and `RegistryDiff`, what `plan` shows and `apply` does;
- persist.py: `RegistryStore`, the registry file (atomic writes under a lock).

The compiler's names load with compile.py on first use (PEP 562), and the other modules import the
definitions' pydantic models and the YAML loader only in the functions that need them: a process that only
unpickles the registry's objects (a Spark worker, a view in each task) does not import them.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from fsplug.registry.compile import check_ref, compile_repo

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


def __getattr__(name: str) -> Any:
    """`compile_repo` and `check_ref`, from compile.py, loaded on first use (PEP 562)."""
    if name not in ("compile_repo", "check_ref"):
        raise AttributeError(f"module 'fsplug.registry' has no attribute {name!r}")
    from fsplug.registry import compile as compiler

    value = getattr(compiler, name)
    globals()[name] = value
    return value
