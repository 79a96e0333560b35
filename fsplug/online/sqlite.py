"""The SQLite online store: the embedded default, a real file database that needs no server.

Layout: one table per entity, named `<project>-<entity>` (so projects sharing a file never share
rows), the join keys as primary key, one column per bin (named as the bin) and one `_ts_<view>`
column per view holding its event time in microseconds; the table `fsplug_state` holds every
project's materialization state, a row per (project, view). WAL mode lets readers in other
threads and processes proceed while a materialization writes. Each thread gets its own connection.

The driver is APSW (the `apsw` package, with its own current SQLite), not the standard library's
`sqlite3`: Python 3.11's `sqlite3` releases and retakes the GIL around every column of every row it
fetches, which made half of a 50-key read's instructions (about 1.0M instructions for 50 rows of 15
columns with `sqlite3`, 0.53M with APSW; 38k and 18k for one row).
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import apsw
from pydantic import Field

from fsplug.config import resolve_repo_path
from fsplug.errors import NamespaceNotFoundError, StoreError, StoreTimeoutError, StoreUnavailableError
from fsplug.online.base import Capabilities, OnlineStore, StoreConfig, WriteBatch, flat_keys
from fsplug.types import DType

if TYPE_CHECKING:
    from fsplug.plan import RetrievalPlan
    from fsplug.registry import Registry, RegistryDiff

__all__ = ["SQLiteConfig", "SQLiteOnlineStore", "read_sql"]

_SQL_TYPE = {
    DType.INT64: "INTEGER",
    DType.FLOAT64: "REAL",
    DType.FLOAT32: "REAL",
    DType.STRING: "TEXT",
    DType.BOOL: "INTEGER",
    DType.BYTES: "BLOB",
    DType.TIMESTAMP: "INTEGER",
    DType.FLOAT64_LIST: "BLOB",
}


class SQLiteConfig(StoreConfig):
    """`online_store` settings for `type: sqlite`."""

    type: str = "sqlite"
    path: str = Field(default="data/online.db", description="Database file, relative to the repo.")
    busy_timeout_ms: int = Field(default=5000, ge=0, description="How long a call waits for a lock.")
    synchronous: str = Field(default="NORMAL", pattern="^(OFF|NORMAL|FULL|EXTRA)$",
                             description="SQLite synchronous mode; NORMAL is durable across app crashes in WAL.")
    write_batch_rows: int = Field(default=10_000, ge=1, description="Rows per write transaction.")
    read_batch_keys: int = Field(default=5_000, ge=1, le=30_000, description="Keys per read statement.")
    mmap_size_mb: int = Field(default=1024, ge=0, description="Memory-map up to this much of the file for reads "
                              "(0 = off); keeps large tables' lookups fast.")
    cache_size_mb: int = Field(default=64, ge=0, description="SQLite page cache per connection.")

    def pragmas(self) -> list[str]:
        """The PRAGMAs every connection runs (also used by the benchmarks' raw baseline)."""
        return ["PRAGMA journal_mode=WAL", f"PRAGMA synchronous={self.synchronous}",
                f"PRAGMA busy_timeout={self.busy_timeout_ms}", f"PRAGMA mmap_size={self.mmap_size_mb * 2**20}",
                f"PRAGMA cache_size=-{self.cache_size_mb * 1024}"]


_STATE_DDL = ("CREATE TABLE IF NOT EXISTS fsplug_state (project TEXT NOT NULL, view TEXT NOT NULL, "
              "state TEXT NOT NULL, PRIMARY KEY (project, view)) WITHOUT ROWID")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _immediate(conn: apsw.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at its start (`BEGIN IMMEDIATE`): committed when
    the block ends, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def translate(exc: apsw.Error, what: str) -> StoreError:
    """The one place SQLite (APSW) errors become fsplug errors."""
    msg = str(exc)
    if isinstance(exc, (apsw.BusyError, apsw.LockedError)):
        return StoreTimeoutError(f"SQLite {what}: the database stayed locked past busy_timeout_ms ({msg})")
    if isinstance(exc, apsw.SQLError) and "no such table" in msg:
        return NamespaceNotFoundError(f"SQLite {what}: {msg}; run `fsplug apply` first")
    if isinstance(exc, apsw.CantOpenError):
        return StoreUnavailableError(f"SQLite {what}: unable to open the database file ({msg})")
    return StoreError(f"SQLite {what} failed: {msg}")


class SQLiteOnlineStore(OnlineStore):
    """Online store in one SQLite file."""

    config_model = SQLiteConfig
    capabilities = Capabilities(partial_results=False, multi_process_writes=False)
    config: SQLiteConfig

    def __init__(self, config: SQLiteConfig, repo_root: Path, project: str):
        super().__init__(config, repo_root, project)
        self.path = resolve_repo_path(repo_root, config.path)
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._all_lock = threading.Lock()
        self._sql: dict[Any, str] = {}  # write statements per view
        self._read_sqls: dict[tuple[int, int], tuple[Any, str]] = {}  # per (entity group, key count)

    # ---- connections ---------------------------------------------------------------------
    def connection(self) -> apsw.Connection:
        """This thread's connection to the database file (opened on first use, with the configured PRAGMAs)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = apsw.Connection(str(self.path), statementcachesize=512)  # (autocommit, as SQLite is)
                conn.set_busy_timeout(self.config.busy_timeout_ms)  # (before the first PRAGMA, which may wait)
                for pragma in self.config.pragmas():
                    conn.execute(pragma).fetchall()
            except apsw.Error as exc:
                raise translate(exc, f"open {self.path}") from exc
            # A read's budget: SQLite calls the handler every 1000 VM steps and interrupts the statement
            # once it returns true. Installed once; a read with a budget sets this connection's deadline
            # (setting and removing a handler per read cost more than a small read).
            deadline = [math.inf]
            conn.set_progress_handler(lambda: time.monotonic() > deadline[0], 1000)
            self._local.deadline = deadline
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()

    # ---- schema --------------------------------------------------------------------------
    def apply(self, registry: Registry, diff: RegistryDiff) -> list[str]:
        conn = self.connection()
        actions = []
        try:
            conn.execute(_STATE_DDL)
            for ent in registry.entities.values():
                table = self.table(ent.name)
                cols: dict[str, str] = {}
                for view in registry.feature_views.values():
                    if view.entity != ent.name or not view.online:
                        continue
                    for f in view.features:
                        cols[f.bin] = _SQL_TYPE[f.dtype]
                    cols[view.timestamp_bin] = "INTEGER"
                keys = [(k.name, "INTEGER" if k.dtype is DType.INT64 else "TEXT") for k in ent.join_keys]
                info = [(str(r[1]), str(r[2]).upper(), int(r[5] or 0))  # (name, type, place in the primary key)
                        for r in conn.execute(f"PRAGMA table_info({_q(table)})")]
                existing = {name: t for name, t, _ in info}
                stored_keys = [(name, t) for name, t, _ in sorted((r for r in info if r[2]), key=lambda r: r[2])]
                if existing and stored_keys != keys:  # the entity's join keys changed (names or dtypes)
                    # Its rows are keyed by other keys (and a TEXT key in an INTEGER column would turn
                    # '01' into 1): the table is made again, empty, as plan says ("re-materialize").
                    conn.execute(f"DROP TABLE {_q(table)}")
                    actions.append(f"dropped table {table}: its join keys changed ("
                                   + ", ".join(f"{k} {t}" for k, t in stored_keys) + " -> "
                                   + ", ".join(f"{k} {t}" for k, t in keys) + "); its views' values are gone until "
                                   "they are materialized again")
                    existing = {}
                if not existing:
                    defs = [f"{_q(k)} {t} NOT NULL" for k, t in keys] + [f"{_q(c)} {t}" for c, t in cols.items()]
                    pk = ", ".join(_q(k) for k, _ in keys)
                    rowid = " WITHOUT ROWID" if len(keys) > 1 or keys[0][1] != "INTEGER" else ""
                    conn.execute(f"CREATE TABLE {_q(table)} ({', '.join(defs)}, PRIMARY KEY ({pk})){rowid}")
                    actions.append(f"created table {table} ({len(cols)} columns)")
                else:
                    added = [c for c in cols if c not in existing]
                    for c in added:
                        conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(c)} {cols[c]}")
                    if added:
                        actions.append(f"added columns to {table}: {', '.join(added)}")
                    # A column another definition wrote (`diff.stale`: a view created again, a feature added
                    # back, a dtype changed) is made again, empty: its values are not the new definition's
                    # (and a changed type's affinity would convert new values: TEXT '0012' into INTEGER 12).
                    # Its values are gone until the view is materialized again.
                    stale = {b for e, b in diff.stale if e == ent.name}
                    remade = [c for c in cols if c in existing and (c in stale or existing[c] != cols[c])]
                    if remade:
                        with _immediate(conn):  # readers never see the column missing
                            for c in remade:
                                conn.execute(f"ALTER TABLE {_q(table)} DROP COLUMN {_q(c)}")
                                conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(c)} {cols[c]}")
                        actions.append(f"emptied columns of {table} that another definition wrote (their values "
                                       f"are gone until the next materialization): "
                                       + ", ".join(f"{c} {existing[c]}" + (f" -> {cols[c]}" if existing[c] != cols[c]
                                                                          else "") for c in remade))
        except apsw.Error as exc:
            raise translate(exc, "apply") from exc
        self._sql.clear()
        return actions

    def teardown(self, registry: Registry) -> list[str]:
        conn = self.connection()
        out = []
        try:
            tables = [self.table(ent) for ent in registry.entities]
            tables += sorted(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                             if self.is_default_name(self.project, name) and name not in tables)
            for table in tables:  # (and the tables of entities an apply deleted since)
                conn.execute(f"DROP TABLE IF EXISTS {_q(table)}")
                out.append(f"dropped table {table}")
            if self._state_exists(conn):
                # (the published registry's rows, `:registry`..., are no view's state)
                views = conn.execute("SELECT COUNT(*) FROM fsplug_state WHERE project = ? AND view NOT LIKE ':%'",
                                     (self.project,)).get
                conn.execute("DELETE FROM fsplug_state WHERE project = ?", (self.project,))
                n = conn.changes()
                out.append(f"cleared the materialization state of project {self.project!r} ({views} "
                           f"view{'' if views == 1 else 's'})" + (" and its published registry" if n > views else ""))
        except apsw.Error as exc:
            raise translate(exc, "teardown") from exc
        self._sql.clear()
        return out

    def address(self) -> str:
        return str(self.path)

    def location(self, entity: str) -> str:
        return f"SQLite table {self.table(entity)!r} in {self.path}"

    def table(self, entity: str) -> str:
        """The table holding an entity's rows for this store's project."""
        return self.default_name(self.project, entity)

    # ---- materialization state -----------------------------------------------------------
    @staticmethod
    def _state_exists(conn: apsw.Connection) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'fsplug_state'").fetchone() \
            is not None

    def read_state(self, views: Sequence[str]) -> dict[str, str]:
        conn = self.connection()
        try:
            if not views or not self._state_exists(conn):
                return {}
            marks = ", ".join("?" * len(views))
            rows = conn.execute(f"SELECT view, state FROM fsplug_state WHERE project = ? AND view IN ({marks})",
                                (self.project, *views)).fetchall()
        except apsw.Error as exc:
            raise translate(exc, "read of the materialization state") from exc
        return {str(v): str(state) for v, state in rows}

    def write_state(self, view: str, text: str) -> None:
        conn = self.connection()
        try:
            conn.execute(_STATE_DDL)
            conn.execute("INSERT INTO fsplug_state (project, view, state) VALUES (?, ?, ?) "
                         "ON CONFLICT(project, view) DO UPDATE SET state = excluded.state", (self.project, view, text))
        except apsw.Error as exc:
            raise translate(exc, f"write of the materialization state of view {view!r}") from exc

    def delete_state(self, views: Sequence[str]) -> None:
        conn = self.connection()
        try:
            if views and self._state_exists(conn):
                conn.executemany("DELETE FROM fsplug_state WHERE project = ? AND view = ?",
                                 [(self.project, v) for v in views])
        except apsw.Error as exc:
            raise translate(exc, "delete of materialization state") from exc

    # ---- writes --------------------------------------------------------------------------
    def write(self, batch: WriteBatch) -> int:
        view = batch.view
        keys = list(batch.key_names)
        key = ("w", view.name, tuple(keys), tuple(f.bin for f in view.features))
        sql = self._sql.get(key)
        if sql is None:
            ts = _q(view.timestamp_bin)
            cols = keys + [f.bin for f in view.features] + [view.timestamp_bin]
            sets = ", ".join(f"{_q(c)}=excluded.{_q(c)}" for c in cols[len(keys):])
            table = _q(self.table(view.entity))
            sql = (f"INSERT INTO {table} ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' * len(cols))}) "
                   f"ON CONFLICT({', '.join(map(_q, keys))}) DO UPDATE SET {sets} "
                   f"WHERE {table}.{ts} IS NULL OR {table}.{ts} <= excluded.{ts}")
            self._sql[key] = sql
        columns = [_to_sql(f.dtype, col) for f, col in zip(view.features, batch.columns, strict=True)]
        ts_list = batch.event_ts_us.tolist() if hasattr(batch.event_ts_us, "tolist") else list(batch.event_ts_us)
        key_cols = [k.tolist() if hasattr(k, "tolist") else list(k) for k in batch.keys]
        rows = list(zip(*key_cols, *columns, ts_list, strict=True))
        conn = self.connection()
        written = 0
        step = self.config.write_batch_rows
        try:
            for i in range(0, len(rows), step):
                with _immediate(conn):
                    before = conn.total_changes()
                    conn.executemany(sql, rows[i:i + step])
                    written += conn.total_changes() - before
        except apsw.Error as exc:
            raise translate(exc, f"write of view {view.name!r}") from exc
        return written

    # ---- reads ---------------------------------------------------------------------------
    def read(self, plan: RetrievalPlan, keys_by_group: Sequence[Sequence[tuple[Any, ...]]],
             timeout_ms: float | None = None) -> list[list[Any]]:
        # One statement per group (per chunk of read_batch_keys): the keys are a VALUES list LEFT
        # JOINed to the table, so SQLite returns exactly one row per key, in request order (an
        # all-NULL row for a missing entity) and Python does no per-row work. It is also faster in
        # SQLite than `WHERE key IN (...)`, which sorts the keys into a temporary index first.
        # The order is not promised by SQL, but the left side of a LEFT JOIN is always SQLite's
        # outer loop and a VALUES list is scanned in order; a test pins this down (also with
        # reverse_unordered_selects, SQLite's switch for finding reliance on unspecified order).
        conn = self.connection()
        out: list[list[Any]] = []
        if timeout_ms is not None:
            deadline = self._local.deadline
            deadline[0] = time.monotonic() + timeout_ms / 1000
        try:
            max_params = conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER)  # 999 before SQLite 3.32
            for g, keys in zip(plan.groups, keys_by_group, strict=True):
                # each key binds one parameter per join key, within SQLite's limit per statement
                step = max(1, min(self.config.read_batch_keys, max_params // len(g.join_keys)))
                if not keys:
                    out.append([])
                    continue
                if len(keys) <= step:
                    out.append(conn.execute(self._read_sql(g, len(keys)), flat_keys(keys)).fetchall())
                    continue
                rows: list[Any] = []
                for i in range(0, len(keys), step):
                    chunk = keys[i:i + step]
                    rows += conn.execute(self._read_sql(g, len(chunk)), flat_keys(chunk)).fetchall()
                out.append(rows)
        except apsw.Error as exc:
            raise self._read_error(exc, timeout_ms) from exc
        finally:
            if timeout_ms is not None:
                deadline[0] = math.inf
        return out

    def read_one(self, plan: RetrievalPlan, key: tuple[Any, ...], timeout_ms: float | None = None) -> Any:
        conn = self.connection()
        if timeout_ms is None:
            try:
                return conn.execute(self._read_sql(plan.groups[0], 1), key).fetchone()
            except apsw.Error as exc:
                raise translate(exc, "read") from exc
        deadline = self._local.deadline
        deadline[0] = time.monotonic() + timeout_ms / 1000
        try:
            return conn.execute(self._read_sql(plan.groups[0], 1), key).fetchone()
        except apsw.Error as exc:
            raise self._read_error(exc, timeout_ms) from exc
        finally:
            deadline[0] = math.inf

    @staticmethod
    def _read_error(exc: apsw.Error, timeout_ms: float | None) -> Exception:
        if timeout_ms is not None and isinstance(exc, apsw.InterruptError):
            return StoreTimeoutError(f"SQLite read exceeded its {timeout_ms} ms budget")
        return translate(exc, "read")

    def _read_sql(self, g: Any, n: int) -> str:
        # Keyed by the group's identity (hashing the frozen dataclass walks all its fields on every
        # call); the cached group object is kept and compared, so a reused id cannot mislead.
        hit = self._read_sqls.get((id(g), n))
        if hit is not None and hit[0] is g:
            return hit[1]
        sql = read_sql(self.table(g.entity), g.join_keys, g.bins, n)
        if len(self._read_sqls) > 4096:
            self._read_sqls.clear()
        self._read_sqls[(id(g), n)] = (g, sql)
        return sql


def read_sql(table: str, join_keys: Sequence[str], bins: Sequence[str], n: int) -> str:
    """The statement fsplug reads `n` keys with: one row per key, in key order, NULLs where missing.

    Parameters: the key values, flattened key after key. Public so the benchmarks' raw baseline
    issues exactly the statement fsplug wraps.
    """
    row = "(" + ", ".join("?" * len(join_keys)) + ")"
    on = " AND ".join(f"t.{_q(k)} = k.column{i + 1}" for i, k in enumerate(join_keys))
    return (f"SELECT {', '.join('t.' + _q(b) for b in bins)} FROM (VALUES {', '.join([row] * n)}) AS k "
            f"LEFT JOIN {_q(table)} AS t ON {on}")


def _to_sql(dtype: DType, col: Sequence[Any]) -> list[Any]:
    """Python/numpy values to what SQLite binds; NaN floats become NULL."""
    vals = col.tolist() if hasattr(col, "tolist") else list(col)
    if dtype in (DType.FLOAT64, DType.FLOAT32):
        return [None if v is None or v != v else v for v in vals]
    if dtype is DType.BOOL:
        return [None if v is None else int(v) for v in vals]
    if dtype is DType.FLOAT64_LIST:
        import numpy as np

        return [None if v is None else np.asarray(v, dtype="<f8").tobytes() for v in vals]
    return vals
