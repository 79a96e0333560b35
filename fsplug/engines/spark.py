"""The Spark engine: materialization and point-in-time training data on Apache Spark, with the local
engine's results.

Materialization of one view (`SparkEngine.write_latest`), in two passes as the local engine's: Spark
reads the keys and times of the view's Parquet source (the files fsplug's own reader lists, hive
partitions included), keeps the rows with start <= event time < end and picks per entity its winning
(file, row) by fsplug's one rule; tasks then read the winners' values from their row groups with
pyarrow, cast them with the local engine's functions and write from the executors straight into the
online store through the store's own `write` (the newer-wins guard, the bins, the timestamp bins).
Each task builds its store object from the store's config, so the store must accept writes from many
processes (`Capabilities.multi_process_writes`: Aerospike yes, SQLite no, refused). Writes are
idempotent, so a task Spark retries leaves the same state; the caller (materialize.py) moves the
view's state only after the job succeeded.

The latest-row rule (the same as `offline/parquet.py`): the greatest event time, then the greatest
created time (a null one loses to any other), then the row that comes last in scan order: files in
the order of their paths, rows in file order. Spark sees a file's path in `_metadata.file_path` and a
row's position in `_metadata.row_index`, so the rule does not depend on how Spark splits the files.

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
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from fsplug.config import SparkConfig
from fsplug.errors import ConfigError, EngineError, EntityKeyError, UserInputError
from fsplug.extras import require
from fsplug.online.base import OnlineStore, WriteBatch
from fsplug.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.offline.pit import ViewJoin
    from fsplug.registry import FeatureView

__all__ = ["SparkEngine", "ViewWriteStats", "FAIL_ONCE_ENV", "is_spark_frame"]

FAIL_ONCE_ENV = "FSPLUG_SPARK_FAIL_ONCE"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# winners are split into tasks by file and by ranges of this many rows of a file (a task then reads the
# row groups of one range); by default one task per this many source rows, at least one per core
_ROW_RANGE = 1 << 20
_ROWS_PER_TASK = 4_000_000
_SCHEME = r"^[A-Za-z][A-Za-z0-9+.-]*:/*"  # `file:`, `file://`: Spark writes both forms of one path


@dataclass
class ViewWriteStats:
    """What one view's Spark materialization did (the same counts as the local engine's report)."""

    rows_read: int = 0
    entities: int = 0
    written: int = 0
    null_key_rows: int = 0
    newest_us: int | None = None


def is_spark_frame(obj: Any) -> bool:
    """True for a pyspark DataFrame (classic or Connect), without importing pyspark."""
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pyspark.")


def _micros_us(dt: datetime) -> int:
    d = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)) - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


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
        for key, value in cfg.conf.items():
            builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start: pyspark raises several types for it
            raise EngineError(f"cannot start Spark (the Spark engine needs Java 17 or newer: `java` on PATH or "
                              f"JAVA_HOME): {_cause(exc)}") from exc
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
        self._spark = spark
        return spark

    @staticmethod
    def check_store(store: OnlineStore) -> None:
        """Refuse a store that cannot take writes from many processes (SQLite), before anything runs."""
        if not store.capabilities.multi_process_writes:
            raise ConfigError(
                f"the Spark engine writes from its executors, and the {store.config.type!r} online store does not "
                "accept writes from many processes; materialize it with the local engine (`--engine local`, or "
                "materialization.engine: local), or use a store that does (aerospike)")

    # -- reading sources -----------------------------------------------------------------------

    def _source_frame(self, path: str | Path, needed: Mapping[str, DType], ts_fields: Sequence[str]) -> Any:
        """The source's rows with `__file` (its file's rank in path order) and `__row` (its index in the
        file), its timestamp columns `ts_fields` as `__us_<name>` microseconds (bigint) and the `needed`
        columns cast to their dtypes' Spark types, under their own names."""
        from pyspark.sql import functions as F

        from fsplug.offline.parquet import open_source

        spark = self.session()
        dataset = open_source(path)  # the same listing (and errors) as the local engine
        files = [os.path.abspath(f) for f in dataset.files]
        rank = {os.path.normpath(f): i for i, f in enumerate(files)}
        reader = spark.read
        if Path(path).is_dir():
            reader = reader.option("basePath", os.path.abspath(path))
        df = reader.parquet(*files)
        # the map from Spark's spelling of each path to its rank: Spark percent-encodes (a space is %20)
        mapping: list[Any] = []
        for uri in df.inputFiles() if len(files) > 1 else []:
            raw = urlparse(uri).path
            local = os.path.normpath(unquote(raw))
            if local in rank:
                mapping += [F.lit("/" + raw.lstrip("/")), F.lit(rank[local])]
        if len(files) > 1 and len(mapping) != 2 * len(files):  # ties would be broken by another order
            raise EngineError(f"{path}: Spark lists other files than fsplug's reader ({len(mapping) // 2} of "
                              f"{len(files)} matched), so ties between files could not be broken by path order")
        file_key = F.regexp_replace(F.col("_metadata.file_path"), _SCHEME, "/")
        file_rank = F.element_at(F.create_map(*mapping), file_key) if mapping else F.lit(0)
        cols = [file_rank.cast("int").alias("__file"), F.col("_metadata.row_index").alias("__row")]
        types = dict(df.dtypes)
        for name in ts_fields:
            cols.append(_micros(name, types[name]).alias(f"__us_{name}"))
        for name, dtype in needed.items():
            cols.append(_cast(name, types[name], dtype).alias(name))
        return df.select(*cols)

    # -- materialization -----------------------------------------------------------------------

    def write_latest(self, store: OnlineStore, view: FeatureView, key_types: Mapping[str, DType],
                     path: str | Path, start: datetime | None, end: datetime) -> ViewWriteStats:
        """Write the latest row per entity of `view` with start <= event time < end into `store`'s
        storage, from the executors. Raises EngineError when the job fails (rows already written are
        whole rows; writing again completes the work).

        Two passes, as the local engine's: Spark reads only the keys and times and picks each entity's
        winning (file, row); the tasks then read the winners' feature values from their Parquet row
        groups with fsplug's own reader code and write them. Only the compact winners cross from the
        JVM to Python, and values are cast by the same functions as the local engine's.
        """
        from pyspark.sql import functions as F

        from fsplug.offline.parquet import open_source

        self.check_store(store)
        spark = self.session()
        ts, created = view.source.timestamp_field, view.source.created_timestamp_field
        dataset = open_source(path)
        files = [(os.path.abspath(frag.path), _partition_values(frag)) for frag in dataset.get_fragments()]
        df = self._source_frame(path, key_types, [ts, *([created] if created else [])])
        t = F.col(f"__us_{ts}")
        window = t.isNotNull() & (t < F.lit(_micros_us(end)))
        if start is not None:
            window &= t >= F.lit(_micros_us(start))
        # max over a struct compares its fields in order, a null smallest: (time, created, file, row)
        order = [t.alias("t"), *([F.col(f"__us_{created}").alias("c")] if created else []),
                 F.col("__file").alias("f"), F.col("__row").alias("r")]
        winners = (df.where(window)
                   .groupBy(*key_types)
                   .agg(F.count(F.lit(1)).alias("__n"), F.max(F.struct(*order)).alias("__m"))
                   .select(*key_types, "__n", "__m.t", "__m.f", "__m.r"))
        # tasks by file and row range, so that each reads the row groups of its own winners
        tasks = self.config.partitions or max(spark.sparkContext.defaultParallelism,
                                              -(-dataset.count_rows() // _ROWS_PER_TASK))
        winners = (winners.repartition(tasks, "f", F.floor(F.col("r") / _ROW_RANGE))
                   .sortWithinPartitions("f", "r"))
        writer = functools.partial(
            _write_partition, store_cls=type(store), config=store.config, repo_root=store.repo_root,
            project=store.project, view=view, key_names=tuple(key_types), files=files,
            fail_marker=os.environ.get(FAIL_ONCE_ENV))
        schema = "rows long, entities long, written long, null_keys long, newest long"
        try:
            if self.config.partitions:
                with _shuffle_partitions(spark, self.config.partitions):
                    rows = winners.mapInArrow(writer, schema).collect()
            else:
                rows = winners.mapInArrow(writer, schema).collect()
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
            src = self._source_frame(v.path, needed, [v.timestamp_field, *([created] if created else [])])
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
        from fsplug.offline.parquet import check_columns, open_source

        check_columns(open_source(v.path), source=str(v.path), join_keys=key_types,
                      timestamp_field=v.timestamp_field, created_timestamp_field=v.created_timestamp_field,
                      columns=dict(zip(v.columns, v.dtypes, strict=True)))

    @staticmethod
    def map_batches(df: Any, fn: Callable[[pa.Table], pa.Table]) -> Any:
        """`df` with `fn` applied to each Arrow batch on the executors; the output schema is what `fn`
        makes of an empty batch (so `fn`'s errors about the input's columns are raised here, now)."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

        arrow_in = to_arrow_schema(df.schema, timezone="UTC")
        empty = fn(pa.Table.from_batches([], schema=arrow_in))
        return df.mapInArrow(functools.partial(_map_table, fn=fn), from_arrow_schema(empty.schema))


# ---------------------------------------------------------------------------------------------
# executor side


def _map_table(batches: Iterator[pa.RecordBatch], fn: Callable[[pa.Table], pa.Table]) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    for batch in batches:
        yield from fn(pa.Table.from_batches([batch])).to_batches()


def _partition_values(fragment: Any) -> dict[str, Any]:
    """The hive partition values of a file (`day=2026-11-30/`): columns that are not in the file."""
    import pyarrow.dataset as ds

    return dict(ds.get_partition_keys(fragment.partition_expression))


def _write_partition(batches: Iterator[pa.RecordBatch], *, store_cls: type[OnlineStore], config: Any,
                     repo_root: Path, project: str, view: FeatureView, key_names: tuple[str, ...],
                     files: list[tuple[str, dict[str, Any]]], fail_marker: str | None) -> Iterator[pa.RecordBatch]:
    """One task: its share of the winners (keys, rows counted, event time, file rank, row in file), their
    values read from the files' row groups, written through the store's own `write`; yields one row of
    counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsplug.errors import SourceDataError
    from fsplug.offline.arrow import UTC_US, cast_to_dtype, first_line

    read = [b for b in batches if b.num_rows]
    table = pa.Table.from_batches(read).combine_chunks() if read else None
    rows = entities = written = null_keys = 0
    newest: int | None = None
    store: OnlineStore | None = None
    try:
        if table is not None:
            counts = table.column("__n").to_numpy()
            valid = np.ones(table.num_rows, dtype=bool)
            for k in key_names:
                if table.column(k).null_count:
                    valid &= table.column(k).is_valid().to_numpy(zero_copy_only=False)
            rows, null_keys = int(counts.sum()), int(counts[~valid].sum())
            table = table.filter(pa.array(valid))
        file_of = table.column("f").to_numpy() if table is not None and table.num_rows else np.zeros(0, np.int64)
        for f in np.unique(file_of):
            assert table is not None
            mine = table.filter(pa.array(file_of == f))
            path, constants = files[int(f)]
            row_in_file = mine.column("r").to_numpy()
            try:
                pf = pq.ParquetFile(path)
                sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
                ends = np.cumsum(sizes)
                group_of = np.searchsorted(ends, row_in_file, side="right")
                present = set(pf.schema_arrow.names)
                for g in np.unique(group_of):
                    at = np.flatnonzero(group_of == g)
                    first = int(ends[g] - sizes[g])
                    wanted = [fe.column for fe in view.features if fe.column in present]
                    part = pf.read_row_group(int(g), columns=list(dict.fromkeys(wanted)), use_threads=False)
                    taken = part.take(pa.array(row_in_file[at] - first))
                    arrays = {k: mine.column(k).combine_chunks().take(pa.array(at)) for k in key_names}
                    arrays[view.source.timestamp_field] = mine.column("t").combine_chunks().take(
                        pa.array(at)).cast(UTC_US)
                    for fe in view.features:
                        if fe.column in arrays:
                            continue
                        col = (taken.column(fe.column) if fe.column in present
                               else pa.array([constants.get(fe.column)] * len(at)))
                        arrays[fe.column] = cast_to_dtype(col.combine_chunks(), fe.dtype)
                    out = pa.RecordBatch.from_pydict(arrays)
                    if store is None:
                        store = store_cls(config, repo_root, project)
                    written += store.write(WriteBatch.from_arrow(view, key_names, out))
                    entities += out.num_rows
                    if fail_marker:
                        _fail_once(fail_marker)
            except (pa.ArrowException, OSError) as e:
                raise SourceDataError(f"{path}: reading failed: {first_line(e)}") from e
            top = int(mine.column("t").to_numpy().max())
            newest = top if newest is None else max(newest, top)
    finally:
        if store is not None:
            store.close()
    yield pa.RecordBatch.from_pydict({"rows": [rows], "entities": [entities], "written": [written],
                                      "null_keys": [null_keys], "newest": pa.array([newest], pa.int64())})


def _fail_once(marker: str) -> None:
    """The test hook of FAIL_ONCE_ENV: the first task to create `marker` fails (its retry does not)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    raise RuntimeError(f"injected failure ({FAIL_ONCE_ENV}={marker})")


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


class _shuffle_partitions:
    """Run with `spark.sql.shuffle.partitions` set to `n`, then restore it."""

    def __init__(self, spark: Any, n: int):
        self.spark, self.n = spark, n

    def __enter__(self) -> None:
        self.old = self.spark.conf.get("spark.sql.shuffle.partitions")
        self.spark.conf.set("spark.sql.shuffle.partitions", str(self.n))

    def __exit__(self, *exc: Any) -> None:
        self.spark.conf.set("spark.sql.shuffle.partitions", self.old)


_PY_ERROR = re.compile(r"^\s*([\w.]+(?:Error|Exception)):\s*(.*)$")


def _cause(exc: BaseException) -> str:
    """The most telling line of a Spark failure: the Python error raised in a task, else the first line."""
    text = str(exc)
    found = [m for m in (_PY_ERROR.match(line) for line in text.splitlines()) if m]
    py = [m for m in found if not m.group(1).startswith(("org.", "java.", "scala.", "py4j."))]
    if py:
        return f"{py[-1].group(1).rsplit('.', 1)[-1]}: {py[-1].group(2)}"[:1000]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:1000]
