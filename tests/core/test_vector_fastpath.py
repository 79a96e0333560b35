"""The single-entity fast path (`RetrievalPlan.vector`, used by get_feature_vector) agrees with
the vectorized OnlineResult path on values and statuses, for every status."""

from __future__ import annotations

import random
import textwrap

import numpy as np
import pytest

from fsplug.kernel import NEVER_STALE, make_default, to_python
from fsplug.result import OnlineResult
from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources

NOW = 1_800_000_000_000_000


def _ttl(v, never):
    """A view's ttl in us, or `never` for a view that never goes stale."""
    return never if v.ttl_us == NEVER_STALE else v.ttl_us


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
            row[v.ts_index] = rng.choice([None, NOW - 1, NOW - _ttl(v, 1) - 5, NOW - _ttl(v, 2) // 2,
                                          NOW - _ttl(v, 3),  # exactly at the ttl
                                          float("nan")])  # another writer's NaN: no time
        out.append(tuple(row))
    return out


def test_vector_matches_online_result(applied_ride_repo):
    store = FeatureStore(applied_ride_repo)
    rng = random.Random(3)
    for kwargs in ({"service": "decline_model_v1"}, {"features": ["driver_activity:*", "driver_stats:trips_30d"]}):
        plan = store.plan(**kwargs)
        req_vals = {i: [rng.choice([1, 2.5, True])] for i, c in enumerate(plan.columns) if c.is_request}
        for _ in range(600):
            rows_in = [[r] for r in _rows(plan, rng)]
            res = OnlineResult(plan, rows_in, req_vals, 1, NOW)
            values, statuses = plan.vector(rows_in, req_vals, NOW)
            np.testing.assert_array_equal(np.array(statuses, dtype=np.uint8), res.statuses[0])
            np.testing.assert_array_equal(np.array(values), res.to_numpy()[0])
            fresh = OnlineResult(plan, rows_in, req_vals, 1, NOW)  # to_numpy before statuses
            np.testing.assert_array_equal(fresh.to_numpy(), res.to_numpy())


FAST_PLANS = (
    {"service": "decline_model_v1"},  # request columns last
    {"features": ["driver_stats:trips_30d", "ride_request:pickup_distance_km", "driver_activity:*",
                  "ride_request:surge_multiplier", "driver_stats:acceptance_rate_7d"]},  # interleaved
    {"features": ["driver_activity:declines_1h"]},  # one stored column, no request
)


def test_fast_values_match_online_result(applied_ride_repo):
    """`fast_values` (get_feature_vector's common path) gives `OnlineResult`'s values and statuses for
    random rows: missing entities and views, stale views, nulls, NaN, and request values."""
    store = FeatureStore(applied_ride_repo)
    rng = random.Random(5)
    seen_present = seen_other = 0
    for kwargs in FAST_PLANS:
        plan = store.plan(**kwargs)
        assert plan.fast_vector is not None
        for _ in range(400):
            (row,) = _rows(plan, rng)
            if rng.random() < 0.2 and row is not None:  # also all fresh and complete rows
                row = tuple(rng.random() if b not in [v.timestamp_bin for v in plan.groups[0].views] else NOW - 1
                            for b in plan.groups[0].bins)
            request = {c.feature: rng.choice([3, -7] if c.dtype.value == "int64" else [0.5, 3, -2.25])
                       for c in plan.columns if c.is_request}
            if rng.random() < 0.3:
                request.pop("surge_multiplier", None)  # has a default
            out = plan.fast_values(row, request, NOW)
            assert out is not None
            values, statuses = out
            req_vals = {i: [request.get(c.feature, c.default)] for i, c in enumerate(plan.columns) if c.is_request}
            res = OnlineResult(plan, [[row]], req_vals, 1, NOW)
            want = res.statuses[0]
            got = np.full(len(plan.columns), 1, np.uint8) if statuses is None else np.array(statuses, np.uint8)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.array(values, dtype=np.float64), res.to_numpy()[0])
            if statuses is None:
                seen_present += 1
            else:
                seen_other += 1
    assert seen_present > 50 and seen_other > 50  # both branches were exercised


def test_fast_values_leave_odd_request_values_to_the_general_path(applied_ride_repo):
    plan = FeatureStore(applied_ride_repo).plan(service="decline_model_v1")
    row = (None,) * len(plan.groups[0].bins)
    ok = {"pickup_distance_km": 1.0, "hour_of_day": 3}
    assert plan.fast_values(row, ok, NOW) is not None
    for bad in ({"hour_of_day": 3}, {**ok, "hour_of_day": "noon"}, {**ok, "pickup_distance_km": None},
                {**ok, "pickup_distance_km": np.float64(1.0)}, {**ok, "surge_multiplier": True}):
        assert plan.fast_values(row, bad, NOW) is None, bad


# one view `v` of the driver entity with a float feature `a`, and a service `svc` of all of `v`;
# %s: more feature lines
SMALL_REPO = """
    entities:
      - {name: driver, join_key: driver_id, dtype: int64}
    sources:
      - {name: s, path: data/s.parquet, timestamp_field: ts}
    feature_views:
      - name: v
        entity: driver
        source: s
        features:
          - {name: a, dtype: float64}
          %s
    feature_services:
      - {name: svc, features: ["v:*"]}
    """


def test_plans_outside_the_fast_path_have_no_recipe(make_repo):
    root = make_repo({"defs.yaml": SMALL_REPO % "- {name: city, dtype: string}"})
    store = FeatureStore(root)
    from fsplug.plan import compile_plan

    reg, _ = store.compile(check_paths=False)
    assert compile_plan(reg, features=["v:a"]).fast_vector is not None
    assert compile_plan(reg, features=["v:a", "v:city"]).fast_vector is None  # a string column


def _reference_dict(res, rows_in):
    """to_dict as defined: each stored value converted to its dtype's Python value where its status
    is PRESENT, else the column's default (None without one)."""
    out = {}
    for i, c in enumerate(res.plan.columns):
        width = len(res.plan.groups[c.group].bins)
        rows = [r if r is not None else (None,) * width for r in rows_in[c.group]]
        out[c.name] = [to_python(c.dtype, r[c.bin_index]) if res.statuses[k, i] == 1
                       else make_default(c.dtype, c.default).python for k, r in enumerate(rows)]
    return out


def _random_value(dtype, rng):
    v = {"int64": lambda: rng.randint(-5, 5), "float64": lambda: rng.choice([rng.random(), float("nan")]),
         "float32": lambda: rng.choice([0.5, float("nan")]), "string": lambda: rng.choice(["a", "é"]),
         "bool": lambda: rng.randint(0, 1), "bytes": lambda: b"\x00x", "timestamp": lambda: rng.randint(0, 10**15),
         "list[float64]": lambda: np.array([1.0, rng.random()], "<f8").tobytes()}[dtype]()
    if dtype in ("int64", "bool", "timestamp") and rng.random() < 0.05:
        return float("nan")  # a NaN where a number belongs (another writer's data): NULL_VALUE
    return None if rng.random() < 0.2 else v


def test_to_dict_matches_statuses_for_every_dtype(make_repo):
    """to_dict (computed without the float matrix) serves exactly the PRESENT values, converted,
    and the defaults elsewhere, for every dtype, nulls, NaN, missing and stale rows."""
    from tests.stores.conftest import ALL_TYPES

    root = make_repo({"defs.yaml": ALL_TYPES})
    store = FeatureStore(root)
    reg, _ = store.compile(check_paths=False)
    from fsplug.plan import compile_plan

    rng = random.Random(11)
    for plan in (compile_plan(reg, service="everything"), compile_plan(reg, features=["zone_stats:demand"])):
        dtypes = {c.bin: c.dtype.value for c in plan.columns if not c.is_request}
        for _ in range(300):
            rows_in = []
            for g in plan.groups:
                rows = []
                for _ in range(6):
                    if rng.random() < 0.15:
                        rows.append(None)
                        continue
                    row = [_random_value(dtypes[b], rng) if b in dtypes else None for b in g.bins]
                    for v in g.views:
                        row[v.ts_index] = rng.choice([None, NOW - 1, NOW - _ttl(v, 1) - 5, NOW - _ttl(v, 3),
                                                      float("nan")])
                    rows.append(tuple(row))
                rows_in.append(rows)
            res = OnlineResult(plan, rows_in, {}, 6, NOW)
            got, want = res.to_dict(), _reference_dict(res, rows_in)
            assert got.keys() == want.keys()
            for k in got:
                assert [repr(x) for x in got[k]] == [repr(x) for x in want[k]], k


def test_empty_key_columns_validate_to_no_keys(applied_ride_repo):
    from fsplug.request import KeyList, check_keys
    from fsplug.types import DType

    assert check_keys("city", DType.STRING, [], 0) == []
    assert check_keys("zone_id", DType.INT64, [], 0) == []
    (keys,) = FeatureStore(applied_ride_repo).plan(service="decline_model_v1").keys_by_group({"driver_id": []}, 0)
    assert isinstance(keys, KeyList) and len(keys) == 0


def test_registry_replaced_while_a_plan_compiles_is_not_cached_with_the_old_plan(make_repo, monkeypatch):
    """get_feature_vector caches its plan with the registry it was compiled from: a registry that
    changes during the compile (another thread's apply/refresh) is picked up by the next call."""
    import fsplug.store as store_mod

    root = make_repo({"defs.yaml": SMALL_REPO % ""})
    write_empty_sources(root)
    serving, admin = FeatureStore(root), FeatureStore(root)
    admin.apply()
    assert serving.get_feature_vector("svc", driver_id=1).names == ("a",)
    (root / "defs.yaml").write_text(textwrap.dedent(SMALL_REPO % "- {name: b, dtype: float64}"))
    write_empty_sources(root)
    admin.apply()
    real = store_mod.compile_plan

    def compile_then_race(reg, **kw):  # the other thread refreshes while this compile runs
        plan = real(reg, **kw)
        monkeypatch.setattr(store_mod, "compile_plan", real)
        serving.refresh_registry()
        return plan

    serving._by_service.clear()  # a cache miss while `serving` still holds the old registry
    serving._plans.clear()
    monkeypatch.setattr(store_mod, "compile_plan", compile_then_race)
    serving.get_feature_vector("svc", driver_id=1)  # may answer with the plan it started with
    assert serving.get_feature_vector("svc", driver_id=1).names == ("a", "b")


def test_to_numpy_without_statuses_equals_to_numpy_through_statuses(applied_ride_repo):
    """to_numpy's PRESENT mask (numeric groups, statuses not computed) gives the same matrix as the
    status codes, for many rows at once, with and without defaults."""
    store = FeatureStore(applied_ride_repo)
    rng = random.Random(9)
    for kwargs in FAST_PLANS:
        plan = store.plan(**kwargs)
        for _ in range(60):
            n = rng.randint(1, 40)
            rows_in = [[r for (r,) in (_rows(plan, rng) for _ in range(n))]] if len(plan.groups) == 1 else None
            if rows_in is None:
                continue
            req = {i: [rng.choice([1, 2.5, -3]) for _ in range(n)] for i, c in enumerate(plan.columns) if c.is_request}
            for fill in (True, False):
                direct = OnlineResult(plan, rows_in, req, n, NOW).to_numpy(fill)
                via = OnlineResult(plan, rows_in, req, n, NOW)
                assert via.statuses.shape == direct.shape  # statuses first: the other path
                np.testing.assert_array_equal(direct, via.to_numpy(fill))


def test_get_feature_vector_refuses_an_unknown_keyword(applied_ride_repo):
    """A typo among get_feature_vector's keywords (`surge_multiplyer=2.0`, or an extra key in the
    `entity` of POST /get-feature-vector) was ignored: the request feature silently took its default,
    where get_online_features refuses such a column with "did you mean"."""
    from fsplug.errors import UserInputError

    with FeatureStore(applied_ride_repo) as store:
        req = {"pickup_distance_km": 1.2, "hour_of_day": 8}
        vec = store.get_feature_vector("decline_model_v1", driver_id=1001, request=req, surge_multiplier=2.0)
        assert vec.values[list(vec.names).index("surge_multiplier")] == 2.0  # a request feature as a keyword
        with pytest.raises(UserInputError, match="'surge_multiplyer'.*did you mean 'surge_multiplier'"):
            store.get_feature_vector("decline_model_v1", driver_id=1001, request=req, surge_multiplyer=2.0)
        with pytest.raises(UserInputError, match="'zone'"):
            store.get_feature_vector("decline_model_v1", driver_id=1001, zone=3, request=req)
