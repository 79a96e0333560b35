"""The online store interface: a small ABC, its capabilities and the data passed to it.

Stores are found by `fsplug.online.factory.store_class` (entry points, or `package.module:Class`).
A store module must not import its driver at import time: only `connect()` does, so `import fsplug`
and config validation work without the driver installed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from fsplug.request import KeyList

if TYPE_CHECKING:
    import numpy as np

    from fsplug.plan import RetrievalPlan
    from fsplug.registry import FeatureView, Registry, RegistryDiff

__all__ = ["OnlineStore", "StoreConfig", "Capabilities", "WriteBatch", "flat_keys"]


class StoreConfig(BaseModel):
    """Base of every store's config model: `type` plus the store's own documented fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


@dataclass(frozen=True)
class Capabilities:
    """What a store can do, so callers and the conformance suite need no isinstance checks."""

    partial_results: bool
    """A read can report per-entity errors (e.g. a dead node) instead of failing the batch
    (`read_partial`); `get_online_features(partial_results=True)` is refused by a store without it."""
    multi_process_writes: bool = False
    """Many processes on many hosts may write at once, each through its own store object built from the
    config (a server such as Aerospike). The Spark engine writes from its executors and refuses a store
    without it (SQLite: one file on one host, one writer at a time)."""


@dataclass(frozen=True)
class WriteBatch:
    """Rows of one feature view to write: keys, event timestamps (us, UTC) and one column per feature.

    `keys` holds one sequence per join key (named by `key_names`); `columns` is aligned to
    `view.features` and holds Python values (None = null) or numpy arrays, already checked
    against the declared dtypes.
    """

    view: FeatureView
    key_names: tuple[str, ...]
    keys: Sequence[Sequence[Any]]
    event_ts_us: np.ndarray
    columns: Sequence[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.event_ts_us)

    @classmethod
    def from_arrow(cls, view: FeatureView, key_names: Sequence[str], batch: Any) -> WriteBatch:
        """The rows of an Arrow batch holding the join keys, the view's timestamp field as
        timestamp[us, UTC] and its feature columns (by source column name) cast to their dtypes."""
        import pyarrow as pa

        from fsplug.types import DType

        keys = [batch.column(k).to_pylist() for k in key_names]
        ts = batch.column(view.source.timestamp_field).cast(pa.int64()).to_numpy(zero_copy_only=False)
        cols = []
        for f in view.features:
            arr = batch.column(f.column)
            if f.dtype in (DType.INT64, DType.FLOAT64, DType.FLOAT32) and arr.null_count == 0:
                cols.append(arr.to_numpy(zero_copy_only=False))
            elif f.dtype is DType.TIMESTAMP:
                cols.append(arr.cast(pa.int64()).to_pylist())
            else:
                cols.append(arr.to_pylist())
        return cls(view, tuple(key_names), keys, ts, cols)


def flat_keys(keys: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Key values key after key, from a KeyList or any sequence of key tuples."""
    return keys.flat() if type(keys) is KeyList else list(chain.from_iterable(keys))


class OnlineStore(ABC):
    """An online store: holds the latest feature values per entity for key-based batch reads."""

    config_model: ClassVar[type[StoreConfig]]
    capabilities: ClassVar[Capabilities]

    def __init__(self, config: StoreConfig, repo_root: Path, project: str):
        self.config = config
        self.repo_root = repo_root
        self.project = project
        """The project whose data this store object reads and writes; other projects' data on the
        same database or namespace is never touched."""

    @staticmethod
    def default_name(project: str, entity: str) -> str:
        """The set / table of an entity's records: `<project>-<entity>`.

        Project names may hold '-', entity names may not, so no two (project, entity) pairs
        share a name.
        """
        return f"{project}-{entity}"

    @staticmethod
    def is_default_name(project: str, name: str) -> bool:
        """Whether `name` is `default_name(project, e)` for some entity e: how teardown finds the
        sets / tables of the project's entities that a later apply deleted (their data stays)."""
        entity = name.removeprefix(f"{project}-")
        return entity != name and entity != "" and "-" not in entity

    def location(self, entity: str) -> str:
        """Where this store keeps an entity's records, for people (`fsplug plan --service`)."""
        return f"set/table {self.default_name(self.project, entity)!r}"

    def address(self) -> str:
        """Where this store is, for people (the console's overview): never a credential."""
        return f"{self.config.type} store"

    def entity_name_problems(self, entities: Sequence[str]) -> dict[str, str]:
        """Entity -> why its set/table name is not acceptable to this store (checked at apply)."""
        return {}

    @abstractmethod
    def apply(self, registry: Registry, diff: RegistryDiff) -> list[str]:
        """Create or update what the registry needs (tables, columns, namespace checks).

        Returns human-readable lines describing what was done.
        """

    @abstractmethod
    def write(self, batch: WriteBatch) -> int:
        """Upsert one feature view's rows; never touches other views' values of the same entity.

        Returns the number of rows written (rows whose stored event is newer are skipped and
        not counted). Raises a StoreError subclass on failure.
        """

    @abstractmethod
    def read(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
             timeout_ms: float | None = None) -> list[list[Any]]:
        """Read every entity group of `plan` for its keys, in one call to the store where it can.

        `timeout_ms` caps this call (StoreTimeoutError past it); None uses the store's configured budget.

        `keys_by_group[i]` holds the key tuples of `plan.groups[i]` (a KeyList, or any sequence of
        tuples). Returns, per group, one row per key in key order: None (or a tuple of Nones) when the
        entity has no record, else a tuple aligned to `group.bins` (None for nulls).
        """

    def read_one(self, plan: RetrievalPlan, key: tuple[Any, ...], timeout_ms: float | None = None) -> Any:
        """The row of one key of a single-group plan (get_feature_vector's path): None or a tuple aligned
        to the group's bins.

        Stores override it where one key can be read more cheaply than through `read`.
        """
        return self.read(plan, [[key]], timeout_ms)[0][0]

    def read_partial(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
                     timeout_ms: float | None = None) -> tuple[list[list[Any]], list[list[Any]]]:
        """Like `read`, plus per-group lists of per-key errors (None = fine); a failed key's row is None.

        Only for stores whose `capabilities.partial_results` is True.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support partial results")

    @abstractmethod
    def teardown(self, registry: Registry) -> list[str]:
        """Remove everything this store holds for the project: the registry's entities' records, those
        of entities an earlier apply deleted (`is_default_name`) and the project's materialization
        state. Done when it returns (every node agrees)."""

    @abstractmethod
    def read_state(self, views: Sequence[str]) -> dict[str, str]:
        """The stored materialization state (JSON text) of each of this project's `views` that has one."""

    @abstractmethod
    def write_state(self, view: str, text: str) -> None:
        """Store one view's materialization state (JSON text), replacing the previous one."""

    @abstractmethod
    def delete_state(self, views: Sequence[str]) -> None:
        """Forget the materialization state of `views` (a view deleted from the registry)."""

    def connect(self) -> None:  # noqa: B027 - optional: a store without connections does nothing
        """Open connections now instead of on the first call (a warm-up for servers); optional."""

    def close(self) -> None:  # noqa: B027 - optional: a store without connections does nothing
        """Release connections; the store may not be used afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
