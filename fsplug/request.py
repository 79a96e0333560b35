"""Online requests: entity keys held as columns (`KeyList`) and the checks of keys and request values.

Everything here is about what a caller passes in; nothing reads a store. The functions take a
compiled `RetrievalPlan` (its groups' join keys and its request columns).
"""

from __future__ import annotations

import base64
from array import array as _array
from datetime import datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from fsplug.errors import EntityKeyError, RequestFeatureError, did_you_mean
from fsplug.types import EPOCH, DType, as_utc

if TYPE_CHECKING:
    from fsplug.plan import OutputColumn, RetrievalPlan

__all__ = ["KeyList", "PLAIN_TYPES", "keys_by_group", "request_values", "check_keys", "check_request_value"]

# Python types accepted as they are for a request feature of each dtype (others go through
# check_request_value, which also handles None, numpy scalars and integral floats for int64).
PLAIN_TYPES: dict[DType, frozenset[type]] = {
    DType.FLOAT64: frozenset({float, int}),
    DType.INT64: frozenset({int}),
    DType.STRING: frozenset({str}),
}

_INT64_MAX = 2**63 - 1
_INT_ONLY = {int}
_STR_ONLY = {str}


class KeyList(Sequence[tuple[Any, ...]]):
    """The key tuples of one entity group, held as columns (one list per join key).

    It is a sequence of tuples like any other, so a store may simply iterate it; `columns` and
    `flat()` give stores the keys without building a tuple per key.
    """

    __slots__ = ("columns",)
    __hash__ = None  # type: ignore[assignment]  # equal to any sequence of the same tuples: not hashable

    def __init__(self, columns: Sequence[Sequence[Any]]):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return KeyList([c[i] for c in self.columns])
        return tuple(c[i] for c in self.columns)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.columns, strict=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"KeyList({list(self)!r})"

    def flat(self) -> list[Any]:
        """Every key's values, key after key (as one statement binds them)."""
        cols = self.columns
        return list(cols[0]) if len(cols) == 1 else list(chain.from_iterable(zip(*cols, strict=True)))


def keys_by_group(plan: RetrievalPlan, entities: Mapping[str, Sequence[Any]], n: int) -> list[KeyList]:
    """Validated keys per entity group of `plan` for a columnar request of `n` rows.

    Raises EntityKeyError for a missing join key, a column of the wrong length, or a key of the
    wrong type (numpy integers become ints; bools, floats and None are refused for int64 keys).
    """
    out = []
    for g in plan.groups:
        cols = []
        for name, dtype in zip(g.join_keys, g.key_dtypes, strict=True):
            if name not in entities:
                close = did_you_mean(name, list(entities))  # "; did you mean '<a column of the request>'?"
                typo = close.split("'")[1] if close else None
                raise EntityKeyError(
                    f"missing join key {name!r} for entity {g.entity!r}"
                    + (f"; the request has {typo!r}: did you mean {name!r}?" if typo else "")
                    + f"; the request has: {', '.join(entities) or 'nothing'}"
                )
            cols.append(check_keys(name, dtype, entities[name], n))
        out.append(KeyList(cols))
    return out


def request_values(plan: RetrievalPlan, entities: Mapping[str, Sequence[Any]],
                   n: int) -> dict[int, list[Any]]:
    """Validated request-time feature values of `plan`, by base column position (`plan.base_columns`).

    A missing column takes the feature's default; raises RequestFeatureError when it has none,
    for a column of the wrong length, or for a value that does not fit the dtype.
    """
    out = {}
    for i, c, plain in plan.kernel.requests:
        name = c.request_name or c.name
        if name in entities:
            vals = list(entities[name])
            if len(vals) != n:
                raise RequestFeatureError(f"request feature {name!r} has {len(vals)} values for {n} rows")
            if set(map(type, vals)) <= plain:  # plain values of the right kind: as given
                out[i] = _int64_checked(name, vals) if c.dtype is DType.INT64 else vals
                continue
        elif c.default.python is not None:
            out[i] = [c.default.python] * n  # checked against the dtype when the repo was compiled
            continue
        else:
            col = plan.base_columns[i]
            raise RequestFeatureError(
                f"missing request feature {name!r} ({c.dtype.value}) required by {col.ref}; "
                "pass it with the entity rows"
            )
        out[i] = [check_request_value(plan.base_columns[i], v) for v in vals]
    return out


def check_keys(name: str, dtype: DType, values: Sequence[Any], n: int) -> list[Any]:
    """The `n` values of join key `name` as a list of ints (int64) or strs; raises EntityKeyError."""
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


def check_request_value(c: OutputColumn, v: Any) -> Any:
    """One value of request column `c` as served (None -> its default); raises RequestFeatureError.

    A timestamp is served as a UTC datetime (microseconds), whatever form it came in: a datetime
    (naive = UTC; pandas' Timestamp is one), an ISO-8601 string (JSON's form) or a numpy datetime64.
    A number is served as its dtype holds it, as training data casts it: a float32 one rounded to
    float32, a bool one as a bool, an int64 one as an int. A bytes value is bytes (text is read as
    base64, JSON's form of bytes); a list[float64] one a list of floats.
    """
    if c.dtype is DType.TIMESTAMP and v is not None and v != v:  # NaT (numpy's or pandas'): null
        v = None
    if v is None:
        if c.default is None:
            raise RequestFeatureError(f"request feature {c.feature!r} is null and has no default")
        if c.dtype is DType.BYTES:  # (declared as text, served as bytes: as when the column is left out)
            return c.default.encode()
        return _timestamp(c, c.default) if c.dtype is DType.TIMESTAMP else c.default
    if c.dtype is DType.TIMESTAMP:
        return _timestamp(c, v)
    if c.dtype.is_numeric:
        if isinstance(v, (int, float, np.integer, np.floating)) and not (
            isinstance(v, (bool, np.bool_)) and c.dtype is not DType.BOOL
        ):
            if c.dtype is DType.INT64 and isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise RequestFeatureError(f"request feature {c.feature!r} is int64; got {v!r}")
            if c.dtype is DType.FLOAT32:
                with np.errstate(over="ignore"):  # (beyond float32's range: inf, as Arrow's cast gives)
                    return float(np.float32(v))
            conv = _NUMBER.get(c.dtype)
            v = v if conv is None else conv(v)
            return _int64_checked(c.feature, [v])[0] if c.dtype is DType.INT64 else v
        raise RequestFeatureError(f"request feature {c.feature!r} is {c.dtype.value}; got {v!r} ({type(v).__name__})")
    if c.dtype is DType.STRING and not isinstance(v, str):
        raise RequestFeatureError(f"request feature {c.feature!r} is string; got {v!r} ({type(v).__name__})")
    if c.dtype is DType.BYTES:
        return _bytes(c, v)
    if c.dtype is DType.FLOAT64_LIST:
        return _float_list(c, v)
    return v


_NUMBER: dict[DType, Any] = {DType.INT64: int, DType.BOOL: bool}
"""The Python type a request value of these dtypes is served as (others: as given)."""


def _int64_checked(name: str, vals: list[int]) -> list[int]:
    """`vals`, an int64 request feature's ints, when all are within int64; RequestFeatureError otherwise."""
    try:
        _array("q", vals)  # the range check, in C
    except OverflowError:
        bad = next(v for v in vals if not -_INT64_MAX - 1 <= v <= _INT64_MAX)
        raise RequestFeatureError(f"request feature {name!r} is int64; {bad} is out of its range") from None
    return vals


def _bytes(c: OutputColumn, v: Any) -> bytes:
    """A bytes request value as bytes: bytes-like as it is, text as base64 (JSON's form of bytes, as the
    server's responses and `/push` write them); RequestFeatureError for anything else."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:
            raise RequestFeatureError(f"request feature {c.feature!r} is bytes; {v!r} is not base64 text "
                                      "(give bytes, or their base64 in JSON)") from None
    raise RequestFeatureError(f"request feature {c.feature!r} is bytes; got {v!r} ({type(v).__name__})")


def _float_list(c: OutputColumn, v: Any) -> list[float | None]:
    """A list[float64] request value as a list of floats (None kept); RequestFeatureError for what is no
    sequence of numbers (a bool is no number here, as for a float64 feature)."""
    items = v.tolist() if isinstance(v, np.ndarray) and v.ndim == 1 else v
    if isinstance(items, (list, tuple)):
        out: list[float | None] = []
        for x in items:
            if x is None:
                out.append(None)
            elif isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)):
                out.append(float(x))
            else:
                raise RequestFeatureError(f"request feature {c.feature!r} is list[float64]; its item {x!r} "
                                          f"({type(x).__name__}) is no number")
        return out
    raise RequestFeatureError(f"request feature {c.feature!r} is list[float64]; got {v!r} ({type(v).__name__}): "
                              "give a list of numbers")


def _timestamp(c: OutputColumn, v: Any) -> datetime:
    """A timestamp request value as a UTC datetime; raises RequestFeatureError for what is no time."""
    if isinstance(v, np.datetime64):
        return EPOCH + timedelta(microseconds=int(v.astype("datetime64[us]").astype(np.int64)))
    t = v
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            raise RequestFeatureError(f"request feature {c.feature!r} is timestamp; {v!r} is not an ISO-8601 "
                                      "time (like '2026-12-01T08:30:00Z'; naive = UTC)") from None
    if not isinstance(t, datetime):
        raise RequestFeatureError(f"request feature {c.feature!r} is timestamp; got {v!r} ({type(v).__name__}): "
                                  "give a datetime, a numpy datetime64 or an ISO-8601 string (naive = UTC)")
    d = as_utc(t) - EPOCH  # (a pandas Timestamp gives a Timedelta: the same fields, nanoseconds dropped)
    return EPOCH + timedelta(days=d.days, seconds=d.seconds, microseconds=d.microseconds)
