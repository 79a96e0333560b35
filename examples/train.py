"""Train the trip-decline model: offers -> point-in-time features -> time split -> model -> artifact.

    python examples/train.py [--repo feature_repo] [--model logreg|gbm] [--holdout-days 7] [--service S]

The offers (feature_repo/data/offers.parquet, from generate_data.py) carry the label `declined`
and the ground-truth probability it was drawn from, so the held-out AUC can be compared with the
AUC of the ground-truth model itself (the best any model can do on these labels). The model's
service is `decline_model_v2` (stored, request and derived features); `--service decline_model_v1`
trains the same model without the derived features, for comparison.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from fsplug.serving import fill_defaults, save_model
from fsplug.store import FeatureStore

SERVICE = "decline_model_v2"


def build_model(kind: str) -> Any:
    """The scikit-learn estimator for `kind` (logreg: imputer + scaler + logistic regression)."""
    from fsplug.errors import ModelDependencyMissingError
    from fsplug.extras import require

    require("sklearn", extra="models", needed_for="training the example model", package="scikit-learn",
            error=ModelDependencyMissingError)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("scale", StandardScaler()),
                         ("model", LogisticRegression(max_iter=1000, C=1.0))])
    if kind == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
    raise ValueError(f"unknown model kind {kind!r}: logreg or gbm")


def training_matrix(store: FeatureStore, offers: Any, service: str = SERVICE) -> tuple[np.ndarray, np.ndarray, Any]:
    """(X, y, table): point-in-time features in service order, defaults filled as at serving time."""
    table = store.get_historical_features(offers, service=service)
    plan = store.plan(service=service)
    x = np.column_stack([table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in plan.names])
    return fill_defaults(plan, x), table.column("declined").to_numpy().astype(int), table


def train(repo: str | Path = "feature_repo", kind: str = "logreg", holdout_days: int = 7,
          out: str | Path | None = None, service: str = SERVICE) -> dict[str, Any]:
    """Train on all but the last `holdout_days` of offers, evaluate on them, save the artifact."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    store = FeatureStore(repo)
    offers = pq.read_table(store.repo_path / "data" / "offers.parquet")
    x, y, table = training_matrix(store, offers, service)
    ts = table.column("event_timestamp")
    cutoff = pc.max(ts).as_py() - timedelta(days=holdout_days)
    test = pc.greater(ts, cutoff).to_numpy(zero_copy_only=False)
    if test.all() or not test.any():
        left = "nothing to train on" if test.all() else "nothing to test on"
        raise ValueError(f"{len(test):,} offers up to {pc.max(ts).as_py():%Y-%m-%d %H:%M}: holding out the last "
                         f"{holdout_days} day(s) leaves {left}; generate more days or hold out fewer")
    model = build_model(kind).fit(x[~test], y[~test])
    p = model.predict_proba(x[test])[:, 1]
    auc = float(roc_auc_score(y[test], p))
    truth = table.column("true_decline_prob").to_numpy()[test]
    metrics = {
        "model": kind,
        "service": service,
        "auc_holdout": round(auc, 4),
        "auc_ground_truth": round(float(roc_auc_score(y[test], truth)), 4),
        "base_rate": round(float(y[~test].mean()), 4),
        "train_rows": int((~test).sum()),
        "test_rows": int(test.sum()),
        "holdout_from": cutoff.isoformat(),
    }
    path = Path(out) if out else store.repo_path / "data" / "models" / f"{service}.joblib"
    save_model(model, path, store=store, service=service, metrics=metrics)
    metrics["path"] = str(path)
    store.close()
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default="feature_repo")
    ap.add_argument("--model", default="logreg", choices=["logreg", "gbm"])
    ap.add_argument("--holdout-days", type=int, default=7)
    ap.add_argument("--out")
    ap.add_argument("--service", default=SERVICE, help=f"the feature service to train on (default {SERVICE})")
    args = ap.parse_args()
    m = train(args.repo, args.model, args.holdout_days, args.out, args.service)
    print(f"{m['service']}, {m['model']}: held-out AUC {m['auc_holdout']:.3f} "
          f"(ground-truth model {m['auc_ground_truth']:.3f}), "
          f"{m['train_rows']:,} train / {m['test_rows']:,} test offers -> {m['path']}")


if __name__ == "__main__":
    main()
