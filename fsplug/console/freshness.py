"""Each view's freshness for the console: its materialization state read against its ttl.

A view is stale when now minus the newest event time materialized into the store is more than
its ttl: every value it serves then comes back OUTSIDE_MAX_AGE (with the feature's default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fsplug.registry import Registry
    from fsplug.state import LastRun, ViewState

__all__ = ["ViewFreshness", "freshness", "STALE", "FRESH", "NEVER", "OFFLINE", "NO_TTL"]

STALE = "stale"
"""The newest event materialized is older than the view's ttl."""
FRESH = "fresh"
"""The newest event materialized is within the view's ttl."""
NO_TTL = "no ttl"
"""Materialized, and the view has no ttl: never stale."""
NEVER = "never materialized"
"""No materialization state in the store (nothing written yet, or a new / torn-down store)."""
OFFLINE = "offline only"
"""`online: false`: the view is never written to the online store."""


@dataclass(frozen=True)
class ViewFreshness:
    """One view's materialization state and what it means against the view's ttl."""

    view: str
    entity: str
    ttl_seconds: int | None
    status: str
    watermark: datetime | None
    newest_event: datetime | None
    age_seconds: float | None
    """Now minus `newest_event` (None when nothing was materialized)."""
    last_run: LastRun | None

    @property
    def stale(self) -> bool:
        return self.status == STALE


def freshness(registry: Registry, states: dict[str, ViewState], now: datetime,
              views: list[str] | None = None) -> list[ViewFreshness]:
    """Every view of `registry` (or of `views`), in declaration order, with its state judged at `now`.

    Args:
        registry: the registry served.
        states: view -> ViewState as the store keeps them (`FeatureStore.materialization_state()`).
        now: an aware datetime (UTC).
        views: only these views (default: all).
    """
    out = []
    chosen = registry.feature_views.values() if views is None else [registry.feature_views[v] for v in views]
    for view in chosen:
        st = states.get(view.name)
        newest = st.newest_event if st is not None else None
        age = None if newest is None else (now - newest).total_seconds()
        if not view.online:
            status = OFFLINE
        elif st is None:
            status = NEVER
        elif view.ttl_seconds is None:
            status = NO_TTL
        elif age is None or age > view.ttl_seconds:
            status = STALE  # materialized, but no event at all or none within the ttl
        else:
            status = FRESH
        out.append(ViewFreshness(view.name, view.entity, view.ttl_seconds, status,
                                 st.watermark if st is not None else None, newest, age,
                                 st.last_run if st is not None else None))
    return out
