"""What `plan` shows and `apply` does: the changes from one registry to the next.

`diff` compares the canonical definitions (`Registry.definitions()`) object by object and property by
property (a view's features are compared one by one, its source by name), and flags the changes that
make stored online data wrong (a view's entity, a feature's dtype or bin, an entity's join keys).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fsplug.registry.model import Registry

__all__ = ["Change", "RegistryDiff", "diff"]


@dataclass(frozen=True)
class Change:
    """One created, updated or deleted object; `props` lists (property, old, new) for updates."""

    action: str  # "create" | "update" | "delete"
    kind: str
    name: str
    props: tuple[tuple[str, Any, Any], ...] = ()
    invalidating: tuple[str, ...] = ()


@dataclass(frozen=True)
class RegistryDiff:
    """Every change from one registry to the next; `project` is (old, new) when the project changes."""

    changes: tuple[Change, ...]
    project: tuple[str, str] | None = None
    stale: tuple[tuple[str, str], ...] = ()
    """(entity, bin) of the new registry's online views whose stored values another definition wrote:
    the bin was not the same view's, with the same dtype, in the old registry (a view created again, a
    feature added back or moved, a dtype or bin changed, a view made online). `apply` empties them in
    the online store: they are null (the view's event time too: not found) until materialized again.
    Empty on a first apply (no old registry: nothing is known of what the store holds)."""

    def __bool__(self) -> bool:
        return bool(self.changes) or self.project is not None

    @property
    def invalidating(self) -> bool:
        return any(c.invalidating for c in self.changes)

    def invalidated_views(self, registry: Registry) -> list[str]:
        """The views of `registry` (the new one) whose stored online data these changes make wrong: a
        view whose entity, or a feature's dtype or bin, changed, and every view of an entity whose join
        keys changed (a feature that is only removed leaves the others' data right)."""
        def wrong(c: Change) -> bool:
            return any(p in c.invalidating and new is not None for p, _, new in c.props)

        views = {c.name for c in self.of("feature_views", "update") if wrong(c)}
        entities = {c.name for c in self.of("entities", "update") if wrong(c)}
        return [v.name for v in registry.feature_views.values() if v.name in views or v.entity in entities]

    def of(self, kind: str, action: str | None = None) -> list[Change]:
        return [c for c in self.changes if c.kind == kind and (action is None or c.action == action)]

    def render(self) -> str:
        """The diff as `fsplug plan` prints it."""
        from fsplug.definitions import KINDS

        if not self:
            return "No changes"
        mark = {"create": "+", "update": "~", "delete": "-"}
        word = {"create": "create", "update": "update", "delete": "delete"}
        lines = []
        if self.project is not None:
            lines.append(f"~ project: {self.project[0]} -> {self.project[1]}")
            lines.append("    ! a new project reads and writes its own sets/tables and materialization state: "
                         "materialize it; the old project's online data stays until its teardown")
        for c in self.changes:
            lines.append(f"{mark[c.action]} {word[c.action]} {KINDS[c.kind]} {c.name}")
            for prop, old, new in c.props:
                flag = ""
                if prop in c.invalidating:  # (a feature only removed leaves the view's watermark alone)
                    flag = ("   ! invalidates stored data: re-materialize this view"
                            + (" (apply resets its watermark)" if new is not None else ""))
                lines.append(f"    {prop}: {_show(old)} -> {_show(new)}{flag}")
            if c.action == "delete" and c.kind == "feature_views":
                lines.append("    ! its online data stays until `fsplug teardown`")
        n = {a: sum(1 for c in self.changes if c.action == a) for a in mark}
        lines.append(f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete"
                     + (" (some changes invalidate stored data)" if self.invalidating else ""))
        return "\n".join(lines)


def _show(v: Any) -> str:
    if v is None or v == "":
        return "(none)"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def _flatten(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if k == "name":
            continue
        if k == "features" and kind in ("feature_views", "request_sources", "derived_views"):
            for f in v:
                for fk, fv in f.items():
                    if fk != "name":
                        out[f"features.{f['name']}.{fk}"] = fv
        elif kind == "feature_views" and k == "source":
            out["source"] = v["name"]
        else:
            out[k] = v
    return out


def _invalidating(kind: str, prop: str, old: Any) -> bool:
    if kind == "feature_views":
        return prop == "entity" or (prop.startswith("features.")
                                    and prop.rsplit(".", 1)[1] in ("dtype", "bin") and old is not None)
    return kind == "entities" and prop == "join_keys"


def diff(old: Registry | None, new: Registry) -> RegistryDiff:
    """What changes from `old` (None = nothing applied yet) to `new`, in a stable order."""
    from fsplug.definitions import KINDS

    old_defs = old.definitions() if old else {k: [] for k in KINDS}
    new_defs = new.definitions()
    changes: list[Change] = []
    for kind in KINDS:
        before = {o["name"]: _flatten(kind, o) for o in old_defs.get(kind, ())}
        after = {o["name"]: _flatten(kind, o) for o in new_defs.get(kind, ())}
        for name in after:
            if name not in before:
                changes.append(Change("create", kind, name))
        for name in after:
            if name in before and before[name] != after[name]:
                props = tuple(
                    (p, before[name].get(p), after[name].get(p))
                    for p in sorted(set(before[name]) | set(after[name]))
                    if before[name].get(p) != after[name].get(p)
                )
                inval = tuple(p for p, o, _ in props if _invalidating(kind, p, o))
                changes.append(Change("update", kind, name, props, inval))
        for name in before:
            if name not in after:
                changes.append(Change("delete", kind, name))
    project = (old.project, new.project) if old is not None and old.project != new.project else None
    return RegistryDiff(tuple(changes), project, _stale(old, new) if old is not None else ())


def _writers(registry: Registry) -> dict[tuple[str, str], tuple[str, str]]:
    """(entity, bin) -> (view, dtype) of what writes each bin of the registry's online views (a view's
    event-time bin: dtype "timestamp")."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for v in registry.feature_views.values():
        if v.online:
            for f in v.features:
                out[(v.entity, f.bin)] = (v.name, str(f.dtype))
            out[(v.entity, v.timestamp_bin)] = (v.name, "timestamp")
    return out


def _stale(old: Registry, new: Registry) -> tuple[tuple[str, str], ...]:
    before = _writers(old)
    return tuple(eb for eb, w in _writers(new).items() if before.get(eb) != w)
