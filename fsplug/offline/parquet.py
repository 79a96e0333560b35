"""Parquet sources: open them, check them against their declarations, scan the latest row per entity.

Plain functions over plain arguments; the registry/materialization code passes names and dtypes.

Time semantics (the same everywhere in fsplug's offline layer):

- Timestamp columns may have any unit and any time zone. A tz-naive timestamp is taken as UTC.
  Comparisons happen at microsecond precision; output timestamps are ``timestamp[us, UTC]``
  (nanoseconds are truncated).
- ``scan_latest`` keeps rows with ``start <= event_ts < end``: start inclusive, end exclusive, as
  Feast's file offline store does in ``pull_latest_from_table_or_query``
  (``df[ts] >= start_date & df[ts] < end_date``). Consecutive windows ``[a, b)``, ``[b, c)`` thus
  never read a row twice. (Feast's SQL stores use ``BETWEEN``, inclusive at both ends; fsplug follows
  the Parquet store.)
- Latest row per entity: greatest event timestamp; ties broken by the greatest created timestamp
  (a null created timestamp loses to any non-null one); remaining ties go to the row that comes last
  in scan order (files in path order, rows in file order), i.e. "last written wins".
- Rows whose join key (any column of it) is null are skipped and counted in `ScanStats.null_key_rows`.
  Rows with a null event timestamp fall outside every window.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fsplug.errors import SourceDataError
from fsplug.offline.arrow import (
    SCAN_OPTIONS,
    arrow_type_ok,
    cast_to_dtype,
    comparable,
    first_line,
    time_filter,
    ts_micros,
)
from fsplug.offline.spill import Spill, hash_keys
from fsplug.types import DType

__all__ = ["ScanStats", "check_columns", "compact_rows", "finish_batch", "latest_rids", "open_source",
           "scan_latest"]

_HIVE_DIR = re.compile(r"^[^=]+=.*$")
# Rows of (keys, event ts, created ts, row id) sorted at once when choosing the latest rows; about
# 32 bytes a row for an int64 key plus the sort's own indices, so ~200-300 MB at this size.
DEFAULT_SORT_ROWS = 4_000_000
# Sources of at most this many rows are read once, whole (threaded), instead of in two bounded
# passes: ~16 columns x 1M rows is ~130 MB, and the single pass saves the fixed cost of the second.
SINGLE_PASS_ROWS = 1_000_000


# ---------------------------------------------------------------------------------------------
# opening


def open_source(path: str | Path) -> ds.Dataset:
    """Open a Parquet file, or a directory of them (recursively; hive `key=value` dirs are detected).

    Every file's footer is read here, so a corrupt or non-Parquet file is reported now, by name,
    rather than halfway through a materialization. Files and dirs starting with `.` or `_` are
    ignored (Spark's `_SUCCESS`, `.crc`).
    """
    p = Path(path)
    if not p.exists():
        raise SourceDataError(f"{p}: no such file or directory")
    try:
        if p.is_dir():
            hive = _has_hive_dirs(p)
            dataset = ds.dataset(p, format="parquet", partitioning="hive" if hive else None)
        else:
            dataset = ds.dataset(p, format="parquet")
    except (pa.ArrowException, OSError) as e:
        raise SourceDataError(f"{p}: cannot be read as Parquet: {first_line(e)}") from e
    problems = []
    n_files = 0
    for frag in dataset.get_fragments():
        n_files += 1
        try:
            frag.physical_schema  # noqa: B018 - reads and validates the footer
        except (pa.ArrowException, OSError) as e:
            problems.append(f"{frag.path}: not a readable Parquet file: {first_line(e)}")
    if problems:
        raise SourceDataError("\n".join(problems))
    if n_files == 0:
        raise SourceDataError(f"{p}: directory holds no Parquet files")
    return dataset


def _has_hive_dirs(root: Path) -> bool:
    for _dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        if any(_HIVE_DIR.match(d) for d in dirnames):
            return True
    return False


def _as_dataset(path_or_dataset: str | Path | ds.Dataset) -> tuple[ds.Dataset, str]:
    if isinstance(path_or_dataset, ds.Dataset):
        files = getattr(path_or_dataset, "files", None) or ["<dataset>"]
        return path_or_dataset, str(files[0]) if len(files) == 1 else f"{len(files)} files"
    return open_source(path_or_dataset), str(path_or_dataset)


# ---------------------------------------------------------------------------------------------
# checking


def column_mismatches(dataset: ds.Dataset, needed: Sequence[tuple[str, DType]],
                      label: str) -> list[tuple[str, str, str | None, list[str]]]:
    """Every needed (column, dtype) that `dataset` lacks or holds with a type the dtype cannot be read
    from: (column, file, the type found or None when missing, that file's columns), once per column
    and file. Footers only, no data. A directory's schema is its first file's, so each file is also
    checked on its own: a sibling with another type is named by its path (`label` names the dataset).
    """
    schema = dataset.schema
    fragments = list(dataset.get_fragments()) if isinstance(dataset, ds.FileSystemDataset) else []
    out: list[tuple[str, str, str | None, list[str]]] = []
    first: dict[str, DType] = {}
    for name, dt in needed:
        first.setdefault(name, dt)  # a column needed twice is checked against its first dtype
    for name, dt in first.items():
        i = schema.get_field_index(name)
        if i < 0:
            out.append((name, label, None, schema.names))
        elif not arrow_type_ok(schema.field(i).type, dt):
            out.append((name, label, str(schema.field(i).type), schema.names))
        elif len(fragments) > 1:
            for frag in fragments:
                phys = frag.physical_schema
                j = phys.get_field_index(name)
                if j >= 0 and not arrow_type_ok(phys.field(j).type, dt):
                    out.append((name, frag.path, str(phys.field(j).type), phys.names))
    return out


def check_columns(
    dataset: ds.Dataset,
    *,
    source: str,
    join_keys: Mapping[str, DType],
    timestamp_field: str,
    created_timestamp_field: str | None,
    columns: Mapping[str, DType],
) -> None:
    """Raise SourceDataError listing every needed column that is missing or of an incompatible type.

    `source` names the source in messages (its path, as the user wrote it). Accepted Arrow types per
    dtype: see `arrow_type_ok` (any int width for int64, float32 widened to float64, timestamps of
    any unit/zone with naive = UTC, string/large_string, binary, list<float32|float64>, and
    dictionary-encoded versions of these). Each file of a directory is checked on its own, so a
    file whose column type differs from its siblings' is named.
    """
    needed: list[tuple[str, DType, str]] = []
    for k, dt in join_keys.items():
        needed.append((k, dt, f"join key '{k}' declares {dt}"))
    needed.append((timestamp_field, DType.TIMESTAMP, "it is the event timestamp field; expected a timestamp"))
    if created_timestamp_field:
        needed.append(
            (
                created_timestamp_field,
                DType.TIMESTAMP,
                "it is the created timestamp field; expected a timestamp",
            )
        )
    for c, dt in columns.items():
        needed.append((c, dt, f"feature '{c}' declares {dt}"))

    why_of: dict[str, str] = {}
    for name, _dt, why in needed:
        why_of.setdefault(name, why)
    problems: list[str] = []
    for name, file, found, have in column_mismatches(dataset, [(n, dt) for n, dt, _ in needed], source):
        why = why_of[name]
        if found is None:
            problems.append(f"{file}: column '{name}' is missing ({why.split(';')[0]}); "
                            f"columns are: {', '.join(have)}")
        else:
            problems.append(f"{file}: column '{name}' has type {found}; {why}")
    if problems:
        raise SourceDataError("\n".join(dict.fromkeys(problems)))


def _require_columns(dataset: ds.Dataset, source: str, names: Sequence[str]) -> None:
    missing = [n for n in names if dataset.schema.get_field_index(n) < 0]
    if missing:
        have = ", ".join(dataset.schema.names)
        raise SourceDataError(
            "\n".join(f"{source}: column '{m}' is missing; columns are: {have}" for m in missing)
        )


def _require_timestamp(dataset: ds.Dataset, source: str, name: str) -> pa.DataType:
    t = dataset.schema.field(name).type
    if not pa.types.is_timestamp(t):
        raise SourceDataError(f"{source}: column '{name}' has type {t}; expected a timestamp")
    return t


# ---------------------------------------------------------------------------------------------
# latest row per entity


@dataclass
class ScanStats:
    """What a `scan_latest` run saw; filled in as the scan goes (complete once it is exhausted)."""

    rows_read: int = 0
    """Rows inside the time window (read by the second pass; progress() reports the same rows)."""
    null_key_rows: int = 0
    """Rows skipped because a join key column was null."""
    entities: int = 0
    """Rows emitted: one per distinct entity in the window."""
    partitions: int = 0
    """Hash partitions the key/timestamp rows were sorted in (1 = all in memory, nothing spilled)."""
    spilled_bytes: int = 0
    """Bytes of compact key/timestamp rows written to temporary files (0 when partitions == 1)."""


def scan_latest(
    path: str | Path | ds.Dataset,
    *,
    join_keys: Sequence[str] | Mapping[str, DType],
    timestamp_field: str,
    created_timestamp_field: str | None,
    columns: Sequence[str] | Mapping[str, DType],
    start: datetime | None,
    end: datetime,
    batch_rows: int = 65536,
    progress: Callable[[int], None] | None = None,
    stats: ScanStats | None = None,
    sort_rows: int = DEFAULT_SORT_ROWS,
    single_pass_rows: int = SINGLE_PASS_ROWS,
    spill_dir: str | Path | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield, in batches of about `batch_rows`, the latest row of every entity with start <= ts < end.

    Output columns: the join keys, `timestamp_field` as ``timestamp[us, UTC]``, then `columns`.
    When `join_keys`/`columns` are mappings to DTypes, the source is checked with `check_columns`
    first and values are cast to the declared types; with plain names they keep their Arrow types.
    `start=None` means no lower bound; naive datetimes are UTC. Tie rules: see the module docstring.

    Memory stays bounded: a first pass reads only the key and timestamp columns and picks the winning
    row of each entity, keeping one byte per row in a bitmap; above `sort_rows` source rows, the
    compact (key, timestamps, row id) rows are hash-partitioned by key into temporary Arrow IPC files
    under `spill_dir` (default: the system temp dir; ~32 bytes a row for an int64 key) and each
    partition is sorted alone. The second pass reads the feature columns in bounded batches and
    keeps the winners. Rows come out in source order, not key order. `progress(n)` is called with
    the rows read by each batch of the second pass; `stats`, if given, is filled in. Errors are
    SourceDataError and name the file.
    """
    stats = stats if stats is not None else ScanStats()
    dataset, source = _as_dataset(path)
    key_names = list(join_keys)
    col_names = list(columns)
    needed = [
        *key_names,
        timestamp_field,
        *([created_timestamp_field] if created_timestamp_field else []),
        *col_names,
    ]
    if isinstance(join_keys, Mapping) and isinstance(columns, Mapping):
        check_columns(
            dataset,
            source=source,
            join_keys=join_keys,
            timestamp_field=timestamp_field,
            created_timestamp_field=created_timestamp_field,
            columns=columns,
        )
    else:
        _require_columns(dataset, source, needed)
    ts_type = _require_timestamp(dataset, source, timestamp_field)
    if created_timestamp_field:
        _require_timestamp(dataset, source, created_timestamp_field)
    if not key_names:
        raise ValueError("scan_latest needs at least one join key")
    key_types = dict(join_keys) if isinstance(join_keys, Mapping) else {}
    col_types = dict(columns) if isinstance(columns, Mapping) else {}

    flt = time_filter(timestamp_field, ts_type, start, end)
    out_names = list(dict.fromkeys([*key_names, timestamp_field, *col_names]))
    if dataset.count_rows() <= single_pass_rows:  # Parquet metadata: an upper bound of the window
        yield from _scan_small(dataset, source, flt, key_names, timestamp_field, created_timestamp_field,
                               out_names, key_types, col_types, batch_rows, progress, stats)
        return
    winners = _pick_winners(
        dataset, source, flt, key_names, timestamp_field, created_timestamp_field, sort_rows, stats, spill_dir
    )

    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    base = 0
    # Single-threaded: a threaded scanner decodes ahead of a slower consumer (the store writes), and
    # the decoded row groups pile up: 1 GB over 47M rows at 10M entities, for no gain in time.
    for batch in _batches(dataset, source, out_names, flt, batch_rows, threads=False):
        n = batch.num_rows
        mask = winners[base : base + n]
        base += n
        stats.rows_read += n
        if progress is not None:
            progress(n)
        if not mask.any():
            continue
        kept = batch.filter(pa.array(mask))
        pending.append(finish_batch(kept, source, out_names, timestamp_field, key_types, col_types))
        pending_rows += kept.num_rows
        if pending_rows >= batch_rows:
            yield from _emit(pending, batch_rows, stats, final=False)
            pending_rows = sum(b.num_rows for b in pending)
    yield from _emit(pending, batch_rows, stats, final=True)
    if base != len(winners):  # the two passes must see the same rows in the same order
        raise SourceDataError(f"{source}: changed while it was being read ({len(winners)} rows, then {base})")


def _scan_small(dataset: ds.Dataset, source: str, flt: Any, key_names: list[str], ts_field: str,
                created_field: str | None, out_names: list[str], key_types: Mapping[str, DType],
                col_types: Mapping[str, DType], batch_rows: int, progress: Callable[[int], None] | None,
                stats: ScanStats) -> Iterator[pa.RecordBatch]:
    """`scan_latest` for a small source: one threaded read of every needed column, the same winners."""
    cols = list(dict.fromkeys([*out_names, *([created_field] if created_field else [])]))
    try:
        table = dataset.to_table(columns=cols, filter=flt, fragment_scan_options=SCAN_OPTIONS)
    except (pa.ArrowException, OSError) as e:
        raise SourceDataError(f"{source}: reading failed: {first_line(e)}") from e
    n = table.num_rows
    stats.rows_read += n
    if progress is not None:
        progress(n)
    compact, null_keys = compact_rows(table, key_names, ts_field, created_field, np.arange(n))
    stats.null_key_rows += null_keys
    if compact is None:
        return
    rids = np.sort(latest_rids(pa.Table.from_batches([compact]), len(key_names), created_field is not None))
    kept = table.select(out_names).take(pa.array(rids)).combine_chunks()
    for batch in kept.to_batches(max_chunksize=batch_rows):
        out = finish_batch(batch, source, out_names, ts_field, key_types, col_types)
        stats.entities += out.num_rows
        yield out


def _emit(
    pending: list[pa.RecordBatch], batch_rows: int, stats: ScanStats, final: bool
) -> Iterator[pa.RecordBatch]:
    if not pending:
        return
    table = pa.Table.from_batches(pending).combine_chunks()
    pending.clear()
    out = table.to_batches(max_chunksize=batch_rows)
    if not final and out and out[-1].num_rows < batch_rows:
        pending.append(out.pop())  # keep the remainder so batches stay near batch_rows
    for b in out:
        stats.entities += b.num_rows
        yield b


def finish_batch(
    batch: pa.RecordBatch,
    source: str,
    names: list[str],
    ts_field: str,
    key_types: Mapping[str, DType],
    col_types: Mapping[str, DType],
) -> pa.RecordBatch:
    arrays = []
    for name in names:
        arr = batch.column(name)
        dt = DType.TIMESTAMP if name == ts_field else key_types.get(name) or col_types.get(name)
        try:
            if dt is not None:
                arr = cast_to_dtype(arr, dt)
        except pa.ArrowException as e:
            raise SourceDataError(
                f"{source}: column '{name}' of type {arr.type} cannot be read as {dt}: {first_line(e)}"
            ) from e
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _batches(
    dataset: ds.Dataset, source: str, columns: list[str], flt: Any, batch_rows: int, threads: bool = True
) -> Iterator[pa.RecordBatch]:
    """Scan in a fixed order (fragments in path order, rows in file order): row ordinals of
    separate passes over the same filter refer to the same rows.

    Readahead is kept short: a consumer slower than the decoder otherwise lets decoded batches
    pile up (hundreds of MB for a multi-GB file)."""
    try:
        yield from dataset.to_batches(
            columns=columns,
            filter=flt,
            batch_size=batch_rows,
            fragment_scan_options=SCAN_OPTIONS,
            use_threads=threads,
            batch_readahead=4,
            fragment_readahead=1,
        )
    except (pa.ArrowException, OSError) as e:
        raise SourceDataError(f"{source}: reading failed: {first_line(e)}") from e


def _pick_winners(
    dataset: ds.Dataset,
    source: str,
    flt: Any,
    key_names: list[str],
    ts_field: str,
    created_field: str | None,
    sort_rows: int,
    stats: ScanStats,
    spill_dir: str | Path | None,
) -> np.ndarray:
    """One bool per row in the window (scan order): True for the latest row of its entity.

    One pass over the key/timestamp columns builds compact rows (keys, ts, created, row id, ~32
    bytes for an int64 key). When the source has more than `sort_rows` rows they are hash-partitioned
    by key into Arrow IPC files in a temporary directory, and each partition is sorted on its own,
    so memory holds at most ~sort_rows compact rows at a time.
    """
    upper = dataset.count_rows()  # from Parquet metadata: cheap, and an upper bound of the window
    n_parts = max(1, math.ceil(upper / max(1, sort_rows)))
    stats.partitions = n_parts
    cols = list(dict.fromkeys([*key_names, ts_field, *([created_field] if created_field else [])]))
    names = [f"k{i}" for i in range(len(key_names))] + ["ts", *(["created"] if created_field else []), "rid"]
    if n_parts > 1 and spill_dir is not None:
        Path(spill_dir).mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="fsplug-scan-", dir=spill_dir) if n_parts > 1 else None
    try:
        spill = Spill(Path(tmp.name), n_parts) if tmp is not None else None
        chunks: list[pa.RecordBatch] = []
        base = 0
        # Single-threaded, small batches: the compact rows are built in Python-driven numpy code,
        # and a threaded reader would only decode ahead of it (costing memory, not time).
        for batch in _batches(dataset, source, cols, flt, 65536, threads=False):
            n = batch.num_rows
            lo, base = base, base + n
            compact, null_keys = compact_rows(batch, key_names, ts_field, created_field, np.arange(lo, base))
            stats.null_key_rows += null_keys
            if compact is None:
                continue
            if spill is None:
                chunks.append(compact)
            else:
                spill.add(compact, hash_keys(compact.columns[: len(key_names)]) % np.uint64(n_parts))
        winners = np.zeros(base, dtype=bool)
        parts: Iterable[pa.Table] = (
            [pa.Table.from_batches(chunks, schema=None if chunks else _empty(names))]
            if spill is None
            else spill.read_back()
        )
        chunks.clear()
        for part in parts:
            if part.num_rows:
                winners[latest_rids(part.combine_chunks(), len(key_names), created_field is not None)] = True
            del part
        if spill is not None:
            stats.spilled_bytes = spill.bytes
        return winners
    finally:
        if tmp is not None:
            tmp.cleanup()


def compact_rows(batch: pa.RecordBatch | pa.Table, key_names: Sequence[str], ts_field: str, created_field: str | None,
                 rids: np.ndarray) -> tuple[pa.RecordBatch | None, int]:
    """The compact rows `latest_rids` picks from: (k0.., ts, [created,] rid) of the rows of `batch` whose
    join keys are all non-null (keys in `comparable` form, times as microseconds, `rids[i]` the row id of
    row i), or None when there are none; and the number of rows skipped for a null key."""
    n = batch.num_rows
    valid = np.ones(n, dtype=bool)
    for k in key_names:
        if batch.column(k).null_count:
            valid &= batch.column(k).is_valid().to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        return None, n
    if len(idx) < n:
        batch = batch.take(pa.array(idx))
    arrays = [comparable(_one_chunk(batch.column(k))) for k in key_names]
    arrays.append(pa.array(ts_micros(batch.column(ts_field))))
    if created_field:
        arrays.append(pa.array(ts_micros(batch.column(created_field))))
    arrays.append(pa.array(rids[idx]))
    names = [f"k{i}" for i in range(len(key_names))] + ["ts", *(["created"] if created_field else []), "rid"]
    return pa.RecordBatch.from_arrays(arrays, names=names), int(n - len(idx))


def _one_chunk(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _empty(names: list[str]) -> pa.Schema:
    return pa.schema([(n, pa.int64()) for n in names])


def latest_rids(table: pa.Table, n_keys: int, has_created: bool) -> np.ndarray:
    """Row ids of the first row of each key group when sorted by keys, ts desc, created desc, rid desc."""
    sort_keys = [(f"k{i}", "ascending") for i in range(n_keys)]
    sort_keys += [("ts", "descending")]
    if has_created:
        sort_keys += [("created", "descending")]
    sort_keys += [("rid", "descending")]
    order = pc.sort_indices(table, sort_keys=sort_keys)
    n = table.num_rows
    first = np.zeros(n, dtype=bool)
    first[0] = n > 0
    for i in range(n_keys):
        k = table.column(f"k{i}").take(order)
        if n > 1:
            first[1:] |= pc.not_equal(k.slice(1), k.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    rid = table.column("rid").to_numpy()
    return rid[order.to_numpy()[first]]
