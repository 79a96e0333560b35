"""What one console page is rendered from: the served registry, the store, and indexes built once per registry.

`RegistryIndex` holds what list pages and search need and a registry does not keep (the services
reading each view, each object's searchable text); it is built once per registry hash, so pages of
a registry with hundreds of views do not walk every service for every view on every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fsplug.registry import Registry
    from fsplug.state import ViewState

__all__ = ["RegistryIndex", "PageContext", "KIND_PATHS"]

KIND_PATHS = {"entity": "entities", "source": "sources", "request source": "sources",
              "feature view": "views", "feature service": "services"}
"""The URL path (under /ui/) of each kind of object's pages."""


def _tags(tags: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in tags)


class RegistryIndex:
    """Reverse links and search text of one registry (built once per registry hash)."""

    def __init__(self, registry: Registry):
        self.hash = registry.hash
        self.services_of_view: dict[str, list[str]] = {}
        self.views_of_entity: dict[str, list[str]] = {}
        self.views_of_source: dict[str, list[str]] = {}
        self.features = sum(len(v.features) for v in registry.feature_views.values())
        for s in registry.feature_services.values():
            for view in dict.fromkeys(r.split(":")[0] for r in s.refs):
                self.services_of_view.setdefault(view, []).append(s.name)
        for v in registry.feature_views.values():
            self.views_of_entity.setdefault(v.entity, []).append(v.name)
            self.views_of_source.setdefault(v.source.name, []).append(v.name)
        self.text: list[tuple[str, str, str]] = []  # (kind, name, lower-case searchable text)
        for e in registry.entities.values():
            keys = " ".join(k.name for k in e.join_keys)
            self.text.append(("entity", e.name, f"{e.name} {keys} {e.description}".lower()))
        for src in registry.sources.values():
            self.text.append(("source", src.name, f"{src.name} {src.location} {src.description}".lower()))
        for r in registry.request_sources.values():
            feats = " ".join(f"{f.name} {f.description}" for f in r.features)
            self.text.append(("request source", r.name, f"{r.name} {r.description} {feats}".lower()))
        for v in registry.feature_views.values():
            feats = " ".join(f"{f.name} {f.bin} {f.description}" for f in v.features)
            self.text.append(("feature view", v.name, f"{v.name} {v.entity} {v.source.name} {v.owner} "
                              f"{_tags(v.tags)} {v.description} {feats}".lower()))
        for s in registry.feature_services.values():
            self.text.append(("feature service", s.name, f"{s.name} {s.owner} {_tags(s.tags)} {s.description} "
                              f"{' '.join(s.refs)}".lower()))

    def search(self, query: str, kind: str | None = None) -> list[tuple[str, str]]:
        """(kind, name) of the objects whose text holds every word of `query` (case-insensitive)."""
        words = query.lower().split()
        return [(k, n) for k, n, text in self.text
                if (kind is None or k == kind) and all(w in text for w in words)]

    def matches(self, query: str, kind: str) -> set[str] | None:
        """Names of `kind` matching `query`; None when the query is empty (everything matches)."""
        if not query.strip():
            return None
        return {n for _, n in self.search(query, kind)}


@dataclass
class PageContext:
    """Everything a page reads, fixed for the request: one registry, one `now`."""

    registry: Registry
    index: RegistryIndex
    store: Any
    """The server's FeatureStore (read only: registry plans, materialization state, store location)."""
    now: datetime
    query: dict[str, str] = field(default_factory=dict)
    _states: dict[str, ViewState] | None = None

    def states(self) -> dict[str, ViewState]:
        """Each view's materialization state, read from the store once per page."""
        if self._states is None:
            self._states = self.store.materialization_state()
        return self._states

    def q(self, name: str, default: str = "") -> str:
        """A query-string parameter of the request."""
        return self.query.get(name, default)
