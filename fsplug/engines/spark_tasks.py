"""The Spark engine's tasks: the code that runs in Spark's Python workers (see `spark.py` for the jobs).

A worker unpickles a task's function and arguments, which imports this module and the modules of what they hold
(the view: `fsplug.registry.model`; the store's class); a new worker does so in its first task, on the job's
clock. So this module holds only the tasks' side and imports, at its top, nothing a task does not need: the
tasks import pyarrow, numpy and the local engine's code (`fsplug.offline`) when they run, and nothing of the
driver's side (pyspark's SQL functions, fsplug's config and definitions: pydantic models, YAML).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fsplug.errors import SourceDataError

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    import pyarrow as pa

    from fsplug.online.base import OnlineStore
    from fsplug.registry import FeatureView
    from fsplug.types import DType

__all__ = ["FAIL_ONCE_ENV", "Split", "Job", "map_table", "pick_splits", "pick_rows", "pick_buckets",
           "write_splits", "winner_rids", "write_rows"]

FAIL_ONCE_ENV = "FSPLUG_SPARK_FAIL_ONCE"
_BLOB_ROWS = 1 << 17  # compact rows per Arrow IPC blob moved between stages
_WRITE_ROWS = 65536  # rows per store write, as the local engine's batches
_SAMPLE_ROWS = 65536  # rows of a split sampled to decide whether a pick within the split pays


def map_table(batches: Iterator[pa.RecordBatch], fn: Callable[[pa.Table], pa.Table]) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    for batch in batches:
        yield from fn(pa.Table.from_batches([batch])).to_batches()


@dataclass(frozen=True)
class Split:
    """Consecutive row groups of one file: what a task of the first and of the last stage reads."""

    fragment: Any  # a pyarrow ParquetFileFragment restricted to the row groups
    first: int  # row id of its first row: the rows of every split before it, in scan order
    rows: int


@dataclass(frozen=True)
class Job:
    """What the tasks of one view's materialization need (pickled into each task)."""

    schema: Any  # the dataset's schema: files are read as the local engine reads them
    splits: list[Split]
    key_types: dict[str, DType]
    ts_field: str
    created_field: str | None
    columns: dict[str, DType]
    start: datetime | None
    end: datetime
    view: FeatureView
    buckets: int

    @property
    def firsts(self) -> Any:
        import numpy as np

        return np.array([sp.first for sp in self.splits], dtype=np.int64)

    def read(self, split: Split, columns: list[str], **kwargs: Any) -> Iterator[pa.RecordBatch]:
        """The split's rows (all of them, unfiltered: positions are row ids), errors naming the file."""
        import pyarrow as pa

        from fsplug.offline.arrow import SCAN_OPTIONS, first_line

        try:
            yield from split.fragment.to_batches(schema=self.schema, columns=columns, use_threads=False,
                                                 fragment_scan_options=SCAN_OPTIONS, **kwargs)
        except (pa.ArrowException, OSError) as e:
            raise SourceDataError(f"{split.fragment.path}: reading failed: {first_line(e)}") from e


def _shuffled(table: pa.Table | pa.RecordBatch | None, part: Any, rows: int, null_keys: int) -> pa.RecordBatch:
    """`table`'s rows as IPC blobs of at most _BLOB_ROWS rows, each addressed to its rows' `part`."""
    import numpy as np
    import pyarrow as pa

    parts: list[int] = []
    blobs: list[bytes | None] = []
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    if table is not None and table.num_rows:
        part = part.astype(np.uint16 if part.max() < 1 << 16 else np.int64)  # 16 bits: a linear (radix) sort
        if part.min() != part.max():
            order = np.argsort(part, kind="stable")
            part = part[order]
            table = table.take(pa.array(order))
        bounds = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), len(part)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            for at in range(lo, hi, _BLOB_ROWS):
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema, options=options) as out:
                    out.write(table.slice(at, min(hi, at + _BLOB_ROWS) - at))
                parts.append(int(part[lo]))
                blobs.append(sink.getvalue().to_pybytes())
    if not parts:  # nothing to send but the counts
        parts, blobs = [0], [None]
    zeros = [0] * (len(parts) - 1)
    return pa.RecordBatch.from_pydict({
        "part": pa.array(parts, pa.int32()), "blob": pa.array(blobs, pa.binary()),
        "rows": pa.array([rows, *zeros], pa.int64()), "null_keys": pa.array([null_keys, *zeros], pa.int64())})


def _received(batches: Iterator[pa.RecordBatch]) -> tuple[list[tuple[int, pa.Table]], int, int]:
    """The (part, table) of each blob a task received, and the counts that came with them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tables: list[tuple[int, pa.Table]] = []
    rows = null_keys = 0
    for b in batches:
        rows += int(pc.sum(b.column("rows")).as_py() or 0)
        null_keys += int(pc.sum(b.column("null_keys")).as_py() or 0)
        for part, blob in zip(b.column("part").to_pylist(), b.column("blob"), strict=True):
            if blob.is_valid:
                tables.append((part, pa.ipc.open_stream(blob.as_buffer()).read_all()))
    return tables, rows, null_keys


def pick_splits(batches: Iterator[pa.RecordBatch], job: Job) -> Iterator[pa.RecordBatch]:
    """Stage 1, one task per split: the split's keys and times, its rows numbered by their place in the
    scan order, as `_candidates`."""
    import numpy as np
    import pyarrow as pa

    cols = list(dict.fromkeys([*job.key_types, job.ts_field, *([job.created_field] if job.created_field else [])]))
    for ids in batches:
        for sid in ids.column(0).to_pylist():
            split = job.splits[sid]
            table = pa.Table.from_batches(list(job.read(split, cols)), schema=pa.schema(
                [job.schema.field(c) for c in cols]))
            _check_rows(split, table.num_rows)
            yield _candidates(table.append_column("__rid", pa.array(np.arange(split.first, split.first + split.rows))),
                              job)


def pick_rows(batches: Iterator[pa.RecordBatch], job: Job) -> Iterator[pa.RecordBatch]:
    """Stage 1 of a catalog table, one task per partition of Spark's scan of it: the partition's rows
    (keys, times, `__rid`), picked and addressed as `pick_splits` does with a split's."""
    import pyarrow as pa

    received = [_unpacked(b) for b in batches]
    if received:
        yield _candidates(pa.Table.from_batches(received), job)


def _candidates(table: pa.Table, job: Job) -> pa.RecordBatch:
    """Rows of one task of stage 1 (keys, times, row ids in `__rid`): those in the window with non-null
    keys as compact rows, only the latest per entity within them when that pays (`_worth_prepicking`; the
    local engine's pick, and a row that loses here loses overall), addressed to their entity's bucket
    (the local engine's key hash), with the counts."""
    import numpy as np
    import pyarrow as pa

    from fsplug.offline.arrow import time_filter
    from fsplug.offline.parquet import compact_rows, latest_rids
    from fsplug.offline.spill import hash_keys

    keys = list(job.key_types)
    table = table.filter(time_filter(job.ts_field, table.schema.field(job.ts_field).type, job.start, job.end))
    compact, null_keys = compact_rows(table, keys, job.ts_field, job.created_field, table.column("__rid").to_numpy())
    bucket = None
    if compact is not None:
        hashes = hash_keys(compact.columns[:len(keys)])
        if _worth_prepicking(hashes):
            rids = np.sort(latest_rids(pa.Table.from_batches([compact]), len(keys), job.created_field is not None))
            at = np.searchsorted(compact.column("rid").to_numpy(), rids)
            compact, hashes = compact.take(pa.array(at)), hashes[at]
        bucket = hashes % np.uint64(job.buckets)
    return _shuffled(compact, bucket, table.num_rows, null_keys)


def _worth_prepicking(hashes: Any) -> bool:
    """Whether a split's rows repeat keys enough for picking within the split to pay (the pick sorts
    the split; it then moves and sorts fewer rows): at least half its rows would go, as estimated from
    the repeated keys in a sample of _SAMPLE_ROWS rows (a pair of rows of one key falls in a sample of
    s of n rows with probability (s/n)^2). Deciding either way gives the same winners."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(hashes)
    s = min(n, _SAMPLE_ROWS)
    sample = hashes if s == n else hashes[np.random.default_rng(n).choice(n, s, replace=False)]
    repeated = s - pc.count_distinct(pa.array(sample)).as_py()
    return repeated * n * n >= s * s * (n // 2) if s < n else repeated * 2 >= n


def pick_buckets(batches: Iterator[pa.RecordBatch], job: Job) -> Iterator[pa.RecordBatch]:
    """Stage 2, one task per bucket of entities: every split's candidates of its entities, the winner
    of each by the local engine's pick, its row id addressed to the split that holds the row."""
    import numpy as np
    import pyarrow as pa

    from fsplug.offline.parquet import latest_rids

    tables, rows, null_keys = _received(batches)
    winners = None
    split_of = None
    if tables:
        compact = pa.concat_tables([t for _, t in tables]).combine_chunks()
        tables.clear()
        rids = latest_rids(compact, len(job.key_types), job.created_field is not None)
        winners = pa.table({"rid": pa.array(rids, pa.int64())})
        # a catalog table's winners are joined back to its rows: no split to address them to
        split_of = np.searchsorted(job.firsts, rids, side="right") - 1 if job.splits else np.zeros(len(rids), int)
    yield _shuffled(winners, split_of, rows, null_keys)


def _check_rows(split: Split, rows: int) -> None:
    if rows != split.rows:
        raise SourceDataError(f"{split.fragment.path}: changed while it was being read "
                              f"({split.rows} rows, then {rows})")


class _Writer:
    """Stage 3's writes in one task: rows cast by the local engine's own function (`finish_batch`), gathered
    into batches of about _WRITE_ROWS and written through the store's own `write` (the store object is
    made from its config at the first write); the counts for the driver."""

    def __init__(self, job: Job, store_cls: type[OnlineStore], config: Any, repo_root: Path, project: str,
                 fail_marker: str | None):
        self.job, self.fail_marker = job, fail_marker
        self.make_store = functools.partial(store_cls, config, repo_root, project)
        self.store: OnlineStore | None = None
        self.keys = list(job.key_types)
        self.names = list(dict.fromkeys([*self.keys, job.ts_field, *job.columns]))
        self.pending: list[pa.RecordBatch] = []
        self.entities = self.written = 0
        self.newest: int | None = None

    def add(self, rows: pa.RecordBatch, source: str) -> None:
        """Winning rows read from `source` (named in cast errors): cast now, written once enough wait."""
        from fsplug.offline.parquet import finish_batch

        job = self.job
        self.pending.append(finish_batch(rows, source, self.names, job.ts_field, job.key_types, job.columns))
        if sum(b.num_rows for b in self.pending) >= _WRITE_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        from fsplug.online.base import WriteBatch

        if not self.pending:
            return
        if self.store is None:
            self.store = self.make_store()
        for out in pa.Table.from_batches(self.pending).combine_chunks().to_batches():
            wb = WriteBatch.from_arrow(self.job.view, self.keys, out)
            self.written += self.store.write(wb)
            self.entities += out.num_rows
            top = int(wb.event_ts_us.max())
            self.newest = top if self.newest is None else max(self.newest, top)
            if self.fail_marker:
                _fail_once(self.fail_marker)
        self.pending.clear()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def counts(self, rows: int, null_keys: int) -> pa.RecordBatch:
        import pyarrow as pa

        return pa.RecordBatch.from_pydict({"rows": [rows], "entities": [self.entities], "written": [self.written],
                                           "null_keys": [null_keys], "newest": pa.array([self.newest], pa.int64())})


def write_splits(batches: Iterator[pa.RecordBatch], **writer: Any) -> Iterator[pa.RecordBatch]:
    """Stage 3, each task a share of the splits: the winners' rows read from the split (all the
    view's columns) and written by a `_Writer`; yields one row of counts."""
    import numpy as np
    import pyarrow as pa

    out = _Writer(**writer)
    job = out.job
    tables, rows, null_keys = _received(batches)
    by_split: dict[int, list[Any]] = {}
    for part, t in tables:
        by_split.setdefault(part, []).append(t.column("rid").to_numpy())
    tables.clear()
    try:
        for sid in sorted(by_split):
            split = job.splits[sid]
            at = np.sort(np.concatenate(by_split.pop(sid))) - split.first
            base = 0
            for batch in job.read(split, out.names, batch_size=65536):
                lo, hi = np.searchsorted(at, [base, base + batch.num_rows])
                if hi > lo:
                    out.add(batch.take(pa.array(at[lo:hi] - base)), split.fragment.path)
                base += batch.num_rows
            _check_rows(split, base)
        out.flush()
    finally:
        out.close()
    yield out.counts(rows, null_keys)


def winner_rids(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Stage 2's blobs of a catalog table's winners as rows of row ids, and the counts on a row of their
    own (row id -1: no source row has it)."""
    import pyarrow as pa

    tables, rows, null_keys = _received(batches)
    for _, t in tables:
        n = t.num_rows
        yield pa.RecordBatch.from_pydict({"__rid": t.column("rid").combine_chunks(),
                                          "__rows": pa.array([0] * n, pa.int64()),
                                          "__null_keys": pa.array([0] * n, pa.int64())})
    yield pa.RecordBatch.from_pydict({"__rid": pa.array([-1], pa.int64()), "__rows": pa.array([rows], pa.int64()),
                                      "__null_keys": pa.array([null_keys], pa.int64())})


def write_rows(batches: Iterator[pa.RecordBatch], **writer: Any) -> Iterator[pa.RecordBatch]:
    """Stage 3 of a catalog table: the winners' rows, joined back by row id, written by a `_Writer`
    (the counts ride on rows that match no source row); yields one row of counts. A winner that matches
    no row of the table (the table changed since stage 1 read it) is a SourceDataError."""
    import pyarrow.compute as pc

    out = _Writer(**writer)
    table = out.job.view.source.table
    rows = null_keys = 0
    try:
        for b in batches:
            rows += int(pc.sum(b.column("__rows")).as_py() or 0)
            null_keys += int(pc.sum(b.column("__null_keys")).as_py() or 0)
            winners = b.filter(pc.greater_equal(b.column("__rid"), 0))
            if winners.column("__v").null_count:
                raise SourceDataError(f"table {table!r}: changed while it was read (a row picked from it is no "
                                      "longer in it); run again")
            if winners.num_rows:
                out.add(_unpacked(winners), table)
        out.flush()
    finally:
        out.close()
    yield out.counts(rows, null_keys)


def _unpacked(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of `_table_rows` as the rows' own columns and `__rid`."""
    import pyarrow as pa

    return pa.RecordBatch.from_struct_array(batch.column("__v")).append_column("__rid", batch.column("__rid"))


def _fail_once(marker: str) -> None:
    """The test hook of FAIL_ONCE_ENV: the first task to create `marker` fails (its retry does not)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    raise RuntimeError(f"injected failure ({FAIL_ONCE_ENV}={marker})")
