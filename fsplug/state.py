"""Materialization state: per feature view, its watermark and last run, kept in the online store.

State lives with the data it describes: each online store keeps one small record per (project,
view) (an Aerospike record in the `state_set`, a row of SQLite's `fsplug_state` table), written
only after that view's writes of a run succeeded. So a new, switched or torn-down store starts
from the beginning by itself, and every checkout or host that shares a store sees one state.
Stores persist the JSON text this module produces and know nothing of its fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fsplug.errors import StoreError
from fsplug.types import as_utc

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fsplug.online.base import OnlineStore

__all__ = ["LastRun", "ViewState", "load_states", "save_state", "MAX_CLOCK_SKEW"]

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far past this host's clock a materialization END may lie (clocks of hosts differ a little);
a later END is refused: it would move the watermark past data that does not exist yet."""


@dataclass(frozen=True)
class LastRun:
    """What the last successful run of a view did."""

    start: datetime | None
    end: datetime
    finished_at: datetime
    rows_read: int
    entities: int
    written: int
    seconds: float


@dataclass(frozen=True)
class ViewState:
    """Materialization state of one view.

    `watermark` is the END of the last successful run (the next incremental run starts there);
    `newest_event` the newest event time any run wrote (how fresh the served values can be).
    """

    watermark: datetime | None = None
    newest_event: datetime | None = None
    last_run: LastRun | None = None

    def to_json(self) -> str:
        """The text a store keeps for this state."""
        return json.dumps(_encode(asdict(self)), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ViewState:
        """Parse a stored state; raises StoreError for text this version cannot read."""
        try:
            data = json.loads(text)
            run = data.get("last_run")
            return cls(
                watermark=_time(data.get("watermark")),
                newest_event=_time(data.get("newest_event")),
                last_run=None if run is None else LastRun(
                    start=_time(run["start"]), end=_time(run["end"]), finished_at=_time(run["finished_at"]),
                    rows_read=int(run["rows_read"]), entities=int(run["entities"]), written=int(run["written"]),
                    seconds=float(run["seconds"])),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"unreadable materialization state {text[:80]!r}: {exc}") from exc

    def after_run(self, run: LastRun, newest_event: datetime | None, *, rewind: bool) -> ViewState:
        """The state once `run` succeeded: the watermark moves to its end (never backwards unless
        `rewind`), the newest event time to the newest one seen."""
        mark = run.end if rewind or self.watermark is None else max(self.watermark, run.end)
        newest = self.newest_event
        if newest_event is not None and (newest is None or newest_event > newest):
            newest = newest_event
        return replace(self, watermark=mark, newest_event=newest, last_run=run)


def _encode(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    return obj


def _time(text: Any) -> Any:
    if text is None:
        return None
    t = datetime.fromisoformat(text)
    return as_utc(t)


def load_states(store: OnlineStore, views: Iterable[str]) -> dict[str, ViewState]:
    """The stored state of each of `views` that has one (a view never materialized has none)."""
    return {v: ViewState.from_json(text) for v, text in store.read_state(list(views)).items()}


def save_state(store: OnlineStore, view: str, state: ViewState) -> None:
    """Store one view's state (called only after the view's writes succeeded)."""
    store.write_state(view, state.to_json())
