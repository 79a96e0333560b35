"""Training data: `get_historical_features`, a point-in-time correct join of entity rows with feature views."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

from fsplug.config import resolve_repo_path
from fsplug.errors import RequestFeatureError, UserInputError

if TYPE_CHECKING:
    import pyarrow as pa

    from fsplug.store import FeatureStore

__all__ = ["get_historical_features"]


def get_historical_features(store: FeatureStore, entity_df: Any, *, features: Sequence[str] | None = None,
                            service: str | None = None, full_feature_names: bool = False,
                            event_timestamp_column: str = "event_timestamp") -> pa.Table:
    """Entity rows (pyarrow Table, pandas DataFrame, dict of columns, or a Parquet path) in; a training table out.

    For every row and stored feature: the latest value at or before the row's timestamp and within
    the view's ttl, else null (no leakage from the future). Request features must already be
    columns of the entity rows (as they were at request time). The result keeps every entity
    column and row order, then the plan's columns in plan order.
    """
    import pyarrow.parquet as pq

    from fsplug.offline.pit import ViewJoin, point_in_time_join

    from fsplug.offline.arrow import as_table

    if isinstance(entity_df, (str, Path)):
        entity_df = pq.read_table(entity_df)
    table = as_table(entity_df, "entity rows")
    if table is None:
        raise UserInputError(f"entity_df must be a pyarrow Table, a pandas DataFrame, a dict of columns or a "
                             f"Parquet path; got {type(entity_df).__name__}")
    entity_df = table
    plan = store.plan(features, service, full_feature_names)
    reg = store.registry
    joins = []
    for g in plan.groups:
        for v in g.views:
            view = reg.view(v.name)
            cols = [c for c in plan.columns if c.view == v.name]
            feats = [view.feature(c.feature) for c in cols]
            joins.append(ViewJoin(
                name=view.name,
                path=resolve_repo_path(store.repo_path, view.source.path),
                join_keys=g.join_keys,
                timestamp_field=view.source.timestamp_field,
                created_timestamp_field=view.source.created_timestamp_field,
                columns=tuple(f.column for f in feats),
                output_names=tuple(c.name for c in cols),
                dtypes=tuple(f.dtype for f in feats),
                ttl=timedelta(seconds=view.ttl_seconds) if view.ttl_seconds else None,
            ))
    for c in plan.request_columns:
        if c.name not in entity_df.column_names:
            raise RequestFeatureError(f"request feature {c.name!r} ({c.ref}) must be a column of the entity rows")
    joined = point_in_time_join(entity_df, event_timestamp_column=event_timestamp_column, views=joins)
    entity_cols = [n for n in entity_df.column_names if n not in plan.names]
    return joined.select(entity_cols + list(plan.names))
