"""Training data: `get_historical_features`, the values online serving would have given at each row's time.

For an entity row at time t, each stored feature gets what `get_online_features` would have served
at t after materializing up to t: the latest source row at or before t (point-in-time join, ties as
in materialization), then the serving kernel's rules with t as "now" (no row: NOT_FOUND; older than
the view's ttl: OUTSIDE_MAX_AGE; a null or NaN value: NULL_VALUE), and every value that is not
PRESENT replaced by the feature's declared default, as served online. Request features take the
row's value, or the declared default when the column or the value is missing. Derived features run
the plan's compiled program (fsplug.derived) on the same inputs, with the same rule for inputs that
are not PRESENT (fsplug.kernel.derived_input) as serving.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fsplug.errors import RequestFeatureError, UserInputError
from fsplug.kernel import NOT_FOUND, NULL_VALUE, PRESENT, column_codes_array, derived_input, view_codes_array
from fsplug.result import STATUS_NAMES
from fsplug.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.engines.spark import SparkEngine
    from fsplug.offline.pit import ViewJoin
    from fsplug.plan import RetrievalPlan
    from fsplug.registry import Registry

__all__ = ["historical_features", "view_joins", "finish_rows"]

_STATUS_NAMES = np.array(STATUS_NAMES, dtype=object)  # by code, for a vectorized lookup


def _entity_table(entity_df: Any) -> pa.Table:
    import pyarrow.parquet as pq

    from fsplug.offline.arrow import as_table

    if isinstance(entity_df, (str, Path)):
        entity_df = pq.read_table(entity_df)
    table = as_table(entity_df, "entity rows")
    if table is None:
        raise UserInputError(f"entity_df must be a pyarrow Table, a pandas DataFrame, a dict of columns or a "
                             f"Parquet path; got {type(entity_df).__name__}")
    return table


def _derived_columns(plan: RetrievalPlan, raw: dict[int, tuple[Any, np.ndarray]], n: int, fill_defaults: bool,
                     out_cols: dict[str, Any], statuses: dict[str, np.ndarray]) -> None:
    """Compute the plan's derived output columns into `out_cols` / `statuses` (as arrow arrays / codes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    prog = plan.program
    assert prog is not None
    kernel = plan.kernel
    inputs = {}
    for i in prog.needed:
        arr, st = raw[i]
        c = kernel.columns[i]
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        ok = st == PRESENT
        if arr.null_count:  # a request value left null (it has no default): null, as a missing value
            ok = ok & arr.is_valid().to_numpy(zero_copy_only=False)
        if pa.types.is_timestamp(arr.type):
            arr = arr.cast(pa.int64())
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            values = np.array(arr.to_pylist(), dtype=object)
        else:
            values = pc.fill_null(arr, pa.scalar(False if pa.types.is_boolean(arr.type) else 0, arr.type)
                                  ).to_numpy(zero_copy_only=False)
        inputs[i] = derived_input(c.dtype, c.default.stored, values, ok)
    results = prog.run(inputs, n)
    for pos, si in prog.outputs:
        out = plan.columns[pos]
        null = results[si][1]
        keep_null = null is not None and (not fill_defaults or prog.steps[si].default.python is None)
        typed = prog.array(si, out.dtype, results[si])
        out_cols[out.name] = pa.array(typed, type=out.dtype.arrow_type(), mask=null if keep_null else None)
        statuses[out.name] = prog.statuses(null, n)


def historical_features(plan: RetrievalPlan, registry: Registry, repo_root: Path, entity_df: Any, *,
                        event_timestamp_column: str = "event_timestamp", fill_defaults: bool = True,
                        include_statuses: bool = False, engine: SparkEngine | None = None,
                        output_path: str | Path | None = None) -> Any:
    """The training table of `plan` for entity rows with times; see FeatureStore.get_historical_features.

    Local engine (`engine=None`): a pyarrow Table. Spark engine: a Spark DataFrame, computed by the same
    rules (Spark joins, then `finish_rows` runs on each batch of joined rows); with `output_path` it is
    written there as Parquet first and the returned DataFrame reads it.
    """
    joins = view_joins(plan, registry, repo_root, spark=engine is not None)
    finish = functools.partial(finish_rows, plan, event_timestamp_column=event_timestamp_column,
                               fill_defaults=fill_defaults, include_statuses=include_statuses)
    if engine is not None:
        frame = engine.entity_frame(entity_df)
        joined = engine.historical_join(frame, event_timestamp_column=event_timestamp_column, views=joins)
        result = engine.map_batches(joined, finish)
        if output_path is not None:
            result.write.parquet(str(output_path))
            result = engine.session().read.parquet(str(output_path))
        return result
    from fsplug.offline.pit import point_in_time_join

    table = _entity_table(entity_df)
    # a column named like an output is replaced by it (its request value is read before the join)
    base = table.drop_columns([name for name in table.column_names if name in plan.names and
                               name not in plan.request_names])
    out = finish(point_in_time_join(base, event_timestamp_column=event_timestamp_column, views=joins))
    if output_path is not None:
        import pyarrow.parquet as pq

        pq.write_table(out, str(output_path))
    return out


def view_joins(plan: RetrievalPlan, registry: Registry, repo_root: Path, *, spark: bool = False) -> list[ViewJoin]:
    """What the point-in-time join brings per view of `plan`: its value columns and its event time, under
    the internal names `finish_rows` reads (no ttl: the kernel's rule tells a stale value from a
    missing one). Not `spark` (the local engine): a Spark catalog table is a ConfigError."""
    from fsplug.offline.pit import ViewJoin

    base_columns = plan.base_columns  # the outputs that are not derived, then what only derived ones read
    joins = []
    for g in plan.groups:
        for v in g.views:
            view = registry.view(v.name)
            cols = [c for c in base_columns if c.view == v.name and not c.is_request]
            feats = [view.feature(c.feature) for c in cols]
            joins.append(ViewJoin(
                name=view.name,
                path=view.source.spark_path(repo_root) if spark else view.source.local_path(repo_root),
                table=view.source.table,
                join_keys=g.join_keys,
                timestamp_field=view.source.timestamp_field,
                created_timestamp_field=view.source.created_timestamp_field,
                columns=(*(f.column for f in feats), view.source.timestamp_field),
                output_names=(*(f"{_VALUE}{base_columns.index(c)}" for c in cols), f"{_TS}{v.name}"),
                dtypes=(*(f.dtype for f in feats), DType.TIMESTAMP),
                ttl=None,
            ))
    return joins


_VALUE, _TS = "__fsplug_value_", "__fsplug_ts_"


def _request_column(c: Any, col: Any) -> Any:
    """The entity rows' column of request feature `c` in its dtype's Arrow type, checked as online requests
    are (fsplug.request): timestamps of any unit or zone (naive = UTC) or ISO-8601 strings; bytes as bytes
    or base64 text; numbers cast safely (a fraction is no int64); nulls stay null. RequestFeatureError for
    a column that does not fit."""
    import pyarrow as pa

    from fsplug.offline.arrow import to_utc_us
    from fsplug.request import check_request_value

    target = c.dtype.arrow_type()
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if col.type == target:
        return col
    text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
    if c.dtype is DType.TIMESTAMP and pa.types.is_timestamp(col.type):
        return to_utc_us(col)
    if c.dtype in (DType.TIMESTAMP, DType.BYTES) and text:  # ISO-8601 times; base64 bytes
        return pa.array([None if v is None else check_request_value(c, v) for v in col.to_pylist()], target)
    if (not text or c.dtype is DType.STRING) and c.dtype is not DType.TIMESTAMP and not pa.types.is_timestamp(col.type):
        try:
            return col.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise RequestFeatureError(f"request feature {c.feature!r} is {c.dtype.value}; the entity rows' column "
                                      f"has type {col.type} and does not cast to it ({exc})") from None
    raise RequestFeatureError(f"request feature {c.feature!r} is {c.dtype.value}; the entity rows' column has "
                              f"type {col.type}")


def finish_rows(plan: RetrievalPlan, joined: pa.Table, *, event_timestamp_column: str, fill_defaults: bool,
                include_statuses: bool) -> pa.Table:
    """Joined entity rows (their columns plus the join's internal value and time columns) as training
    rows: the serving kernel's statuses and defaults, request features, the entity columns passed
    through. Row-wise, so it runs the same on a whole table (local) or on each batch (Spark)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from fsplug.offline.arrow import cast_to_dtype, ts_micros

    n = joined.num_rows
    kernel = plan.kernel
    # request features: the row's value, else the declared default (as online); without one, required
    request_cols: dict[str, pa.Array] = {}
    base_columns = plan.base_columns  # the outputs that are not derived, then what only derived ones read
    for c in plan.request_columns:
        spec = kernel.columns[base_columns.index(c)]
        default = spec.default.python
        arrow_type = c.dtype.arrow_type()
        if c.feature in joined.column_names:
            col = _request_column(c, joined.column(c.feature))
            if col.null_count and default is not None:
                col = pc.fill_null(col, pa.scalar(default, arrow_type))
            request_cols[c.name] = col
        elif default is not None:
            request_cols[c.name] = pa.array([default] * n, arrow_type)
        else:
            raise RequestFeatureError(f"request feature {c.feature!r} ({c.ref}) has no default, so it must be a "
                                      "column of the entity rows")
    now = ts_micros(joined.column(event_timestamp_column)).astype(np.float64)
    if joined.column(event_timestamp_column).null_count:
        now[~joined.column(event_timestamp_column).is_valid().to_numpy(zero_copy_only=False)] = np.nan
    out_cols: dict[str, Any] = {}
    statuses: dict[str, np.ndarray] = {}
    raw: dict[int, tuple[Any, np.ndarray]] = {}  # base column -> (its arrow values, statuses): derived inputs
    for g in plan.groups:
        for v in g.views:
            ts_col = joined.column(f"{_TS}{v.name}")
            ts = ts_micros(ts_col).astype(np.float64)
            if ts_col.null_count:
                ts[~ts_col.is_valid().to_numpy(zero_copy_only=False)] = np.nan
            codes = view_codes_array(ts, v.ttl_us, now)
            codes[np.isnan(now)] = NOT_FOUND  # a row without a time is served nothing
            for i, c in enumerate(base_columns):
                if c.is_request or c.view != v.name:
                    continue
                arr = cast_to_dtype(joined.column(f"{_VALUE}{i}").combine_chunks(), c.dtype)
                null = ~arr.is_valid().to_numpy(zero_copy_only=False)
                if c.dtype in (DType.FLOAT64, DType.FLOAT32):
                    null |= np.isnan(arr.to_numpy(zero_copy_only=False).astype(np.float64))
                st = column_codes_array(codes, null)
                present = pa.array(st == PRESENT)
                default = kernel.columns[i].default.python if fill_defaults else None
                fill = pa.scalar(default, arr.type) if default is not None else pa.nulls(1, arr.type)[0]
                out_cols[c.name] = pc.if_else(present, arr, fill)
                statuses[c.name] = st
                raw[i] = (arr, st)
    for c in plan.request_columns:
        out_cols[c.name] = col = request_cols[c.name]
        statuses[c.name] = np.full(n, PRESENT, dtype=np.uint8)
        if col.null_count:  # a value left null, without a default: NULL_VALUE (online refuses the request)
            statuses[c.name][~col.is_valid().to_numpy(zero_copy_only=False)] = NULL_VALUE
        raw[base_columns.index(c)] = (request_cols[c.name], statuses[c.name])
    if plan.program is not None:
        _derived_columns(plan, raw, n, fill_defaults, out_cols, statuses)
    outputs = set(plan.names)  # (entity columns named like an output are replaced by it)
    if include_statuses:
        outputs.update(f"{name}__status" for name in plan.names)
    entity_cols = [name for name in joined.column_names
                   if name not in outputs and not name.startswith((_VALUE, _TS))]
    result = joined.select(entity_cols)
    for name in plan.names:
        result = result.append_column(name, out_cols[name])
    if include_statuses:
        for name in plan.names:
            result = result.append_column(f"{name}__status", pa.array(_STATUS_NAMES[statuses[name]], pa.string()))
    return result
