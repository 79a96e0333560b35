"""The single-entity fast path (`RetrievalPlan.vector`, used by get_feature_vector) agrees with
the vectorized OnlineResult path on values and statuses, for every status and both row shapes."""

from __future__ import annotations

import itertools
import random

import numpy as np

from fsplug.plan import OnlineResult
from fsplug.store import FeatureStore

NOW = 1_800_000_000_000_000


def _rows(plan, rng):
    """Random rows per group: missing records, missing views, stale, null and NaN values."""
    out = []
    for g in plan.groups:
        r = rng.random()
        if r < 0.15:
            out.append(None)
            continue
        row = [rng.choice([None, float("nan"), rng.random(), rng.randint(0, 9)]) if rng.random() < 0.3
               else rng.random() for _ in g.bins]
        for v in g.views:
            row[v.ts_index] = rng.choice([None, NOW - 1, NOW - (v.ttl_us or 1) - 5, NOW - (v.ttl_us or 2) // 2])
        out.append(tuple(row))
    return out


def test_vector_matches_online_result(applied_ride_repo):
    store = FeatureStore(applied_ride_repo)
    rng = random.Random(3)
    for kwargs in ({"service": "decline_model_v1"}, {"features": ["driver_activity:*", "driver_stats:trips_30d"]}):
        plan = store.plan(**kwargs)
        req_vals = {i: [rng.choice([1, 2.5, True])] for i, c in enumerate(plan.columns) if c.is_request}
        for _, mapping in itertools.product(range(300), (False, True)):
            rows = _rows(plan, rng)
            if mapping:
                rows_in = [[None if r is None else {b: v for b, v in zip(g.bins, r) if v is not None}]
                           for g, r in zip(plan.groups, rows)]
            else:
                rows_in = [[r] for r in rows]
            res = OnlineResult(plan, rows_in, req_vals, 1, NOW, mapping)
            values, statuses = plan.vector(rows_in, req_vals, NOW, mapping)
            np.testing.assert_array_equal(np.array(statuses, dtype=np.uint8), res.statuses[0])
            np.testing.assert_array_equal(np.array(values), res.to_numpy()[0])
