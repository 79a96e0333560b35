"""Serving the decline-risk model: `predict_decline_risk` for one driver and smart `dispatch` over candidates.

`DispatchService(repo, model_path)` loads the model once (checksum and signature verified) and
serves from the online store configured in the repo's feature_store.yaml (SQLite or Aerospike).

Fallbacks (always flagged in the result, never silent):
- `predict_decline_risk`: an unknown driver (no stored features at all) or an unavailable store
  gives the training set's base decline rate (`metrics["base_rate"]` of the model signature).
- `dispatch`: if the store fails or does not answer within the budget (default 50 ms), the
  candidates are ranked by pickup distance (nearest first) instead.

Ranking and ties: candidates are ranked by acceptance probability (1 - decline risk), highest
first; ties go to the shorter pickup distance, then to the lower driver id. Fallback ranking:
shorter distance, then lower driver id.
"""

from __future__ import annotations

import contextlib

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np

from fsplug.errors import FsplugError, StoreError
from fsplug.result import FieldStatus
from fsplug.serving import Predictor
from fsplug.store import FeatureStore

SERVICE = "decline_model_v2"  # stored, request and derived features (feature_repo/features/driver.yaml)
DEFAULT_MODEL = Path(f"data/models/{SERVICE}.joblib")
DEFAULT_BUDGET_MS = 50.0


@dataclass(frozen=True)
class DeclineRisk:
    """The decline probability of one driver for one request, and how it was obtained."""

    driver_id: int
    probability: float
    features: dict[str, float]
    statuses: dict[str, str]
    elapsed_ms: float
    fallback: str | None = None  # why the default was used, or None


@dataclass(frozen=True)
class RideRequest:
    """A ride request: request-wide values plus each candidate's pickup distance."""

    request_id: str
    hour_of_day: int
    surge_multiplier: float
    pickup_distance_km: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchDecision:
    """The chosen driver and the full ranking (driver_id, acceptance probability, distance)."""

    request_id: str
    driver_id: int
    ranking: list[tuple[int, float, float]]
    elapsed_ms: float
    fallback: str | None = None
    degraded_candidates: int = 0  # candidates scored with some default-filled features


class DispatchService:
    """The decline-risk model served from a feature repo's online store."""

    def __init__(self, repo: str | Path = "feature_repo", model_path: str | Path | None = None,
                 budget_ms: float = DEFAULT_BUDGET_MS):
        self.store = FeatureStore(repo)
        path = Path(model_path) if model_path else self.store.repo_path / DEFAULT_MODEL
        self.predictor = Predictor(self.store, path)
        self.budget_ms = budget_ms
        self.base_rate = float(self.predictor.artifact.signature.metrics.get("base_rate", 0.5))
        self.service = self.predictor.artifact.signature.service  # the service the model was trained on
        self.names = self.predictor.plan.names
        # the stored features (a derived one that is not PRESENT follows from a stored one that is not)
        self._stored = np.array([not c.is_request and not c.is_derived for c in self.predictor.plan.columns])
        # connect now rather than within the first request's budget; if the store is down, requests
        # fall back and the store reconnects by itself later
        with contextlib.suppress(StoreError):
            self.store.online_store.connect()

    def close(self) -> None:
        self.store.close()

    def predict_decline_risk(self, driver_id: int, request: Mapping[str, Any]) -> DeclineRisk:
        """P(decline) of `driver_id` for a request (`pickup_distance_km`, `surge_multiplier`, `hour_of_day`)."""
        t0 = time.perf_counter()
        try:
            vec = self.store.get_feature_vector(self.service, request=request, timeout_ms=self.budget_ms,
                                                driver_id=driver_id)
        except StoreError as exc:
            return DeclineRisk(driver_id, self.base_rate, {}, {}, (time.perf_counter() - t0) * 1e3,
                               f"store unavailable: {type(exc).__name__}")
        statuses = {n: FieldStatus(s).name for n, s in zip(self.names, vec.statuses, strict=True)}
        features = dict(zip(self.names, vec.values.tolist(), strict=True))
        if (vec.statuses[self._stored] == FieldStatus.NOT_FOUND).all():
            return DeclineRisk(driver_id, self.base_rate, features, statuses, (time.perf_counter() - t0) * 1e3,
                               "unknown driver: no stored features")
        p = float(self.predictor.score(vec.values[None, :])[0])
        return DeclineRisk(driver_id, p, features, statuses, (time.perf_counter() - t0) * 1e3)

    def dispatch(self, request: RideRequest, candidate_driver_ids: Sequence[int]) -> DispatchDecision:
        """Score every candidate in one batch read and pick the one most likely to accept."""
        t0 = time.perf_counter()
        ids = list(candidate_driver_ids)
        if not ids:
            raise FsplugError("dispatch needs at least one candidate driver")
        dist = np.array([float(request.pickup_distance_km.get(d, np.inf)) for d in ids])
        n = len(ids)
        entities = {
            "driver_id": ids,
            "pickup_distance_km": dist.tolist(),
            "surge_multiplier": [request.surge_multiplier] * n,
            "hour_of_day": [request.hour_of_day] * n,
        }
        fallback = None
        degraded = 0
        try:
            res = self.store.get_online_features(service=self.service, entities=entities, timeout_ms=self.budget_ms)
            accept = 1.0 - self.predictor.score(res.to_numpy())
            degraded = int((res.statuses[:, self._stored] != FieldStatus.PRESENT).any(axis=1).sum())
            # highest acceptance first; then nearest; then lowest id (lexsort: last key is primary)
            order = np.lexsort((np.array(ids), dist, -accept))
        except StoreError as exc:
            fallback = f"store unavailable ({type(exc).__name__}): ranked by pickup distance"
            accept = np.full(n, np.nan)
            order = np.lexsort((np.array(ids), dist))
        ranking = [(ids[i], float(accept[i]), float(dist[i])) for i in order]
        return DispatchDecision(request.request_id, ranking[0][0], ranking, (time.perf_counter() - t0) * 1e3,
                                fallback, degraded)


_default: DispatchService | None = None


def _service() -> DispatchService:
    global _default  # noqa: PLW0603 - one lazily built service per process, for the module-level API
    if _default is None:
        import os

        _default = DispatchService(os.environ.get("FSPLUG_REPO", "feature_repo"))
    return _default


def predict_decline_risk(driver_id: int, request: Mapping[str, Any]) -> DeclineRisk:
    """Module-level shortcut over a DispatchService of $FSPLUG_REPO (default ./feature_repo)."""
    return _service().predict_decline_risk(driver_id, request)


def dispatch(request: RideRequest, candidate_driver_ids: Sequence[int]) -> DispatchDecision:
    """Module-level shortcut over a DispatchService of $FSPLUG_REPO (default ./feature_repo)."""
    return _service().dispatch(request, candidate_driver_ids)
