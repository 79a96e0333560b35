"""The Spark engine: materialization and point-in-time training data on Apache Spark, with the local
engine's results.

Materialization of one view (`SparkEngine.write_latest`): Spark runs the tasks and moves rows between
them; the work in the tasks (`spark_tasks.py`) is the local engine's own code (`offline/parquet.py`: `compact_rows`,
`latest_rids`, `finish_batch`), so both engines pick the same rows and cast them the same way. The
source (the files fsplug's reader lists, hive partitions included) is cut into splits of whole row
groups, in scan order, each row with a row id (its position in the scan order). Three stages:

1. one task per split reads the split's keys and times with pyarrow, keeps the rows with
   start <= event time < end and non-null keys as compact rows (keys, time, created time, row id),
   picks the latest row per entity within the split when a sample says enough rows would go, and
   sends each row to its entity's bucket (the local engine's key hash);
2. one task per bucket picks each entity's winner among the rows it received;
3. each winner's row id goes to the split holding the row; a task per share of the splits reads the
   winners' columns from its splits, casts them and writes them from the executor through the
   store's own `write` (the newer-wins guard, the bins, the timestamp bins).

A source that is a table of the Spark catalog (`type: spark_table`) is read by Spark (`spark.table`),
its rows numbered by the file's rank in path order and the row's index in the file (a file the scan
meets that was not listed when the job began fails the job: the table changed while it was read): stage 1
runs a task per partition of Spark's scan, stage 2 is the same, and stage 3 joins the winners' row ids back
to the table's rows and writes them as above.

The rows move as lz4-compressed Arrow IPC streams in a binary column (few, large Spark rows): Spark
shuffles bytes and never converts the rows itself. Each writing task builds its store object from the
store's config, so the store must accept writes from many processes (`Capabilities.multi_process_writes`:
Aerospike yes, SQLite no, refused). Writes are idempotent, so a task Spark retries leaves the same
state; the caller (materialize.py) moves the view's state only after the job succeeded.

The latest-row rule (the same as `offline/parquet.py`): the greatest event time, then the greatest
created time (a null one loses to any other), then the row that comes last in scan order: files in
the order of their paths, rows in file order (the row id), however the files are split.

Training data (`SparkEngine.historical_join`): the entity rows and each view's source rows are put in
one frame, partitioned by the join keys and sorted by (time, side, created, file, row), and every
entity row takes the last source row before it: the as-of join of `offline/pit.py`, as a window.
training.py then runs its kernel code on the joined rows' Arrow batches (`map_batches`), so values,
statuses and defaults come from the same functions as the local engine's.

Time: Parquet timestamps of any unit are read as microseconds (nanoseconds truncated, as fsplug's
reader does); naive timestamps are UTC. The engine's session runs with `spark.sql.session.timeZone`
UTC and `spark.sql.legacy.parquet.nanosAsLong` on (Spark refuses nanosecond columns otherwise).

`FSPLUG_SPARK_FAIL_ONCE=<path>` (read by the driver when a job is built) is a test hook: the first
task that creates the file `<path>` fails after its first write, so retries can be tested.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from fsplug.config import SparkConfig
from fsplug.errors import ConfigError, EngineError, EntityKeyError, SourceDataError, UserInputError
from fsplug.extras import require
from fsplug.engines.spark_tasks import (
    FAIL_ONCE_ENV,
    Job,
    Split,
    map_table,
    pick_buckets,
    pick_rows,
    pick_splits,
    winner_rids,
    write_rows,
    write_splits,
)
from fsplug.online.base import OnlineStore
from fsplug.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.offline.pit import ViewJoin
    from fsplug.registry import FeatureView

__all__ = ["SparkEngine", "ViewWriteStats", "FAIL_ONCE_ENV", "is_spark_frame"]

# source rows per split (whole row groups of one file): a task of the first stage reads one split
_SPLIT_ROWS = 1 << 20
# by default a bucket of entities per this many source rows (the local engine's in-memory sort size),
# and a writing task per this many, at least one per core each
_ROWS_PER_BUCKET = 4_000_000
_ROWS_PER_TASK = 4_000_000
# `file:`, `file://`: Spark writes both forms of one path; a catalog table's files may be on another host
_SCHEME = r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?/*"
# settings of a local-mode session the engine starts itself (a `conf` entry overrides them):
# - the shuffles stay on this machine, and materialization's rows move as lz4-compressed Arrow blobs
#   already, which Spark's own lz4 would compress again (on 10M drivers, ~1.5 s less JVM CPU on one core
#   without it);
# - the JVM (in local mode the driver and the executor) compiles with C1 only: it moves byte strings and
#   Arrow batches while the Python workers do the work, and C2's compiler threads cost more CPU than
#   their code saves (10M drivers on local[1]: ~13.5 s of JVM CPU cold and ~5 s warm with C2, ~7.5 s
#   and ~3.5 s with C1 only, and no more than C2's by the sixth run in one JVM). Spark prepends
#   `spark.driver.defaultJavaOptions` to `spark.driver.extraJavaOptions`, so JVM options the user gives
#   there (or with --driver-java-options) are kept, and theirs come last and win
#   (`-XX:TieredStopAtLevel=4` brings C2 back); it is left out when spark-defaults.conf sets it too.
# - the Python daemon that forks the workers is `spark_daemon` (pyspark's own daemon importing pyspark
#   from the installed package, whose compiled modules Python keeps, instead of the pyspark.zip Spark puts
#   first on the workers' path, whose sources every new daemon and worker compiled again: ~1.1 CPU-seconds
#   per application); the workers run this interpreter, which has fsplug. It also freezes (`gc.freeze`) what a
#   worker's first task left (the modules it imported), which the full collection pyspark's daemon runs
#   after every task then skips: that collection walked ~90k objects, 70-100 ms of CPU for each of the
#   28 tasks of a 10M-driver job on local[1] (4.8 s over a cold and a warm job; 0.003 s frozen). The job
#   moved less than that (the job of `python -m benchmarks materialize --drivers 10M --masters 'local[1]'`,
#   medians of 3 runs interleaved with the daemon without it, two batches on a loaded host): the Python
#   workers 15.6 -> 14.2 and 14.4 -> 13.2 CPU-s cold, warm unchanged (12.6 -> 12.7, 12.1 -> 12.0); the
#   whole job 31.3 -> 28.0 and 26.7 -> 26.1 cold, 19.3 -> 18.3 and 17.0 -> 17.5 warm;
# - the Python workers keep the memory they freed for their next allocations (glibc's malloc, which numpy
#   uses, and mimalloc, pyarrow's default pool): each batch's arrays no longer map fresh pages from the
#   kernel and fault them in (10M drivers on local[1]: ~520k page faults a run in the worker, ~200k
#   with these); a worker's memory stays at its peak while it lives.
_LOCAL_DEFAULTS = {"spark.shuffle.compress": "false", "spark.driver.defaultJavaOptions": "-XX:TieredStopAtLevel=1",
                   "spark.python.daemon.module": "fsplug.engines.spark_daemon",
                   "spark.executorEnv.MALLOC_MMAP_THRESHOLD_": str(1 << 30),
                   "spark.executorEnv.MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                   "spark.executorEnv.MIMALLOC_PURGE_DELAY": "-1"}


@dataclass
class ViewWriteStats:
    """What one view's Spark materialization did (the same counts as the local engine's report)."""

    rows_read: int = 0
    entities: int = 0
    written: int = 0
    null_key_rows: int = 0
    newest_us: int | None = None


def _spark_defaults_keys() -> set[str]:
    """The keys set in the spark-defaults.conf that spark-submit reads when pyspark starts the JVM
    (`$SPARK_CONF_DIR`, else `$SPARK_HOME/conf`, else the pyspark package's `conf`): the engine's local
    defaults leave those alone, as a `conf` entry of the command line would override the file's."""
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if not conf_dir:
        home = os.environ.get("SPARK_HOME")
        if not home:
            import pyspark

            home = os.path.dirname(pyspark.__file__)
        conf_dir = os.path.join(home, "conf")
    try:
        with open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return set()
    words = (re.split(r"[\s=:]", line.strip(), maxsplit=1)[0] for line in lines)
    return {word for word in words if word and not word.startswith(("#", "!"))}


def is_spark_frame(obj: Any) -> bool:
    """True for a pyspark DataFrame (classic or Connect), without importing pyspark."""
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pyspark.")


class SparkEngine:
    """Runs materialization and training-data jobs on a SparkSession made from `materialization.spark`.

    The session is created on first use (`session()`): an active session is reused, else one is built
    with `master` (default `local[*]`), `app_name` and every `conf` setting.
    """

    def __init__(self, config: SparkConfig | None = None):
        self.config = config or SparkConfig()
        self._spark: Any = None

    # -- session -------------------------------------------------------------------------------

    def session(self) -> Any:
        """The SparkSession the jobs run on. Raises ConfigError without pyspark, EngineError when Spark
        cannot start (no Java 17+)."""
        if self._spark is not None:
            return self._spark
        require("pyspark.sql", extra="spark", needed_for="the Spark engine", error=ConfigError,
                package="pyspark")
        from pyspark.sql import SparkSession

        cfg = self.config
        builder = SparkSession.builder.appName(cfg.app_name)
        master = cfg.master
        if master is None and SparkSession.getActiveSession() is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
            master = "local[*]"  # not under spark-submit and no session: run here
        if master:
            builder = builder.master(master)
        if (master or "").startswith("local"):  # the workers run this interpreter (it has fsplug), not `python3`
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            preset = _spark_defaults_keys()
            for key, setting in _LOCAL_DEFAULTS.items():
                if key not in cfg.conf and key not in preset:
                    builder = builder.config(key, setting)
        for key, value in cfg.conf.items():
            builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start: pyspark raises several types for it
            raise EngineError(f"cannot start Spark: {_java_problem()}; the Spark engine needs Java 17 or newer "
                              f"(`java` on PATH, or JAVA_HOME). Spark said: {_cause(exc)}") from exc
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
        self._spark = spark
        return spark

    @staticmethod
    def store_problem(store: OnlineStore) -> str:
        """Why the Spark engine cannot write into `store` (a store that takes no writes from many processes,
        SQLite); "" when it can."""
        if store.capabilities.multi_process_writes:
            return ""
        return (f"the Spark engine writes from its executors, and the {store.config.type!r} online store does not "
                "accept writes from many processes")

    @classmethod
    def check_store(cls, store: OnlineStore) -> None:
        """Refuse a store that cannot take writes from many processes (SQLite), before anything runs."""
        if problem := cls.store_problem(store):
            raise ConfigError(f"{problem}; materialize it with the local engine (`--engine local`, or "
                              "materialization.engine: local), or use a store that does (aerospike)")

    # -- reading sources -----------------------------------------------------------------------

    def _table(self, name: str) -> Any:
        """The Spark catalog table `name`, resolved (its schema read); SourceDataError naming it when the
        session's catalog does not know it or cannot read it."""
        spark = self.session()
        try:
            df = spark.table(name)
            df.schema  # noqa: B018 (a Connect session resolves the table only when asked)
        except Exception as exc:  # AnalysisException, of pyspark's classic or Connect flavour
            if getattr(exc, "getCondition", lambda: None)() != "TABLE_OR_VIEW_NOT_FOUND":  # pyspark 4's errors
                raise SourceDataError(f"table {name!r}: cannot be read: {_cause(exc)}") from exc
            raise SourceDataError(
                f"table {name!r}: not found in the Spark session's catalog ({_cause(exc)}); the session's catalog is "
                "set by materialization.spark.conf (spark.sql.catalogImplementation, spark.sql.warehouse.dir) or "
                "by the session that spark-submit gives") from exc
        return df

    def open_table(self, name: str, reads: Collection[str]) -> Any:
        """An empty pyarrow dataset with the schema of the catalog table `name` (as Spark hands its rows to
        Arrow): what `check_columns` reads to check a view's columns before a job. SourceDataError when the
        table is not stored as Parquet files (no row index in its files: ties could not be broken by scan
        order), or when one of the columns it `reads` has a type Arrow has no form for (an ANSI year-month
        interval); such a column that is not read is typed null (no view reads it, so its type is no matter)."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import to_arrow_schema
        from pyspark.sql.types import StructType

        df = self._table(name)
        try:
            df.select(F.col("_metadata.row_index")).schema  # noqa: B018 (resolved now, not in a job)
        except Exception as exc:  # a table of another format (ORC, ...): no row index, so no scan order for ties
            raise SourceDataError(f"table {name!r}: the Spark engine reads catalog tables stored as Parquet files "
                                  f"(ties go to the last row in scan order: files in path order, rows in file "
                                  f"order); Spark said: {_cause(exc)}") from exc
        fields = []
        for field in df.schema.fields:
            try:
                fields.append(to_arrow_schema(StructType([field]), timezone="UTC").field(0))
            except Exception as exc:  # PySparkTypeError: UNSUPPORTED_DATA_TYPE_FOR_ARROW_CONVERSION
                if field.name in reads:
                    raise SourceDataError(
                        f"table {name!r}: column '{field.name}' has type {field.dataType.simpleString()}, which "
                        f"Spark cannot hand to Arrow, so the Spark engine cannot read it ({_cause(exc)})") from exc
                fields.append(pa.field(field.name, pa.null()))
        return ds.dataset(pa.Table.from_batches([], schema=pa.schema(fields)))

    def _checked_source(self, path: str | Path | None, table: str, key_types: Mapping[str, DType], ts: str,
                        created: str | None, columns: Mapping[str, DType]) -> Any:
        """The source's pyarrow dataset (the Parquet at `path`, or the schema of the catalog `table` when
        `path` is None), the columns a view reads checked against it (SourceDataError)."""
        from fsplug.offline.parquet import check_columns, open_source

        reads = [*key_types, ts, *([created] if created else []), *columns]
        dataset = self.open_table(table, reads) if path is None else open_source(os.path.abspath(path))
        check_columns(dataset, source=table or str(path), join_keys=key_types, timestamp_field=ts,
                      created_timestamp_field=created, columns=columns)
        return dataset

    def _source_frame(self, path: str | Path | None, needed: Mapping[str, DType], ts_fields: Sequence[str],
                      table: str = "") -> Any:
        """The source's rows (the Parquet at `path`, or the catalog `table` when `path` is None) with
        `__file` (its file's rank in path order) and `__row` (its index in the file), its timestamp
        columns `ts_fields` as `__us_<name>` microseconds (bigint) and the `needed` columns cast to their
        dtypes' Spark types, under their own names."""
        from pyspark.sql import functions as F

        from fsplug.offline.parquet import open_source

        spark = self.session()
        if path is None:
            df = self._table(table)
            listed = df.inputFiles()
            files = sorted(os.path.normpath(unquote(urlparse(uri).path)) for uri in listed)
        else:
            dataset = open_source(path)  # the same listing (and errors) as the local engine
            files = [os.path.abspath(f) for f in dataset.files]
            reader = spark.read
            if Path(path).is_dir():
                reader = reader.option("basePath", os.path.abspath(path))
            df = reader.parquet(*files)
            listed = df.inputFiles()
        rank = {os.path.normpath(f): i for i, f in enumerate(files)}
        # the map from Spark's spelling of each path to its rank: Spark percent-encodes (a space is %20)
        mapping: list[Any] = []
        for uri in listed:
            raw = urlparse(uri).path
            local = os.path.normpath(unquote(raw))
            if local in rank:
                mapping += [F.lit("/" + raw.lstrip("/")), F.lit(rank[local])]
        if len(mapping) != 2 * len(files):  # ties would be broken by another order
            raise EngineError(f"{path or table}: Spark lists other files than fsplug's reader ({len(mapping) // 2} "
                              f"of {len(files)} matched), so ties between files could not be broken by path order")
        file_key = F.regexp_replace(F.col("_metadata.file_path"), _SCHEME, "/")
        file_rank = F.element_at(F.create_map(*mapping), file_key)
        # a file the scan lists and the listing above did not (a table's new partition): its rows have no row ids
        file_rank = F.when(file_rank.isNotNull(), file_rank).otherwise(F.raise_error(F.concat(
            F.lit(f"{path or table}: changed while it was read (file "), file_key,
            F.lit(" was added after the job listed its files); run again"))))
        cols = [file_rank.cast("int").alias("__file"), F.col("_metadata.row_index").alias("__row")]
        types = dict(df.dtypes)
        for name in ts_fields:
            cols.append(_micros(name, types[name]).alias(f"__us_{name}"))
        for name, dtype in needed.items():
            cols.append(_cast(name, types[name], dtype).alias(name))
        return df.select(*cols)

    # -- materialization -----------------------------------------------------------------------

    def write_latest(self, store: OnlineStore, view: FeatureView, key_types: Mapping[str, DType],
                     path: str | Path | None, start: datetime | None, end: datetime) -> ViewWriteStats:
        """Write the latest row per entity of `view` with start <= event time < end into `store`'s
        storage, from the executors. `path`: the view's Parquet source; None when the source is a catalog
        table (`view.source.table`). Raises SourceDataError for a source that does not match the view,
        EngineError when the job fails (rows already written are whole rows; writing again completes
        the work).

        Three stages (see the module docstring): splits of the source pick their latest rows per
        entity, buckets of entities pick the winners, splits write their winners; Spark runs the tasks
        and moves the compact rows between them, the local engine's functions do the work. A catalog
        table's rows come from Spark instead: its partitions pick, and the winners are joined back to
        the table's rows by row id to be written.
        """
        self.check_store(store)
        spark = self.session()
        ts, created = view.source.timestamp_field, view.source.created_timestamp_field
        table = view.source.table
        columns = {fe.column: fe.dtype for fe in view.features}
        dataset = self._checked_source(path, table, key_types, ts, created, columns)
        times = [ts, *([created] if created else [])]
        splits = [] if path is None else _splits(dataset)
        src = None if path is not None else self._source_frame(
            None, {**key_types, **{c: dt for c, dt in columns.items() if c not in key_types and c not in times}},
            times, table=table)
        total = src.count() if src is not None else sum(sp.rows for sp in splits)
        if not total:
            return ViewWriteStats()
        cores = spark.sparkContext.defaultParallelism
        job = Job(schema=dataset.schema, splits=splits, key_types=dict(key_types), ts_field=ts, created_field=created,
                   columns=columns, start=start, end=end, view=view,
                   buckets=self.config.partitions or max(cores, -(-total // _ROWS_PER_BUCKET)))
        writer = functools.partial(
            write_splits if src is None else write_rows, job=job, store_cls=type(store), config=store.config,
            repo_root=store.repo_root, project=store.project, fail_marker=os.environ.get(FAIL_ONCE_ENV))
        if src is None:
            picked = spark.range(len(splits), numPartitions=len(splits)).mapInArrow(
                functools.partial(pick_splits, job=job), _struct(_SHUFFLED))
        else:  # a task per partition of Spark's scan of the table
            picked = _table_rows(src, job, [*key_types, *times]).mapInArrow(
                functools.partial(pick_rows, job=job), _struct(_SHUFFLED))
        winners = _by_part(picked, job.buckets).mapInArrow(functools.partial(pick_buckets, job=job),
                                                            _struct(_SHUFFLED))
        if src is None:
            writers = self.config.partitions or min(len(splits), max(cores, -(-total // _ROWS_PER_TASK)))
            written = _by_part(winners, writers).mapInArrow(writer, _struct(_COUNTS))
        else:  # the winners' rows, joined back by row id (and a row of counts that no source row matches)
            rows_of = _table_rows(src, job, list(dict.fromkeys([*key_types, ts, *columns])))
            written = rows_of.join(winners.mapInArrow(winner_rids, _struct(_WINNERS)), "__rid", "right").mapInArrow(
                writer, _struct(_COUNTS))
        try:
            rows = written.collect()
        except Exception as exc:
            raise EngineError(f"the Spark job of view {view.name!r} failed: {_cause(exc)}") from exc
        stats = ViewWriteStats()
        for r in rows:
            stats.rows_read += r["rows"]
            stats.entities += r["entities"]
            stats.written += r["written"]
            stats.null_key_rows += r["null_keys"]
            if r["newest"] is not None:
                stats.newest_us = r["newest"] if stats.newest_us is None else max(stats.newest_us, r["newest"])
        return stats

    # -- training data -------------------------------------------------------------------------

    def entity_frame(self, entity_df: Any) -> Any:
        """Entity rows as a Spark DataFrame: one already, a Parquet path (file or directory), or anything
        the local engine takes (a pyarrow Table, a pandas DataFrame, a dict of columns)."""
        from pyspark.sql import functions as F

        if is_spark_frame(entity_df):
            return entity_df
        spark = self.session()
        if isinstance(entity_df, (str, Path)):
            from fsplug.offline.parquet import open_source

            df = spark.read.parquet(str(entity_df))
            schema = open_source(entity_df).schema
            for field in schema:  # nanosecond timestamps arrive as longs (nanosAsLong): make them times
                if _is_ns(field.type) and dict(df.dtypes).get(field.name) == "bigint":
                    df = df.withColumn(field.name, F.timestamp_micros(F.expr(f"`{field.name}` div 1000")))
            return df
        from fsplug.offline.arrow import as_table

        table = as_table(entity_df, "entity rows")
        if table is None:
            raise UserInputError(f"entity_df must be a Spark DataFrame, a Parquet path, a pyarrow Table, a pandas "
                                 f"DataFrame or a dict of columns; got {type(entity_df).__name__}")
        return spark.createDataFrame(table)

    def historical_join(self, entity: Any, *, event_timestamp_column: str, views: Sequence[ViewJoin]) -> Any:
        """`entity` (a Spark DataFrame) plus each view's output columns: the as-of values of
        `offline.pit.point_in_time_join`, by the same rules (see the module docstring)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        types = dict(entity.dtypes)
        if event_timestamp_column not in types:
            raise UserInputError(
                f"entity table has no column '{event_timestamp_column}' (the time of each row); columns are: "
                f"{', '.join(entity.columns)}; name yours with event_timestamp_column=...")
        if not types[event_timestamp_column].startswith("timestamp"):
            raise UserInputError(f"entity table column '{event_timestamp_column}' has type "
                                 f"{types[event_timestamp_column]}; expected a timestamp")
        taken = set(entity.columns)
        for v in views:
            for out in v.output_names:
                if out in taken:
                    raise UserInputError(f"output column '{out}' of view '{v.name}' clashes with an entity table "
                                         "column or another view's output; use full feature names (view__feature)")
                taken.add(out)
        now = _micros(event_timestamp_column, types[event_timestamp_column])
        current = entity
        for v in views:
            key_types = {}
            for k in v.join_keys:
                if k not in types:
                    raise EntityKeyError(f"entity table has no column '{k}', a join key of view '{v.name}'; "
                                         f"columns are: {', '.join(entity.columns)}")
                key_types[k] = _key_dtype(v.name, k, types[k])
            self._check_view(v, key_types)
            created = v.created_timestamp_field
            feats = dict(zip(v.columns, v.dtypes, strict=True))
            needed = {**key_types, **{c: dt for c, dt in feats.items() if c not in key_types}}
            src = self._source_frame(v.path, needed, [v.timestamp_field, *([created] if created else [])], v.table)
            st = F.col(f"__us_{v.timestamp_field}")
            keys = [F.col(k).alias(f"__k{i}") for i, k in enumerate(key_types)]
            value_struct = F.struct(*(F.col(c).alias(o) for c, o in zip(v.columns, v.output_names, strict=True)),
                                    st.alias("__t"))
            right = src.where(st.isNotNull()).select(
                *keys, st.alias("__ts"), F.lit(0).alias("__side"),
                (F.col(f"__us_{created}") if created else F.lit(None).cast("long")).alias("__created"),
                "__file", "__row", value_struct.alias("__v"))
            for i in range(len(key_types)):
                right = right.where(F.col(f"__k{i}").isNotNull())
            entity_struct = F.struct(*(F.col(f"`{c}`") for c in current.columns))
            left = current.select(
                *(_cast(k, types[k], dt).alias(f"__k{i}") for i, (k, dt) in enumerate(key_types.items())),
                now.alias("__ts"), F.lit(1).alias("__side"), F.lit(None).cast("long").alias("__created"),
                F.lit(None).cast("int").alias("__file"), F.lit(None).cast("long").alias("__row"),
                entity_struct.alias("__e"))
            both = left.unionByName(right, allowMissingColumns=True)
            if self.config.partitions:  # the window below reuses this partitioning: no other shuffle
                both = both.repartition(self.config.partitions, *(f"__k{i}" for i in range(len(key_types))))
            w = (Window.partitionBy(*(f"__k{i}" for i in range(len(key_types))))
                 .orderBy("__ts", "__side", "__created", "__file", "__row")
                 .rowsBetween(Window.unboundedPreceding, Window.currentRow))
            matched = both.withColumn("__m", F.last("__v", ignorenulls=True).over(w)).where(F.col("__side") == 1)
            if v.ttl is not None and v.ttl.total_seconds() > 0:
                ttl_us = int(v.ttl.total_seconds() * 1_000_000)
                matched = matched.withColumn(
                    "__m", F.when(F.col("__ts") - F.col("__m.__t") <= F.lit(ttl_us), F.col("__m")))
            current = matched.select("__e.*", *(F.col(f"__m.`{o}`").alias(o) for o in v.output_names))
        return current

    def _check_view(self, v: ViewJoin, key_types: Mapping[str, DType]) -> None:
        self._checked_source(v.path, v.table, key_types, v.timestamp_field, v.created_timestamp_field,
                             dict(zip(v.columns, v.dtypes, strict=True)))

    @staticmethod
    def map_batches(df: Any, fn: Callable[[pa.Table], pa.Table]) -> Any:
        """`df` with `fn` applied to each Arrow batch on the executors; the output schema is what `fn`
        makes of an empty batch (so `fn`'s errors about the input's columns are raised here, now)."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

        arrow_in = to_arrow_schema(df.schema, timezone="UTC")
        empty = fn(pa.Table.from_batches([], schema=arrow_in))
        return df.mapInArrow(functools.partial(map_table, fn=fn), from_arrow_schema(empty.schema))


# ---------------------------------------------------------------------------------------------
# the jobs' plumbing (driver side; what runs in the tasks is in spark_tasks.py)


def _splits(dataset: Any) -> list[Split]:
    """The source in splits of about _SPLIT_ROWS rows (whole row groups), in scan order: files in
    the order of the dataset's fragments (their paths), row groups in file order."""
    out: list[Split] = []
    base = 0
    for frag in dataset.get_fragments():
        frag.ensure_complete_metadata()
        groups: list[int] = []
        rows = 0
        for rg in frag.row_groups:
            groups.append(rg.id)
            rows += rg.num_rows
            if rows >= _SPLIT_ROWS:
                out.append(Split(frag.subset(row_group_ids=groups), base, rows))
                base, groups, rows = base + rows, [], 0
        if rows:
            out.append(Split(frag.subset(row_group_ids=groups), base, rows))
            base += rows
    return out


# the rows moved between stages: Arrow IPC streams of compact rows, addressed to a partition; a stage's
# row and null-key counts ride along on its first row
_SHUFFLED = "part int, blob binary, rows long, null_keys long"
_COUNTS = "rows long, entities long, written long, null_keys long, newest long"


def _struct(fields: str) -> Any:
    """The schema `fields` ("name type, ...", the types int, long and binary) as a pyspark StructType, made
    here: a schema given as a string is parsed by the JVM's SQL parser, whose first use in an application
    costs 0.6 to 0.7 CPU-s (on a started local session), where a StructType goes to the JVM as JSON (0.05)."""
    from pyspark.sql.types import BinaryType, IntegerType, LongType, StructField, StructType

    types = {"int": IntegerType(), "long": LongType(), "binary": BinaryType()}
    return StructType([StructField(name, types[kind]) for name, kind in (f.split() for f in fields.split(","))])


def _by_part(df: Any, n: int) -> Any:
    """`df` with each row in partition `part` (modulo n): Spark 4.1's repartitionById, else by hash."""
    if hasattr(df, "repartitionById"):
        return df.repartitionById(n, "part")
    return df.repartition(n, "part")


# the winners' side of stage 3's join: no user column is at the top level of either side (`_table_rows`)
_WINNERS = "__rid long, __rows long, __null_keys long"


def _table_rows(src: Any, job: Job, names: list[str]) -> Any:
    """Driver side: a catalog table's rows as `__rid` (the row id: the file's rank in path order, then the
    row's index in the file, as a split numbers its rows) and `__v`, a struct of the `names` columns (so
    that no user column meets stage 3's internal columns), the event and created times as Spark
    timestamps (microseconds, UTC)."""
    from pyspark.sql import functions as F

    times = [job.ts_field, *([job.created_field] if job.created_field else [])]
    rid = F.col("__file").cast("long") * F.lit(1 << 40) + F.col("__row")
    values = F.struct(*(F.timestamp_micros(F.col(f"__us_{n}")).alias(n) if n in times else F.col(f"`{n}`")
                        for n in names))
    return src.select(rid.alias("__rid"), values.alias("__v"))


# ---------------------------------------------------------------------------------------------
# column helpers (driver side: they build Spark expressions)


def _is_ns(t: Any) -> bool:
    import pyarrow as pa

    base = t.value_type if pa.types.is_dictionary(t) else t
    return bool(pa.types.is_timestamp(base) and base.unit == "ns")


def _micros(name: str, spark_type: str) -> Any:
    """A timestamp column as bigint microseconds since the epoch, UTC (naive = UTC; a bigint column is
    a nanosecond timestamp Spark read as a long, truncated to microseconds like fsplug's reader)."""
    from pyspark.sql import functions as F

    col = F.col(f"`{name}`")
    if spark_type == "bigint":
        return F.expr(f"`{name}` div 1000")
    if spark_type == "timestamp_ntz":
        return F.unix_micros(col.cast("timestamp"))  # the session time zone is UTC
    return F.unix_micros(col)


_SPARK_TYPE = {DType.INT64: "bigint", DType.FLOAT64: "double", DType.FLOAT32: "float", DType.STRING: "string",
               DType.BOOL: "boolean", DType.BYTES: "binary", DType.FLOAT64_LIST: "array<double>"}


def _cast(name: str, spark_type: str, dtype: DType) -> Any:
    """A source column as its dtype's Spark type (timestamps as Spark timestamps, microseconds)."""
    from pyspark.sql import functions as F

    if dtype is DType.TIMESTAMP:
        return F.timestamp_micros(_micros(name, spark_type))
    return F.col(f"`{name}`").cast(_SPARK_TYPE[dtype])


def _key_dtype(view: str, key: str, spark_type: str) -> DType:
    if spark_type in ("tinyint", "smallint", "int", "bigint"):
        return DType.INT64
    if spark_type == "string":
        return DType.STRING
    raise EntityKeyError(f"entity table column '{key}' (join key of view '{view}') has type {spark_type}; "
                         "join keys are integers or strings")


def _java_problem() -> str:
    """What is wrong with the Java that Spark's launcher runs (JAVA_HOME's, else the PATH's)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        if not java.is_file():
            return f"JAVA_HOME is {home!r}, which has no bin/java"
        return f"JAVA_HOME's java ({java}) did not start it (is it Java 17 or newer? `{java} -version`)"
    found = shutil.which("java")
    if found is None:
        return "there is no `java` on PATH and JAVA_HOME is not set"
    return f"the `java` on PATH ({found}) did not start it (is it Java 17 or newer? `java -version`)"


_PY_ERROR = re.compile(r"^\s*([\w.]+(?:Error|Exception)):\s*(.*)$")


def _cause(exc: BaseException) -> str:
    """The most telling line of a Spark failure: the Python error raised in a task, else the first line."""
    text = str(exc)
    found = [m for m in (_PY_ERROR.match(line) for line in text.splitlines()) if m]
    py = [m for m in found if not m.group(1).startswith(("org.", "java.", "scala.", "py4j."))]
    if py:
        return f"{py[-1].group(1).rsplit('.', 1)[-1]}: {py[-1].group(2)}"[:1000]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:1000]
