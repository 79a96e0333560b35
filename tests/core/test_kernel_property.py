"""Every output form of an online read agrees with a brute-force reference written plainly here.

Random rows (missing records, None and NaN values, None and NaN event times, ttl edges) for several
views and entity groups, every dtype, defaults present and absent (timestamp defaults with UTC
offsets), and request columns; checked: `RetrievalPlan.vector` (the general one-entity path),
`fast_values` (get_feature_vector's common path), and `OnlineResult.statuses`, `to_numpy` (with and
without defaults, before and after `statuses`), `to_dict`, `columns`, `to_arrow` and `event_timestamps`.
Only public API: a plan compiled from a small repo, rows built as a store returns them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsplug.errors import UserInputError
from fsplug.plan import compile_plan
from fsplug.result import FieldStatus, OnlineResult
from fsplug.store import FeatureStore

NOW = 1_800_000_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

REPO = """
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
  - name: zone
    join_keys: [{name: city, dtype: string}, {name: zone_id, dtype: int64}]
sources:
  - {name: s, path: data/s.parquet, timestamp_field: ts}
feature_views:
  - name: every
    entity: driver
    source: s
    ttl: 1h
    features:
      - {name: i, dtype: int64, default: 7}
      - {name: i0, dtype: int64}
      - {name: f, dtype: float64}
      - {name: fd, dtype: float64, default: -1.5}
      - {name: h, dtype: float32, default: 0.25}
      - {name: h0, dtype: float32}
      - {name: s, dtype: string, default: "none"}
      - {name: s0, dtype: string}
      - {name: b, dtype: bool, default: true}
      - {name: b0, dtype: bool}
      - {name: y, dtype: bytes, default: "dflt"}
      - {name: y0, dtype: bytes}
      - {name: t, dtype: timestamp, default: "2024-01-01T00:00:00+02:00"}
      - {name: tn, dtype: timestamp, default: "2024-03-01T10:30:00"}
      - {name: t0, dtype: timestamp}
      - {name: e, dtype: "list[float64]", default: [1.0, 2.5]}
      - {name: e0, dtype: "list[float64]"}
  - name: counts
    entity: driver
    source: s
    ttl: none
    features:
      - {name: n, dtype: int64, default: 0}
      - {name: m, dtype: float64}
  - name: rates
    entity: driver
    source: s
    ttl: 30s
    features:
      - {name: r, dtype: float64, default: 0.5}
      - {name: k, dtype: bool}
  - name: zones
    entity: zone
    source: s
    ttl: 1d
    features:
      - {name: demand, dtype: float64, default: -1}
      - {name: since, dtype: timestamp, default: "2023-06-01T12:00:00-05:30"}
request_sources:
  - name: req
    features:
      - {name: x, dtype: float64, default: 2.0}
      - {name: q, dtype: int64}
      - {name: w, dtype: string, default: "w"}
"""

# the general plan: every dtype, three groups' worth of views in two entity groups, request columns
GENERAL = ["req:x", "every:*", "zones:*", "counts:*", "req:w", "rates:*", "req:q"]
# a plan get_feature_vector serves with `fast_values`: one numeric group with one join key
FAST = ["counts:n", "req:x", "every:i", "rates:*", "every:f", "req:q", "every:fd", "every:b", "counts:m"]


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    from tests.conftest import DEFAULT_CONFIG, write_repo

    root = write_repo(tmp_path_factory.mktemp("kernel") / "repo", {"defs.yaml": REPO}, DEFAULT_CONFIG)
    reg, _ = FeatureStore(root).compile(check_paths=False)
    general = compile_plan(reg, features=GENERAL)
    fast = compile_plan(reg, features=FAST)
    assert general.fast_vector is None and fast.fast_vector is not None
    return general, fast


# ---- the reference ----------------------------------------------------------------------------

def _isnan(v):
    return isinstance(v, float) and math.isnan(v)


def _ts_us(text):
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // timedelta(microseconds=1)


def _floats(v):
    if isinstance(v, bytes):
        return [float(x) for x in np.frombuffer(v, dtype="<f8")]
    return [float(x) for x in v]


def _python(dtype, v):
    """A stored, PRESENT value as to_dict serves it."""
    return {
        "int64": int, "float64": float, "string": str, "bool": bool, "bytes": bytes,
        "float32": lambda x: float(np.float32(x)),
        "timestamp": lambda x: EPOCH + timedelta(microseconds=int(x)),
        "list[float64]": _floats,
    }[dtype](v)


def _default_python(dtype, d):
    if d is None:
        return None
    if dtype == "timestamp":
        return EPOCH + timedelta(microseconds=_ts_us(d))
    if dtype == "bytes":
        return d.encode()
    if dtype in ("float64", "float32"):
        return float(d)  # `default: -1` of a float column is -1.0
    return d


def _status(plan, c, row):
    view = plan.groups[c.group].views[c.view_index]
    ts = None if row is None else row[view.ts_index]
    if ts is None or _isnan(ts):
        return FieldStatus.NOT_FOUND
    if c.ttl_seconds and NOW - ts > c.ttl_seconds * 1_000_000:
        return FieldStatus.OUTSIDE_MAX_AGE
    v = row[c.bin_index]
    if v is None or _isnan(v):
        return FieldStatus.NULL_VALUE
    return FieldStatus.PRESENT


NUMERIC = {"int64", "float64", "float32", "bool"}


def reference(plan, rows, request, n):
    """Per column, per entity: (status, vector value, to_dict value, `columns` value)."""
    out = {}
    for i, c in enumerate(plan.columns):
        dtype = c.dtype.value
        cells = []
        for k in range(n):
            if c.is_request:
                v = request[i][k]
                cells.append((FieldStatus.PRESENT, float(v) if dtype in NUMERIC else math.nan, v, v))
                continue
            row = rows[c.group][k]
            status = _status(plan, c, row)
            if status == FieldStatus.PRESENT:
                v = row[c.bin_index]
                py = _python(dtype, v)
                number = float(v) if dtype in NUMERIC else int(v) / 1e6 if dtype == "timestamp" else math.nan
                if dtype == "timestamp":
                    typed = np.datetime64(int(v), "us")
                elif dtype == "list[float64]":
                    typed = np.array(_floats(v))
                else:
                    typed = py
            else:
                py = _default_python(dtype, c.default)
                number = (math.nan if c.default is None else float(c.default) if dtype in NUMERIC
                          else _ts_us(c.default) / 1e6 if dtype == "timestamp" else math.nan)
                if c.default is None:
                    typed = {"int64": 0, "float64": math.nan, "float32": math.nan, "bool": False,
                             "timestamp": np.datetime64("NaT", "us")}.get(dtype)
                elif dtype == "timestamp":
                    typed = np.datetime64(_ts_us(c.default), "us")
                elif dtype == "list[float64]":
                    typed = np.array(c.default, dtype=float)
                else:
                    typed = py
            cells.append((status, number, py, typed))
        out[c.name] = cells
    return out


def event_times(plan, rows, n):
    out = {}
    for g, grows in zip(plan.groups, rows, strict=True):
        for v in g.views:
            vals = []
            for k in range(n):
                ts = None if grows[k] is None else grows[k][v.ts_index]
                missing = ts is None or _isnan(ts)
                vals.append(np.datetime64("NaT", "us") if missing else np.datetime64(int(ts), "us"))
            out[v.name] = vals
    return out


# ---- random rows -------------------------------------------------------------------------------

NAN = float("nan")


def _value(dtype):
    """A stored value of `dtype` as SQLite or Aerospike returns it: also None, and NaN for numbers."""
    plain = {
        "int64": st.integers(-(2**40), 2**40),
        "float64": st.floats(-1e6, 1e6),
        "float32": st.sampled_from([0.1, 3.0, -2.5, 1e-3]),
        "string": st.text(max_size=3),
        "bool": st.sampled_from([0, 1, True, False]),
        "bytes": st.binary(max_size=3),
        "timestamp": st.integers(0, 2 * NOW),
        "list[float64]": st.lists(st.floats(-10, 10), max_size=3).flatmap(
            lambda xs: st.sampled_from([np.array(xs, "<f8").tobytes(), xs])),
    }[dtype]
    odd = [st.none()]
    if dtype in NUMERIC or dtype == "timestamp":
        odd.append(st.just(NAN))  # another writer's NaN: NULL_VALUE
    return st.one_of(plain, *odd)


def _event_time(ttl_us):
    """An event time: none, NaN, fresh, exactly at the ttl (served), one microsecond past it (stale)."""
    if ttl_us == math.inf:
        times = [st.integers(0, NOW)]
    else:
        ttl = int(ttl_us)
        times = [st.integers(NOW - ttl, NOW), st.just(NOW - ttl), st.just(NOW - ttl - 1),
                 st.integers(0, NOW - ttl - 1)]
    return st.one_of(st.none(), st.just(NAN), *times)


@st.composite
def group_rows(draw, plan, g, n):
    dtypes = {c.bin_index: c.dtype.value for c in plan.columns
              if not c.is_request and plan.groups[c.group] is g}
    ts_ttl = {v.ts_index: v.ttl_us for v in g.views}
    rows = []
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:
            rows.append(draw(st.sampled_from([None, (None,) * len(g.bins)])))  # no record
            continue
        rows.append(tuple(draw(_event_time(ts_ttl[j])) if j in ts_ttl else draw(_value(dtypes[j]))
                          for j in range(len(g.bins))))
    return rows


@st.composite
def reads(draw, plan, max_n=5):
    """(rows per group, request values per request column position, n)."""
    n = draw(st.integers(1, max_n))
    rows = [draw(group_rows(plan, g, n)) for g in plan.groups]
    request = {}
    for i, c in enumerate(plan.columns):
        if c.is_request:
            kind = {"float64": st.floats(-100, 100), "int64": st.integers(-50, 50),
                    "string": st.text(max_size=2)}[c.dtype.value]
            request[i] = draw(st.lists(kind, min_size=n, max_size=n))
    return rows, request, n


# ---- comparisons -------------------------------------------------------------------------------

def _same(a, b):
    """Equal values, NaN equal to NaN, NaT to NaT, arrays by content, bool/int/float by kind too."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, np.datetime64) or isinstance(b, np.datetime64):
        return np.datetime64(a, "us") == np.datetime64(b, "us") or (np.isnat(a) and np.isnat(b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b and (not isinstance(a, datetime) or a.utcoffset() == b.utcoffset())


def check_all_forms(plan, rows, request, n):
    want = reference(plan, rows, request, n)
    names = plan.names
    statuses = np.array([[int(want[c][k][0]) for c in names] for k in range(n)], dtype=np.uint8)
    numbers = np.array([[want[c][k][1] for c in names] for k in range(n)], dtype=np.float64)
    present = statuses == FieldStatus.PRESENT
    unfilled = np.where(present, numbers, np.nan)

    # a model vector holds numbers: bool 0/1, timestamps as seconds; text, bytes and lists are refused
    no_number = [c.name for c in plan.columns if c.dtype.value not in (*NUMERIC, "timestamp")
                 or (c.is_request and c.dtype.value == "timestamp")]
    fresh = OnlineResult(plan, rows, request, n, NOW)
    res = OnlineResult(plan, rows, request, n, NOW)
    if no_number:
        for form in (fresh.to_numpy, lambda: plan.vector([[g[0]] for g in rows], {i: [v[0]] for i, v in
                                                                                  request.items()}, NOW)):
            with pytest.raises(UserInputError, match=no_number[0]):
                form()
    else:
        np.testing.assert_array_equal(fresh.to_numpy(), numbers)  # before statuses: the mask-only path
        np.testing.assert_array_equal(fresh.to_numpy(fill_defaults=False), unfilled)
    np.testing.assert_array_equal(res.statuses, statuses)
    if not no_number:
        np.testing.assert_array_equal(res.to_numpy(), numbers)  # after statuses
        np.testing.assert_array_equal(res.to_numpy(fill_defaults=False), unfilled)

    got = OnlineResult(plan, rows, request, n, NOW).to_dict(include_statuses=True)
    assert list(got) == [*names, *(f"{c}__status" for c in names)]
    for i, c in enumerate(names):  # the plain-Python statuses: the same codes as the array form
        assert got[f"{c}__status"] == [FieldStatus(s).name for s in statuses[:, i]], c
    for c in names:
        assert all(_same(a, w[2]) for a, w in zip(got[c], want[c], strict=True)), (c, got[c], want[c])

    cols = OnlineResult(plan, rows, request, n, NOW).columns
    for c in plan.columns:
        arr = cols[c.name]
        assert arr.dtype == c.dtype.numpy_dtype, c.name
        expect = [w[3] for w in want[c.name]]
        if c.dtype.value in ("float32",):
            expect = [np.float32(x).item() for x in expect]
        assert all(_same(_item(a), b) for a, b in zip(arr, expect, strict=True)), (c.name, arr, expect)

    table = OnlineResult(plan, rows, request, n, NOW).to_arrow()
    assert table.column_names == list(names)
    for c in plan.columns:
        assert table.schema.field(c.name).type == c.dtype.arrow_type()
        arrow = table.column(c.name).to_pylist()
        expect = [w[2] for w in want[c.name]]
        assert all(_same(a, b) for a, b in zip(arrow, expect, strict=True)), (c.name, arrow, expect)

    times = OnlineResult(plan, rows, request, n, NOW).event_timestamps
    plain = OnlineResult(plan, rows, request, n, NOW).event_times_us()
    after_dict = OnlineResult(plan, rows, request, n, NOW)
    after_dict.to_dict()  # (then the times come from the rows `to_dict` already transposed)
    reused = after_dict.event_times_us()
    for view, expect in event_times(plan, rows, n).items():
        assert all(_same(a, b) for a, b in zip(times[view], expect, strict=True)), (view, times[view], expect)
        as_us = [None if np.isnat(t) else int(np.datetime64(t, "us").astype(np.int64)) for t in expect]
        assert plain[view] == as_us, (view, plain[view], as_us)
        assert reused[view] == as_us, (view, reused[view], as_us)

    for k in range(n if not no_number else 0):  # one entity at a time: the general one-row path
        one = [[grows[k]] for grows in rows]
        values, sts = plan.vector(one, {i: [v[k]] for i, v in request.items()}, NOW)
        np.testing.assert_array_equal(np.array(sts, dtype=np.uint8), statuses[k])
        np.testing.assert_array_equal(np.array(values, dtype=np.float64), numbers[k])
    return statuses


def _item(a):
    """A typed array's element as a plain Python value (numbers, bools) or as it is."""
    if isinstance(a, (np.integer, np.floating, np.bool_)):
        return a.item()
    return a


SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.data())
def test_every_form_matches_the_reference(plans, data):
    general, _ = plans
    rows, request, n = data.draw(reads(general))
    check_all_forms(general, rows, request, n)


@SETTINGS
@given(data=st.data())
def test_fast_plan_every_form_and_fast_values_match_the_reference(plans, data):
    _, plan = plans
    rows, request, n = data.draw(reads(plan))
    statuses = check_all_forms(plan, rows, request, n)
    ref = reference(plan, rows, request, n)
    numbers = np.array([[w[1] for w in cells] for cells in zip(*ref.values(), strict=True)])
    req_names = {i: c.feature for i, c in enumerate(plan.columns) if c.is_request}
    for k in range(n):
        req = {req_names[i]: v[k] for i, v in request.items()}
        if data.draw(st.booleans(), label="leave x out (its default)"):
            req.pop("x")
            numbers[k, next(i for i, name in req_names.items() if name == "x")] = 2.0
        out = plan.fast_values(rows[0][k], req, NOW)
        assert out is not None
        values, sts = out
        all_present = np.full(len(plan.columns), FieldStatus.PRESENT, np.uint8)
        got = all_present if sts is None else np.array(sts, np.uint8)
        np.testing.assert_array_equal(got, statuses[k])
        np.testing.assert_array_equal(np.array(values, dtype=np.float64), numbers[k])


def test_a_timestamp_default_keeps_its_offset_in_every_form(plans):
    """'2024-01-01T00:00:00+02:00' is 2023-12-31T22:00Z in columns, to_dict and to_arrow alike."""
    general, _ = plans
    rows = [[None], [None]]
    request = {i: [{"float64": 1.0, "int64": 1, "string": "a"}[c.dtype.value]]
               for i, c in enumerate(general.columns) if c.is_request}
    res = OnlineResult(general, rows, request, 1, NOW)
    want = datetime(2023, 12, 31, 22, tzinfo=UTC)
    assert res.to_dict()["t"] == [want]
    assert res.columns["t"][0] == np.datetime64("2023-12-31T22:00:00", "us")
    assert res.to_arrow().column("t").to_pylist() == [want]
    assert res.columns["since"][0] == np.datetime64("2023-06-01T17:30:00", "us")


def test_a_result_says_its_shape_and_length(plans):
    general, _ = plans
    rows = [[None, None] for _ in general.groups]
    request = {i: [1.0, 2.0] for i, c in enumerate(general.columns) if c.is_request}
    res = OnlineResult(general, rows, request, 2, NOW)
    assert len(res) == 2
    assert repr(res) == f"OnlineResult(2 rows x {len(general.columns)} columns)"
