"""Retrieval plans (feature refs compiled against a registry) and the columnar results they produce.

A RetrievalPlan knows everything the serving path needs: per entity set the bins to select
(features plus each view's timestamp bin), and per output column its dtype, view, bin, default
and ttl. Executing a plan is one store read plus a few vectorized numpy steps: no YAML, no
registry walks, no per-value objects.
"""

from __future__ import annotations

import math
import time
from array import array as _array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from functools import cached_property
from operator import itemgetter
from typing import Any, Mapping, Sequence

import numpy as np

from fsplug.errors import did_you_mean
from fsplug.errors import EntityKeyError, ReferenceNotFoundError, RequestFeatureError, UserInputError
from fsplug.online.base import KeyList
from fsplug.registry import Registry, check_ref
from fsplug.types import DType

__all__ = ["FieldStatus", "FastVector", "OutputColumn", "ViewRead", "EntityGroup", "RetrievalPlan", "compile_plan",
           "OnlineResult"]


class _lazy:
    """Like functools.cached_property without its per-instance lock (Python 3.11 takes an RLock on
    every first access, a measurable cost on an object created per request)."""

    def __init__(self, fn: Any):
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


class FieldStatus(IntEnum):
    """Per-value status, numbered as Feast's FieldStatus."""

    INVALID = 0
    PRESENT = 1
    NULL_VALUE = 2
    NOT_FOUND = 3
    OUTSIDE_MAX_AGE = 4


# FieldStatus values as plain uint8 for the hot path (enum attribute access is slow in 3.11)
_PRESENT, _NULL_VALUE, _NOT_FOUND, _OUTSIDE_MAX_AGE = (np.uint8(s) for s in (1, 2, 3, 4))


@dataclass(frozen=True)
class OutputColumn:
    """One output column: a stored feature (group >= 0) or a request-time feature (group == -1)."""

    name: str
    ref: str
    view: str
    feature: str
    dtype: DType
    default: Any
    group: int
    bin: str | None
    bin_index: int
    view_index: int
    ttl_seconds: int | None

    @property
    def is_request(self) -> bool:
        return self.group < 0


@dataclass(frozen=True)
class ViewRead:
    """A view read within an entity group: its timestamp bin's index and its ttl in microseconds."""

    name: str
    timestamp_bin: str
    ts_index: int
    ttl_us: int  # 0 = never stale


@dataclass(frozen=True)
class EntityGroup:
    """One entity set read by a plan: the join keys and exactly the bins to select."""

    entity: str
    set_name: str
    join_keys: tuple[str, ...]
    key_dtypes: tuple[DType, ...]
    bins: tuple[str, ...]
    views: tuple[ViewRead, ...]
    numeric: bool  # every bin holds numbers: rows convert to one float matrix


@dataclass(frozen=True)
class FastVector:
    """What `RetrievalPlan.fast_values` needs, precomputed once per plan."""

    key: str
    key_type: type
    getter: Any  # row -> tuple of the stored columns' values, in plan order
    # per view: (timestamp bin index, ttl us, its columns, its NOT_FOUND bit, its OUTSIDE_MAX_AGE bit)
    views: tuple[tuple[int, int, tuple[int, ...], int, int], ...]
    combos: dict  # view state bits -> (values picker over values + defaults, statuses array), filled on use
    defaults: tuple[float, ...]  # per stored column: the value served when not PRESENT
    request: tuple[tuple[str, frozenset[type], Any], ...]  # (name, plain types, default) per request column
    perm: Any  # None, or stored-then-request order -> plan order
    empty_row: tuple[None, ...]  # the row of an entity the store does not have
    present: np.ndarray  # all PRESENT statuses (copied per call)


def _tuple_getter(indexes: list[int]) -> Any:
    if len(indexes) == 1:
        i = indexes[0]
        return lambda row: (row[i],)
    return itemgetter(*indexes)


@dataclass(frozen=True)
class RetrievalPlan:
    """An immutable, compiled answer to "which features, from where, typed how"."""

    registry_hash: str
    refs: tuple[str, ...]
    service: str | None
    full_feature_names: bool
    columns: tuple[OutputColumn, ...]
    groups: tuple[EntityGroup, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        """Every join key a request must carry, in first-use order."""
        out: list[str] = []
        for g in self.groups:
            out.extend(k for k in g.join_keys if k not in out)
        return tuple(out)

    @cached_property
    def request_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(c for c in self.columns if c.is_request)

    @cached_property
    def _defaults(self) -> np.ndarray:
        return np.array([_numeric_default(c) for c in self.columns], dtype=np.float64)

    @cached_property
    def _group_columns(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per group: output column positions, their bin indexes, and their view indexes."""
        out = []
        for gi, _ in enumerate(self.groups):
            cols = [i for i, c in enumerate(self.columns) if c.group == gi]
            out.append((
                np.array(cols, dtype=np.intp),
                np.array([self.columns[i].bin_index for i in cols], dtype=np.intp),
                np.array([self.columns[i].view_index for i in cols], dtype=np.intp),
            ))
        return tuple(out)

    @cached_property
    def _group_views(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per group: the timestamp bins' indexes and the views' ttls in us (inf = never stale)."""
        return tuple((np.array([v.ts_index for v in g.views], dtype=np.intp),
                      np.array([v.ttl_us or np.inf for v in g.views], dtype=np.float64)) for g in self.groups)

    @cached_property
    def _request_indexed(self) -> tuple[tuple[int, OutputColumn, str, frozenset[type]], ...]:
        """Per request column: position, column, name, and the Python types taken as they are."""
        return tuple((i, c, c.feature, _FAST_TYPES.get(c.dtype, frozenset()))
                     for i, c in enumerate(self.columns) if c.is_request)

    @cached_property
    def _py_defaults(self) -> tuple[Any, ...]:
        return tuple(python_default(c) for c in self.columns)

    @cached_property
    def _request_numeric(self) -> tuple[tuple[int, bool], ...]:
        return tuple((i, c.dtype.is_numeric) for i, c in enumerate(self.columns) if c.is_request)

    @cached_property
    def _vector_recipe(self) -> tuple[tuple[int, int, int, int, bool, float], ...]:
        """Per column: (group or -1, bin index, timestamp bin index, ttl us, numeric, default) for `vector`."""
        out = []
        for c in self.columns:
            if c.is_request:
                out.append((-1, -1, -1, 0, c.dtype.is_numeric, math.nan))
                continue
            v = self.groups[c.group].views[c.view_index]
            out.append((c.group, c.bin_index, v.ts_index, v.ttl_us, c.dtype.is_numeric, _numeric_default(c)))
        return tuple(out)

    def vector(self, rows: Sequence[Sequence[Any]], request_values: Mapping[int, Sequence[Any]], now_us: int,
               row_mapping: bool = False) -> tuple[list[float], list[int]]:
        """One entity's model vector and statuses from a store read of one key per group.

        The same values and statuses as `OnlineResult(...).to_numpy()[0]` / `.statuses[0]`, computed
        in plain Python: for one row that is several times cheaper than the vectorized path.
        """
        grows: list[Any] = []
        for g, r in zip(self.groups, rows):
            row = r[0]
            if row is not None and row_mapping:
                row = tuple(map(row.get, g.bins))
            grows.append(row)
        values: list[float] = []
        statuses: list[int] = []
        nan = math.nan
        for i, (gi, bi, ti, ttl, numeric, default) in enumerate(self._vector_recipe):
            if gi < 0:
                statuses.append(1)
                values.append(float(request_values[i][0]) if numeric else nan)
                continue
            row = grows[gi]
            if row is None or row[ti] is None or row[ti] != row[ti]:  # no time (or another writer's NaN)
                st = 3  # NOT_FOUND
            elif ttl and now_us - row[ti] > ttl:
                st = 4  # OUTSIDE_MAX_AGE
            else:
                v = row[bi]
                st = 2 if v is None or v != v else 1  # NULL_VALUE / PRESENT
            statuses.append(st)
            if st == 1:
                values.append(float(v) if numeric else nan)
            else:
                values.append(default)
        return values, statuses

    @cached_property
    def fast_vector(self) -> "FastVector | None":
        """The recipe of `fast_values`, for plans that read one entity set with a single join key
        and only numeric features (None for other plans: they take `vector`)."""
        if len(self.groups) != 1 or len(self.groups[0].join_keys) != 1 or not self.groups[0].numeric:
            return None
        if not all(c.dtype.is_numeric for c in self.columns):
            return None
        g = self.groups[0]
        stored = [i for i, c in enumerate(self.columns) if not c.is_request]
        request = [i for i, c in enumerate(self.columns) if c.is_request]
        order = stored + request  # where fast_values puts each column; `perm` restores plan order
        perm = None if order == sorted(order) else itemgetter(*[order.index(i) for i in range(len(order))])
        return FastVector(
            key=g.join_keys[0],
            key_type=int if g.key_dtypes[0] is DType.INT64 else str,
            getter=_tuple_getter([self.columns[i].bin_index for i in stored]),
            views=tuple((v.ts_index, v.ttl_us,
                         tuple(j for j, i in enumerate(stored) if self.columns[i].view_index == vi),
                         1 << (2 * vi), 2 << (2 * vi)) for vi, v in enumerate(g.views)),
            combos={},
            defaults=tuple(_numeric_default(self.columns[i]) for i in stored),
            request=tuple((self.columns[i].feature, _FAST_TYPES.get(self.columns[i].dtype, frozenset()),
                           self.columns[i].default) for i in request),
            perm=perm,
            empty_row=(None,) * len(g.bins),
            present=np.full(len(self.columns), _PRESENT, dtype=np.uint8),
        )

    def fast_values(self, row: Sequence[Any] | None, request: Mapping[str, Any] | None,
                    now_us: int) -> tuple[tuple[Any, ...], Sequence[int] | None] | None:
        """`vector` for one tuple row of a `fast_vector` plan, with the common case in C-level calls.

        Returns (values, statuses), statuses None meaning all PRESENT (else a sequence shared between
        calls: copy it, never modify it); or None when a request value
        is not a plain number (missing, None, numpy, wrong type): `vector` handles or refuses those.
        Gives the same values and statuses as `vector` (tested).
        """
        fast = self.fast_vector
        if fast is None:
            return None
        req: list[Any] = []
        if fast.request:
            if request is None:
                request = {}
            for name, types, default in fast.request:
                v = request.get(name, default)
                if type(v) not in types:
                    return None
                req.append(v)
        if row is None:
            row = fast.empty_row
        vals = fast.getter(row)
        if None not in vals and (total := sum(vals)) == total:  # no null, no NaN: the common case
            state = 0  # per view: two bits, NOT_FOUND or OUTSIDE_MAX_AGE
            for ti, ttl, _, missing_bit, stale_bit in fast.views:
                ts = row[ti]
                if ts is None or ts != ts:  # no time (or another writer's NaN)
                    state |= missing_bit
                elif ttl and now_us - ts > ttl:
                    state |= stale_bit
            if state:  # some views not served: their columns take defaults (a cached recipe per state)
                pick, sts = fast.combos.get(state) or self._fast_combo(state)
                vals = (*pick(vals + fast.defaults), *req)
                return (vals if fast.perm is None else fast.perm(vals)), sts
            vals = (*vals, *req)
            return (vals if fast.perm is None else fast.perm(vals)), None
        vals = list(vals)
        st = [1] * len(self.columns)
        for j, v in enumerate(vals):
            if v is None or v != v:
                vals[j] = fast.defaults[j]
                st[j] = 2  # NULL_VALUE
        for ti, ttl, idxs, _, _ in fast.views:
            ts = row[ti]
            missing = ts is None or ts != ts
            if not missing and not (ttl and now_us - ts > ttl):
                continue
            code = 3 if missing else 4  # NOT_FOUND / OUTSIDE_MAX_AGE
            for j in idxs:
                vals[j] = fast.defaults[j]
                st[j] = code
        vals = (*vals, *req)
        if fast.perm is not None:
            return fast.perm(vals), list(fast.perm(st))
        return vals, st

    def _fast_combo(self, state: int) -> tuple[Any, tuple[int, ...]]:
        """For `fast_values`: which stored values to keep or replace by defaults, and the statuses,
        when the views flagged in `state` are not served (built once per state)."""
        fast = self.fast_vector
        assert fast is not None
        n = len(fast.defaults)
        src = list(range(n))  # index into values + defaults
        st = [1] * len(self.columns)
        for _, _, idxs, missing_bit, stale_bit in fast.views:
            if state & (missing_bit | stale_bit):
                code = 3 if state & missing_bit else 4  # NOT_FOUND / OUTSIDE_MAX_AGE
                for j in idxs:
                    src[j] = n + j
                    st[j] = code
        combo = (_tuple_getter(src), np.array(fast.perm(st) if fast.perm is not None else st, dtype=np.uint8))
        fast.combos[state] = combo
        return combo

    def explain(self) -> str:
        """A readable description of what this plan reads and returns."""
        lines = [f"RetrievalPlan for {('service ' + self.service) if self.service else 'features'} "
                 f"(registry {self.registry_hash[:12]})"]
        for g in self.groups:
            keys = ", ".join(f"{k}: {d.value}" for k, d in zip(g.join_keys, g.key_dtypes))
            lines.append(f"  read entity {g.entity!r} (set/table {g.set_name!r}; keys {keys})")
            lines.append(f"    bins: {', '.join(g.bins)}")
            for v in g.views:
                ttl = "never stale" if not v.ttl_us else f"ttl {_fmt_seconds(v.ttl_us // 1_000_000)}"
                lines.append(f"    view {v.name}: timestamp bin {v.timestamp_bin}, {ttl}")
        lines.append("  output columns:")
        for i, c in enumerate(self.columns):
            src = "request" if c.is_request else f"bin {c.bin}"
            default = "" if c.default is None else f", default {c.default!r}"
            lines.append(f"    {i:>2} {c.name} {c.dtype.value} <- {c.ref} ({src}{default})")
        return "\n".join(lines)

    # ---- request handling ----------------------------------------------------------------
    def keys_by_group(self, entities: Mapping[str, Sequence[Any]], n: int) -> list[KeyList]:
        """Validated keys per entity group for a columnar request of `n` rows."""
        out = []
        for g in self.groups:
            cols = []
            for name, dtype in zip(g.join_keys, g.key_dtypes):
                if name not in entities:
                    raise EntityKeyError(
                        f"missing join key {name!r} for entity {g.entity!r}"
                        f"{did_you_mean(name, list(entities))}; the request has: {', '.join(entities) or 'nothing'}"
                    )
                cols.append(_check_keys(name, dtype, entities[name], n))
            out.append(KeyList(cols))
        return out

    def request_values(self, entities: Mapping[str, Sequence[Any]], n: int) -> dict[int, list[Any]]:
        """Validated request-time feature values by output column position."""
        out = {}
        for i, c, name, fast in self._request_indexed:
            if name in entities:
                vals = list(entities[name])
                if len(vals) != n:
                    raise RequestFeatureError(f"request feature {name!r} has {len(vals)} values for {n} rows")
                if set(map(type, vals)) <= fast:  # plain values of the right kind: as given
                    out[i] = vals
                    continue
            elif c.default is not None:
                out[i] = [c.default] * n  # checked against the dtype when the repo was compiled
                continue
            else:
                raise RequestFeatureError(
                    f"missing request feature {c.feature!r} ({c.dtype.value}) required by {c.ref}; "
                    "pass it with the entity rows"
                )
            out[i] = [_check_request_value(c, v) for v in vals]
        return out


# Python types accepted as they are for a request feature of each dtype (others go through
# _check_request_value, which also handles None, numpy scalars and integral floats for int64).
_FAST_TYPES = {
    DType.FLOAT64: frozenset({float, int}),
    DType.FLOAT32: frozenset({float, int}),
    DType.INT64: frozenset({int}),
    DType.STRING: frozenset({str}),
}


def _fmt_seconds(s: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _numeric_default(c: OutputColumn) -> float:
    if c.default is None or not c.dtype.is_numeric:
        return math.nan
    return float(c.default)


_INT64_MAX = 2**63 - 1


def _check_keys(name: str, dtype: DType, values: Sequence[Any], n: int) -> list[Any]:
    vals = values if type(values) is list else values.tolist() if isinstance(values, np.ndarray) else list(values)
    if len(vals) != n:
        raise EntityKeyError(f"join key {name!r} has {len(vals)} values for {n} rows")
    if dtype is DType.INT64:
        if set(map(type, vals)) != _INT_ONLY:  # numpy integers become ints; bools, floats, None are refused
            vals = list(vals)  # our own copy, fixed up in place
            for i, v in enumerate(vals):
                if type(v) is not int:
                    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                        vals[i] = int(v)
                    else:
                        raise EntityKeyError(f"join key {name!r} is int64; got {v!r} ({type(v).__name__})")
        try:
            _array("q", vals)  # the range check, in C
        except OverflowError:
            bad = next(v for v in vals if not -_INT64_MAX - 1 <= v <= _INT64_MAX)
            raise EntityKeyError(f"join key {name!r} is int64; {bad} is out of its range") from None
    elif vals and set(map(type, vals)) != _STR_ONLY:
        bad = next(v for v in vals if type(v) is not str)
        raise EntityKeyError(f"join key {name!r} is string; got {bad!r} ({type(bad).__name__})")
    return vals


_INT_ONLY = {int}
_STR_ONLY = {str}


def _check_request_value(c: OutputColumn, v: Any) -> Any:
    if v is None:
        if c.default is None:
            raise RequestFeatureError(f"request feature {c.feature!r} is null and has no default")
        return c.default
    if c.dtype.is_numeric:
        if isinstance(v, (int, float, np.integer, np.floating)) and not (
            isinstance(v, (bool, np.bool_)) and c.dtype is not DType.BOOL
        ):
            if c.dtype is DType.INT64 and isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise RequestFeatureError(f"request feature {c.feature!r} is int64; got {v!r}")
            return v
        raise RequestFeatureError(f"request feature {c.feature!r} is {c.dtype.value}; got {v!r} ({type(v).__name__})")
    if c.dtype is DType.STRING and not isinstance(v, str):
        raise RequestFeatureError(f"request feature {c.feature!r} is string; got {v!r} ({type(v).__name__})")
    return v


def compile_plan(
    registry: Registry,
    *,
    features: Sequence[str] | None = None,
    service: str | None = None,
    full_feature_names: bool = False,
) -> RetrievalPlan:
    """Compile feature refs (or a feature service) into a RetrievalPlan."""
    if (features is None) == (service is None):
        raise UserInputError("give exactly one of features=[...] or service=...")
    if service is not None:
        refs = registry.service(service).refs
    else:
        if isinstance(features, str):
            features = [features]
        refs = tuple(features)
        if not refs:
            raise UserInputError("features=[] is empty: name at least one 'view:feature'")
    expanded: list[tuple[str, str]] = []
    for ref in refs:
        err = check_ref(ref, registry.feature_views, registry.request_sources)
        if err:
            raise ReferenceNotFoundError(err)
        view, feat = ref.split(":")
        target = registry.feature_views.get(view) or registry.request_sources[view]
        names = [f.name for f in target.features] if feat == "*" else [feat]
        for name in names:
            if (view, name) in expanded:
                raise UserInputError(f"feature {view}:{name} is requested twice")
            expanded.append((view, name))

    groups: dict[str, dict[str, Any]] = {}
    columns: list[OutputColumn] = []
    for view, feat in expanded:
        out_name = f"{view}__{feat}" if full_feature_names else feat
        if view in registry.request_sources:
            rf = next(f for f in registry.request_sources[view].features if f.name == feat)
            columns.append(OutputColumn(out_name, f"{view}:{feat}", view, feat, rf.dtype, rf.default, -1, None, -1, -1,
                                        None))
            continue
        fv = registry.feature_views[view]
        f = fv.feature(feat)
        g = groups.setdefault(fv.entity, {"bins": [], "views": []})
        if view not in [v[0] for v in g["views"]]:
            g["views"].append((view, fv.timestamp_bin, fv.ttl_seconds))
        if f.bin not in g["bins"]:
            g["bins"].append(f.bin)
        columns.append(OutputColumn(out_name, f"{view}:{feat}", view, feat, f.dtype, f.default,
                                    list(groups).index(fv.entity), f.bin, g["bins"].index(f.bin),
                                    [v[0] for v in g["views"]].index(view), fv.ttl_seconds))
    seen: dict[str, str] = {}
    for c in columns:
        if c.name in seen:
            raise UserInputError(
                f"output name {c.name!r} comes from both {seen[c.name]} and {c.ref}; "
                "use full_feature_names=True (view__feature names)"
            )
        seen[c.name] = c.ref
    built: list[EntityGroup] = []
    for entity, g in groups.items():
        ent = registry.entity(entity)
        bins = list(g["bins"])
        views = []
        for name, ts_bin, ttl in g["views"]:
            views.append(ViewRead(name, ts_bin, len(bins), (ttl or 0) * 1_000_000))
            bins.append(ts_bin)
        numeric = all(c.dtype.is_numeric for c in columns if c.group == len(built))
        built.append(EntityGroup(entity, entity, tuple(k.name for k in ent.join_keys),
                                 tuple(k.dtype for k in ent.join_keys), tuple(bins), tuple(views), numeric))
    return RetrievalPlan(registry.hash, tuple(refs), service, full_feature_names, tuple(columns), tuple(built))


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000


class OnlineResult:
    """Columnar result of one online read: values, per-value statuses and event timestamps.

    Conversions are computed on first use from the raw rows the store returned, so a caller
    that only needs `to_numpy()` pays for nothing else.
    """

    def __init__(self, plan: RetrievalPlan, rows: list[list[Any]], request_values: dict[int, list[Any]],
                 n: int, now_us: int, row_mapping: bool = False, errors: list[Any] | None = None):
        self.plan = plan
        self._rows = rows
        self._request = request_values
        self.n = n
        self.now_us = now_us
        self._mapping = row_mapping
        self.errors = errors  # per-group lists of per-entity exceptions (partial results), or None

    # ---- raw matrices -----------------------------------------------------------------
    @_lazy
    def _tuples(self) -> list[list[tuple[Any, ...]]]:
        out = []
        for g, rows in zip(self.plan.groups, self._rows):
            if self._mapping:
                bins = g.bins
                empty = (None,) * len(bins)
                out.append([tuple(map(r.get, bins)) if r is not None else empty for r in rows])
            else:
                empty = (None,) * len(g.bins)
                out.append([r if r is not None else empty for r in rows])
        return out

    @_lazy
    def _matrices(self) -> list[np.ndarray]:
        """Per group: an (n, bins) float matrix (NaN = null) of the numeric bins and timestamps."""
        mats = []
        for gi, (g, rows) in enumerate(zip(self.plan.groups, self._tuples)):
            if g.numeric:
                mats.append(np.array(rows, dtype=np.float64).reshape(len(rows), len(g.bins)))
            else:
                m = np.full((len(rows), len(g.bins)), np.nan)
                numeric_idx = {c.bin_index for c in self.plan.columns if c.group == gi and c.dtype.is_numeric}
                numeric_idx |= {v.ts_index for v in g.views}
                for j in numeric_idx:
                    m[:, j] = np.array([r[j] for r in rows], dtype=np.float64)
                mats.append(m)
        return mats

    @_lazy
    def statuses(self) -> np.ndarray:
        """(n, columns) uint8 array of FieldStatus values."""
        plan = self.plan
        st = np.full((self.n, len(plan.columns)), _PRESENT, dtype=np.uint8)
        for gi, g in enumerate(plan.groups):
            cols, bin_idx, view_idx = plan._group_columns[gi]
            if not len(cols):
                continue
            m = self._matrices[gi]
            ts_idx, ttl = plan._group_views[gi]
            ts = m[:, ts_idx]  # (n, views); NaN = the view never wrote this entity
            missing = np.isnan(ts)
            stale = (self.now_us - ts) > ttl  # False where ts is NaN
            if g.numeric:
                null = np.isnan(m[:, bin_idx])
            else:
                rows = self._tuples[gi]
                null = np.array([[v is None or v != v for v in map(r.__getitem__, bin_idx)] for r in rows],
                                dtype=bool).reshape(len(rows), -1)  # None, or a NaN float
            s = null.astype(np.uint8)
            s += _PRESENT  # PRESENT (1) or NULL_VALUE (2)
            s[stale[:, view_idx]] = _OUTSIDE_MAX_AGE
            s[missing[:, view_idx]] = _NOT_FOUND
            st[:, cols] = s
        return st

    def to_numpy(self, fill_defaults: bool = True) -> np.ndarray:
        """(n, columns) float64 matrix in plan order, for models.

        Values that are not PRESENT get the feature's declared default (NaN without one) when
        `fill_defaults`, else NaN. Non-numeric features are NaN: models take numbers.
        """
        plan = self.plan
        out = np.empty((self.n, len(plan.columns)))
        for gi, g in enumerate(plan.groups):
            cols, bin_idx, view_idx = plan._group_columns[gi]
            if not len(cols):
                continue
            m = self._matrices[gi]
            vals = m[:, bin_idx]
            if g.numeric and "statuses" not in self.__dict__:
                # served = the view wrote the entity within its ttl (NaN compares False) and the
                # value is not null: the PRESENT mask without computing every status code
                ts_idx, ttl = plan._group_views[gi]
                ok = ((self.now_us - m[:, ts_idx]) <= ttl)[:, view_idx]
                ok &= vals == vals
            else:
                ok = self.statuses[:, cols] == _PRESENT
            out[:, cols] = np.where(ok, vals, plan._defaults[cols] if fill_defaults else np.nan)
        for i, numeric in plan._request_numeric:
            out[:, i] = self._request[i] if numeric else np.nan
        return out

    @_lazy
    def columns(self) -> dict[str, np.ndarray]:
        """Typed arrays per output column; non-PRESENT values hold the default (or the dtype's null)."""
        out: dict[str, np.ndarray] = {}
        st = self.statuses
        for i, c in enumerate(self.plan.columns):
            if c.is_request:
                raw = self._request[i]
            else:
                raw = [r[c.bin_index] for r in self._tuples[c.group]]
            ok = st[:, i] == FieldStatus.PRESENT
            out[c.name] = _typed(c, raw, ok)
        return out

    @_lazy
    def event_timestamps(self) -> dict[str, np.ndarray]:
        """Per view: datetime64[us] event time of the values returned (NaT when not found)."""
        out = {}
        for gi, g in enumerate(self.plan.groups):
            for v in g.views:
                ts = self._matrices[gi][:, v.ts_index]
                arr = np.full(self.n, np.datetime64("NaT"), dtype="datetime64[us]")
                ok = ~np.isnan(ts)
                arr[ok] = ts[ok].astype(np.int64).astype("datetime64[us]")
                out[v.name] = arr
        return out

    def status_names(self) -> dict[str, list[str]]:
        return {c.name: [FieldStatus(s).name for s in self.statuses[:, i]] for i, c in enumerate(self.plan.columns)}

    @_lazy
    def _bins_and_unserved(self) -> list[tuple[list[tuple[Any, ...]], list[list[int]]]]:
        """Per group: the rows transposed (one tuple per bin) and, per view, the rows it does not
        serve (no event time: never written; or older than its ttl), computed without numpy."""
        out = []
        now = self.now_us
        for g, rows in zip(self.plan.groups, self._tuples):
            cols = list(zip(*rows))
            unserved = []
            for v in g.views:
                ts = cols[v.ts_index]
                if v.ttl_us:  # stale: now - ts > ttl; a NaN time (another writer's) is no time
                    oldest = now - v.ttl_us
                    unserved.append([i for i, t in enumerate(ts) if t is None or not t >= oldest])
                else:
                    unserved.append([i for i, t in enumerate(ts) if t is None or t != t])
            out.append((cols, unserved))
        return out

    def to_dict(self, include_statuses: bool = False) -> dict[str, list[Any]]:
        """Plain Python lists per output column: non-PRESENT values are the default, or None without one."""
        plan = self.plan
        groups = self._bins_and_unserved
        out: dict[str, list[Any]] = {}
        for i, c in enumerate(plan.columns):
            if c.is_request:
                out[c.name] = list(self._request[i])
                continue
            cols, unserved = groups[c.group]
            skip = unserved[c.view_index]
            fill = plan._py_defaults[i]
            if len(skip) == self.n:  # the view serves no row
                out[c.name] = [fill] * self.n
                continue
            vals = list(cols[c.bin_index])
            nulls = None in vals or (c.dtype in _NUMBERS and _has_nan(vals))  # NULL_VALUE: None or NaN
            if nulls:
                vals = [None if v is None or v != v else v for v in vals]
            conv = _TO_PYTHON.get(c.dtype)
            if conv is not None:
                vals = [None if v is None else conv(v) for v in vals]
            if nulls and fill is not None:
                vals = [fill if v is None else v for v in vals]
            for j in skip:  # NOT_FOUND / OUTSIDE_MAX_AGE: the default
                vals[j] = fill
            out[c.name] = vals
        if include_statuses:
            for c, names in self.status_names().items():
                out[f"{c}__status"] = names
        return out

    def to_arrow(self) -> Any:
        """A pyarrow Table: one column per feature (nulls where not PRESENT and no default)."""
        import pyarrow as pa

        data = self.to_dict()
        return pa.table({c.name: pa.array(data[c.name], type=c.dtype.arrow_type()) for c in self.plan.columns})

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"OnlineResult({self.n} rows x {len(self.plan.columns)} columns)"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# dtypes stored as numbers, where another writer's NaN can appear (and means NULL_VALUE)
_NUMBERS = frozenset({DType.INT64, DType.FLOAT64, DType.FLOAT32, DType.BOOL, DType.TIMESTAMP})


def _has_nan(vals: list[Any]) -> bool:
    """Whether a list of numbers (no None) holds a NaN; a C-level sum first, a loop only if it says so."""
    total = sum(vals)
    return total != total and any(v != v for v in vals)


def _float_list(v: Any) -> list[float]:
    if isinstance(v, (bytes, bytearray)):
        return np.frombuffer(v, dtype="<f8").tolist()
    return [float(x) for x in v]


# Stored value (as a store returns it) -> the Python value of the dtype, where they differ.
_TO_PYTHON: dict[DType, Any] = {
    DType.BOOL: bool,
    DType.FLOAT32: lambda v: float(np.float32(v)),
    DType.TIMESTAMP: lambda v: _EPOCH + timedelta(microseconds=int(v)),
    DType.BYTES: bytes,
    DType.FLOAT64_LIST: _float_list,
}


def python_default(c: OutputColumn) -> Any:
    """A column's declared default as the Python value `to_dict` serves (None without one)."""
    if c.default is None:
        return None
    if c.dtype is DType.TIMESTAMP:
        t = datetime.fromisoformat(c.default)
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    if c.dtype is DType.BYTES:
        return c.default.encode()
    return c.default


def _typed(c: OutputColumn, raw: list[Any], ok: np.ndarray) -> np.ndarray:
    dtype = c.dtype
    default = c.default
    if dtype is DType.TIMESTAMP:
        arr = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[us]")
        for i, v in enumerate(raw):
            if ok[i] and v is not None:
                arr[i] = np.datetime64(int(v), "us")
            elif default is not None:
                arr[i] = np.datetime64(datetime.fromisoformat(default).replace(tzinfo=None), "us")
        return arr
    if dtype.is_numeric:
        fill = default if default is not None else (np.nan if dtype in (DType.FLOAT64, DType.FLOAT32) else 0)
        vals = [v if (k and v is not None) else fill for v, k in zip(raw, ok)]
        return np.array(vals, dtype=dtype.numpy_dtype)
    arr = np.empty(len(raw), dtype=object)
    for i, v in enumerate(raw):
        if ok[i] and v is not None:
            if dtype is DType.FLOAT64_LIST and not isinstance(v, np.ndarray):
                v = np.frombuffer(v, dtype="<f8").copy() if isinstance(v, (bytes, bytearray)) else np.asarray(v, float)
            arr[i] = v
        elif default is not None:
            arr[i] = default.encode() if dtype is DType.BYTES else default
        else:
            arr[i] = None
    return arr
