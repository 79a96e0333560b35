"""FeatureStore: the facade users call, from the CLI or from serving code.

The registry is read from its JSON file (never from YAML) on first use; the online store is
connected on first use; retrieval plans are compiled once per (registry hash, refs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import numpy as np

from fsplug.config import LoadedConfig
from fsplug.online.factory import load_config
from fsplug.definitions import load_repo_definitions
from fsplug.errors import (
    ConfigError,
    DefinitionError,
    EntityKeyError,
    FsplugError,
    Problem,
    RegistryError,
    UserInputError,
)
from fsplug.plan import RetrievalPlan, compile_plan, now_us
from fsplug.registry import Registry, RegistryDiff, RegistryStore, compile_repo, diff
from fsplug.result import OnlineResult

if TYPE_CHECKING:
    from fsplug.online.base import OnlineStore
    from fsplug.state import ViewState

__all__ = ["FeatureStore", "FeatureVector", "ApplyResult"]

MAX_ENTITIES_PER_REQUEST = 10_000
"""Largest online request accepted; larger ones are refused (split them: latency is per request)."""


@dataclass(frozen=True)
class FeatureVector:
    """One entity's model-ready vector: float values in the service's order, their statuses and names."""

    values: np.ndarray
    statuses: np.ndarray
    names: tuple[str, ...]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.values.tolist(), strict=True))


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did: the diff, the registry now applied, warnings, the store's actions, and
    whether the registry file was (re)written."""

    diff: RegistryDiff
    registry: Registry
    warnings: tuple[str, ...]
    store_actions: tuple[str, ...]
    written: bool = True

    def __repr__(self) -> str:
        return (f"ApplyResult(registry {self.registry.hash[:12]} of project {self.registry.project!r}, "
                f"{len(self.diff.changes)} changes, written={self.written})")


class FeatureStore:
    """A feature repo opened for apply, materialization and serving.

    Nothing is read or connected until first use: the registry is loaded from its JSON file (never
    from YAML) when first needed, the online store connects on the first read or write, and
    retrieval plans are compiled once per (registry hash, refs). Use it as a context manager (or
    call `close()`) to release the store's connections. Thread-safe for serving calls.
    """

    def __init__(self, repo: str | Path = "."):
        """Open the feature repo at `repo` (a folder holding feature_store.yaml; default: the current one).

        Raises nothing by itself: a missing or invalid feature_store.yaml raises ConfigError /
        DefinitionError on first use.
        """
        self.repo_path = Path(repo).resolve()
        self._config: LoadedConfig | None = None
        self._registry: Registry | None = None
        self._online: OnlineStore | None = None
        self._plans: dict[tuple[Any, ...], RetrievalPlan] = {}
        self._by_service: dict[str, tuple[Registry, RetrievalPlan]] = {}  # get_feature_vector's plan lookup
        self._lock = threading.Lock()
        self._spark: Any = None  # the SparkEngine, once a job asked for it

    # ---- configuration and registry -------------------------------------------------------
    @property
    def config(self) -> LoadedConfig:
        """feature_store.yaml, validated (ConfigError / DefinitionError when it is not valid)."""
        if self._config is None:
            self._config = load_config(self.repo_path)
        return self._config

    @property
    def registry_store(self) -> RegistryStore:
        """Where the registry is read and written: its file, or the online store (`registry: online`)."""
        from fsplug.registry.published import ONLINE, OnlineRegistryStore

        if self.config.config.registry == ONLINE:
            return OnlineRegistryStore(self.online_store)  # type: ignore[return-value]
        return RegistryStore(self.config.registry_path)

    @property
    def registry(self) -> Registry:
        """The applied registry (loaded once; `refresh_registry()` re-reads it).

        Raises:
            RegistryError: nothing applied yet (run `fsplug apply`), or the file is damaged.
        """
        if self._registry is None:
            self._registry = self.registry_store.load()
        return self._registry

    def refresh_registry(self) -> Registry:
        """Re-read the applied registry (after another process applied); returns it."""
        self._registry = reg = self.registry_store.load()
        self._forget_plans_but(reg)
        return reg

    def use_registry(self, registry: Registry, services: Sequence[str] = ()) -> dict[str, FsplugError]:
        """Serve `registry` from now on (a server's hot swap), compiling `services`' plans first.

        A call in flight keeps the registry it started with, so it is answered by one plan; the
        next call uses the new one.

        Returns:
            The services whose plan does not compile here, with the error their requests get: two
            outputs with one name (served only with `full_feature_names`), or a derived feature's UDF
            this host cannot import. Every other service is compiled, derived features included.
        """
        failed: dict[str, FsplugError] = {}
        for name in services:
            try:
                self._plan(registry, None, name, False).program  # noqa: B018 - imports UDFs now, not per request
            except FsplugError as exc:
                failed[name] = exc
        self._registry = registry
        self._forget_plans_but(registry)
        return failed

    def _forget_plans_but(self, registry: Registry) -> None:
        """Drop the compiled plans of every registry but `registry` (new dicts: readers never see one
        half-pruned), so a long-lived server's swaps do not pile up plans."""
        self._plans = {k: p for k, p in self._plans.items() if k[0] == registry.hash}
        self._by_service = {s: hit for s, hit in self._by_service.items() if hit[0] is registry}

    def materialization_state(self, views: Sequence[str] | None = None) -> dict[str, ViewState]:
        """Each view's materialization state, as the online store keeps it.

        Args:
            views: view names (default: every view of the registry).

        Returns:
            view name -> ViewState (watermark, newest event time, last run) for the views that
            were materialized into this store; a view never materialized is absent.

        Raises:
            StoreError: the store cannot be read.
        """
        from fsplug.state import load_states

        names = list(self.registry.feature_views) if views is None else [self.registry.view(v).name for v in views]
        return load_states(self.online_store, names)

    def compile(self, *, check_paths: bool) -> tuple[Registry, list[str]]:
        """Load and compile the repo's YAML; raises DefinitionError listing every problem.

        With `check_paths` (apply), sources must exist and their Parquet schemas must match the
        declarations; and the online store must accept the entities' set/table names.
        """
        problems: list[Problem] = []
        warnings: list[str] = []
        repo = load_repo_definitions(self.repo_path, problems)
        try:
            reg = compile_repo(repo, self.config.config.project, check_paths=check_paths, problems=problems,
                               warnings=warnings)
        except DefinitionError as exc:
            raise DefinitionError(exc.problems) from None
        if problems:
            raise DefinitionError(problems)
        if check_paths:
            from fsplug.checks import source_problems

            named = self.online_store.entity_name_problems(list(reg.entities))
            problems += [item.problem(named[item.spec.name], "name") for item in repo.objects["entities"]
                         if item.spec.name in named]
            problems += source_problems(reg, repo, self.repo_path)
            if problems:
                raise DefinitionError(problems)
        return reg, warnings

    def changes(self) -> tuple[RegistryDiff, list[str]]:
        """What `apply` would change (the `fsplug plan` command); writes nothing.

        Returns:
            (the diff against the applied registry, warnings such as sources not found yet).

        Raises:
            DefinitionError: the YAML has problems (all of them, located).
        """
        new, warnings = self.compile(check_paths=False)
        return diff(self._replaced_registry()[0], new), warnings

    def _refuse_emptying(self, old: Registry | None, new: Registry) -> None:
        """Refuse an apply from a folder without definition files that would delete every object of an
        applied project (a serving host's folder, holding only feature_store.yaml)."""
        from fsplug.definitions import definition_files

        if old is None or not old.feature_views or new.feature_views or definition_files(self.repo_path):
            return
        raise UserInputError(
            f"no definition files in {self.repo_path}: apply would delete every object of project "
            f"{old.project!r} ({len(old.feature_views)} feature views) from the registry it serves; run apply "
            "from the feature repo (a serving host needs only feature_store.yaml), or `fsplug teardown` to "
            "remove the project"
        )

    def _replaced_registry(self) -> tuple[Registry | None, bool]:
        """The registry `apply` replaces, and whether its file must be written even when unchanged: the
        applied one or, when its file cannot be read (truncated, corrupt), the one `apply` last
        published in the online store (None without one), since `apply` writes the file anew."""
        from fsplug.registry.published import ONLINE, load_published

        try:
            return self.registry_store.load_or_none(), False
        except RegistryError:
            if self.config.config.registry == ONLINE:
                raise
            return load_published(self.online_store), True

    def apply(self) -> ApplyResult:
        """Compile the YAML, write the registry (atomically, under a lock) and update the online store.

        Checks every source's Parquet schema against the declarations and the store's limits on
        set/table names first; nothing is written when anything is wrong. Applying an unchanged
        repo writes nothing (`ApplyResult.written` is False).

        Returns:
            An ApplyResult: the diff, the registry, warnings, the store's actions, `written`.

        Raises:
            DefinitionError: problems in the YAML or mismatches with the sources (all, located).
            UserInputError: no definition files, where applying would delete every object of the project.
            StoreError: the online store could not be prepared.
        """
        new, warnings = self.compile(check_paths=True)
        store = self.registry_store
        with store.locked():
            old, damaged = self._replaced_registry()
            self._refuse_emptying(old, new)
            d = diff(old, new)
            actions = self.online_store.apply(new, d)
            gone = [v for v in (old.feature_views if old is not None else ()) if v not in new.feature_views]
            # a view created again later starts from the beginning; so does one whose stored data a change
            # made wrong (materialize-incremental re-materializes it whole)
            reset = [v for v in d.invalidated_views(new) if new.feature_views[v].online]
            if gone or reset:
                self.online_store.delete_state(gone + reset)
            actions += [f"materialization state of view {v} reset: materialize-incremental runs it from the beginning"
                        for v in reset]
            written = damaged or bool(d) or old is None or old.hash != new.hash or old.to_json() != new.to_json()
            if written:
                store.save(new)
            from fsplug.registry.published import publish

            publish(self.online_store, new)  # every serving host reads it there (no-op when unchanged)
        self._registry = new
        self._plans.clear()
        return ApplyResult(d, new, tuple(warnings), tuple(actions), written)

    # ---- online store ---------------------------------------------------------------------
    @property
    def online_store(self) -> OnlineStore:
        """The online store of feature_store.yaml, created on first use (its driver imported then)."""
        if self._online is None:
            with self._lock:
                if self._online is None:
                    from fsplug.online.factory import store_class

                    cfg = self.config.store
                    self._online = store_class(cfg.type)(cfg, self.repo_path, self.config.config.project)
        return self._online

    def teardown(self) -> list[str]:
        """Remove the project's online data and materialization state; done when it returns.

        Returns:
            Lines describing what was removed.

        Raises:
            StoreError: the store failed (StoreTimeoutError: records kept appearing until the
                store's teardown timeout — something still writes).
        """
        from fsplug.registry.published import APPLIED_KEY, HASH_KEY, REGISTRY_KEY

        out = self.online_store.teardown(self.registry)
        self.online_store.delete_state([HASH_KEY, REGISTRY_KEY, APPLIED_KEY])  # the published registry goes too
        return out

    def close(self) -> None:
        """Release the online store's connections (a later call reconnects). Returns None."""
        if self._online is not None:
            self._online.close()
            self._online = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- retrieval ------------------------------------------------------------------------
    def plan(self, features: Sequence[str] | None = None, service: str | None = None,
             full_feature_names: bool = False) -> RetrievalPlan:
        """The compiled RetrievalPlan for feature refs or a feature service (cached per registry hash).

        Args:
            features: refs like `view:feature` or `view:*` (or give `service`).
            service: a feature service name.
            full_feature_names: name outputs `view__feature`.

        Raises:
            ReferenceNotFoundError: an unknown view, feature or service (with "did you mean").
            UserInputError: both or neither of features and service; a feature requested twice;
                two outputs with one name (use full_feature_names).
        """
        return self._plan(self.registry, features, service, full_feature_names)

    def _plan(self, reg: Registry, features: Sequence[str] | None, service: str | None,
              full_feature_names: bool) -> RetrievalPlan:
        key = (reg.hash, tuple(features) if features is not None else None, service, full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            if any(f.udf for d in reg.derived_views.values() for f in d.features):
                from fsplug.derived import use_search_path

                use_search_path(self.repo_path)  # UDF modules kept in the feature repo import
            plan = compile_plan(reg, features=features, service=service, full_feature_names=full_feature_names)
            self._plans[key] = plan
        return plan

    def get_online_features(
        self,
        features: Sequence[str] | None = None,
        service: str | None = None,
        entity_rows: Sequence[Mapping[str, Any]] | None = None,
        entities: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
        partial_results: bool = False,
        timeout_ms: float | None = None,
    ) -> OnlineResult:
        """Feature values for many entities in one store read.

        Args:
            features: refs like `view:feature` or `view:*` (or give `service`).
            service: a feature service name.
            entity_rows: one mapping per entity, like `[{"driver_id": 1, "pickup_distance_km": 1.2}]`;
                a row may leave out request features that have a default.
            entities: the same as columns, like `{"driver_id": [1, 2], "pickup_distance_km": [...]}`
                (give exactly one of entity_rows and entities).
            full_feature_names: name outputs `view__feature`.
            partial_results: a store that can (Aerospike) reports per-entity failures (a dead node)
                in `result.errors` and as NOT_FOUND instead of failing the whole request.
            timeout_ms: caps the store call.

        Returns:
            An OnlineResult: `to_numpy()`, `to_dict()`, `to_arrow()`, `to_pandas()`, `columns`,
            `statuses`, `event_timestamps`, converted on first use.

        Raises:
            ReferenceNotFoundError / UserInputError: unknown features or service, a request column that
                is no join key or request feature, more than MAX_ENTITIES_PER_REQUEST entities,
                partial_results on a store that cannot, a view that is offline only (`online: false`).
            EntityKeyError / RequestFeatureError: a missing or mistyped key or request value.
            StoreError: the store failed (StoreTimeoutError past the budget).
        """
        plan = self.plan(features, service, full_feature_names)
        if plan.offline_views:
            plan.check_online()
        cols, n = _columnar(entity_rows, entities, plan)
        return self._read(plan, cols, n, partial_results, timeout_ms)

    def _read(self, plan: RetrievalPlan, cols: Mapping[str, Sequence[Any]], n: int,
              partial: bool = False, timeout_ms: float | None = None) -> OnlineResult:
        if n > MAX_ENTITIES_PER_REQUEST:
            raise UserInputError(f"{n} entities in one request; the limit is {MAX_ENTITIES_PER_REQUEST}")
        _check_timeout(timeout_ms)
        if not plan.accepted.issuperset(cols):
            plan.check_columns(cols)
        keys = plan.keys_by_group(cols, n)
        request = plan.request_values(cols, n)
        store = self.online_store
        errors = None
        if partial:
            if not store.capabilities.partial_results:
                raise UserInputError(f"partial_results=True: the {self.config.store.type} online store cannot report "
                                     "per-entity failures (only a whole read fails); call without it")
            rows, errors = store.read_partial(plan, keys, timeout_ms)
        else:
            rows = store.read(plan, keys, timeout_ms) if plan.groups else []
        return OnlineResult(plan, rows, request, n, now_us(), errors)

    def get_feature_vector(self, service: str, request: Mapping[str, Any] | None = None,
                           timeout_ms: float | None = None, **entity_key: Any) -> FeatureVector:
        """The model-ready vector of one entity for a feature service: the fastest serving path.

        `get_feature_vector("decline_model_v1", driver_id=42, request={"pickup_distance_km": 1.2})`.

        Args:
            service: the feature service.
            request: the request features' values (those with a default may be left out).
            timeout_ms: caps the store call.
            **entity_key: the entity's join key(s), like `driver_id=42`.

        Returns:
            A FeatureVector: float64 `values` in the service's order (bool 0/1, timestamps as
            seconds; missing or stale values are the declared defaults, NaN without one),
            `statuses` saying which, and `names`.

        Raises:
            UserInputError: a text, bytes or list feature in the service (no number for a vector),
                an unknown request column or keyword; EntityKeyError / RequestFeatureError as
                get_online_features; StoreError: the store failed.
        """
        plan = self._service_plan(service)
        if plan.offline_views:
            plan.check_online()
        if timeout_ms is not None:
            _check_timeout(timeout_ms)
        store = self._online or self.online_store
        fast = plan.fast_vector
        row: Any = _UNREAD
        if request and not plan.request_names.issuperset(request):
            if not request.keys().isdisjoint(plan.join_keys):
                both = sorted(set(request).intersection(plan.join_keys))
                raise EntityKeyError(f"{', '.join(both)}: a join key goes in the keyword arguments "
                                     f"(like {both[0]}=...), not in request=")
            plan.check_columns(request)
        if fast is not None and len(entity_key) == 1:
            key: Any = entity_key.get(fast.key)
            # (mypy narrows `key` to object on `type(key) is <a type object>`; it is an int or a str here)
            if type(key) is fast.key_type and (fast.key_type is str or -_TWO_63 <= key < _TWO_63):  # type: ignore[operator]
                row = store.read_one(plan, (key,), timeout_ms)
                out = plan.fast_values(row, request, now_us())
                if out is not None:
                    vals, st = out
                    return FeatureVector(np.array(vals, dtype=np.float64),
                                         fast.present.copy() if st is None else np.array(st, dtype=np.uint8),
                                         plan.names)
        cols = {k: (v,) for k, v in entity_key.items()}
        if request:
            cols.update({k: (v,) for k, v in request.items()})
        keys = plan.keys_by_group(cols, 1)  # (a missing join key first: EntityKeyError, "did you mean")
        if not plan.accepted.issuperset(cols):  # an unknown keyword (a typo): refused, as get_online_features does
            plan.check_columns(cols)
        req = plan.request_values(cols, 1)
        if row is not _UNREAD:
            rows: list[Any] = [[row]]
        elif plan.groups:
            rows = store.read(plan, keys, timeout_ms)
        else:
            rows = []
        # one row: assembled in plain Python (same values and statuses as OnlineResult.to_numpy())
        out = plan.vector(rows, req, now_us()) if plan.has_vector else None
        if out is None:  # derived features reading text, timestamps or ints beyond a float64's exact ones
            res = OnlineResult(plan, rows, req, 1, now_us())
            return FeatureVector(res.to_numpy()[0], res.statuses[0], plan.names)
        return FeatureVector(np.array(out[0], dtype=np.float64), np.array(out[1], dtype=np.uint8), plan.names)

    def _service_plan(self, service: str) -> RetrievalPlan:
        reg = self.registry  # one registry object for the check, the compile and the cache entry
        hit = self._by_service.get(service)
        if hit is not None and hit[0] is reg:
            return hit[1]
        plan = self._plan(reg, None, service, False)
        self._by_service[service] = (reg, plan)
        return plan

    # ---- offline --------------------------------------------------------------------------
    def engine(self, name: str | None = None) -> Any:
        """The engine of the batch jobs: None for the local one, else a SparkEngine (one per FeatureStore,
        its session made on first use).

        Args:
            name: `local` or `spark`; None: feature_store.yaml's `materialization.engine` (default local).

        Raises:
            ConfigError: an unknown engine name (with "did you mean").
        """
        from fsplug.config import check_engine

        try:
            name = check_engine(name) if name is not None else self.config.config.materialization.engine
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if name == "local":
            return None
        if self._spark is None:
            from fsplug.engines.spark import SparkEngine

            self._spark = SparkEngine(self.config.config.materialization.spark)
        return self._spark

    def materialize(self, start: datetime | None, end: datetime, views: Sequence[str] | None = None,
                    progress: bool | None = None, engine: str | None = None) -> Any:
        """Load the latest row per entity with start <= event time < end into the online store.

        Args:
            start: inclusive start (None: the beginning); naive times are UTC.
            end: exclusive end; at most `fsplug.state.MAX_CLOCK_SKEW` past now.
            views: view names (default: every online view).
            progress: show a progress line (default: when stderr is a terminal).
            engine: `local` or `spark` (default: feature_store.yaml's `materialization.engine`).

        Returns:
            A MaterializeReport. Each view's watermark moves to max(watermark, end) once its
            writes succeeded.

        Raises:
            UserInputError: start >= end, or end in the future.
            SourceDataError: a source does not match its declarations (checked for every view
                before anything is written).
            StoreError: the store failed; `err.report` lists the views that completed.
            EngineError: the Spark job failed (`err.report` as for StoreError).
            ConfigError: the Spark engine with a store that takes no writes from many processes (SQLite).
        """
        from fsplug.materialize import materialize

        return materialize(self.registry, self.online_store, self.repo_path, start, end, views=views,
                           incremental=False, progress=progress, engine=self.engine(engine))

    def materialize_incremental(self, end: datetime, views: Sequence[str] | None = None,
                                progress: bool | None = None, from_: datetime | None = None,
                                engine: str | None = None) -> Any:
        """Materialize each view from its stored watermark (or the beginning) up to `end`.

        Args:
            end: exclusive end; at most `fsplug.state.MAX_CLOCK_SKEW` past now.
            views: view names (default: every online view).
            progress: show a progress line (default: when stderr is a terminal).
            from_: rewind: start every selected view here instead of at its watermark, and set
                its watermark to `end` even if that is earlier than the stored one.
            engine: `local` or `spark` (default: feature_store.yaml's `materialization.engine`).

        Returns, raises: as `materialize`.
        """
        from fsplug.materialize import materialize

        return materialize(self.registry, self.online_store, self.repo_path, from_, end, views=views,
                           incremental=from_ is None, progress=progress, rewind=from_ is not None,
                           engine=self.engine(engine))

    def push(self, view: str, table: Any) -> int:
        """Write fresh rows straight to the online store (a streaming update between materializations).

        Args:
            view: the feature view the rows belong to.
            table: a pyarrow Table / RecordBatch or a dict of columns, named as in the view's SOURCE:
                the join keys, the source's timestamp field (e.g. `event_ts`), each feature's
                `column` (its name unless declared otherwise); the created timestamp is optional.

        Returns:
            The number of entities written (a row older than the stored one is skipped).

        Raises:
            SourceDataError: a missing column or a column of another type.
            StoreError: the store failed.
        """
        from fsplug.materialize import push

        return push(self.registry, self.online_store, view, table)

    write_to_online_store = push

    def get_historical_features(self, entity_df: Any, features: Sequence[str] | None = None,
                                service: str | None = None, full_feature_names: bool = False,
                                event_timestamp_column: str = "event_timestamp", fill_defaults: bool = True,
                                include_statuses: bool = False, engine: str | None = None,
                                output_path: str | Path | None = None) -> Any:
        """Training data: for each entity row at time t, what `get_online_features` would have served at t.

        That is the latest source row at or before t (ties as in materialization), then the same
        rules as online serving with t as "now": a view with no row is NOT_FOUND, one older than its
        ttl OUTSIDE_MAX_AGE, a null or NaN value NULL_VALUE, and every value that is not PRESENT is
        the feature's declared default (null without one). Request features take the row's value,
        or their default when the column or value is missing.

        Args:
            entity_df: the entity rows: a pyarrow Table, a pandas DataFrame, a dict of columns, a
                Parquet path or a Spark DataFrame (which runs on the Spark engine), with the join keys, a
                timestamp column and the request features; other columns (labels, ids) pass through.
            features / service / full_feature_names: what to retrieve, as for `plan`.
            event_timestamp_column: the entity rows' time column.
            fill_defaults: False keeps nulls where a value is not PRESENT (no defaults).
            include_statuses: add a `<feature>__status` column (status names) per feature.
            engine: `local` or `spark` (default: `spark` for a Spark DataFrame, else feature_store.yaml's
                `materialization.engine`).
            output_path: also write the result there as Parquet (Spark: a directory; it must not exist).

        Returns:
            Local engine: a pyarrow Table (`.to_pandas()` for a DataFrame): the entity rows' other
            columns in their order, then the features in plan order (then the statuses). Spark engine:
            a Spark DataFrame of the same columns (rows in no particular order).

        Raises:
            UserInputError: no or a non-timestamp time column (EntityKeyError: a missing join key),
                RequestFeatureError: a request feature without a default missing from the rows,
                SourceDataError: a source that does not match its declarations.
            EngineError: Spark cannot start.
        """
        from fsplug.engines.spark import is_spark_frame
        from fsplug.training import historical_features

        if engine is None and is_spark_frame(entity_df):
            engine = "spark"
        return historical_features(self.plan(features, service, full_feature_names), self.registry, self.repo_path,
                                   entity_df, event_timestamp_column=event_timestamp_column,
                                   fill_defaults=fill_defaults, include_statuses=include_statuses,
                                   engine=self.engine(engine), output_path=output_path)


def _check_timeout(timeout_ms: Any) -> None:
    if timeout_ms is not None and not (isinstance(timeout_ms, (int, float)) and timeout_ms > 0):
        raise UserInputError(f"timeout_ms must be a positive number of milliseconds; got {timeout_ms!r}")


def _columnar(entity_rows: Sequence[Mapping[str, Any]] | None, entities: Mapping[str, Sequence[Any]] | None,
              plan: RetrievalPlan) -> tuple[Mapping[str, Sequence[Any]], int]:
    """The request as columns and its row count. Rows may leave out the request features that have a
    default: their column gets None there, which the request check turns into the default."""
    if type(entities) is dict and entity_rows is None:  # the common shape, checked in a few C-level calls
        sizes = set(map(len, entities.values())) if set(map(type, entities.values())) <= _SEQUENCES else None
        if sizes is not None and len(sizes) == 1 and 0 not in sizes:
            return entities, sizes.pop()
    if (entity_rows is None) == (entities is None):
        raise EntityKeyError("give exactly one of entity_rows=[{...}, ...] or entities={key: [...]}")
    if entities is not None:
        if not isinstance(entities, Mapping):
            raise EntityKeyError(f"entities must map each column to its values, like {{'driver_id': [1, 2]}}; "
                                 f"got {type(entities).__name__}")
        for k, v in entities.items():
            if isinstance(v, (str, bytes, Mapping, set, frozenset)) or not hasattr(v, "__len__"):
                raise EntityKeyError(f"entities[{k!r}] must be a list of values, one per entity (like [1, 2]); "
                                     f"got {type(v).__name__} {_short(v)}")
        lengths = {k: len(v) for k, v in entities.items()}
        if not lengths:
            raise EntityKeyError("entities={} is empty: pass at least the join key columns")
        if len(set(lengths.values())) > 1:
            raise EntityKeyError(f"entity columns differ in length: {lengths}")
        n = next(iter(lengths.values()))
        if n == 0:
            raise EntityKeyError("the request has no entities")
        return entities, n
    if isinstance(entity_rows, (Mapping, str, bytes)):
        raise EntityKeyError(f"entity_rows must be a list of mappings like [{{'driver_id': 1}}]; "
                             f"got {type(entity_rows).__name__}")
    rows = list(entity_rows or ())
    if not rows:
        raise EntityKeyError("entity_rows is empty: pass at least one row")
    if not isinstance(rows[0], Mapping):
        raise EntityKeyError(f"entity_rows[0] must be a mapping like {{'driver_id': 1}}; got {_short(rows[0])}")
    keys = list(rows[0])
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise EntityKeyError(f"entity_rows[{i}] must be a mapping like {{'driver_id': 1}}; got {_short(r)}")
        if list(r) != keys and set(r) != set(keys):
            keys += [k for k in r if k not in keys]
    plan.check_columns(keys)
    optional = plan.optional_request_names
    cols: dict[str, list[Any]] = {k: [] for k in keys}
    for i, r in enumerate(rows):
        for k in keys:
            if k in r:
                cols[k].append(r[k])
            elif k in optional:
                cols[k].append(None)  # a request feature with a default, left out of this row
            else:
                have = next(j for j, other in enumerate(rows) if k in other)
                raise EntityKeyError(f"entity_rows[{i}] has no {k!r} (entity_rows[{have}] has it); only request "
                                     "features with a default may be left out of a row")
    return cols, len(rows)


_SEQUENCES = {list, tuple}
_UNREAD = object()
_TWO_63 = 2**63


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
