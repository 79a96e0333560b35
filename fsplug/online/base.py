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
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np

    from fsplug.plan import RetrievalPlan
    from fsplug.registry import FeatureView, Registry, RegistryDiff

__all__ = ["OnlineStore", "StoreConfig", "Capabilities", "WriteBatch", "KeyList", "flat_keys"]


class StoreConfig(BaseModel):
    """Base of every store's config model: `type` plus the store's own documented fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


@dataclass(frozen=True)
class Capabilities:
    """What a store can do, so callers and the conformance suite need no isinstance checks."""

    max_read_batch: int
    """Entity keys per read call; larger requests are split into chunks of this size."""
    conditional_writes: bool
    """Writes never replace a newer event with an older one (checked by the store itself)."""
    record_ttl: bool
    """Records can expire on the server (Aerospike record TTL)."""
    partial_results: bool
    """A read can report per-entity errors (e.g. a dead node) instead of failing the batch."""


@dataclass(frozen=True)
class WriteBatch:
    """Rows of one feature view to write: keys, event timestamps (us, UTC) and one column per feature.

    `keys` holds one sequence per join key (named by `key_names`); `columns` is aligned to
    `view.features` and holds Python values (None = null) or numpy arrays, already checked
    against the declared dtypes.
    """

    view: "FeatureView"
    key_names: tuple[str, ...]
    keys: Sequence[Sequence[Any]]
    event_ts_us: "np.ndarray"
    columns: Sequence[Sequence[Any]]

    def __len__(self) -> int:
        return len(self.event_ts_us)


class KeyList(Sequence[tuple[Any, ...]]):
    """The key tuples of one entity group, held as columns (one list per join key).

    It is a sequence of tuples like any other, so a store may simply iterate it; `columns` and
    `flat()` give stores the keys without building a tuple per key.
    """

    __slots__ = ("columns",)

    def __init__(self, columns: Sequence[Sequence[Any]]):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return KeyList([c[i] for c in self.columns])
        return tuple(c[i] for c in self.columns)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"KeyList({list(self)!r})"

    def flat(self) -> list[Any]:
        """Every key's values, key after key (as one statement binds them)."""
        cols = self.columns
        return list(cols[0]) if len(cols) == 1 else list(chain.from_iterable(zip(*cols)))


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

    def entity_name_problems(self, entities: Sequence[str]) -> dict[str, str]:
        """Entity -> why its set/table name is not acceptable to this store (checked at apply)."""
        return {}

    @abstractmethod
    def apply(self, registry: "Registry", diff: "RegistryDiff") -> list[str]:
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
    def read(self, plan: "RetrievalPlan", keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
             timeout_ms: int | None = None) -> list[list[Any]]:
        """Read every entity group of `plan` for its keys, in one call to the store where it can.

        `timeout_ms` caps this call (StoreTimeoutError past it); None uses the store's configured budget.

        `keys_by_group[i]` holds the key tuples of `plan.groups[i]` (a KeyList, or any sequence of
        tuples). Returns, per group, one row per key in key order: None (or a tuple of Nones) when the
        entity has no record, else a tuple aligned to `group.bins` (None for nulls) or, when
        `row_mapping` is True, a mapping bin -> value (missing = null).
        """

    def read_one(self, plan: "RetrievalPlan", key: tuple[Any, ...], timeout_ms: int | None = None) -> Any:
        """The row of one key of a single-group plan (get_feature_vector's path): None or a tuple aligned
        to the group's bins, also for stores whose `read` returns mappings.

        Stores override it where one key can be read more cheaply than through `read`.
        """
        row = self.read(plan, [[key]], timeout_ms)[0][0]
        if self.row_mapping and row is not None:
            row = tuple(map(row.get, plan.groups[0].bins))
        return row

    def read_partial(self, plan: "RetrievalPlan", keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
                     timeout_ms: int | None = None) -> tuple[list[list[Any]], list[list[Any]]]:
        """Like `read`, plus per-group lists of per-key errors (None = fine); a failed key's row is None.

        Only for stores whose `capabilities.partial_results` is True.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support partial results")

    row_mapping: ClassVar[bool] = False
    """True when `read` returns mappings bin -> value instead of tuples."""

    @abstractmethod
    def teardown(self, registry: "Registry") -> list[str]:
        """Remove everything this store holds for the project: the registry's entities' records and
        the project's materialization state. Done when it returns (every node agrees)."""

    @abstractmethod
    def read_state(self, views: Sequence[str]) -> dict[str, str]:
        """The stored materialization state (JSON text) of each of this project's `views` that has one."""

    @abstractmethod
    def write_state(self, view: str, text: str) -> None:
        """Store one view's materialization state (JSON text), replacing the previous one."""

    @abstractmethod
    def delete_state(self, views: Sequence[str]) -> None:
        """Forget the materialization state of `views` (a view deleted from the registry)."""

    def connect(self) -> None:
        """Open connections now instead of on the first call (a warm-up for servers); optional."""

    def close(self) -> None:
        """Release connections; the store may not be used afterwards."""

    def __enter__(self) -> "OnlineStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
