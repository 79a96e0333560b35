"""The result of an online read (`OnlineResult`) and the per-value status codes (`FieldStatus`).

An OnlineResult keeps the rows the store returned and converts them on first use, through its
plan's kernel (fsplug.kernel): a caller that only needs `to_numpy()` pays for nothing else.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from fsplug.kernel import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT
from fsplug.plan import RetrievalPlan

__all__ = ["FieldStatus", "OnlineResult"]


class FieldStatus(IntEnum):
    """Per-value status, numbered as Feast's FieldStatus."""

    INVALID = 0
    PRESENT = PRESENT
    NULL_VALUE = NULL_VALUE
    NOT_FOUND = NOT_FOUND
    OUTSIDE_MAX_AGE = OUTSIDE_MAX_AGE


_NAMES = tuple(s.name for s in FieldStatus)  # by code: FieldStatus numbers its members 0, 1, ...


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


class OnlineResult:
    """Columnar result of one online read: values, per-value statuses and event timestamps.

    Every form serves the same values: PRESENT ones as stored, the others as the column's
    declared default (or, without one, None / NaN / the dtype's null in typed arrays).
    """

    def __init__(self, plan: RetrievalPlan, rows: list[list[Any]], request_values: dict[int, list[Any]],
                 n: int, now_us: int, errors: list[Any] | None = None):
        """`rows[g]`: per key of group g, None or a tuple aligned to `plan.groups[g].bins` (as
        `OnlineStore.read` returns them); `request_values[i]`: the n values of request column i
        (as `RetrievalPlan.request_values` checks them); `now_us`: the time ttls are measured from;
        `errors`: per-group lists of per-entity exceptions (partial results), or None."""
        self.plan = plan
        self._kernel = plan.kernel
        self._rows = rows
        self._request = request_values
        self.n = n
        self.now_us = now_us
        self.errors = errors

    @_lazy
    def _tuples(self) -> list[list[tuple[Any, ...]]]:
        return self._kernel.tuples(self._rows)

    @_lazy
    def _matrices(self) -> list[np.ndarray]:
        return self._kernel.matrices(self._tuples)

    @_lazy
    def statuses(self) -> np.ndarray:
        """(n, columns) uint8 array of FieldStatus values."""
        return self._kernel.statuses(self._tuples, self._matrices, self.n, self.now_us)

    def to_numpy(self, fill_defaults: bool = True) -> np.ndarray:
        """(n, columns) float64 matrix in plan order, for models.

        Values that are not PRESENT get the feature's declared default (NaN without one) when
        `fill_defaults`, else NaN. Non-numeric features are NaN: models take numbers.
        """
        k = self._kernel
        st = self.__dict__.get("statuses")
        if st is None and not k.all_numeric:
            st = self.statuses
        return k.numpy(self._matrices, st, self._request, self.n, self.now_us, fill_defaults)

    @_lazy
    def columns(self) -> dict[str, np.ndarray]:
        """Typed arrays per output column (`DType.numpy_dtype`); non-PRESENT values hold the default
        (or the dtype's null: NaN, 0, False, NaT or None)."""
        arrays = self._kernel.arrays(self._tuples, self.statuses, self._request)
        return dict(zip(self.plan.names, arrays, strict=True))

    @_lazy
    def event_timestamps(self) -> dict[str, np.ndarray]:
        """Per view: datetime64[us] event time of the rows read (NaT when not found)."""
        return self._kernel.event_times(self._matrices, self.n)

    @_lazy
    def _python(self) -> tuple[list[list[Any]], list[list[int] | None]]:
        return self._kernel.python(self._tuples, self._request, self.n, self.now_us)

    def event_times_us(self) -> dict[str, list[int | None]]:
        """Per view: the event time of each row read as plain ints (microseconds since the epoch),
        None where the view has no record (NOT_FOUND): `event_timestamps` for JSON writers."""
        return self._kernel.event_times_us(self._tuples)

    def status_names(self) -> dict[str, list[str]]:
        """Per output column: the FieldStatus names of its values."""
        n = self.n
        return {c.name: ["PRESENT"] * n if codes is None else [_NAMES[s] for s in codes]
                for c, codes in zip(self.plan.columns, self._python[1], strict=True)}

    def to_dict(self, include_statuses: bool = False) -> dict[str, list[Any]]:
        """Plain Python lists per output column: non-PRESENT values are the default, or None without one.

        With `include_statuses`, also `<column>__status` lists of FieldStatus names.
        """
        out = {name: list(vals) for name, vals in zip(self.plan.names, self._python[0], strict=True)}
        if include_statuses:
            for c, names in self.status_names().items():
                out[f"{c}__status"] = names
        return out

    def to_arrow(self) -> Any:
        """A pyarrow Table: one column per feature (nulls where not PRESENT and no default)."""
        import pyarrow as pa

        data = self.to_dict()
        return pa.table({c.name: pa.array(data[c.name], type=c.dtype.arrow_type()) for c in self.plan.columns})

    def to_pandas(self) -> Any:
        """A pandas DataFrame of `to_arrow()` (needs pandas: `pip install 'fsplug[pandas]'`)."""
        from fsplug.errors import UserInputError
        from fsplug.extras import require

        require("pandas", extra="pandas", needed_for="OnlineResult.to_pandas()", error=UserInputError)
        return self.to_arrow().to_pandas()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"OnlineResult({self.n} rows x {len(self.plan.columns)} columns)"
