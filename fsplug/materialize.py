"""Materialization: offline Parquet -> latest row per entity -> online store; and `push` of fresh rows.

A view's state (its watermark: the end of its last successful run) is kept in the online store
and moves only after every write of the view's run succeeded, so an interrupted run leaves it
where it was and running again completes the work (writes are idempotent, and older rows never
overwrite newer ones). Every selected view's source is checked against its declarations before
the first write; when a store failure stops a run half-way, the error says which views completed.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from pathlib import Path

from fsplug.errors import FsplugError, SourceDataError, UserInputError
from fsplug.online.base import OnlineStore, WriteBatch
from fsplug.registry import FeatureView, Registry
from fsplug.state import MAX_CLOCK_SKEW, LastRun, ViewState, load_states, save_state
from fsplug.types import EPOCH, as_utc

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.engines.spark import SparkEngine

__all__ = ["ViewReport", "MaterializeReport", "materialize", "push"]

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class ViewReport:
    """What one view's run did."""

    view: str
    start: datetime | None
    end: datetime
    rows_read: int = 0
    entities: int = 0
    written: int = 0
    skipped_null_keys: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    completed: bool = False
    watermark: datetime | None = None  # after the run
    newest_event: datetime | None = None  # newest event time written by this run
    rewound_from: datetime | None = None  # the watermark a rewind replaced

    @property
    def rate(self) -> float:
        return self.entities / self.seconds if self.seconds > 0 else 0.0


@dataclass
class MaterializeReport:
    """The outcome of a materialize / materialize-incremental run."""

    views: list[ViewReport] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_bytes: int = 0

    @property
    def entities(self) -> int:
        return sum(v.entities for v in self.views)

    not_run: list[str] = field(default_factory=list)  # views a failure kept from running

    def summary(self) -> str:
        """One line per run: what each view did (and, after a failure, which views did not complete)."""
        parts = []
        for v in self.views:
            if v.up_to_date:
                parts.append(f"{v.view}: up to date")
            elif not v.completed:
                parts.append(f"{v.view}: NOT completed (watermark unchanged)")
            else:
                start = v.start.isoformat() if v.start else "beginning"
                text = (f"{v.view}: {v.entities:,} entities ({v.written:,} written) from {v.rows_read:,} rows, "
                        f"[{start}, {v.end.isoformat()})")
                if v.rewound_from is not None:
                    text += f", watermark rewound from {v.rewound_from.isoformat()} to {v.end.isoformat()}"
                parts.append(text)
        parts += [f"{name}: NOT run" for name in self.not_run]
        return (f"Materialized {sum(v.completed for v in self.views)} of {len(self.views) + len(self.not_run)} "
                f"view(s) in {self.seconds:.1f}s "
                f"({self.entities / self.seconds if self.seconds else 0:,.0f} entities/s, process peak RSS "
                f"{self.peak_rss_bytes / 2**20:,.0f} MiB): " + "; ".join(parts))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process: VmHWM from /proc (ru_maxrss outside Linux).

    Not `ru_maxrss` on Linux: it survives fork + exec, so a process started by a bigger parent
    would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0

    def show(self, r: ViewReport, t0: float, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        rate = r.rows_read / max(now - t0, 1e-9)
        sys.stderr.write(f"\r{r.view}: {r.rows_read:,} rows read, {r.entities:,} entities written, "
                         f"{rate:,.0f} rows/s   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _select_views(registry: Registry, views: Sequence[str] | None) -> list[FeatureView]:
    if views:
        return [_online_view(registry, v) for v in dict.fromkeys(views)]
    return [v for v in registry.feature_views.values() if v.online]


def _online_view(registry: Registry, name: str) -> FeatureView:
    """The feature view `name`, refused (UserInputError) when it is offline only: it has no online data."""
    view = registry.view(name)
    if not view.online:
        raise UserInputError(f"feature view {name!r} is offline only (online: false): nothing to write to the "
                             "online store (set online: true to serve it)")
    return view


def to_write_batch(view: FeatureView, key_names: Sequence[str], batch: pa.RecordBatch) -> WriteBatch:
    """An Arrow batch (keys, timestamp[us, UTC], feature columns by source column) as a WriteBatch."""
    return WriteBatch.from_arrow(view, key_names, batch)


def _write_latest(registry: Registry, online: OnlineStore, view: FeatureView, source: Any,
                  start: datetime | None, end: datetime, report: ViewReport, progress: _Progress, t0: float) -> None:
    from fsplug.offline.parquet import ScanStats, scan_latest

    entity = registry.entity(view.entity)
    key_types = {k.name: k.dtype for k in entity.join_keys}
    columns = {f.column: f.dtype for f in view.features}
    stats = ScanStats()
    newest_us: int | None = None

    def on_rows(n: int) -> None:
        report.rows_read += n
        progress.show(report, t0)

    for batch in scan_latest(source, join_keys=key_types, timestamp_field=view.source.timestamp_field,
                             created_timestamp_field=view.source.created_timestamp_field, columns=columns,
                             start=start, end=end, progress=on_rows, stats=stats):
        if batch.num_rows == 0:
            continue
        wb = to_write_batch(view, list(key_types), batch)
        report.written += online.write(wb)
        report.entities += batch.num_rows
        top = int(wb.event_ts_us.max())
        newest_us = top if newest_us is None else max(newest_us, top)
        progress.show(report, t0)
    report.skipped_null_keys = getattr(stats, "null_key_rows", 0)
    if not report.rows_read:
        report.rows_read = getattr(stats, "rows_read", 0) or report.rows_read
    if newest_us is not None:
        report.newest_event = EPOCH + timedelta(microseconds=newest_us)


def _write_latest_spark(engine: SparkEngine, registry: Registry, online: OnlineStore, view: FeatureView,
                        path: Path | None, start: datetime | None, end: datetime, report: ViewReport) -> None:
    entity = registry.entity(view.entity)
    stats = engine.write_latest(online, view, {k.name: k.dtype for k in entity.join_keys}, path, start, end)
    report.rows_read, report.entities, report.written = stats.rows_read, stats.entities, stats.written
    report.skipped_null_keys = stats.null_key_rows
    if stats.newest_us is not None:
        report.newest_event = EPOCH + timedelta(microseconds=stats.newest_us)


def check_end(end: datetime) -> None:
    """Refuse an END past now (+ MAX_CLOCK_SKEW): it would move watermarks past data not yet written."""
    limit = datetime.now(UTC) + MAX_CLOCK_SKEW
    if end > limit:
        raise UserInputError(
            f"materialize: end {end.isoformat()} is in the future (now is "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}; up to "
            f"{int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes of clock skew are allowed): the watermark would "
            "move past rows not yet written, and later runs would skip them. Use `now`")


def materialize(registry: Registry, online: OnlineStore, repo_root: Path, start: datetime | None, end: datetime, *,
                views: Sequence[str] | None, incremental: bool, progress: bool | None = None,
                rewind: bool = False, engine: SparkEngine | None = None) -> MaterializeReport:
    """Run a materialization; see FeatureStore.materialize / materialize_incremental.

    `rewind` (materialize-incremental --from START): every selected view runs from `start` and its
    watermark is set to `end`, even if that moves it backwards. `engine`: the Spark engine that picks
    and writes each view's rows (None: this process, the local engine); the state is handled here
    either way, so it moves only after a view's job succeeded.
    """
    end = as_utc(end)
    start = None if start is None else as_utc(start)
    if start is not None and start >= end:
        raise UserInputError(f"materialize: start {start.isoformat()} is not before end {end.isoformat()}")
    check_end(end)
    selected = _select_views(registry, views)
    from fsplug.checks import check_view_sources
    from fsplug.engines.spark import SparkEngine

    if engine is not None:
        engine.check_store(online)  # before anything runs: SQLite takes no writes from executors
    # every view, before anything is written (a catalog table's refusal by the local engine names the store
    # when the Spark engine could not write into it either)
    check_view_sources(registry, selected, repo_root, engine,
                       spark_store="" if engine is not None else SparkEngine.store_problem(online))
    states = load_states(online, [v.name for v in selected])
    report = MaterializeReport()
    t_all = time.monotonic()
    show = _Progress(progress)
    for i, view in enumerate(selected):
        state = states.get(view.name, ViewState())
        s = state.watermark if incremental else start
        r = ViewReport(view.name, s, end)
        report.views.append(r)
        if s is not None and s >= end and not rewind:
            r.up_to_date = r.completed = True
            r.watermark = state.watermark
            continue
        t0 = time.monotonic()
        try:
            if engine is None:
                _write_latest(registry, online, view, view.source.local_path(repo_root), s, end, r, show, t0)
            else:
                _write_latest_spark(engine, registry, online, view, view.source.spark_path(repo_root), s, end, r)
            r.seconds = time.monotonic() - t0
            show.show(r, t0, force=True)
            show.done()
            # Only now, after every write of the view succeeded, does its state move.
            run = LastRun(start=s, end=end, finished_at=datetime.now(UTC), rows_read=r.rows_read,
                          entities=r.entities, written=r.written, seconds=round(r.seconds, 3))
            new = state.after_run(run, r.newest_event, rewind=rewind)
            save_state(online, view.name, new)
        except FsplugError as exc:
            show.done()
            report.not_run = [v.name for v in selected[i + 1:]]
            report.seconds = time.monotonic() - t_all
            raise _with_report(exc, report) from exc
        r.completed = True
        r.watermark = new.watermark
        if rewind and state.watermark is not None and state.watermark > end:
            r.rewound_from = state.watermark
    report.seconds = time.monotonic() - t_all
    report.peak_rss_bytes = peak_rss_bytes()
    return report


def _with_report(exc: FsplugError, report: MaterializeReport) -> FsplugError:
    """The same kind of error (so TransientError and the like still tell what to do), its message
    followed by which views completed and which did not; the report in `err.report`."""
    done = [f"{v.view} (watermark {v.watermark.isoformat() if v.watermark else 'none'})"
            for v in report.views if v.completed]
    failed = [v.view for v in report.views if not v.completed] + report.not_run
    text = (f"{exc}\nmaterialization stopped: completed: {', '.join(done) or 'none'}; "
            f"not completed (watermark unchanged): {', '.join(failed)}")
    try:
        err = type(exc)(text)
    except TypeError:  # an error type with another constructor: keep it, add the report
        err = exc
    err.report = report  # type: ignore[attr-defined]
    return err


def push(registry: Registry, online: OnlineStore, view_name: str, table: Any) -> int:
    """Validate fresh rows like a materialization and write the latest per entity to the online store.

    `table` is a pyarrow Table/RecordBatch, a pandas DataFrame or a dict of columns holding the join keys, the source's
    timestamp field and the view's feature columns (by their source column names). Returns the
    number of entities written. Pushes do not move the view's materialization state.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    from fsplug.offline.arrow import as_table

    view = _online_view(registry, view_name)
    converted = as_table(table, f"push to {view_name!r}")
    if converted is None:
        raise UserInputError(f"push to {view_name!r}: expected a pyarrow Table, a pandas DataFrame or a dict of "
                             f"columns, got {type(table).__name__}")
    table = _typed_nulls(registry, view, converted)
    if table.num_rows == 0:
        return 0
    created = view.source.created_timestamp_field
    if created and created not in table.column_names:  # optional for pushes: ties go to the last row
        table = table.append_column(created, pa.nulls(table.num_rows, pa.timestamp("us", tz="UTC")))
    r = ViewReport(view.name, None, FAR_FUTURE)
    try:
        _write_latest(registry, online, view, ds.dataset(table), None, FAR_FUTURE, r, _Progress(False),
                      time.monotonic())
    except SourceDataError as exc:  # it names "<dataset>": say which push it was
        raise SourceDataError(f"push to view {view_name!r}: " + str(exc).replace("<dataset>: ", "")) from None
    return r.written


def _typed_nulls(registry: Registry, view: FeatureView, table: pa.Table) -> pa.Table:
    """`table` with each column that holds only nulls (Arrow type null: a dict or DataFrame column of
    None) cast to the type the view declares for it: a column without values fits every dtype."""
    import pyarrow as pa

    declared = {k.name: k.dtype.arrow_type() for k in registry.entity(view.entity).join_keys}
    for name in (view.source.timestamp_field, view.source.created_timestamp_field):
        if name:
            declared[name] = pa.timestamp("us", tz="UTC")
    declared.update((f.column, f.dtype.arrow_type()) for f in view.features)
    for i, fld in enumerate(table.schema):
        if pa.types.is_null(fld.type) and fld.name in declared:
            table = table.set_column(i, fld.name, table.column(i).cast(declared[fld.name]))
    return table
