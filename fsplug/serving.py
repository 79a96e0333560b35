"""Model artifacts with feature signatures, and the Predictor that serves them from the online store.

An artifact is a joblib file plus a JSON sidecar (`<file>.json`) holding its signature: the
feature service, the ordered feature and request-feature names, dtypes and defaults, the registry
hash it was trained against, library versions, training metrics, and the file's sha256.

Loading verifies the sha256 *before* unpickling (a joblib file can run arbitrary code when
loaded: only load artifacts you produced), then refuses a model whose signature differs from
what the current registry serves for that service, naming the differences.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import numpy as np

from fsplug.errors import ModelDependencyMissingError, ModelIntegrityError, ModelSignatureError, UserInputError
from fsplug.extras import require
from fsplug.plan import RetrievalPlan
from fsplug.result import FieldStatus

if TYPE_CHECKING:
    from fsplug.store import FeatureStore

__all__ = ["ModelSignature", "ModelArtifact", "save_model", "load_model", "Predictor", "Prediction",
           "signature_for", "fill_defaults"]


@dataclass(frozen=True)
class ModelSignature:
    """What a model was trained on, in vector order."""

    service: str
    features: tuple[tuple[str, str, str, Any], ...]  # (name, ref, dtype, default), request features included
    registry_hash: str
    library_versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    sha256: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f[0] for f in self.features)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelSignature:
        d = json.loads(text)
        d["features"] = tuple(tuple(f) for f in d["features"])
        return cls(**d)


def signature_for(plan: RetrievalPlan) -> tuple[tuple[str, str, str, Any], ...]:
    """The (name, ref, dtype, default) of every column a plan serves, in order.

    A derived feature's ref carries its definition (`trip_context:x = <expr>`, or `udf pkg.mod:fn`,
    with the definitions of the derived features it reads), so a model is not served a feature
    computed otherwise than in its training data."""
    if not plan.derived:
        return tuple((c.name, c.ref, c.dtype.value, c.default) for c in plan.columns)
    defs = [f"{d.ref} = {d.expr if d.expr is not None else 'udf ' + str(d.udf)}" for d in plan.derived]
    n_base = len(plan.base_columns)
    uses: list[list[str]] = []  # per step: its definition and those of the steps it reads
    for i, d in enumerate(plan.derived):
        uses.append([*dict.fromkeys(x for _, slot in d.args if slot >= n_base for x in uses[slot - n_base]),
                     defs[i]])
    ref = {d.ref: "; ".join(uses[i]) for i, d in enumerate(plan.derived)}
    return tuple((c.name, ref[c.ref] if c.is_derived else c.ref, c.dtype.value, c.default) for c in plan.columns)


def fill_defaults(plan: RetrievalPlan, matrix: np.ndarray) -> np.ndarray:
    """NaNs replaced by each column's declared default (NaN stays where there is none).

    `matrix` is (n, columns) in plan order; returns a new float64 matrix. Training uses this on
    point-in-time data so that models see the same filling as serving (`RetrievalPlan.default_numbers`,
    the defaults `OnlineResult.to_numpy` fills).
    """
    out = np.array(matrix, dtype=np.float64, copy=True)
    defaults = plan.default_numbers
    mask = np.isnan(out) & ~np.isnan(defaults)
    out[mask] = np.broadcast_to(defaults, out.shape)[mask]
    return out


def _model_lib(module: str) -> Any:
    """joblib or sklearn; ModelDependencyMissingError naming `pip install 'fsplug[models]'` if missing."""
    return require(module, extra="models", needed_for="saving, loading and serving models",
                   error=ModelDependencyMissingError, package="scikit-learn" if module == "sklearn" else None)


def _versions() -> dict[str, str]:
    joblib = _model_lib("joblib")
    sklearn = _model_lib("sklearn")

    import fsplug

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__, "fsplug": fsplug.__version__}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified model and its signature."""

    model: Any
    signature: ModelSignature
    path: Path


def save_model(model: Any, path: str | Path, *, store: FeatureStore, service: str,
               metrics: Mapping[str, Any] | None = None) -> ModelArtifact:
    """Save `model` with joblib and write its signature sidecar (with the file's sha256)."""
    joblib = _model_lib("joblib")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plan = store.plan(service=service)
    joblib.dump(model, path)
    sig = ModelSignature(service, signature_for(plan), store.registry.hash, _versions(), dict(metrics or {}),
                         datetime.now(UTC).isoformat(timespec="seconds"), _sha256(path))
    sidecar(path).write_text(sig.to_json())
    return ModelArtifact(model, sig, path)


def load_model(path: str | Path, store: FeatureStore | None = None) -> ModelArtifact:
    """Verify the checksum, unpickle, and (with a store) check the signature against the registry."""
    joblib = _model_lib("joblib")
    path = Path(path)
    side = sidecar(path)
    if not path.is_file() or not side.is_file():
        raise UserInputError(f"model artifact {path} or its signature {side.name} is missing; train the model first")
    try:
        sig = ModelSignature.from_json(side.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelIntegrityError(f"model signature {side} is unreadable ({type(exc).__name__}: {exc}); it was "
                                  "changed or corrupted: refusing to load the model") from None
    if not isinstance(sig.sha256, str) or len(sig.sha256) != 64:
        raise ModelIntegrityError(f"model signature {side} records no sha256 of the model file; refusing to load it")
    actual = _sha256(path)
    if actual != sig.sha256:
        raise ModelIntegrityError(f"model file {path} has sha256 {actual[:16]}..., but its signature records "
                                  f"{sig.sha256[:16]}...: the file was changed or corrupted; refusing to load it")
    if store is not None:
        check_signature(sig, store.plan(service=sig.service))
    return ModelArtifact(joblib.load(path), sig, path)


def check_signature(sig: ModelSignature, plan: RetrievalPlan) -> None:
    """Raise ModelSignatureError naming every difference between the model's and the plan's features."""
    now = signature_for(plan)
    if tuple(map(tuple, sig.features)) == now:
        return
    had = {f[0]: f for f in sig.features}
    has = {f[0]: f for f in now}
    diffs = [f"missing now: {n}" for n in had if n not in has]
    diffs += [f"new: {n}" for n in has if n not in had]
    for n in had:
        if n in has and tuple(had[n]) != tuple(has[n]):
            for label, a, b in zip(("ref", "dtype", "default"), had[n][1:], has[n][1:], strict=True):
                if a != b:
                    diffs.append(f"{n}: {label} {a!r} -> {b!r}")
    if not diffs:
        diffs.append(f"order changed: {list(had)} -> {list(has)}")
    raise ModelSignatureError(f"model for service {sig.service!r} does not match what the registry serves now: "
                              + "; ".join(diffs) + ". Retrain the model (or restore the feature definitions).")


@dataclass(frozen=True)
class Prediction:
    """Probabilities of the positive class per entity, the model inputs and their statuses."""

    probabilities: np.ndarray
    features: np.ndarray
    statuses: np.ndarray
    names: tuple[str, ...]

    def degraded(self) -> np.ndarray:
        """Per entity: True when any stored feature was not PRESENT (defaults were used)."""
        return (self.statuses != FieldStatus.PRESENT).any(axis=1)


class _Linear:
    """A fitted [SimpleImputer] -> [StandardScaler] -> LogisticRegression folded into one dot product."""

    def __init__(self, model: Any):
        _model_lib("sklearn")
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps = list(model.steps) if isinstance(model, Pipeline) else [("model", model)]
        *pre, (_, last) = steps
        if not isinstance(last, LogisticRegression) or last.coef_.shape[0] != 1:
            raise TypeError("not a binary logistic regression")
        w = last.coef_[0].astype(np.float64)
        b = float(last.intercept_[0])
        self.fill: np.ndarray | None = None
        mean = np.zeros_like(w)
        scale = np.ones_like(w)
        scaled = False
        for _, step in pre:
            if isinstance(step, SimpleImputer) and not scaled and self.fill is None:
                self.fill = step.statistics_.astype(np.float64)
                if self.fill.shape != w.shape or np.isnan(self.fill).any():
                    raise TypeError("imputer dropped or could not fill a column")
            elif isinstance(step, StandardScaler) and not scaled:
                scaled = True
                mean = step.mean_ if step.with_mean else np.zeros_like(w)
                scale = step.scale_ if step.with_std else np.ones_like(w)
            else:
                raise TypeError(f"unsupported step {type(step).__name__}")
        self.w = w / scale
        self.b = b - float(np.dot(mean / scale, w))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fill is not None:
            nan = np.isnan(x)
            if nan.any():
                x = np.where(nan, self.fill, x)
        z = x @ self.w + self.b
        return 1.0 / (1.0 + np.exp(-z))


class Predictor:
    """Serve a model: one online read for a batch of entities, defaults filled, probabilities out.

    Linear models (LogisticRegression, optionally after SimpleImputer/StandardScaler) are evaluated
    directly with numpy from their fitted coefficients; anything else goes through `predict_proba`.
    """

    def __init__(self, store: FeatureStore, model: ModelArtifact | str | Path):
        self.store = store
        self.artifact = model if isinstance(model, ModelArtifact) else load_model(model, store)
        self.service = self.artifact.signature.service
        self.plan = store.plan(service=self.service)
        check_signature(self.artifact.signature, self.plan)
        try:
            self._linear: _Linear | None = _Linear(self.artifact.model)
        except TypeError:
            self._linear = None

    def score(self, x: np.ndarray) -> np.ndarray:
        """Positive-class probabilities for a (n, features) matrix already in signature order."""
        if self._linear is not None:
            return self._linear(x)
        return self.artifact.model.predict_proba(x)[:, 1]

    def predict(self, entities: Mapping[str, Sequence[Any]] | None = None,
                entity_rows: Sequence[Mapping[str, Any]] | None = None) -> Prediction:
        """Fetch features for all entities in one read, fill defaults, score."""
        res = self.store.get_online_features(service=self.service, entities=entities, entity_rows=entity_rows)
        x = res.to_numpy()
        return Prediction(self.score(x), x, res.statuses, self.plan.names)
