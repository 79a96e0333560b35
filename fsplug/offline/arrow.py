"""Arrow helpers shared by the offline readers (parquet.py, pit.py): types, time and scanning.

Time semantics: timestamp columns of any unit and zone are accepted, a naive timestamp is UTC,
comparisons are at microsecond precision, output is ``timestamp[us, UTC]`` (nanoseconds truncated).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from fsplug.types import EPOCH, DType, as_utc

__all__ = [
    "UTC_US",
    "INT64_MIN",
    "SCAN_OPTIONS",
    "arrow_type_ok",
    "to_utc_us",
    "cast_to_dtype",
    "ts_micros",
    "time_filter",
    "comparable",
    "first_line",
    "as_table",
]

UTC_US = pa.timestamp("us", tz="UTC")
"""The Arrow type of every timestamp fsplug's offline layer outputs."""
INT64_MIN = np.iinfo(np.int64).min
"""What `ts_micros` gives a null timestamp (before every real time)."""

# Arrow's default pre_buffer=True coalesces and caches the byte ranges of a whole file: a 2 GB file
# then costs ~2 GB of RSS. Without it the scan holds a few row groups at a time (and is not slower).
SCAN_OPTIONS = ds.ParquetFragmentScanOptions(pre_buffer=False)


def _base_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def arrow_type_ok(t: pa.DataType, dtype: DType) -> bool:
    """True when a column of Arrow type `t` can be read as `dtype` without changing its meaning."""
    t = _base_type(t)
    if dtype is DType.INT64:
        return pa.types.is_integer(t)
    if dtype is DType.FLOAT64:
        return pa.types.is_floating(t)
    if dtype is DType.FLOAT32:
        return pa.types.is_floating(t)
    if dtype is DType.STRING:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if dtype is DType.BOOL:
        return pa.types.is_boolean(t)
    if dtype is DType.BYTES:
        return (
            pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
            or pa.types.is_binary_view(t)
        )
    if dtype is DType.TIMESTAMP:
        return pa.types.is_timestamp(t)
    if dtype is DType.FLOAT64_LIST:
        return (
            pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
        ) and pa.types.is_floating(t.value_type)
    raise AssertionError(dtype)


def to_utc_us(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A timestamp array of any unit/zone as ``timestamp[us, UTC]`` (naive = UTC; ns truncated)."""
    t = arr.type
    if t == UTC_US:
        return arr
    if t.unit != "us":
        arr = arr.cast(pa.timestamp("us", t.tz), safe=False)
    return arr.cast(UTC_US)


def cast_to_dtype(arr: pa.Array | pa.ChunkedArray, dtype: DType) -> pa.Array | pa.ChunkedArray:
    """Cast a column accepted by `arrow_type_ok` to `dtype`'s Arrow type (ArrowInvalid on overflow)."""
    if dtype is DType.TIMESTAMP:
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        return to_utc_us(arr)
    target = dtype.arrow_type()
    return arr if arr.type == target else arr.cast(target)


def ts_micros(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch, UTC; nulls become INT64_MIN."""
    us = to_utc_us(arr).cast(pa.int64())
    return us.fill_null(INT64_MIN).to_numpy()


_UNIT_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _ceil_in_unit(dt: datetime, unit: str) -> int:
    """The smallest integer count of `unit` since the epoch that is >= dt (dt tz-aware)."""
    delta = as_utc(dt) - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    per_s = _UNIT_PER_S[unit]
    if per_s >= 1_000_000:
        return micros * (per_s // 1_000_000)
    return -((-micros) // (1_000_000 // per_s))


def time_filter(ts_field: str, ts_type: pa.DataType, start: datetime | None,
                end: datetime | None) -> ds.Expression:
    """A pushdown filter `start <= ts < end` in the column's own unit and zone (exact for every unit)."""
    expr = None

    def bound(dt: datetime) -> pa.Scalar:
        return pa.scalar(_ceil_in_unit(dt, ts_type.unit), pa.int64()).cast(ts_type)

    if start is not None:
        expr = ds.field(ts_field) >= bound(start)
    if end is not None:
        e = ds.field(ts_field) < bound(end)
        expr = e if expr is None else expr & e
    if expr is None:
        expr = ds.field(ts_field).is_valid()
    return expr


def comparable(arr: pa.Array) -> pa.Array:
    """Keys in a sortable, comparable form (dictionary-decoded, large strings as strings)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    if pa.types.is_timestamp(arr.type):
        arr = to_utc_us(arr)
    return arr


def first_line(e: BaseException) -> str:
    """The first line of an Arrow/OS error, for messages that name the file."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def as_table(data: object, what: str) -> pa.Table | None:
    """`data` as a pyarrow Table when it is one already, a RecordBatch, a dict of columns or a pandas
    DataFrame (its index dropped); None for anything else (the caller says what it accepts).

    pandas is never imported here: a DataFrame is recognized by its type's module.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas") and type(data).__name__ == "DataFrame":
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            from fsplug.errors import SourceDataError

            raise SourceDataError(f"{what}: cannot convert the DataFrame: {first_line(exc)}") from None
    if isinstance(data, dict):
        try:
            return pa.table(data)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:  # (an int beyond int64)
            from fsplug.errors import SourceDataError

            raise SourceDataError(f"{what}: cannot build a table from the columns: {first_line(exc)}") from None
    return None
