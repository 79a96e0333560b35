"""An online store that keeps nothing, for timing a materialization engine without a store's cost.

`online_store: {type: "benchmarks.null_store:NullOnlineStore"}`. Writes are converted by the engine as
for any store (`WriteBatch.from_arrow`) and counted, then dropped; it declares writes from many
processes, so the Spark engine runs on it. The materialization state lives in memory (one process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fsplug.online.base import Capabilities, OnlineStore, StoreConfig, WriteBatch


class NullStoreConfig(StoreConfig):
    """No settings: `type` only."""


class NullOnlineStore(OnlineStore):
    """Counts the rows written and forgets them."""

    config_model = NullStoreConfig
    capabilities = Capabilities(partial_results=False, multi_process_writes=True)
    _state: dict[str, str] = {}

    def apply(self, registry: Any, diff: Any) -> list[str]:
        return []

    def write(self, batch: WriteBatch) -> int:
        return len(batch)

    def read(self, plan: Any, keys_by_group: Any, timeout_ms: float | None = None) -> list[list[Any]]:
        raise NotImplementedError("the null store keeps nothing to read")

    def teardown(self, registry: Any) -> list[str]:
        self._state.clear()
        return []

    def read_state(self, views: Sequence[str]) -> dict[str, str]:
        return {v: self._state[v] for v in views if v in self._state}

    def write_state(self, view: str, text: str) -> None:
        self._state[view] = text

    def delete_state(self, views: Sequence[str]) -> None:
        for v in views:
            self._state.pop(v, None)
