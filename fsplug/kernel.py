"""The serving kernel: the one place where stored rows become values, statuses and defaults.

A `Kernel` is compiled with a retrieval plan from plain column and view specifications. Every
output of an online read derives from it: the one-entity vector (`vector`, and `fast_values`, its
common case in C-level calls), and the vectorized forms `OnlineResult` serves (status codes, the
float matrix, Python lists, typed arrays, event times).

The rule, per stored value: its view has no record or no (or a NaN) event time -> NOT_FOUND; the
event time is older than the view's ttl (now - ts > ttl) -> OUTSIDE_MAX_AGE; the value is None or
NaN -> NULL_VALUE; else PRESENT. A value that is not PRESENT is served as the column's default
(None / NaN / the dtype's null without one). A ttl of `NEVER_STALE` (infinity) never expires.
Request-time values are PRESENT as given.

Stores hand back rows as tuples aligned to the group's bins (None for a null or a missing
entity); a missing entity may also be None or a tuple of Nones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fsplug.errors import UserInputError
from fsplug.request import PLAIN_TYPES
from fsplug.types import EPOCH, DType, as_utc

__all__ = ["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "NEVER_STALE", "Default", "make_default",
           "ColumnSpec", "ViewSpec", "GroupSpec", "Kernel", "FastVector", "view_status", "column_status",
           "view_codes_array", "column_codes_array", "to_python", "derived_input"]

_TWO_63 = 2**63

# status codes (FieldStatus's numbers, as plain ints for the hot paths)
PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = 1, 2, 3, 4

NEVER_STALE = math.inf
"""The ttl (in microseconds) of a view whose values never expire."""


def view_status(ts: Any, ttl_us: float, now_us: int) -> int:
    """The status of every value of one view's record: NOT_FOUND (no record, no or a NaN event time),
    OUTSIDE_MAX_AGE (now - ts > ttl), or 0 when the view serves its values (ts >= now - ttl)."""
    if ts is None or ts != ts:  # no time (or another writer's NaN)
        return NOT_FOUND
    return 0 if ts >= now_us - ttl_us else OUTSIDE_MAX_AGE


def column_status(view_code: int, value: Any) -> int:
    """A stored value's status, given its view's `view_status`: that code if not served, else
    NULL_VALUE for None or NaN, else PRESENT."""
    if view_code:
        return view_code
    return NULL_VALUE if value is None or value != value else PRESENT


def view_codes_array(ts_us: np.ndarray, ttl_us: Any, now_us: Any) -> np.ndarray:
    """`view_status` over arrays: event times in us (NaN = none), ttls in us (NEVER_STALE = inf) and
    the time of the read, one for all or one per row (training data: each row's own time)."""
    codes = np.zeros(np.shape(ts_us), dtype=np.uint8)
    codes[(now_us - ts_us) > ttl_us] = OUTSIDE_MAX_AGE  # False where ts is NaN
    codes[np.isnan(ts_us)] = NOT_FOUND
    return codes


def column_codes_array(view_codes: np.ndarray, null: np.ndarray) -> np.ndarray:
    """`column_status` over arrays: the view's code where it does not serve, else NULL_VALUE where the
    value is null (None or NaN), else PRESENT."""
    out = null.astype(np.uint8)
    out += PRESENT
    np.copyto(out, view_codes, where=view_codes != 0)  # in place: no temporaries on the serving path
    return out


# Per dtype that a model vector can hold: the factor from the stored number (timestamps are stored
# in microseconds and served as float seconds since the epoch; bool is 0/1).
_SCALE: dict[DType, float] = {DType.INT64: 1.0, DType.FLOAT64: 1.0, DType.FLOAT32: 1.0, DType.BOOL: 1.0,
                              DType.TIMESTAMP: 1e-6}

# ---- defaults ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Default:
    """One column's declared default, normalized once, in each representation an output serves.

    Without a declared default: `stored` and `python` are None, `number` is NaN and `array` is the
    dtype's null in typed arrays (NaN for floats, 0 for int64, False for bool, NaT, or None).
    """

    declared: Any
    """As written in the repo (timestamps as ISO text, bytes as text)."""
    stored: Any
    """As stores hold values: timestamps in UTC microseconds (the ISO offset applied), bytes as bytes."""
    python: Any
    """As `to_dict` and `to_arrow` serve it: timestamps as UTC datetimes."""
    number: float
    """As model vectors serve it: a float, NaN without one or for non-numeric dtypes."""
    array: Any
    """As typed arrays (`OnlineResult.columns`) hold it."""


_ARRAY_NULL: dict[DType, Any] = {
    DType.INT64: 0,
    DType.FLOAT64: math.nan,
    DType.FLOAT32: math.nan,
    DType.BOOL: False,
    DType.TIMESTAMP: np.datetime64("NaT", "us"),
}


_PYTHON_NUMBER: dict[DType, Any] = {DType.INT64: int, DType.FLOAT64: float, DType.FLOAT32: float,
                                   DType.BOOL: bool}


def timestamp_us(text: str | datetime) -> int:
    """UTC microseconds of an ISO timestamp (or datetime); naive means UTC, an offset is applied."""
    t = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    d = as_utc(t) - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def make_default(dtype: DType, declared: Any) -> Default:
    """Normalize a column's declared default (checked against its dtype when the repo compiled)."""
    if declared is None:
        return Default(None, None, None, math.nan, _ARRAY_NULL.get(dtype))
    if dtype is DType.TIMESTAMP:
        us = timestamp_us(declared)
        return Default(declared, us, EPOCH + timedelta(microseconds=us), us / 1e6, np.datetime64(us, "us"))
    if dtype is DType.BYTES:
        b = declared.encode()
        return Default(declared, b, b, math.nan, b)
    if dtype is DType.FLOAT64_LIST:
        vals = [float(x) for x in declared]
        return Default(declared, vals, vals, math.nan, np.array(vals, dtype=np.float64))
    if dtype.is_numeric:  # the dtype's Python type (a float column's `default: -1` serves -1.0)
        value = _PYTHON_NUMBER[dtype](declared)
        return Default(declared, value, value, float(value), value)
    return Default(declared, declared, declared, math.nan, declared)


def _float_list(v: Any) -> list[float]:
    if isinstance(v, (bytes, bytearray)):
        return np.frombuffer(v, dtype="<f8").tolist()
    return [float(x) for x in v]


def _float_array(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, (bytes, bytearray)):
        return np.frombuffer(v, dtype="<f8").copy()
    return np.asarray(v, dtype=np.float64)


# A stored value (as a store returns it) -> the dtype's Python value, where they differ.
_TO_PYTHON: dict[DType, Any] = {
    DType.BOOL: bool,
    DType.FLOAT32: lambda v: float(np.float32(v)),
    DType.TIMESTAMP: lambda v: EPOCH + timedelta(microseconds=int(v)),
    DType.BYTES: bytes,
    DType.FLOAT64_LIST: _float_list,
}


def to_python(dtype: DType, value: Any) -> Any:
    """A non-null stored value as the Python value `to_dict` serves for `dtype`."""
    conv = _TO_PYTHON.get(dtype)
    return value if conv is None else conv(value)


# dtypes stored as numbers, where another writer's NaN can appear (and means NULL_VALUE)
_NUMBERS = frozenset({DType.INT64, DType.FLOAT64, DType.FLOAT32, DType.BOOL, DType.TIMESTAMP})


def _has_nan(vals: Sequence[Any]) -> bool:
    """Whether a list of numbers (no None) holds a NaN; a C-level sum first, a loop only if it says so."""
    total = sum(vals)
    return total != total and any(v != v for v in vals)


# ---- specification ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnSpec:
    """One output column as the kernel sees it."""

    name: str
    dtype: DType
    default: Default
    group: int  # its entity group, -1 for a request-time column
    value_index: int  # its value's index in the group's rows (-1 for request columns)
    view: int  # its view's index in the group (-1 for request columns)
    request_name: str | None = None  # the request feature it takes (request columns)
    output: bool = True  # False: only derived features read it (never in a model vector)

    @property
    def is_request(self) -> bool:
        return self.group < 0


@dataclass(frozen=True)
class ViewSpec:
    """One view of a group: its name, its event time's index in the group's rows and its ttl."""

    name: str
    ts_index: int
    ttl_us: float  # NEVER_STALE: never expires


@dataclass(frozen=True)
class GroupSpec:
    """One entity group: the width of its rows, its views, and whether every bin holds numbers."""

    width: int
    views: tuple[ViewSpec, ...]
    numeric: bool


@dataclass(frozen=True)
class FastVector:
    """What `Kernel.fast_values` needs, derived once from the kernel's specification."""

    key: str  # the single join key
    key_type: type  # int or str
    getter: Any  # row -> the stored columns' values, in stored order
    views: tuple[tuple[int, float], ...]  # per view: (its event time's index in the row, its ttl in us)
    value_views: tuple[int, ...]  # per stored column: its view's index
    served: tuple[int, ...]  # the view codes when every view serves
    combos: dict  # view codes -> (picker over values + defaults, statuses array), filled on use
    defaults: tuple[float, ...]  # per stored column: Default.number
    request: tuple[tuple[str, frozenset[type], Any], ...]  # per request column: (name, plain types, default)
    perm: Any  # None, or stored-then-request order -> output order
    empty_row: tuple[None, ...]  # the row of an entity the store does not have
    present: np.ndarray  # all PRESENT statuses (copy it per call)


_MAX_COMBOS = 4096  # row states `fast_values` keeps a recipe for (cleared when full)


def _tuple_getter(indexes: Sequence[int]) -> Any:
    if len(indexes) == 1:
        i = indexes[0]
        return lambda row: (row[i],)
    return itemgetter(*indexes)


class Kernel:
    """Values, statuses and defaults of a plan's output columns, from the rows a store read.

    `columns` are in output order; `groups[i]` describes the rows of entity group i.
    """

    def __init__(self, columns: Sequence[ColumnSpec], groups: Sequence[GroupSpec]):
        self.columns = tuple(columns)
        self.groups = tuple(groups)
        nan = math.nan
        # the one-row recipe per column: (position, group, value index, view, numeric, Default.number)
        self._recipe = tuple((i, c.group, c.value_index, c.view, _SCALE.get(c.dtype, 0.0),
                              nan if c.is_request else c.default.number) for i, c in enumerate(self.columns))
        self.not_numbers = tuple(c.name for c in self.columns if c.output and (
            c.dtype not in _SCALE or (c.is_request and c.dtype is DType.TIMESTAMP)))
        """Columns a model vector cannot hold (text, bytes, lists): `numpy` and `vector` refuse them."""
        self._scale = np.array([_SCALE.get(c.dtype, 0.0) for c in self.columns], dtype=np.float64)
        self._from_numbers: dict[tuple[int, ...], Any] = {}  # `inputs_from_numbers` recipes by columns
        self._one: dict[tuple[int, ...], Any] = {}  # `one_inputs` recipes by columns
        self._not_found = tuple((NOT_FOUND,) * len(g.views) for g in self.groups)
        self._views = tuple(tuple((v.ts_index, v.ttl_us) for v in g.views) for g in self.groups)
        # vectorized: per group, its columns' positions, value indexes and view indexes
        self._group_columns = []
        for gi, g in enumerate(self.groups):
            cols = [i for i, c in enumerate(self.columns) if c.group == gi]
            self._group_columns.append((np.array(cols, dtype=np.intp),
                                        np.array([self.columns[i].value_index for i in cols], dtype=np.intp),
                                        np.array([self.columns[i].view for i in cols], dtype=np.intp),
                                        np.array([v.ts_index for v in g.views], dtype=np.intp),
                                        np.array([v.ttl_us for v in g.views], dtype=np.float64)))
        self.numbers = np.array([c.default.number for c in self.columns], dtype=np.float64)
        """Per column: the default a model vector gets (NaN without one, or for a non-numeric dtype)."""
        # per group, precomputed for `numpy`: its columns' defaults, and their scale (None: all 1)
        self._group_numbers = [self.numbers[gc[0]] for gc in self._group_columns]
        self._group_scale = [None if (self._scale[gc[0]] == 1.0).all() else self._scale[gc[0]]
                             for gc in self._group_columns]
        self.requests = tuple((i, c, PLAIN_TYPES.get(c.dtype, frozenset()))
                              for i, c in enumerate(self.columns) if c.is_request)
        """Per request column: (position, column, the Python types taken as they are)."""
        self._request_numbers = tuple((i, c.dtype) for i, c, _ in self.requests)
        """Per request column: (position, dtype), for `numpy`."""
        self._int_requests = frozenset(i for i, c, _ in self.requests if c.dtype is DType.INT64)
        """The int64 request columns (`same_ints`)."""
        self.all_numeric = all(g.numeric for g in self.groups)
        """Every group's bins hold numbers: `numpy` needs no status codes."""
        self.fast: FastVector | None = None
        """Set by `enable_fast` for plans `fast_values` serves."""
        # `python`'s recipe per column: (request?, group, view, value index, Default.python, number?, converter)
        self._py = tuple((c.is_request, c.group, c.view, c.value_index, None if c.is_request else c.default.python,
                          c.dtype in _NUMBERS, _TO_PYTHON.get(c.dtype)) for c in self.columns)

    # ---- one row ---------------------------------------------------------------------------
    def view_codes(self, group: int, row: Sequence[Any] | None, now_us: int) -> tuple[int, ...]:
        """Per view of `group`: its `view_status` for one row (None = the entity has no record)."""
        if row is None:
            return self._not_found[group]
        return tuple([view_status(row[ti], ttl, now_us) for ti, ttl in self._views[group]])

    def vector(self, rows: Sequence[Sequence[Any]], request_values: Mapping[int, Sequence[Any]],
               now_us: int) -> tuple[list[float], list[int]]:
        """One entity's model vector and statuses.

        `rows[g][0]` is the entity's row of group g (a tuple aligned to its bins, or None);
        `request_values[i][0]` the value of request column i. Values that are not PRESENT are
        the defaults (NaN without one); non-numeric columns are NaN. The same values and statuses
        as the vectorized `numpy` / `statuses` of one row, computed in plain Python.
        """
        if self.not_numbers:
            self.refuse_not_numbers()
        grows = [r[0] for r in rows]
        codes = [self.view_codes(gi, row, now_us) for gi, row in enumerate(grows)]
        values: list[float] = []
        statuses: list[int] = []
        for i, gi, vi, view, scale, default in self._recipe:
            if gi < 0:
                statuses.append(PRESENT)
                values.append(float(request_values[i][0]))
                continue
            st = codes[gi][view]
            if not st:  # the view serves: `column_status` inlined (one call per value costs ~40% here)
                v = grows[gi][vi]
                if v is not None and v == v:
                    statuses.append(PRESENT)
                    values.append(float(v) if scale == 1.0 else v * scale)
                    continue
                st = NULL_VALUE
            statuses.append(st)
            values.append(default)
        return values, statuses

    def enable_fast(self, key: str, key_type: type) -> FastVector | None:
        """Derive `fast_values`'s recipe, for a single group of numeric bins read by one join key.

        Returns it (also kept as `self.fast`), or None when a column is not numeric.
        """
        if len(self.groups) != 1 or not self.groups[0].numeric:
            return None
        if not all(c.dtype.is_numeric for c in self.columns):
            return None
        g = self.groups[0]
        stored = [i for i, c in enumerate(self.columns) if not c.is_request]
        request = [i for i, c in enumerate(self.columns) if c.is_request]
        order = stored + request  # where fast_values puts each column; `perm` restores output order
        perm = None if order == sorted(order) else itemgetter(*[order.index(i) for i in range(len(order))])
        self.fast = FastVector(
            key=key,
            key_type=key_type,
            getter=_tuple_getter([self.columns[i].value_index for i in stored]),
            views=tuple((v.ts_index, v.ttl_us) for v in g.views),
            value_views=tuple(self.columns[i].view for i in stored),
            served=(0,) * len(g.views),
            combos={},
            defaults=tuple(self.columns[i].default.number for i in stored),
            request=tuple((self.columns[i].request_name or self.columns[i].name,
                           PLAIN_TYPES.get(self.columns[i].dtype, frozenset()), self.columns[i].default.python)
                          for i in request),
            perm=perm,
            empty_row=(None,) * g.width,
            present=np.full(len(self.columns), PRESENT, dtype=np.uint8),
        )
        return self.fast

    def fast_values(self, row: Sequence[Any] | None, request: Mapping[str, Any] | None,
                    now_us: int) -> tuple[Sequence[float], Sequence[int] | np.ndarray | None] | None:
        """`vector` for one row of a plan with a `fast` recipe, the common case in C-level calls.

        The statuses follow `view_status` and `column_status` (inlined here: this is get_feature_vector's
        path; the property tests hold every form to the same reference).

        Returns (values, statuses), statuses None meaning all PRESENT (else a sequence that may be
        shared between calls: copy it, never modify it); or None when there is no recipe or a request
        value is not a plain number (missing, None, numpy, wrong type): `vector` handles or refuses those.
        """
        fast = self.fast
        if fast is None:
            return None
        req: list[Any] = []
        if fast.request:
            if request is None:
                request = {}
            for name, types, default in fast.request:
                v = request.get(name, default)
                if type(v) not in types or (type(v) is int and not -_TWO_63 <= v < _TWO_63):
                    return None  # (`vector` refuses an int64 one beyond int64)
                req.append(v)
        if row is None:
            row = fast.empty_row
        vals = fast.getter(row)
        codes = fast.served
        for ti, ttl in fast.views:  # `view_status(ts, ttl, now) == 0` inlined (this is the hot path)
            ts = row[ti]
            if ts is None or not ts >= now_us - ttl:  # no time, a NaN time, or stale
                # (a plain loop: a comprehension here would make `row` and `now_us` closure cells,
                # allocated on every call)
                view_codes = []
                for vti, vttl in fast.views:
                    view_codes.append(view_status(row[vti], vttl, now_us))
                codes = tuple(view_codes)
                break
        if None not in vals and (total := sum(vals)) == total:  # no null, no NaN value
            if codes is fast.served:  # the common case
                vals = (*vals, *req)
                return (vals if fast.perm is None else fast.perm(vals)), None
            # some views not served: their columns take defaults (one cached C-level pick per view state)
            pick, sts = fast.combos.get(codes) or self._fast_combo(codes)
            vals = (*pick(vals + fast.defaults), *req)
            return (vals if fast.perm is None else fast.perm(vals)), sts
        # a None or NaN value: per value, `column_status` inlined
        vals = list(vals)
        st = [PRESENT] * len(self.columns)
        defaults = fast.defaults
        for j, vi in enumerate(fast.value_views):
            code = codes[vi]
            if code:
                vals[j] = defaults[j]
                st[j] = code
            elif (v := vals[j]) is None or v != v:
                vals[j] = defaults[j]
                st[j] = NULL_VALUE
        vals = (*vals, *req)
        if fast.perm is not None:
            return fast.perm(vals), list(fast.perm(st))
        return vals, st

    def _fast_combo(self, codes: tuple[int, ...]) -> tuple[Any, np.ndarray]:
        """For `fast_values`: which stored values to keep or replace by defaults, and the statuses,
        when no value is null and the views have these `view_status` codes (built once per combination)."""
        fast = self.fast
        assert fast is not None
        n = len(fast.defaults)
        src = list(range(n))  # index into values + defaults
        st = [PRESENT] * len(self.columns)
        for j, vi in enumerate(fast.value_views):
            st[j] = column_status(codes[vi], 0.0)
            if st[j] != PRESENT:
                src[j] = n + j
        combo = (_tuple_getter(src), np.array(fast.perm(st) if fast.perm is not None else st, dtype=np.uint8))
        if len(fast.combos) >= _MAX_COMBOS:
            fast.combos.clear()
        fast.combos[codes] = combo
        return combo

    # ---- many rows -------------------------------------------------------------------------------
    def tuples(self, rows: Sequence[Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
        """Per group: the rows with a missing entity (None) as a tuple of Nones."""
        out = []
        for g, grows in zip(self.groups, rows, strict=True):
            empty = (None,) * g.width
            out.append([r if r is not None else empty for r in grows])
        return out

    def matrices(self, tuples: Sequence[list[tuple[Any, ...]]]) -> list[np.ndarray]:
        """Per group: an (n, width) float matrix (NaN = null) of the numeric bins and event times."""
        mats = []
        for gi, (g, rows) in enumerate(zip(self.groups, tuples, strict=True)):
            if g.numeric:
                mats.append(np.array(rows, dtype=np.float64).reshape(len(rows), g.width))
            else:
                m = np.full((len(rows), g.width), np.nan)
                idx = {c.value_index for c in self.columns if c.group == gi and c.dtype in _SCALE}
                idx |= {v.ts_index for v in g.views}
                for j in idx:
                    m[:, j] = np.array([r[j] for r in rows], dtype=np.float64)
                mats.append(m)
        return mats

    def statuses(self, tuples: Sequence[list[tuple[Any, ...]]], matrices: Sequence[np.ndarray], n: int,
                 now_us: Any) -> np.ndarray:
        """(n, columns) uint8 status codes. `now_us`: the read's time, or one per row (an (n, 1) array)."""
        st = np.full((n, len(self.columns)), PRESENT, dtype=np.uint8)
        for gi, g in enumerate(self.groups):
            cols, val_idx, view_idx, ts_idx, ttl = self._group_columns[gi]
            if not len(cols):
                continue
            m = matrices[gi]
            codes = view_codes_array(m[:, ts_idx], ttl, now_us)  # (n, views)
            if g.numeric:
                null = np.isnan(m[:, val_idx])
            else:
                rows = tuples[gi]
                null = np.array([[v is None or v != v for v in map(r.__getitem__, val_idx)] for r in rows],
                                dtype=bool).reshape(len(rows), -1)  # None, or a NaN float
            st[:, cols] = column_codes_array(codes[:, view_idx], null)
        return st

    def refuse_not_numbers(self) -> None:
        """Raise UserInputError naming the columns a model vector cannot hold."""
        raise UserInputError(
            f"{', '.join(self.not_numbers)}: text, bytes and list features (and timestamp request features) have "
            "no number for a model vector; read them with to_dict(), to_arrow() or columns, or leave them out of "
            "the features a model takes")

    def numpy(self, matrices: Sequence[np.ndarray], statuses: np.ndarray | None, request: Mapping[int, Any],
              n: int, now_us: int, fill_defaults: bool, width: int | None = None) -> np.ndarray:
        """(n, columns) float64 model matrix: PRESENT values, else the default (`fill_defaults`) or NaN.

        bool is 0/1, a timestamp float seconds since the epoch; text, bytes and list columns are
        refused (UserInputError). `statuses` may be None: numeric groups then compute only the
        PRESENT mask. `width`: the matrix has that many columns (more than the kernel's: room for
        the caller's, left uninitialized).
        """
        if self.not_numbers:
            self.refuse_not_numbers()
        out = np.empty((n, width or len(self.columns)))
        for gi, g in enumerate(self.groups):
            cols, val_idx, view_idx, ts_idx, ttl = self._group_columns[gi]
            if not len(cols):
                continue
            m = matrices[gi]
            vals = m[:, val_idx]
            if g.numeric and statuses is None:
                # PRESENT = the view has a time within its ttl (NaN compares False) and the value is
                # not null: the mask without computing every status code
                ok = ((now_us - m[:, ts_idx]) <= ttl)[:, view_idx]
                ok &= vals == vals
            else:
                if statuses is None:
                    raise ValueError("statuses are needed for a group with non-numeric bins")
                ok = statuses[:, cols] == PRESENT
            scale = self._group_scale[gi]
            if scale is not None:  # timestamps: microseconds -> seconds
                vals = vals * scale
            out[:, cols] = np.where(ok, vals, self._group_numbers[gi] if fill_defaults else np.nan)
        for i, dtype in self._request_numbers:
            if dtype is DType.TIMESTAMP:  # (read only by derived features: `not_numbers` refuses one served)
                out[:, i] = [timestamp_us(v) * 1e-6 for v in request[i]]
            elif dtype.is_numeric:
                out[:, i] = request[i]
            else:  # text read only by derived features, which take it from the request
                out[:, i] = np.nan
        return out

    def _served(self, tuples: Sequence[list[tuple[Any, ...]]], now_us: int,
                read_times: dict[str, Sequence[Any]]) -> list[tuple[list[Any], list[Any]]]:
        """Per group: the rows transposed (one tuple per bin) and, per view, None when it serves every
        row, else `(skip, codes, served)`: the rows it does not serve with their `view_status` (no or
        a NaN event time, or now - ts > ttl), every row's code (PRESENT where served) and a getter of
        the served rows' values from a column. The common case (every row fresh) is C-level passes.
        Each view's event times as read go into `read_times`."""
        out = []
        for g, rows in zip(self.groups, tuples, strict=True):
            cols = list(zip(*rows, strict=True)) if rows else [()] * g.width
            views: list[Any] = []
            for v in g.views:
                times = read_times[v.name] = cols[v.ts_index]
                oldest = now_us - v.ttl_us  # -inf when never stale; `not t >= oldest` holds for NaN
                if not times or (None not in times and not _has_nan(times) and min(times) >= oldest):
                    views.append(None)
                    continue
                ttl = v.ttl_us
                skip = [(i, view_status(t, ttl, now_us)) for i, t in enumerate(times)
                        if t is None or not t >= oldest]
                codes = [PRESENT] * len(times)
                for i, code in skip:
                    codes[i] = code
                served = [i for i, code in enumerate(codes) if code == PRESENT]
                views.append((skip, codes, _tuple_getter(served) if served else None))
            out.append((cols, views))
        return out

    def python(self, tuples: Sequence[list[tuple[Any, ...]]], request: Mapping[int, Sequence[Any]], n: int,
               now_us: int) -> tuple[list[list[Any]], list[list[int] | None], dict[str, Sequence[Any]]]:
        """Per column: plain Python values, PRESENT ones converted to the dtype's value, else the default
        (None without one); request values as given. Also per column its status codes, None when every
        value is PRESENT: the same codes as `statuses`, without numpy (small reads answer faster).
        The columns of a view that hold no null share one codes list (read them, don't change them).
        Per-value Python work happens only for rows that are not PRESENT and dtypes that convert.
        Third, per view its rows' event times as read (for `event_times_us`, which then need not
        take them from the rows again)."""
        read_times: dict[str, Sequence[Any]] = {}
        groups = self._served(tuples, now_us, read_times)
        out: list[list[Any]] = []
        codes: list[list[int] | None] = []
        for i, (is_request, group, view_i, value_index, fill, number, conv) in enumerate(self._py):
            if is_request:
                out.append(list(request[i]))
                codes.append(None)
                continue
            cols, views = groups[group]
            view = views[view_i]
            col = cols[value_index]
            st: list[int] | None = None
            if view is None:
                served: Any = col
            else:
                st = view[1]  # (shared by the view's columns; copied below before a change)
                if view[2] is None:  # the view serves no row
                    out.append([fill] * n)
                    codes.append(st)
                    continue
                served = view[2](col)
            vals = list(col)
            # NULL_VALUE: None, or NaN in a number (a C-level sum says whether to look)
            if None in served or (number and (total := sum(served)) != total and any(v != v for v in served)):
                st = [PRESENT] * n if st is None else list(st)
                null_rows = []
                for j, v in enumerate(vals):
                    if st[j] == PRESENT and (v is None or v != v):
                        st[j] = NULL_VALUE
                        vals[j] = None
                        null_rows.append(j)
            elif view is None and conv is None:  # the common case: every value PRESENT as stored
                out.append(vals)
                codes.append(None)
                continue
            else:
                null_rows = []
            if view is not None:
                for j, _code in view[0]:  # NOT_FOUND / OUTSIDE_MAX_AGE: the default
                    vals[j] = None
                    null_rows.append(j)
            if conv is not None:
                vals = [None if v is None else conv(v) for v in vals]
            if fill is not None:
                for j in null_rows:
                    vals[j] = fill
            out.append(vals)
            codes.append(st)
        return out, codes, read_times

    def event_times_us(self, tuples: Sequence[list[tuple[Any, ...]]],
                       read_times: Mapping[str, Sequence[Any]] | None = None) -> dict[str, list[int | None]]:
        """Per view: the event time of each row read in microseconds since the epoch, None where there
        is none (NOT_FOUND); `event_times` without numpy. `read_times`: `python`'s third result, the
        same times already taken from the rows."""
        out = {}
        for g, rows in zip(self.groups, tuples, strict=True):
            for v in g.views:
                times = list(map(itemgetter(v.ts_index), rows) if read_times is None else read_times[v.name])
                if type(sum(filter(None, times))) is int:  # ints and None (no float, so no NaN): as they are
                    out[v.name] = times
                else:
                    out[v.name] = [None if t is None or t != t else int(t) for t in times]
        return out

    def arrays(self, tuples: Sequence[list[tuple[Any, ...]]], statuses: np.ndarray,
               request: Mapping[int, Sequence[Any]]) -> list[np.ndarray]:
        """Per column: a typed array (`DType.numpy_dtype`), non-PRESENT values as `Default.array`."""
        out = []
        for i, c in enumerate(self.columns):
            if c.is_request:
                raw = [timestamp_us(v) for v in request[i]] if c.dtype is DType.TIMESTAMP else request[i]
            else:
                raw = [r[c.value_index] for r in tuples[c.group]]
            ok = (statuses[:, i] == PRESENT).tolist()
            out.append(_typed(c.dtype, c.default.array, raw, ok))
        return out

    def inputs(self, tuples: Sequence[list[tuple[Any, ...]]], matrices: Sequence[np.ndarray],
               statuses: Callable[[], np.ndarray], request: Mapping[int, Sequence[Any]], columns: Sequence[int],
               now_us: int) -> dict[int, tuple[np.ndarray, Any]]:
        """What derived features read of `columns`: per column, (values, null) as numpy columns.

        A value that is not PRESENT is its default; without one the row is null (`null` a bool mask,
        None when no row is) and holds a harmless placeholder. Numbers come as int64 / float64 / bool,
        timestamps as int64 microseconds, text as object arrays (fsplug.derived's representation).
        `statuses()` gives the status codes; it is called only for a column of a group with
        non-numeric bins (a numeric group's PRESENT mask comes from its matrix, as in `numpy`).
        """
        out: dict[int, tuple[np.ndarray, Any]] = {}
        served: dict[tuple[int, int], np.ndarray] = {}  # per (group, view): rows it serves (time within ttl)
        for i in columns:
            c = self.columns[i]
            stored = c.default.stored
            if c.is_request:
                given: Sequence[Any] = request[i]
                if c.dtype is DType.TIMESTAMP:
                    given = [v if isinstance(v, (int, np.integer)) else timestamp_us(v) for v in given]
                out[i] = (np.asarray(given, dtype=_INPUT_DTYPES.get(c.dtype, object)), None)
                continue
            if c.dtype in _SCALE:
                raw = number = matrices[c.group][:, c.value_index]
                if c.dtype is DType.INT64 and (np.abs(raw) >= _F53).any():  # float64 may have rounded them
                    # (a null row holds 0 here: the PRESENT mask below comes from the float column's NaN)
                    raw = np.array([v if type(v) is int else 0 for v in map(itemgetter(c.value_index),
                                                                            tuples[c.group])], dtype=np.int64)
                if self.groups[c.group].numeric:  # PRESENT: a time within the ttl, a value that is not NaN
                    view_ok = served.get((c.group, c.view))
                    if view_ok is None:
                        ti, ttl = self._views[c.group][c.view]
                        view_ok = served[(c.group, c.view)] = (now_us - matrices[c.group][:, ti]) <= ttl
                    ok = view_ok & (number == number)
                else:
                    ok = statuses()[:, i] == PRESENT
            else:
                ok = statuses()[:, i] == PRESENT
                raw = np.empty(len(ok), dtype=object)
                raw[:] = [r[c.value_index] for r in tuples[c.group]]
            out[i] = derived_input(c.dtype, stored, raw, ok)
        return out

    def inputs_from_numbers(self, numbers: Callable[[int], np.ndarray], request: Mapping[int, Sequence[Any]],
                            columns: tuple[int, ...], requests_too: bool = False,
                            lists: Sequence[list[Any]] | None = None) -> dict[int, tuple[np.ndarray, Any]] | None:
        """`inputs`, from a form already computed: `numbers(i)` gives stored column i as float64 with
        values that are not PRESENT as the default's number (NaN without one) — a column of `numpy(...,
        fill_defaults=True)`, or `python`'s values as float64 (None as NaN) — so NaN is exactly "null
        without a default", as in `inputs`. Only for int64, float64 and bool stored columns (None when
        another one is needed: `inputs` then answers); request columns as in `inputs`, or, with
        `requests_too` (`numbers` is a matrix's column, cheaper than the request's list), those of
        these dtypes from `numbers` too. `lists`: `python`'s values, of which a column that cannot be
        null (it has a default) is taken as it is, in its own dtype (exact, nothing to check)."""
        recipe = self._from_numbers.get(columns, False)
        if recipe is False:
            recipe = self._from_numbers[columns] = self._from_numbers_recipe(columns)
        if recipe is None:
            return None
        out: dict[int, tuple[np.ndarray, Any]] = {}
        for i, request_dtype, dtype, nullable, numeric in recipe:
            if request_dtype is not None and not (requests_too and numeric):
                out[i] = (np.asarray(request[i], dtype=request_dtype), None)
                continue
            if lists is not None and not nullable:
                out[i] = (np.array(lists[i], dtype=dtype or np.float64), None)
                continue
            values = numbers(i)
            null = None
            if nullable:  # NaN: not PRESENT, and no default
                nan = np.isnan(values)
                if np.count_nonzero(nan):
                    null = nan
                    if dtype is not None:  # (NaN has no int or bool: the placeholder, as `inputs`)
                        values = np.where(nan, 0.0, values)
            # (a sum of squares below 2**106 holds no term of 2**53 or more; NaN fails it too)
            if dtype is np.int64 and not values.dot(values) < _F106:
                return None  # float64 may have rounded an int this large: `inputs` reads the exact ones
            out[i] = (values if dtype is None else values.astype(dtype), null)
        return out

    def _from_numbers_recipe(self, columns: Sequence[int]) -> tuple[tuple[int, Any, Any, bool, bool], ...] | None:
        """For `inputs_from_numbers`, per column: (index, the request values' dtype or None, the dtype a
        stored column converts to or None for float64, whether it can be null, whether a number holds
        it); None if one cannot."""
        recipe = []
        for i in columns:
            c = self.columns[i]
            numeric = c.dtype in _FROM_NUMBERS
            to = None if c.dtype is DType.FLOAT64 or not numeric else _INPUT_DTYPES[c.dtype]
            if c.is_request:
                if c.dtype is DType.TIMESTAMP:
                    return None
                recipe.append((i, _INPUT_DTYPES.get(c.dtype, object), to, False, numeric))
            elif numeric:
                recipe.append((i, None, to, c.default.stored is None, True))
            else:
                return None
        return tuple(recipe)

    def same_ints(self, request: Mapping[int, Sequence[Any]], columns: Sequence[int]) -> tuple[int, ...]:
        """The int64 request columns among `columns` whose rows all hold one int (a C-level `count`; their
        values are checked ints, `request_values`)."""
        same = []
        for i in columns:
            if i in self._int_requests:
                vals = request[i]
                if vals.count(vals[0]) == len(vals):
                    same.append(i)
        return tuple(same)

    def vector_inputs(self, values: Sequence[float], statuses: Sequence[int], columns: Sequence[int]
                      ) -> dict[int, tuple[np.ndarray, Any]]:
        """`inputs` for one row, from its `vector` (values and statuses), for plain-number columns."""
        out: dict[int, tuple[np.ndarray, Any]] = {}
        for i in columns:  # `derived_input` for one value (vector already put the default in place)
            c = self.columns[i]
            if statuses[i] == PRESENT or c.default.stored is not None:
                out[i] = (np.array([values[i]], dtype=_INPUT_DTYPES[c.dtype]), None)
            else:
                out[i] = (np.array([_INPUT_NULL[c.dtype]], dtype=_INPUT_DTYPES[c.dtype]), _NULL_ROW)
        return out

    def ints_exact(self, values: Sequence[float], columns: Sequence[int]) -> bool:
        """Whether the int64 columns among `columns` hold, in `values` (a `vector`), ints that a float64
        holds exactly (magnitude below 2**53; NaN, a null, counts as exact). Derived features must read
        larger ones from the rows (`inputs`), as training data does."""
        return all(not abs(values[i]) >= _F53 for i in columns if self.columns[i].dtype is DType.INT64)

    def one_inputs(self, values: Sequence[Any], statuses: Sequence[int] | None, columns: tuple[int, ...]
                   ) -> dict[int, Any] | None:
        """`vector_inputs` as plain Python values for `Program.run_one` (None where null), from one row's
        values (as `vector` or `fast_values` give them: a stored or request value, or the default's
        number where not PRESENT) and statuses, for plain-number columns. Without statuses (a row of
        `numpy(fill_defaults=True)` or of `python`'s lists), a column with no default is null where
        the row holds None or NaN. Ints go
        through a float64, as in `vector_inputs`; None when one's magnitude reaches 2**53, where a float64
        may have rounded it (`ints_exact`: the exact path then answers), or a column is not a plain
        number."""
        recipe = self._one.get(columns, False)
        if recipe is False:
            ok = all(self.columns[i].dtype in _ONE_CONVERT for i in columns)
            recipe = self._one[columns] = tuple(
                (i, _ONE_CONVERT[self.columns[i].dtype], self.columns[i].default.stored is None) for i in columns
            ) if ok else None
        if recipe is None:
            return None  # (a column that is not a plain number)
        out: dict[int, Any] = {}
        for i, conv, nullable in recipe:
            v = values[i]
            # (without statuses, a column with no default is null where it holds None or NaN)
            if nullable and (v is None or v != v if statuses is None else statuses[i] != PRESENT):
                out[i] = None
                continue
            if conv is int:
                v = float(v)
                if not -_F53 < v < _F53:  # (NaN too)
                    return None
                v = int(v)
            else:
                v = conv(v)
            out[i] = v
        return out

    def event_times(self, matrices: Sequence[np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Per view: datetime64[us] event times of the rows read (NaT where NOT_FOUND)."""
        out = {}
        for gi, g in enumerate(self.groups):
            for v in g.views:
                ts = matrices[gi][:, v.ts_index]
                arr = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
                ok = ~np.isnan(ts)
                arr[ok] = ts[ok].astype(np.int64).astype("datetime64[us]")
                out[v.name] = arr
        return out


# How derived features (fsplug.derived) hold each dtype, and what a null row holds.
_INPUT_DTYPES: dict[DType, Any] = {DType.INT64: np.int64, DType.FLOAT64: np.float64, DType.FLOAT32: np.float64,
                                   DType.BOOL: np.bool_, DType.TIMESTAMP: np.int64}
_NULL_ROW = np.array([True])
_FROM_NUMBERS = frozenset({DType.INT64, DType.FLOAT64, DType.BOOL})
_F53 = 2.0**53  # a float64 holds every int of smaller magnitude exactly
_F106 = _F53 * _F53
_ONE_CONVERT: dict[DType, Any] = {DType.INT64: int, DType.FLOAT64: float, DType.FLOAT32: float, DType.BOOL: bool}
_INPUT_NULL: dict[DType, Any] = {DType.INT64: 0, DType.FLOAT64: math.nan, DType.FLOAT32: math.nan,
                                 DType.BOOL: False, DType.TIMESTAMP: 0}


def derived_input(dtype: DType, stored_default: Any, raw: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, Any]:
    """One input column of derived features (fsplug.derived) from its raw values and PRESENT mask:
    (values, null), the default where not PRESENT, or null (a placeholder value) without one.

    `raw` holds stored values: numbers (NaN where missing), timestamps as microseconds, text as objects.
    Serving (`Kernel.inputs`) and training data (fsplug.training) both go through here.
    """
    fill = stored_default if stored_default is not None else _INPUT_NULL.get(dtype, "")
    values = np.where(ok, raw, fill).astype(_INPUT_DTYPES.get(dtype, object), copy=False)
    return values, (None if stored_default is not None else ~ok)


def _typed(dtype: DType, fill: Any, raw: Sequence[Any], ok: list[bool]) -> np.ndarray:
    if dtype is DType.TIMESTAMP:
        arr = np.full(len(raw), fill, dtype="datetime64[us]")
        for i, v in enumerate(raw):
            if ok[i]:
                arr[i] = np.datetime64(int(v), "us")
        return arr
    if dtype.is_numeric:
        return np.array([v if k else fill for v, k in zip(raw, ok, strict=True)], dtype=dtype.numpy_dtype)
    arr = np.empty(len(raw), dtype=object)
    for i, v in enumerate(raw):
        if ok[i]:
            arr[i] = _float_array(v) if dtype is DType.FLOAT64_LIST else v
        else:
            arr[i] = fill
    return arr
