"""Retrieval plans: feature refs compiled against a registry into what one online read needs.

A RetrievalPlan knows, per entity set, the bins to select (features plus each view's timestamp
bin) and, per output column, its dtype, view, bin, default and ttl; its `kernel` (fsplug.kernel)
turns the rows a store returns into values, statuses and defaults. Request checks live in
fsplug.request, results in fsplug.result. Executing a plan is one store read plus a few
vectorized numpy steps: no YAML, no registry walks, no per-value objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from operator import itemgetter
from functools import cached_property
from typing import Any
from collections.abc import Callable, Iterable, Mapping, Sequence

from fsplug.derived import Program, Step, compile_step
from fsplug.errors import OutputNameClashError, ReferenceNotFoundError, UserInputError, did_you_mean
from fsplug.kernel import (
    NEVER_STALE,
    NULL_VALUE,
    PRESENT,
    ColumnSpec,
    FastVector,
    GroupSpec,
    Kernel,
    ViewSpec,
    make_default,
    to_python,
)
from fsplug.registry import Registry, check_ref
from fsplug.request import KeyList, keys_by_group, request_values
from fsplug.types import DType, format_ttl

__all__ = ["OutputColumn", "ViewRead", "EntityGroup", "DerivedStep", "RetrievalPlan", "compile_plan", "now_us",
           "FastVector", "DERIVED"]

DERIVED = -2
"""The `group` of a derived output column (computed from other columns, fsplug.derived)."""

_PLAIN_NUMBERS = frozenset({DType.INT64, DType.FLOAT64, DType.FLOAT32, DType.BOOL})


@dataclass(frozen=True)
class OutputColumn:
    """One output column: a stored feature (group >= 0), a request-time feature (group == -1) or a
    derived feature (group == DERIVED)."""

    name: str
    ref: str
    view: str
    feature: str
    dtype: DType
    default: Any  # as declared in the repo (see `RetrievalPlan.kernel` for its normalized forms)
    group: int
    bin: str | None
    bin_index: int
    view_index: int
    ttl_seconds: int | None

    @property
    def is_request(self) -> bool:
        return self.group == -1

    @property
    def is_derived(self) -> bool:
        return self.group == DERIVED


@dataclass(frozen=True)
class DerivedStep:
    """One derived feature a plan computes (an output, or an input of another one), in run order.

    `args` maps each name its expression (or UDF) reads to a slot: a base column's index
    (`RetrievalPlan.base_columns`), or `len(base_columns) + k` for the k-th step's result.
    """

    ref: str
    dtype: Any
    default: Any
    expr: str | None
    udf: str | None
    args: tuple[tuple[str, int], ...]
    output: int  # its position in `RetrievalPlan.columns`, or -1 when only another step reads it


@dataclass(frozen=True)
class ViewRead:
    """A view read within an entity group: its timestamp bin's index and its ttl in microseconds."""

    name: str
    timestamp_bin: str
    ts_index: int
    ttl_us: float  # fsplug.kernel.NEVER_STALE (infinity): never stale


@dataclass(frozen=True)
class EntityGroup:
    """One entity set read by a plan: the join keys and exactly the bins to select."""

    entity: str  # the store resolves its set / table (OnlineStore.location)
    join_keys: tuple[str, ...]
    key_dtypes: tuple[DType, ...]
    bins: tuple[str, ...]
    views: tuple[ViewRead, ...]
    numeric: bool  # every bin holds numbers: rows convert to one float matrix


@dataclass(frozen=True)
class RetrievalPlan:
    """An immutable, compiled answer to "which features, from where, typed how"."""

    registry_hash: str
    refs: tuple[str, ...]
    service: str | None
    full_feature_names: bool
    columns: tuple[OutputColumn, ...]
    groups: tuple[EntityGroup, ...]
    inputs: tuple[OutputColumn, ...] = ()
    """Stored and request features that only derived features read (not in the output)."""
    derived: tuple[DerivedStep, ...] = ()
    """The derived features to compute, in run order (fsplug.derived)."""
    offline_views: tuple[str, ...] = ()
    """The views read that are offline only (`online: false`): training data reads them, online reads cannot."""

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def base_columns(self) -> tuple[OutputColumn, ...]:
        """The stored and request columns the kernel serves: the outputs that are not derived, in output
        order, then `inputs`. Without derived features, the same as `columns`."""
        if not self.derived:
            return self.columns
        return tuple(c for c in self.columns if not c.is_derived) + self.inputs

    @cached_property
    def base_positions(self) -> tuple[int, ...]:
        """The output positions of the columns that are not derived (base columns 0, 1, ...)."""
        return tuple(i for i, c in enumerate(self.columns) if not c.is_derived)

    @cached_property
    def base_index(self) -> Any:
        """`base_positions` as a numpy index array (placing columns in results)."""
        import numpy as np

        return np.array(self.base_positions, dtype=np.intp)

    @cached_property
    def base_first(self) -> bool:
        """Whether the columns that are not derived are the first outputs (derived ones after them)."""
        return self.base_positions == tuple(range(len(self.base_positions)))

    @cached_property
    def derived_event_views(self) -> dict[str, tuple[str, ...]]:
        """Per derived view of the outputs: the stored views its output features read (through other
        derived features too); its event time is the newest of theirs (`OnlineResult.event_timestamps`)."""
        base = self.base_columns
        n_base = len(base)
        reads: list[set[str]] = []
        for d in self.derived:
            views: set[str] = set()
            for _, slot in d.args:
                if slot >= n_base:
                    views |= reads[slot - n_base]
                elif not base[slot].is_request:
                    views.add(base[slot].view)
            reads.append(views)
        out: dict[str, set[str]] = {}
        for i, d in enumerate(self.derived):
            if d.output >= 0:
                out.setdefault(self.columns[d.output].view, set()).update(reads[i])
        order = [v.name for g in self.groups for v in g.views]
        return {k: tuple(v for v in order if v in views) for k, views in out.items()}

    @cached_property
    def program(self) -> Program | None:
        """The compiled derived features (None without any): `Program.run` computes them for all rows."""
        if not self.derived:
            return None
        base = self.base_columns
        steps = []
        for d in self.derived:
            kinds = {name: (base[slot].dtype if slot < len(base) else self.derived[slot - len(base)].dtype)
                     for name, slot in d.args}
            steps.append(Step(d.ref, d.output, make_default(d.dtype, d.default),
                              *compile_step(d.ref, d.dtype, d.expr, d.udf, dict(d.args), kinds)))
        return Program(tuple(steps), len(base), tuple(c.dtype for c in self.columns), tuple(c.dtype for c in base))

    def check_online(self) -> None:
        """Refuse an online read of this plan when it reads offline-only views (UserInputError)."""
        if self.offline_views:
            names = ", ".join(repr(v) for v in self.offline_views)
            views, are = ("feature view", "is") if len(self.offline_views) == 1 else ("feature views", "are")
            raise UserInputError(f"{views} {names} {are} offline only (online: false), with no online values: "
                                 "read it with get_historical_features, or set online: true and materialize it")

    @cached_property
    def join_keys(self) -> tuple[str, ...]:
        """Every join key a request must carry, in first-use order."""
        out: list[str] = []
        for g in self.groups:
            out.extend(k for k in g.join_keys if k not in out)
        return tuple(out)

    @cached_property
    def request_names(self) -> frozenset[str]:
        """The request features a request may carry (by their names, whatever full_feature_names),
        those that only derived features read included."""
        return frozenset(c.feature for c in self.base_columns if c.is_request)

    @cached_property
    def optional_request_names(self) -> frozenset[str]:
        """The request features with a default: a request may leave them out."""
        return frozenset(c.feature for c in self.base_columns if c.is_request and c.default is not None)

    @cached_property
    def accepted(self) -> frozenset[str]:
        """Every column a request may carry: the join keys and the request features."""
        return frozenset(self.join_keys) | self.request_names

    def check_columns(self, columns: Iterable[str]) -> None:
        """Refuse request columns the plan does not take (a typo would otherwise go unnoticed, and an
        optional request feature would silently get its default); UserInputError with a hint."""
        unknown = [k for k in columns if k not in self.accepted]
        if unknown:
            k = unknown[0]
            raise UserInputError(f"the request has a column {k!r}, which is no join key or request feature of "
                                 f"{self.what}{did_you_mean(k, sorted(self.accepted))}; it takes: "
                                 f"{', '.join(sorted(self.accepted))}")

    @property
    def what(self) -> str:
        return f"service {self.service!r}" if self.service else "these features"

    @cached_property
    def request_columns(self) -> tuple[OutputColumn, ...]:
        """The request columns of `base_columns` (those only derived features read included)."""
        return tuple(c for c in self.base_columns if c.is_request)

    @cached_property
    def default_numbers(self) -> Any:
        """Per output column: the default a model vector gets (NaN without one, or for a non-numeric dtype)."""
        if not self.derived:
            return self.kernel.numbers
        import numpy as np

        return np.array([make_default(c.dtype, c.default).number for c in self.columns], dtype=np.float64)

    @cached_property
    def kernel(self) -> Kernel:
        """The rules turning this plan's rows into values, statuses and defaults (fsplug.kernel), for
        `base_columns` (derived features are computed from them: `program`)."""
        outputs = len(self.base_columns) - len(self.inputs) if self.derived else len(self.columns)
        cols = [ColumnSpec(c.name, c.dtype, make_default(c.dtype, c.default), c.group, c.bin_index,
                           c.view_index, c.feature if c.is_request else None, i < outputs)
                for i, c in enumerate(self.base_columns)]
        groups = [GroupSpec(len(g.bins), tuple(ViewSpec(v.name, v.ts_index, v.ttl_us) for v in g.views),
                            g.numeric) for g in self.groups]
        kernel = Kernel(cols, groups)
        if len(self.groups) == 1 and len(self.groups[0].join_keys) == 1:
            g = self.groups[0]
            kernel.enable_fast(g.join_keys[0], int if g.key_dtypes[0] is DType.INT64 else str)
        return kernel

    @cached_property
    def fast_vector(self) -> FastVector | None:
        """The recipe of `fast_values`, for plans that read one entity set with a single join key
        and only numeric features, derived ones computed in plain Python (`Program.run_one`) from
        plain-number inputs (None for other plans: they take `vector`)."""
        fast = self.kernel.fast
        prog = self.program
        if fast is None or prog is None:
            return fast
        if not self.has_vector or not prog.has_one or prog.text_outputs:
            return None
        import numpy as np

        return replace(fast, present=np.full(len(self.columns), PRESENT, dtype=np.uint8))

    @cached_property
    def vector(self) -> Callable[[Sequence[Sequence[Any]], Mapping[int, Sequence[Any]], int],
                                 tuple[list[float], list[int]] | None]:
        """`vector(rows, request_values, now_us) -> (values, statuses)`: one entity's model vector
        (`Kernel.vector`; `rows[g][0]` is the entity's row of group g, a tuple or None).

        With derived features: the base columns' vector, then the plan's `program` on it as one row,
        in plain Python (`Program.run_one`) or, where that has no form, numpy's on a row of one (only
        for plans whose base columns are all plain numbers: `has_vector`); None when an int input's
        magnitude reaches 2**53 (the vector's float64 may have rounded it: `OnlineResult` answers)."""
        if self.program is None:
            return self.kernel.vector
        return self._derived_vector

    @cached_property
    def has_vector(self) -> bool:
        """Whether `vector` serves this plan: no derived features, or base columns that are all plain
        numbers (else a one-entity read goes through `OnlineResult` for one row)."""
        return self.program is None or all(c.dtype in _PLAIN_NUMBERS for c in self.base_columns)

    def _derived_vector(self, rows: Sequence[Sequence[Any]], request_values: Mapping[int, Sequence[Any]],
                        now_us: int) -> tuple[list[float], list[int]] | None:
        kernel, prog = self.kernel, self.program
        assert prog is not None
        if prog.text_outputs:
            prog.refuse_text()
        values, statuses = kernel.vector(rows, request_values, now_us)
        one = self._derived_one(values, statuses)
        if one is not None:
            vals, sts = one
            return list(vals), ([PRESENT] * len(self.columns) if sts is None else list(sts))
        if not kernel.ints_exact(values, prog.needed):
            return None  # an int input too large for the vector's float64: the caller reads it exactly
        results = prog.run(kernel.vector_inputs(values, statuses, prog.needed), 1)
        out_v: list[float] = [0.0] * len(self.columns)
        out_s: list[int] = [0] * len(self.columns)
        for j, p in enumerate(self.base_positions):
            out_v[p], out_s[p] = values[j], statuses[j]
        for p, si in prog.outputs:  # one value: plain Python (same rule as Program.numbers / statuses)
            value, null = results[si]
            if null is not None and null[0]:
                out_v[p], out_s[p] = prog.steps[si].default.number, NULL_VALUE
            else:
                out_v[p], out_s[p] = (to_python(DType.FLOAT32, value[0]) if prog.f32[si] else float(value[0])), PRESENT
        return out_v, out_s

    @cached_property
    def _one_layout(self) -> tuple[int, Any]:
        """For `_derived_one`: the number of base outputs k, and the getter putting (base outputs...,
        derived outputs in `Program.outputs` order...) in output order (None when that is the order)."""
        prog = self.program
        assert prog is not None
        k = len(self.base_positions)
        src = dict(zip(self.base_positions, range(k), strict=True))
        src.update({p: k + j for j, (p, _) in enumerate(prog.outputs)})
        order = [src[p] for p in range(len(self.columns))]
        return k, (None if order == sorted(order) else itemgetter(*order))

    def _derived_one(self, values: Sequence[Any], statuses: Any) -> tuple[Sequence[Any], Sequence[int] | None] | None:
        """One row's output values and statuses (None: all PRESENT) from its base columns' (as `vector`
        or `fast_values` give them), the derived ones computed in plain Python (`Program.run_one`); None
        when the program has no one-row form for them (the numpy program answers)."""
        prog = self.program
        assert prog is not None
        inputs = self.kernel.one_inputs(values, statuses, prog.needed)
        results = None if inputs is None else prog.run_one(inputs)
        if results is None:
            return None
        k, perm = self._one_layout
        f32 = prog.f32
        derived: list[Any] = []
        codes: list[int] | None = None
        for j, (_, si) in enumerate(prog.outputs):  # same rule as Program.numbers / statuses
            r = results[si]
            if r is None:
                derived.append(prog.steps[si].default.number)
                if codes is None:
                    codes = [PRESENT] * len(prog.outputs)
                codes[j] = NULL_VALUE
            else:
                derived.append(to_python(DType.FLOAT32, r) if f32[si] else float(r))
        vals = (*values[:k], *derived)
        sts: Sequence[int] | None = None
        if statuses is not None or codes is not None:
            sts = (*(statuses[:k] if statuses is not None else [PRESENT] * k),
                   *(codes if codes is not None else [PRESENT] * len(prog.outputs)))
        if perm is not None:
            vals = perm(vals)
            sts = None if sts is None else perm(sts)
        return vals, sts

    def _derived_fast_values(self, row: Sequence[Any] | None, request: Mapping[str, Any] | None,
                             now_us: int) -> tuple[Sequence[Any], Any] | None:
        out = self.kernel.fast_values(row, request, now_us)
        return None if out is None else self._derived_one(*out)

    @cached_property
    def fast_values(self) -> Callable[[Sequence[Any] | None, Mapping[str, Any] | None, int],
                                      tuple[Sequence[float], Any] | None]:
        """`fast_values(row, request, now_us)`: `vector` of one row for a `fast_vector` plan, or None
        when the general form must answer (`Kernel.fast_values`; with derived features, then
        `Program.run_one`)."""
        if self.program is None:
            return self.kernel.fast_values
        return self._derived_fast_values

    def explain(self, locate: Callable[[str], str] | None = None) -> str:
        """A readable description of what this plan reads and returns.

        Args:
            locate: entity -> where a store keeps its records (`OnlineStore.location`), shown
                per entity group; the plan itself is the same for every store.
        """
        lines = [f"RetrievalPlan for {('service ' + self.service) if self.service else 'features'} "
                 f"(registry {self.registry_hash[:12]})"]
        for g in self.groups:
            keys = ", ".join(f"{k}: {d.value}" for k, d in zip(g.join_keys, g.key_dtypes, strict=True))
            where = f"{locate(g.entity)}; " if locate is not None else ""
            lines.append(f"  read entity {g.entity!r} ({where}keys {keys})")
            lines.append(f"    bins: {', '.join(g.bins)}")
            for v in g.views:
                ttl = ("never stale" if v.ttl_us == NEVER_STALE
                       else f"ttl {format_ttl(int(v.ttl_us) // 1_000_000)}")
                lines.append(f"    view {v.name}: timestamp bin {v.timestamp_bin}, {ttl}")
        lines.append("  output columns:")
        for i, c in enumerate(self.columns):
            src = "request" if c.is_request else "derived" if c.is_derived else f"bin {c.bin}"
            default = "" if c.default is None else f", default {c.default!r}"
            lines.append(f"    {i:>2} {c.name} {c.dtype.value} <- {c.ref} ({src}{default})")
        if self.inputs:
            lines.append("  read for derived features only (not in the output):")
            for c in self.inputs:
                src = "request" if c.is_request else f"bin {c.bin}"
                default = "" if c.default is None else f", default {c.default!r}"
                lines.append(f"       {c.ref} {c.dtype.value} ({src}{default})")
        if self.program is not None:
            lines.append("  derived features (computed after the read, in this order, over all rows at once):")
            base = self.base_columns
            refs = [c.ref for c in base] + [d.ref for d in self.derived]
            for d, st in zip(self.derived, self.program.steps, strict=True):
                default = "" if d.default is None else f", default {d.default!r}"
                hidden = "" if d.output >= 0 else " (read by another derived feature only)"
                lines.append(f"    {d.ref} {d.dtype.value} = {st.compiled.form}{default}{hidden}")
                lines.append(f"      inputs: {', '.join(f'{name} <- {refs[slot]}' for name, slot in d.args)}")
        return "\n".join(lines)


    # ---- request handling ----------------------------------------------------------------
    def keys_by_group(self, entities: Mapping[str, Sequence[Any]], n: int) -> list[KeyList]:
        """Validated keys per entity group for a columnar request of `n` rows (fsplug.request)."""
        return keys_by_group(self, entities, n)

    def request_values(self, entities: Mapping[str, Sequence[Any]], n: int) -> dict[int, list[Any]]:
        """Validated request-time feature values by output column position (fsplug.request)."""
        return request_values(self, entities, n)


def compile_plan(
    registry: Registry,
    *,
    features: Sequence[str] | None = None,
    service: str | None = None,
    full_feature_names: bool = False,
) -> RetrievalPlan:
    """Compile feature refs (or a feature service) into a RetrievalPlan.

    A derived feature's inputs are read even when they are not outputs (`RetrievalPlan.inputs`).
    """
    if (features is None) == (service is None):
        raise UserInputError("give exactly one of features=[...] or service=...")
    if service is not None:
        refs = registry.service(service).refs
    else:
        if isinstance(features, str):
            features = [features]
        refs = tuple(features or ())
        if not refs:
            raise UserInputError("features=[] is empty: name at least one 'view:feature'")
    derived_views = registry.derived_views
    expanded: list[tuple[str, str]] = []
    for ref in refs:
        err = check_ref(ref, registry.feature_views, registry.request_sources, derived_views)
        if err:
            raise ReferenceNotFoundError(err)
        view, feat = ref.split(":")
        target: Any = (registry.feature_views.get(view) or registry.request_sources.get(view)
                       or derived_views[view])
        names = [f.name for f in target.features] if feat == "*" else [feat]
        for name in names:
            if (view, name) in expanded:
                raise UserInputError(f"feature {view}:{name} is requested twice")
            expanded.append((view, name))

    groups: dict[str, dict[str, Any]] = {}
    columns: list[OutputColumn] = []
    for view, feat in expanded:
        out_name = f"{view}__{feat}" if full_feature_names else feat
        if view in derived_views:
            d = derived_views[view].feature(feat)
            columns.append(OutputColumn(out_name, f"{view}:{feat}", view, feat, d.dtype, d.default, DERIVED, None,
                                        -1, -1, None))
        else:
            columns.append(_base_column(registry, view, feat, out_name, groups))
    seen: dict[str, str] = {}
    for c in columns:
        if c.name in seen:
            raise OutputNameClashError(c.name, (seen[c.name], c.ref))
        seen[c.name] = c.ref
    inputs, derived = _derived_steps(registry, columns, groups)
    base = [c for c in columns if not c.is_derived] + inputs
    built: list[EntityGroup] = []
    for entity, g in groups.items():
        ent = registry.entity(entity)
        bins = list(g["bins"])
        views = []
        for name, ts_bin, ttl in g["views"]:
            views.append(ViewRead(name, ts_bin, len(bins), ttl * 1_000_000 if ttl else NEVER_STALE))
            bins.append(ts_bin)
        numeric = all(c.dtype.is_numeric for c in base if c.group == len(built))
        built.append(EntityGroup(entity, tuple(k.name for k in ent.join_keys),
                                 tuple(k.dtype for k in ent.join_keys), tuple(bins), tuple(views), numeric))
    offline = tuple(v.name for g in built for v in g.views if not registry.feature_views[v.name].online)
    return RetrievalPlan(registry.hash, tuple(refs), service, full_feature_names, tuple(columns), tuple(built),
                         tuple(inputs), tuple(derived), offline)


def _base_column(registry: Registry, view: str, feat: str, out_name: str, groups: dict[str, dict[str, Any]]
                 ) -> OutputColumn:
    """The column of a stored or request feature; a stored one's bins and view join `groups`."""
    if view in registry.request_sources:
        rf = next(f for f in registry.request_sources[view].features if f.name == feat)
        return OutputColumn(out_name, f"{view}:{feat}", view, feat, rf.dtype, rf.default, -1, None, -1, -1, None)
    fv = registry.feature_views[view]
    f = fv.feature(feat)
    g = groups.setdefault(fv.entity, {"bins": [], "views": []})
    if view not in [v[0] for v in g["views"]]:
        g["views"].append((view, fv.timestamp_bin, fv.ttl_seconds))
    if f.bin not in g["bins"]:
        g["bins"].append(f.bin)
    return OutputColumn(out_name, f"{view}:{feat}", view, feat, f.dtype, f.default, list(groups).index(fv.entity),
                        f.bin, g["bins"].index(f.bin), [v[0] for v in g["views"]].index(view), fv.ttl_seconds)


def _derived_steps(registry: Registry, columns: list[OutputColumn], groups: dict[str, dict[str, Any]]
                   ) -> tuple[list[OutputColumn], list[DerivedStep]]:
    """The hidden input columns and the steps (in run order) that compute the derived output columns."""
    outputs = [c for c in columns if c.is_derived]
    if not outputs:
        return [], []
    base_refs = [c.ref for c in columns if not c.is_derived]
    inputs: list[OutputColumn] = []
    order: list[str] = []  # derived refs, each after the ones it reads

    def need(ref: str) -> None:
        if ref in order:
            return
        view, feat = ref.split(":")
        for _, read in registry.derived(view).feature(feat).reads:
            rview, rfeat = read.split(":")
            if rview in registry.derived_views:
                need(read)  # the registry has no cycles (apply refuses them)
            elif read not in base_refs:
                base_refs.append(read)
                inputs.append(_base_column(registry, rview, rfeat, f"__input__{rview}__{rfeat}", groups))
        order.append(ref)

    for c in outputs:
        need(c.ref)
    n_base = len(base_refs)
    out_pos = {c.ref: i for i, c in enumerate(columns) if c.is_derived}
    steps = []
    for ref in order:
        view, feat = ref.split(":")
        d = registry.derived(view).feature(feat)
        args = tuple((name, base_refs.index(read) if read in base_refs else n_base + order.index(read))
                     for name, read in d.reads)
        steps.append(DerivedStep(ref, d.dtype, d.default, d.expr, d.udf, args, out_pos.get(ref, -1)))
    return inputs, steps


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000
