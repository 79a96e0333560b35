"""Checks of the declarations against the data, before anything is written.

`apply` compares every view's source schema (Parquet metadata only: no data is scanned) with
what the view declares — join key columns, the timestamp fields, every feature's column and
dtype — and reports all mismatches at once, each at the YAML node that declares the column.
`materialize` runs `check_view_sources` on every selected view before its first write. A source that
is a Spark catalog table is not checked at apply (only a Spark session knows it); the Spark engine
checks its schema from the catalog before a job, the local engine refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fsplug.errors import ConfigError, Problem, SourceDataError
from fsplug.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.definitions import LoadedRepo
    from fsplug.engines.spark import SparkEngine
    from fsplug.registry import FeatureView, Registry

__all__ = ["Mismatch", "view_mismatches", "source_problems", "check_view_sources"]


class Mismatch:
    """A column a view needs that its source lacks or holds with another type."""

    __slots__ = ("role", "name", "column", "declared", "file", "found", "columns")

    def __init__(self, role: str, name: str, column: str, declared: DType, file: str, found: str | None,
                 columns: Sequence[str]):
        self.role = role  # "key", "timestamp", "created" or "feature"
        self.name = name  # the join key, field or feature name as declared
        self.column = column
        self.declared = declared
        self.file = file
        self.found = found  # the Arrow type found; None = the column is missing
        self.columns = columns

    def describe(self, view: str) -> str:
        what = {"key": f"join key '{self.name}'", "timestamp": "the event timestamp field",
                "created": "the created timestamp field", "feature": f"feature '{self.name}'"}[self.role]
        declared = "a timestamp" if self.role in ("timestamp", "created") else str(self.declared)
        if self.found is None:
            return (f"feature view {view!r}: {what} needs column '{self.column}' ({declared}), which {self.file} "
                    f"does not have; its columns are: {', '.join(self.columns)}")
        return (f"feature view {view!r}: {what} declares {declared}, but column '{self.column}' of {self.file} "
                f"has type {self.found}")


def _needed(registry: Registry, view: FeatureView) -> list[tuple[str, str, str, DType]]:
    """(role, declared name, column, dtype) of every column `view` reads from its source."""
    out = [("key", k.name, k.name, k.dtype) for k in registry.entity(view.entity).join_keys]
    out.append(("timestamp", view.source.timestamp_field, view.source.timestamp_field, DType.TIMESTAMP))
    if view.source.created_timestamp_field:
        out.append(("created", view.source.created_timestamp_field, view.source.created_timestamp_field,
                    DType.TIMESTAMP))
    out += [("feature", f.name, f.column, f.dtype) for f in view.features]
    return out


def view_mismatches(registry: Registry, view: FeatureView, dataset: pa.dataset.Dataset, label: str) -> list[Mismatch]:
    """Every needed column of `view` missing from `dataset` or of an incompatible type
    (`fsplug.offline.parquet.column_mismatches`: the dataset's schema and each file's footer)."""
    from fsplug.offline.parquet import column_mismatches

    needed = _needed(registry, view)
    found: dict[str, list[tuple[str, str | None, list[str]]]] = {}
    for column, file, arrow_type, columns in column_mismatches(dataset, [(c, dt) for _, _, c, dt in needed], label):
        found.setdefault(column, []).append((file, arrow_type, columns))
    return [Mismatch(role, name, column, dtype, file, arrow_type, columns)
            for role, name, column, dtype in needed for file, arrow_type, columns in found.get(column, ())]


def source_problems(registry: Registry, repo: LoadedRepo, root: Path) -> list[Problem]:
    """Every mismatch between the views' declarations and their sources' Parquet metadata, each
    located at the YAML node declaring the column (a feature, the view's entity for join keys,
    the source's timestamp field)."""
    from fsplug.offline.parquet import open_source

    views_at = {i.spec.name: i for i in repo.objects["feature_views"]}
    sources_at = {i.spec.name: i for i in repo.objects["sources"]}
    problems: list[Problem] = []
    opened: dict[str, object] = {}
    reported: set[tuple[str, str, str]] = set()
    for view in registry.feature_views.values():
        src = view.source
        if src.table:  # a Spark catalog table: no Spark here; the Spark engine checks it before each job
            continue
        source_at = sources_at[src.name]
        if src.name not in opened:
            try:
                opened[src.name] = open_source(src.local_path(root))
            except (SourceDataError, ConfigError) as exc:
                opened[src.name] = None
                problems.append(source_at.problem(f"source {src.name!r}: {exc}", "path"))
        dataset = opened[src.name]
        if dataset is None:
            continue
        view_at = views_at[view.name]
        feature_index = {f.name: j for j, f in enumerate(view.features)}
        for m in view_mismatches(registry, view, dataset, src.path):
            if m.role == "feature":
                problems.append(view_at.problem(m.describe(view.name), "features", feature_index[m.name]))
            elif m.role == "key":
                problems.append(view_at.problem(m.describe(view.name), "entity"))
            elif (src.name, m.role, m.file) not in reported:  # once per source, not per view
                reported.add((src.name, m.role, m.file))
                field = "timestamp_field" if m.role == "timestamp" else "created_timestamp_field"
                problems.append(source_at.problem(m.describe(view.name).replace(
                    f"feature view {view.name!r}", f"source {src.name!r}"), field))
    return problems


def check_view_sources(registry: Registry, views: Sequence[FeatureView], root: Path,
                       engine: SparkEngine | None = None, *, spark_store: str = "") -> None:
    """Raise SourceDataError listing every mismatch of every view in `views` (before any write).

    A Spark catalog table is checked through `engine` (its schema, from the catalog: a table the engine
    cannot read is a mismatch too); without one (the local engine) it is a ConfigError naming the Spark
    engine, and `spark_store` (why the online store keeps the Spark engine out, if it does)."""
    from fsplug.offline.parquet import open_source

    lines: list[str] = []
    for view in views:
        src = view.source
        try:
            dataset = (engine.open_table(src.table, [c for _, _, c, _ in _needed(registry, view)])
                       if src.table and engine is not None else open_source(src.local_path(root, spark_store)))
        except SourceDataError as exc:
            lines.append(f"feature view {view.name!r}: {exc}")
            continue
        lines += [m.describe(view.name) for m in view_mismatches(registry, view, dataset, src.location)]
    if lines:
        raise SourceDataError("\n".join(dict.fromkeys(lines)) + "\nnothing was written")
