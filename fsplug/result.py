"""The result of an online read (`OnlineResult`) and the per-value status codes (`FieldStatus`).

An OnlineResult keeps the rows the store returned and converts them on first use, through its
plan's kernel (fsplug.kernel): a caller that only needs `to_numpy()` pays for nothing else. A plan
with derived features has the kernel serve its base columns (`RetrievalPlan.base_columns`), runs its
`program` (fsplug.derived) on them, and places the derived columns among the outputs.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import numpy as np

from fsplug.errors import UserInputError
from fsplug.kernel import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT
from fsplug.plan import RetrievalPlan

__all__ = ["FieldStatus", "OnlineResult", "STATUS_NAMES"]


class FieldStatus(IntEnum):
    """Per-value status, numbered as Feast's FieldStatus."""

    INVALID = 0
    PRESENT = PRESENT
    NULL_VALUE = NULL_VALUE
    NOT_FOUND = NOT_FOUND
    OUTSIDE_MAX_AGE = OUTSIDE_MAX_AGE


STATUS_NAMES = tuple(s.name for s in FieldStatus)
"""FieldStatus names by code (FieldStatus numbers its members 0, 1, ...), for plain-Python writers."""


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
        self._program: Any = plan.program  # a Program, or None without derived features
        self._rows = rows
        self._request = request_values
        self.n = n
        self.now_us = now_us
        self.errors = errors
        self._read_times: dict[str, Any] | None = None  # set with `_python`: per view, its rows' event times
        self._floats_kept: list[Any] | None = None  # set by `to_numpy` when it computes derived columns itself

    @_lazy
    def _tuples(self) -> list[list[tuple[Any, ...]]]:
        return self._kernel.tuples(self._rows)

    @_lazy
    def _matrices(self) -> list[np.ndarray]:
        return self._kernel.matrices(self._tuples)

    @_lazy
    def _base_statuses(self) -> np.ndarray:
        return self._kernel.statuses(self._tuples, self._matrices, self.n, self.now_us)

    @_lazy
    def _derived(self) -> list[Any]:
        """Per step of the plan's program: its (values, null) columns."""
        prog = self._program
        inputs = self._kernel.inputs(self._tuples, self._matrices, lambda: self._base_statuses, self._request,
                                     prog.needed, self.now_us)
        return prog.run(inputs, self.n)

    def _derived_from(self, numbers: Any, requests_too: bool = False, lists: Any = None,
                      row: Any = None) -> list[Any]:
        """`_derived`, its inputs taken from a form already computed (`Kernel.inputs_from_numbers`) when
        it is not computed yet and they can be: the same values, fewer operations. A result of one row
        takes them from `row` (that form's first row), or else from `lists`' first values."""
        done = self.__dict__.get("_derived")
        if done is not None:
            return done
        prog = self._program
        if self.n == 1 and prog.has_one:  # one row: the plain-Python form, as get_feature_vector
            one = self._kernel.one_inputs(row if row is not None else [c[0] for c in lists], None, prog.needed)
            results = None if one is None else prog.run_one(one)
            if results is not None:
                out = self.__dict__["_derived"] = prog.one_columns(results)
                return out
        inputs = self._kernel.inputs_from_numbers(numbers, self._request, prog.needed, requests_too, lists)
        if inputs is None:
            return self._derived
        # (kept for the other forms: a result that is an input as it is would be a view of `numbers`'
        # array, which may be the caller's: a copy)
        out = [(v if v.base is None else v.copy(), nl) for v, nl in prog.run(inputs, self.n)]
        self.__dict__["_derived"] = out
        return out

    def _place(self, base: np.ndarray, put: Any, computed: list[Any] | None = None) -> np.ndarray:
        """(n, columns): the base outputs (base[:, :k]) and each derived column, written by `put(out,
        position, step, computed[step])` (`computed`: per step what `put` takes, by default its
        `_derived` column; no `put`: left for the caller to write)."""
        out = np.empty((self.n, len(self.plan.columns)), dtype=base.dtype)
        pos = self.plan.base_index
        k = len(pos)
        if self.plan.base_first:
            out[:, :k] = base[:, :k]
        else:
            out[:, pos] = base[:, :k]
        if put is None:
            return out
        columns = self._derived if computed is None else computed
        for p, si in self._program.outputs:
            put(out, p, si, columns[si])
        return out

    @_lazy
    def statuses(self) -> np.ndarray:
        """(n, columns) uint8 array of FieldStatus values (derived: PRESENT where computed, else NULL_VALUE)."""
        prog = self._program
        if prog is None:
            return self._base_statuses
        put = prog.put_statuses
        kept = self._floats_kept  # (after to_numpy: the null masks from what it computed)
        nulls = [null for _, null in self._derived] if kept is None else prog.float_nulls(kept)
        return self._place(self._base_statuses, lambda out, p, si, null: put(out, p, null), nulls)

    def to_numpy(self, fill_defaults: bool = True) -> np.ndarray:
        """(n, columns) float64 matrix in plan order, for models.

        Values that are not PRESENT get the feature's declared default (NaN without one) when
        `fill_defaults`, else NaN. Non-numeric features are NaN: models take numbers.
        """
        k = self._kernel
        prog = self._program
        st = self.__dict__.get("_base_statuses")
        if st is None and not k.all_numeric:
            st = self._base_statuses
        if prog is None:
            return k.numpy(self._matrices, st, self._request, self.n, self.now_us, fill_defaults)
        if prog.text_outputs:
            prog.refuse_text()
        plan = self.plan
        # the outputs are the base columns, then the derived ones: one matrix for all, derived written last
        whole = plan.base_first and len(plan.base_columns) == len(plan.base_positions)
        base = k.numpy(self._matrices, st, self._request, self.n, self.now_us, fill_defaults,
                       len(plan.columns) if whole else None)
        if fill_defaults and prog.floats:  # every derived column computed from the matrix's, straight into it
            out = base if whole else self._place(base, None)
            self._floats_kept = prog.put_floats(out, lambda i: base[:, i])
            return out
        computed = self._derived_from(lambda i: base[:, i], True, row=base[0]) if fill_defaults else self._derived
        if whole:
            for p, si in prog.outputs:
                prog.put_numbers(base, p, si, computed[si], fill_defaults)
            return base
        return self._place(base, lambda out, p, si, col: prog.put_numbers(out, p, si, col, fill_defaults), computed)

    @_lazy
    def columns(self) -> dict[str, np.ndarray]:
        """Typed arrays per output column (`DType.numpy_dtype`); non-PRESENT values hold the default
        (or the dtype's null: NaN, 0, False, NaT or None)."""
        arrays = self._kernel.arrays(self._tuples, self._base_statuses, self._request)
        return self._columns_of(arrays, lambda si, c: self._program.array(si, c.dtype, self._derived[si]))

    def _columns_of(self, base: list[Any], derived: Any) -> dict[str, Any]:
        """Output name -> value: the base outputs from `base` (in base order; the kernel's columns, which
        may go on with inputs read only for derived features), each derived column from `derived(step,
        column)`."""
        if self._program is None:
            return dict(zip(self.plan.names, base, strict=True))
        return dict(zip(self.plan.names, self._merged(base, derived), strict=True))

    def _merged(self, base: list[Any], derived: Any) -> list[Any]:
        """`_columns_of`'s values, in plan order, as a list."""
        cols = self.plan.columns
        if self.plan.base_first:  # (the derived outputs after the base ones: the usual layout)
            out = base[:len(self.plan.base_positions)]  # (base also holds inputs read only for derived ones)
            out.extend(derived(si, cols[p]) for p, si in self._program.outputs)
            return out
        out = [None] * len(cols)
        for j, p in enumerate(self.plan.base_positions):
            out[p] = base[j]
        for p, si in self._program.outputs:
            out[p] = derived(si, cols[p])
        return out

    def _placed(self, base: list[Any], derived: list[Any]) -> list[Any]:
        """`_merged`, given the derived outputs' values in `Program.outputs` order."""
        if self.plan.base_first:
            return base[:len(self.plan.base_positions)] + derived
        at = {si: d for (_, si), d in zip(self._program.outputs, derived, strict=True)}
        return self._merged(base, lambda si, c: at[si])

    @_lazy
    def event_timestamps(self) -> dict[str, np.ndarray]:
        """Per view: datetime64[us] event time of the rows read (NaT when not found). A derived view's
        is the newest of the stored views its features read (NaT when they read only request values)."""
        times = self._kernel.event_times(self._matrices, self.n)
        for name, views in self.plan.derived_event_views.items():
            t = np.full(self.n, np.datetime64("NaT"), dtype="datetime64[us]")
            for v in views:
                t = np.fmax(t, times[v])
            times[name] = t
        return times

    @_lazy
    def _python(self) -> tuple[list[list[Any]], list[list[int] | None]]:
        """Per output column: plain Python values and status codes (None: all PRESENT)."""
        values, codes, self._read_times = self._kernel.python(self._tuples, self._request, self.n, self.now_us)
        prog = self._program
        if prog is None:
            return values, codes
        if prog.floats and self.n > 1:  # computed as to_numpy computes them, from `values`
            dv, dc = prog.python_floats(values.__getitem__, self._kernel.same_ints(self._request, prog.test_slots),
                                        self.n)
            return self._placed(values, dv), self._placed(codes, dc)
        self._derived_from(lambda i: np.array(values[i], dtype=np.float64), lists=values)  # (None -> NaN)
        derived = self._derived
        return (self._merged(values, lambda si, c: prog.python(si, c.dtype, derived[si])),
                self._merged(codes, lambda si, c: _derived_codes(derived[si][1])))

    def event_times_us(self) -> dict[str, list[int | None]]:
        """Per view: the event time of each row read as plain ints (microseconds since the epoch),
        None where the view has no record (NOT_FOUND): `event_timestamps` for JSON writers. A derived
        view's is the newest of the stored views its features read (None when they read only request
        values)."""
        times = self._kernel.event_times_us(self._tuples, self._read_times)
        for name, views in self.plan.derived_event_views.items():
            newest: list[int | None] = [None] * self.n
            for v in views:
                newest = [b if a is None else a if b is None else max(a, b) for a, b in zip(newest, times[v],
                                                                                           strict=True)]
            times[name] = newest
        return times

    def python_columns(self) -> tuple[list[list[Any]], list[list[int] | None]]:
        """Per output column, in plan order: `to_dict`'s values and `status_codes()`, the result's own
        lists (not copies: for writers that only read them, like the feature server's JSON). Columns
        whose codes are equal may share one codes list."""
        return self._python

    def status_codes(self) -> list[list[int] | None]:
        """Per output column, in plan order: its FieldStatus codes as plain ints, or None when every
        value is PRESENT (the common case, told without a list)."""
        return [None if c is None else list(c) for c in self._python[1]]

    def status_names(self) -> dict[str, list[str]]:
        """Per output column: the FieldStatus names of its values."""
        n = self.n
        return {c.name: ["PRESENT"] * n if codes is None else [STATUS_NAMES[s] for s in codes]
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
        from fsplug.extras import require

        require("pandas", extra="pandas", needed_for="OnlineResult.to_pandas()", error=UserInputError)
        return self.to_arrow().to_pandas()

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"OnlineResult({self.n} rows x {len(self.plan.columns)} columns)"


def _derived_codes(null: Any) -> list[int] | None:
    """A derived column's status codes from its null mask (None: every value PRESENT)."""
    if null is None or not np.count_nonzero(null):
        return None
    return [NULL_VALUE if x else PRESENT for x in null.tolist()]
