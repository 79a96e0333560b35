"""Derived features: the expression language (values, nulls, types, refusals), UDFs, the checks at
apply (located at file:line:col), and every read form computing them the same way."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.derived import DerivedFeatureError, ExpressionError, Kind, compile_expression, compile_udf
from fsplug.errors import DefinitionError, RequestFeatureError, UserInputError
from fsplug.store import FeatureStore
from fsplug.types import DType


def _us(*args: int) -> int:
    return int((datetime(*args, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


F, T = False, True
# four rows of inputs: values and null masks (None: no nulls)
COLUMNS = {
    "i": (np.array([1, 2, 0, -3]), np.array([F, F, F, T]), Kind.INT),
    "f": (np.array([0.5, 4.0, -1.0, 2.0]), None, Kind.FLOAT),
    "s": (np.array(["a", "b", "", "a"], dtype=object), np.array([F, F, T, F]), Kind.STR),
    "b": (np.array([T, F, T, F]), None, Kind.BOOL),
    "t": (np.array([_us(2026, 3, 2, 8, 30), _us(2026, 3, 7, 23, 59), 0, _us(2024, 2, 29, 12)]), None, Kind.TS),
}


def _kind(name: str) -> Kind:
    if name not in COLUMNS:
        raise ExpressionError(f"unknown input {name!r}")
    return COLUMNS[name][2]


def evaluate(expr: str, dtype: DType) -> list:
    c = compile_expression(expr, _kind, dtype)
    values, null = c.run([COLUMNS[a][:2] for a in c.args], 4)
    out = values.tolist()
    return [None if null is not None and null[j] else v for j, v in enumerate(out)]


VALUES = [
    ("i + 1", "int64", [2, 3, 1, None]),
    ("i * 2 - 1", "int64", [1, 3, -1, None]),
    ("i / f", "float64", [2.0, 0.5, -0.0, None]),
    ("f / i", "float64", [0.5, 2.0, None, None]),  # division by zero: null
    ("i // 2", "int64", [0, 1, 0, None]),
    ("-7 // i", "int64", [-7, -4, None, None]),
    ("i % 2", "int64", [1, 0, 0, None]),
    ("f ** 2", "float64", [0.25, 16.0, 1.0, 4.0]),
    ("f ** 0.5", "float64", [math.sqrt(0.5), 2.0, None, math.sqrt(2)]),  # no real root: null
    ("max(i, f)", "float64", [1.0, 4.0, 0.0, None]),
    ("min(i, 1)", "int64", [1, 1, 0, None]),
    ("max(i, f, 3)", "float64", [3.0, 4.0, 3.0, None]),
    ("abs(f)", "float64", [0.5, 4.0, 1.0, 2.0]),
    ("-f", "float64", [-0.5, -4.0, 1.0, -2.0]),
    ("log(f)", "float64", [math.log(0.5), math.log(4), None, math.log(2)]),
    ("sqrt(f)", "float64", [math.sqrt(0.5), 2.0, None, math.sqrt(2)]),
    ("exp(i)", "float64", [math.e, math.exp(2), 1.0, None]),
    ("clip(f, 0, 1)", "float64", [0.5, 1.0, 0.0, 1.0]),
    ("round(f)", "int64", [0, 4, -1, 2]),  # halves to even
    ("int(f * 1.5)", "int64", [0, 6, -1, 3]),  # toward zero
    ("float(i)", "float64", [1.0, 2.0, 0.0, None]),
    ("i", "float64", [1.0, 2.0, 0.0, None]),  # int widens to a declared float
    ("coalesce(i, 7)", "int64", [1, 2, 0, 7]),
    ("coalesce(f / i, i, -1)", "float64", [0.5, 2.0, 0.0, -1.0]),
    ("coalesce(s, 'z')", "string", ["a", "b", "z", "a"]),
    ("is_null(i)", "bool", [F, F, F, T]),
    ("is_null(f / i)", "bool", [F, F, T, T]),
    ("s == 'a'", "bool", [T, F, None, T]),
    ("s != 'a' and b", "bool", [F, F, None, F]),
    ("b and f > 1", "bool", [F, F, F, F]),
    ("b or i > 1", "bool", [T, T, T, None]),  # strict: a null operand makes the result null
    ("not b", "bool", [F, T, F, T]),
    ("1 < i < 3", "bool", [F, T, F, None]),
    ("i == 1.0", "bool", [T, F, F, None]),
    ("f if b else i", "float64", [0.5, 2.0, -1.0, None]),
    ("i if b else f", "float64", [1.0, 4.0, 0.0, 2.0]),  # the null branch is not taken in the last row
    ("where(b, 'x', s)", "string", ["x", "b", "x", "a"]),
    ("hour(t)", "int64", [8, 23, 0, 12]),
    ("minute(t)", "int64", [30, 59, 0, 0]),
    ("weekday(t)", "int64", [0, 5, 3, 3]),  # Monday = 0
    ("day(t)", "int64", [2, 7, 1, 29]),
    ("month(t)", "int64", [3, 3, 1, 2]),
    ("t - t", "float64", [0.0, 0.0, 0.0, 0.0]),
    ("t", "timestamp", [_us(2026, 3, 2, 8, 30), _us(2026, 3, 7, 23, 59), 0, _us(2024, 2, 29, 12)]),
    ("7", "float64", [7.0, 7.0, 7.0, 7.0]),
    ("2 * 3 + 1", "int64", [7, 7, 7, 7]),
    ("True", "bool", [T, T, T, T]),
]


@pytest.mark.parametrize("expr, dtype, want", VALUES, ids=[v[0] for v in VALUES])
def test_expression_values_and_nulls(expr, dtype, want):
    got = evaluate(expr, DType(dtype))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None), (got, want)
        if isinstance(w, float):
            assert g == pytest.approx(w), (got, want)
        else:
            assert g == w, (got, want)


ERRORS = [
    ("i.real", "int64", "attribute access"),
    ("i[0]", "int64", "subscripts"),
    ("lambda x: x", "int64", "lambdas"),
    ("[x for x in i]", "int64", "comprehensions"),
    ("__import__('os').system('ls')", "int64", "only the language's functions can be called"),
    ("open('f')", "int64", "unknown function 'open'"),
    ("eval('1')", "int64", "unknown function 'eval'"),
    ("mx(i, 1)", "int64", "did you mean 'max'"),
    ("(i := 1)", "int64", "assignments"),
    ("f'{i}'", "string", "f-strings"),
    ("i / 0", "float64", "division by zero"),
    ("i % (2 - 2)", "int64", "division by zero"),
    ("log(-1)", "float64", "never defined"),
    ("max(i)", "int64", "takes at least 2 arguments"),
    ("abs(i, f)", "int64", "takes 1 argument"),
    ("clip(f, 1)", "float64", "takes 3 arguments"),
    ("min(i, f, key=1)", "float64", "plain positional"),
    ("i + s", "int64", "takes int64 or float64; got string"),
    ("s < 1", "bool", "cannot compare string"),
    ("b < b", "bool", "booleans compare only with == and !="),
    ("i if i else f", "float64", "a condition takes bool"),
    ("not i", "bool", "not takes bool"),
    ("coalesce(s, 1)", "string", "must have one type"),
    ("hour(i)", "int64", r"hour\(\) takes timestamp"),
    ("f", "int64", r"float64 but the feature is declared int64 \(round\(x\) or int\(x\)"),
    ("i", "string", "int64 but the feature is declared string"),
    ("x + 1", "int64", "unknown input 'x'"),
    ("i +", "int64", "syntax error"),
    ("", "int64", "empty"),
    ("None", "int64", "constant None"),
    ("i & 1", "int64", "BitAnd is not part"),
    ("i in (1, 2)", "bool", "comparison In is not part"),
    ("i", "bytes", "cannot be bytes"),
]


@pytest.mark.parametrize("expr, dtype, match", ERRORS, ids=[e[0] or "empty" for e in ERRORS])
def test_expressions_refused_with_a_reason(expr, dtype, match):
    with pytest.raises(ExpressionError, match=match):
        compile_expression(expr, _kind, DType(dtype))


def test_an_error_names_its_position():
    with pytest.raises(ExpressionError) as info:
        compile_expression("i + 1 + s", _kind, DType.INT64)
    assert info.value.col == 8 and "at column 9: s" in str(info.value)


def test_a_udf_gets_numpy_columns_and_its_output_is_checked():
    seen = {}

    def band(i, f):
        seen["types"] = (type(i), type(f), i.dtype, f.dtype)
        return np.where(f > 1, 2, 1) + i

    c = compile_udf("m:band", band, ("i", "f"), (Kind.INT, Kind.FLOAT), DType.INT64)
    values, null = c.run([COLUMNS["i"][:2], COLUMNS["f"][:2]], 4)
    assert seen["types"] == (np.ndarray, np.ndarray, np.dtype("int64"), np.dtype("float64"))
    assert values[:3].tolist() == [2, 4, 1] and null.tolist() == [F, F, F, T]  # null where an input is
    short = compile_udf("m:short", lambda i: i[:2], ("i",), (Kind.INT,), DType.INT64)
    with pytest.raises(DerivedFeatureError, match=r"returned shape \(2,\) for 4 rows"):
        short.run([COLUMNS["i"][:2]], 4)
    floats = compile_udf("m:floats", lambda f: f * 2, ("f",), (Kind.FLOAT,), DType.INT64)
    with pytest.raises(DerivedFeatureError, match="returned float64 values; the feature is declared int64"):
        floats.run([COLUMNS["f"][:2]], 4)
    boom = compile_udf("m:boom", lambda f: 1 / 0, ("f",), (Kind.FLOAT,), DType.FLOAT64)
    with pytest.raises(DerivedFeatureError, match="raised ZeroDivisionError"):
        boom.run([COLUMNS["f"][:2]], 4)
    nan = compile_udf("m:nan", np.log, ("f",), (Kind.FLOAT,), DType.FLOAT64)
    assert nan.run([COLUMNS["f"][:2]], 4)[1].tolist() == [F, F, T, F]  # a NaN result is null


# ---- in a repo ----------------------------------------------------------------------------------

REPO = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: act_src, path: data/act.parquet, timestamp_field: ts}
feature_views:
  - name: act
    entity: driver
    source: act_src
    ttl: 1h
    features:
      - {name: trips_today, dtype: int64, default: 0}
      - {name: hours_on_shift, dtype: float64}
      - {name: vehicle, dtype: string}
      - {name: started, dtype: timestamp}
      - {name: emb, dtype: "list[float64]"}
request_sources:
  - name: ride_request
    features:
      - {name: hour_of_day, dtype: int64}
      - {name: surge, dtype: float64, default: 1.0}
derived_views:
  - name: trip_context
    inputs: [ride_request, act]
    features:
      - name: is_peak_hour
        dtype: bool
        expr: "(hour_of_day >= 7 and hour_of_day < 10) or (hour_of_day >= 16 and hour_of_day < 19)"
      - {name: trips_per_hour, dtype: float64, default: -1.0, expr: "trips_today / max(hours_on_shift, 0.5)"}
      - {name: label, dtype: string, expr: "vehicle if is_peak_hour else 'off-peak'"}
      - {name: start_hour, dtype: int64, expr: "hour(started)"}
      - {name: band, dtype: int64, udf: "udfs.bands:band"}
  - name: more
    inputs: [trip_context, ride_request]
    features:
      - {name: busy, dtype: bool, default: false, expr: "trips_per_hour * surge > 2"}
  - name: ctx
    inputs: [ride_request, act]
    features:
      - {name: part, dtype: string, expr: "'morning' if hour_of_day < 12 and trips_today >= 0 else 'later'"}
      - {name: busy6, dtype: bool, expr: "trips_today >= 6"}
      - {name: night, dtype: bool, default: false, expr: "hour_of_day >= 21 or hour_of_day < 6"}
  - name: f32
    inputs: [ride_request, act]
    features:
      - {name: per7, dtype: float32, default: 0.1, expr: "trips_today / 7"}
      - {name: shift7, dtype: float32, expr: "hours_on_shift / 7 + surge"}
      - {name: step7, dtype: float32, expr: "0.7 if hour_of_day > 10 else 1.7"}
      - {name: log7, dtype: float32, expr: "log(trips_today + 7)"}
feature_services:
  - name: words
    features: [act:trips_today, ctx:*]
  - name: plain
    features: [act:trips_today, ctx:busy6]
  - name: svc
    features: [act:trips_today, trip_context:*, more:busy]
  - name: numbers
    features: [trip_context:is_peak_hour, trip_context:trips_per_hour, more:busy]
  - name: reordered
    features: [act:trips_today, more:busy, trip_context:trips_per_hour, trip_context:is_peak_hour]
  - name: matrix
    features: [act:trips_today, trip_context:is_peak_hour, ctx:night, ctx:busy6, trip_context:trips_per_hour]
  - name: floats32
    features: [f32:*]
  - name: floats32_rows
    features: [act:trips_today, f32:per7, f32:step7, f32:log7]
  - name: matrix_apart
    features: [trip_context:is_peak_hour, act:trips_today, trip_context:trips_per_hour, ctx:night, ctx:busy6]
"""

UDF = """\
import numpy as np


def band(trips_today, hours_on_shift):
    return np.where(hours_on_shift > 6, 2, np.where(trips_today > 5, 1, 0))
"""


@pytest.fixture
def derived_repo(make_repo):
    root = make_repo({"defs.yaml": REPO, "udfs/__init__.py": "", "udfs/bands.py": UDF})
    (root / "data").mkdir()
    now = datetime.now(UTC)
    ts = pa.timestamp("us", tz="UTC")
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2, 3, 4], pa.int64()),
        "ts": pa.array([now - timedelta(minutes=5)] * 3 + [now - timedelta(hours=3)], ts),
        "trips_today": pa.array([6, None, 2, 9], pa.int64()),
        "hours_on_shift": pa.array([2.0, 7.0, None, 1.0], pa.float64()),
        "vehicle": pa.array(["suv", "car", None, "suv"], pa.string()),
        "started": pa.array([datetime(2026, 3, 1, 6, tzinfo=UTC)] * 4, ts),
        "emb": pa.array([[1.0]] * 4, pa.list_(pa.float64())),
    }), root / "data" / "act.parquet")
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, progress=False)
    return root


ENTITIES = {"driver_id": [1, 2, 3, 4, 5], "hour_of_day": [8, 12, 17, 8, 3]}


def test_served_values_statuses_and_defaults(derived_repo):
    with FeatureStore(derived_repo) as store:
        res = store.get_online_features(service="svc", entities=ENTITIES)
        d = res.to_dict(include_statuses=True)
    assert d["is_peak_hour"] == [T, F, T, T, F]
    # driver 2: trips_today null -> its default 0; driver 3: hours_on_shift null (no default) -> null ->
    # served as the derived default; driver 4: stale view -> trips default 0, hours null; 5: unknown
    assert d["trips_per_hour"] == [3.0, 0.0, -1.0, -1.0, -1.0]
    assert d["trips_per_hour__status"] == ["PRESENT", "PRESENT", "NULL_VALUE", "NULL_VALUE", "NULL_VALUE"]
    assert d["label"] == ["suv", "off-peak", None, None, "off-peak"]
    assert d["start_hour"] == [6, 6, 6, None, None]
    assert d["band"] == [1, 2, None, None, None]
    # a derived feature read by another one contributes its default where it is null
    assert d["busy"] == [T, F, F, F, F] and set(d["busy__status"]) == {"PRESENT"}
    assert d["trips_today__status"] == ["PRESENT", "NULL_VALUE", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]


def test_every_form_serves_the_same_values(derived_repo):
    with FeatureStore(derived_repo) as store:
        res = store.get_online_features(service="numbers", entities=ENTITIES)
        d = res.to_dict()
        m = res.to_numpy()
        cols = res.columns
        st = res.statuses
        for j, (driver, hour) in enumerate(zip(ENTITIES["driver_id"], ENTITIES["hour_of_day"], strict=True)):
            vec = store.get_feature_vector("numbers", driver_id=driver, request={"hour_of_day": hour})
            np.testing.assert_array_equal(vec.values, m[j])
            np.testing.assert_array_equal(vec.statuses, st[j])
        assert m[:, 0].tolist() == [1.0 if v else 0.0 for v in d["is_peak_hour"]]
        assert m[:, 1].tolist() == d["trips_per_hour"] == cols["trips_per_hour"].tolist()
        assert cols["is_peak_hour"].dtype == np.bool_ and cols["busy"].tolist() == d["busy"]
        assert np.isnan(res.to_numpy(fill_defaults=False)[2, 1])  # null, not its default
        assert res.to_arrow().column("trips_per_hour").to_pylist() == d["trips_per_hour"]
        with pytest.raises(UserInputError, match="label: text features have no number"):
            store.get_online_features(service="svc", entities=ENTITIES).to_numpy()


def test_derived_outputs_listed_out_of_their_computing_order_land_in_their_columns(derived_repo):
    """`busy` reads `trips_per_hour`, which is computed first: every form still follows the service."""
    with FeatureStore(derived_repo) as store:
        want = store.get_online_features(service="svc", entities=ENTITIES).to_dict(include_statuses=True)
        res = store.get_online_features(service="reordered", entities=ENTITIES)
        names = ["trips_today", "busy", "trips_per_hour", "is_peak_hour"]
        assert list(res.to_dict()) == names
        assert res.to_dict(include_statuses=True) == {k: want[k] for k in names + [f"{n}__status" for n in names]}
        m = res.to_numpy()
        assert m[:, 2].tolist() == want["trips_per_hour"]
        assert m[:, 3].tolist() == [float(v) for v in want["is_peak_hour"]]
        assert res.columns["busy"].tolist() == want["busy"]


@pytest.mark.parametrize("service", ["numbers", "svc", "reordered"])
def test_a_read_of_one_entity_serves_its_row_of_the_read_of_all(derived_repo, service):
    """A result of one row computes derived features in plain Python (or, for text, UDFs and
    timestamps, with numpy): every form equals that entity's row of the read of all, missing, stale
    and null inputs included, with a request int beyond 2**53 and a NaN request float."""
    entities = {**ENTITIES, "hour_of_day": [8, 12, 2**53 + 1, 8, 3], "surge": [1.5, math.nan, 2.0, 1.0, 3.0]}
    with FeatureStore(derived_repo) as store:
        if service == "numbers":
            store.get_online_features(service=service, entities=entities).to_numpy()  # (a text-free service)
        every = store.get_online_features(service=service, entities=entities)
        want = every.to_dict(include_statuses=True)
        numbers = every.to_numpy() if service == "numbers" else None
        for j in range(len(entities["driver_id"])):
            one = {k: [v[j]] for k, v in entities.items()}
            got = store.get_online_features(service=service, entities=one).to_dict(include_statuses=True)
            for name, values in want.items():
                a, b = values[j], got[name][0]
                assert a == b or (a != a and b != b), (service, j, name, a, b)
            alone = store.get_online_features(service=service, entities=one)
            assert alone.statuses.tolist() == [every.statuses[j].tolist()]
            if numbers is not None:
                np.testing.assert_array_equal(alone.to_numpy()[0], numbers[j])
            for name, col in alone.columns.items():
                a, b = col[0], every.columns[name][j]
                assert a == b or (a != a and b != b), (service, j, name, a, b)


@pytest.mark.parametrize("service", ["matrix", "matrix_apart"])
def test_a_matrix_computes_its_derived_columns_from_its_own_columns(derived_repo, service):
    """to_numpy() computes tests of an int input and arithmetic from its float columns, straight into
    its derived columns (`Program.put_floats`): the values the other forms serve, defaults where null,
    for a row alone too, with a request int beyond 2**53; the statuses then come from what it computed."""
    entities = {**ENTITIES, "hour_of_day": [8, 22, 2**53 + 1, 5, 17]}
    with FeatureStore(derived_repo) as store:
        every = store.get_online_features(service=service, entities=entities)
        assert every.plan.program.floats
        m = every.to_numpy()
        d = store.get_online_features(service=service, entities=entities).to_dict()
        assert m.tolist() == [[float(d[name][j]) for name in d] for j in range(5)]
        assert m[:, list(d).index("night")].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
        assert m[:, list(d).index("trips_per_hour")].tolist() == [3.0, 0.0, -1.0, -1.0, -1.0]
        for j in range(5):
            one = {k: [v[j]] for k, v in entities.items()}
            np.testing.assert_array_equal(store.get_online_features(service=service, entities=one).to_numpy()[0],
                                          m[j])
        m[:] = 0.0  # (the caller's matrix: the statuses do not read it)
        st = store.get_online_features(service=service, entities=entities).statuses
        assert every.statuses.tolist() == st.tolist()
        assert st[:, list(d).index("trips_per_hour")].tolist() == [1, 1, 2, 2, 2]


@pytest.mark.parametrize("service", ["floats32", "floats32_rows"])
def test_a_float32_derived_feature_is_a_float32_in_every_form(derived_repo, service):
    """to_dict() served a float32 derived feature rounded to float32, to_numpy() (and get_feature_vector)
    its float64 value unrounded: every form serves the float32 value (a default as declared)."""
    with FeatureStore(derived_repo) as store:
        res = store.get_online_features(service=service, entities=ENTITIES)
        d = res.to_dict()
        assert d["per7"][0] == float(np.float32(6 / 7)) != 6 / 7 and d["per7"][2] == float(np.float32(2 / 7))
        assert d["step7"][:2] == [float(np.float32(1.7)), float(np.float32(0.7))]
        assert d["log7"][0] == float(np.float32(math.log(13)))
        want = [[np.nan if d[name][j] is None else float(d[name][j]) for name in d] for j in range(5)]
        np.testing.assert_array_equal(res.to_numpy(), want)
        np.testing.assert_array_equal(res.columns["per7"], np.array(d["per7"], dtype=np.float32))
        for j, (driver, hour) in enumerate(zip(ENTITIES["driver_id"], ENTITIES["hour_of_day"], strict=True)):
            vec = store.get_feature_vector(service, driver_id=driver, request={"hour_of_day": hour})
            np.testing.assert_array_equal(vec.values, want[j])
            one = {k: [v[j]] for k, v in ENTITIES.items()}
            np.testing.assert_array_equal(store.get_online_features(service=service, entities=one).to_numpy()[0],
                                          want[j])
        bare = store.get_online_features(service=service, entities=ENTITIES).to_numpy(fill_defaults=False)
        np.testing.assert_array_equal(bare[0], want[0])


@pytest.mark.parametrize("hours", [[22] * 5, [8, 22, 2**53 + 1, 5, 17], [2**53 + 1] * 5])
def test_to_dict_computes_a_matrix_programs_columns_from_its_plain_values(derived_repo, hours):
    """to_dict() of a program `to_numpy()` computes from its matrix computes it from its plain values
    (`Program.python_floats`), an hour the same in every row looked up once: the values and statuses of
    each entity read alone (the one-row form), and the matrix's."""
    entities = {**ENTITIES, "hour_of_day": hours}
    with FeatureStore(derived_repo) as store:
        res = store.get_online_features(service="matrix", entities=entities)
        d = res.to_dict(include_statuses=True)
        assert store.get_online_features(service="matrix", entities=entities).to_numpy().tolist() == [
            [float(d[name][j]) for name in res.plan.names] for j in range(5)]
        assert d["trips_per_hour__status"] == ["PRESENT", "PRESENT", "NULL_VALUE", "NULL_VALUE", "NULL_VALUE"]
        for j in range(5):
            one = store.get_online_features(service="matrix", entities={k: [v[j]] for k, v in entities.items()})
            assert {k: v[j] for k, v in d.items()} == {k: v[0] for k, v in one.to_dict(include_statuses=True).items()}


def test_same_ints_finds_the_int_requests_that_hold_one_value(derived_repo):
    with FeatureStore(derived_repo) as store:
        plan = store.plan(service="matrix")
        hour = next(i for i, c in enumerate(plan.kernel.columns) if c.is_request)
        trips = next(i for i, c in enumerate(plan.kernel.columns) if c.name == "trips_today")
        assert plan.kernel.same_ints({hour: [7, 7, 7]}, (hour,)) == (hour,)
        assert plan.kernel.same_ints({hour: [7, 7, 8]}, (hour,)) == ()
        assert plan.kernel.same_ints({hour: [7], trips: [7]}, (hour, trips)) == (hour,)  # (a stored column)


def test_event_time_of_a_derived_view_is_its_inputs(derived_repo):
    with FeatureStore(derived_repo) as store:
        res = store.get_online_features(service="svc", entities=ENTITIES)
        times = res.event_timestamps
        req_only = store.get_online_features(features=["trip_context:is_peak_hour"], entities={"hour_of_day": [8]})
        assert req_only.plan.groups == ()  # nothing stored to read
        assert np.isnat(req_only.event_timestamps["trip_context"]).all()
    np.testing.assert_array_equal(times["trip_context"], times["act"])
    np.testing.assert_array_equal(times["more"], times["act"])  # through trip_context


def test_inputs_are_read_even_when_not_requested(derived_repo):
    with FeatureStore(derived_repo) as store:
        plan = store.plan(features=["trip_context:trips_per_hour"])
        assert plan.names == ("trips_per_hour",)
        assert [c.ref for c in plan.inputs] == ["act:trips_today", "act:hours_on_shift"]
        assert set(plan.groups[0].bins) >= {"trips_today", "hours_on_shift"}
        text = plan.explain()
        assert "read for derived features only (not in the output):" in text
        assert ("trip_context:trips_per_hour float64 = (trips_today:int64 / max(hours_on_shift:float64, 0.5)), "
                "default -1.0") in text
        assert "inputs: trips_today <- act:trips_today, hours_on_shift <- act:hours_on_shift" in text
        # a request feature read only by a derived feature is still required, and named
        with pytest.raises(RequestFeatureError, match="hour_of_day"):
            store.get_online_features(features=["trip_context:label"], entities={"driver_id": [1]})
        busy = store.plan(features=["more:busy"]).explain()
        assert "trip_context:trips_per_hour" in busy and "(read by another derived feature only)" in busy


def test_training_data_computes_the_same_values(derived_repo):
    with FeatureStore(derived_repo) as store:
        served = store.get_online_features(service="svc", entities=ENTITIES).to_dict(include_statuses=True)
        now = datetime.now(UTC)
        rows = {**ENTITIES, "event_timestamp": pa.array([now] * 5, pa.timestamp("us", tz="UTC"))}
        training = store.get_historical_features(rows, service="svc", include_statuses=True).to_pydict()
        raw = store.get_historical_features(rows, service="svc", fill_defaults=False).to_pydict()
    for name, values in served.items():
        assert training[name] == values, name
    assert raw["trips_per_hour"] == [3.0, 0.0, None, None, None]  # nulls kept, not the default


DEFINITION_ERRORS = [
    # (the YAML of feature x, the message, the token the column points at: None for the value's start)
    ('expr: "trips_todya + 1"', "unknown name 'trips_todya'; did you mean 'trips_today'?", "trips_todya"),
    ('expr: "trips_today + vehicle"', "'+' takes int64 or float64; got string", "vehicle"),
    ('expr: "max(trips_today)"', "max() takes at least 2 arguments", "max("),
    ('expr: "trips_today / 0"', "division by zero", "trips_today /"),
    ('expr: "1 + emb"', "act:emb is list[float64]; derived features cannot read list[float64] values", "emb"),
    ("expr: 'x * 2'", "'x' reads itself", "x *"),
    ("expr: trips_today + 2 * vehicle", "'*' takes int64 or float64; got string", "vehicle"),
    ('expr: "hours_on_shift"', "the expression is float64 but the feature is declared int64", None),
    ('udf: "udfs.missing:band"', "cannot import module 'udfs.missing'", None),
    ('udf: "udfs.bands:bnd"', "has no function 'bnd'; did you mean 'band'?", None),
    ('udf: "udfs.bands"', "must look like 'package.module:function'", None),
]


@pytest.mark.parametrize("line, message, token", DEFINITION_ERRORS, ids=[e[0] for e in DEFINITION_ERRORS])
def test_definition_errors_are_located(make_repo, line, message, token):
    text = REPO.replace('- {name: band, dtype: int64, udf: "udfs.bands:band"}', "- {name: x, dtype: int64, "
                        + line + "}")
    root = make_repo({"defs.yaml": text, "udfs/__init__.py": "", "udfs/bands.py": UDF})
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).compile(check_paths=False)
    (problem,) = info.value.problems
    key = line.split(":")[0]
    lines = text.splitlines()
    at = next(j for j, t in enumerate(lines) if "{name: x," in t)
    value = lines[at].index(key + ":") + len(key) + 2  # 0-based column of the value after `key: `
    want_col = 1 + (value if token is None else lines[at].index(token, value))
    assert (problem.file, problem.line, problem.column) == ("defs.yaml", at + 1, want_col), str(problem)
    assert "derived feature trip_context:x: " in str(problem) and message in str(problem), str(problem)


def test_cycles_unknown_inputs_and_names_are_located(make_repo):
    text = REPO.replace("inputs: [trip_context, ride_request]", "inputs: [trip_context, ride_reqest]")
    text = text.replace('"trips_per_hour * surge > 2"', '"trips_per_hour > 2"')
    text = text.replace('expr: "trips_today / max(hours_on_shift, 0.5)"', 'expr: "trips_today / max(y, 0.5)"')
    text = text.replace("      - {name: band, dtype: int64, udf: \"udfs.bands:band\"}\n",
                        "      - {name: y, dtype: float64, expr: \"trips_per_hour + 1\"}\n")
    root = make_repo({"defs.yaml": text})
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).compile(check_paths=False)
    messages = [str(p) for p in info.value.problems]
    lines = text.splitlines()
    tph = 1 + next(j for j, t in enumerate(lines) if "name: trips_per_hour" in t)
    inputs = 1 + next(j for j, t in enumerate(lines) if "ride_reqest" in t)
    assert any(m.startswith(f"defs.yaml:{tph}:") and "reads itself through trip_context:trips_per_hour -> "
               "trip_context:y -> trip_context:trips_per_hour" in m for m in messages), messages
    assert any(m.startswith(f"defs.yaml:{inputs}:") and "unknown input 'ride_reqest'; did you mean 'ride_request'?" in m
               for m in messages), messages


def test_derived_views_share_the_namespace_of_views(make_repo):
    text = REPO.replace("  - name: more\n", "  - name: act\n").replace("more:busy", "act:busy")
    root = make_repo({"defs.yaml": text, "udfs/__init__.py": "", "udfs/bands.py": UDF})
    with pytest.raises(DefinitionError, match=r"duplicate derived view name 'act': already defined at defs.yaml:6"):
        FeatureStore(root).compile(check_paths=False)


def test_apply_shows_derived_changes_and_the_registry_keeps_them(derived_repo):
    from fsplug.registry import Registry

    with FeatureStore(derived_repo) as store:
        reg = store.registry
        assert Registry.from_json(reg.to_json()) == reg
        assert reg.derived("trip_context").feature("band").reads == (
            ("trips_today", "act:trips_today"), ("hours_on_shift", "act:hours_on_shift"))
        p = derived_repo / "defs.yaml"
        p.write_text(p.read_text().replace("max(hours_on_shift, 0.5)", "max(hours_on_shift, 3.0)"))
        d, _ = store.changes()
        text = d.render()
        assert "~ update derived view trip_context" in text
        assert ("features.trips_per_hour.expr: trips_today / max(hours_on_shift, 0.5) -> "
                "trips_today / max(hours_on_shift, 3.0)") in text
        result = store.apply()
        assert result.registry.hash != reg.hash
        res = store.get_online_features(features=["trip_context:trips_per_hour"], entities={"driver_id": [1]})
        assert res.to_dict()["trips_per_hour"] == [2.0]  # 6 trips / max(2.0 hours, 3.0): the new expression


def test_a_model_is_not_served_a_derived_feature_defined_otherwise(derived_repo, tmp_path):
    from fsplug.errors import ModelSignatureError
    from fsplug.serving import load_model, save_model

    with FeatureStore(derived_repo) as store:
        save_model({"weights": [1.0]}, tmp_path / "m.joblib", store=store, service="numbers")
        assert load_model(tmp_path / "m.joblib", store).signature.service == "numbers"
        p = derived_repo / "defs.yaml"
        p.write_text(p.read_text().replace("max(hours_on_shift, 0.5)", "max(hours_on_shift, 3.0)"))
        store.apply()
        # busy reads trips_per_hour: both changed, though neither's name, dtype nor default did
        with pytest.raises(ModelSignatureError, match=r"trips_per_hour: ref .*max\(hours_on_shift, 0\.5\).* -> "
                                                      r".*max\(hours_on_shift, 3\.0\)") as info:
            load_model(tmp_path / "m.joblib", store)
        assert "busy: ref" in str(info.value)



def test_a_text_derived_feature_has_no_number_in_a_vector(derived_repo):
    """A derived feature with text values computed from numbers only: get_feature_vector refuses it as
    to_numpy does (its one-row path must not try to make a number of it)."""
    with FeatureStore(derived_repo) as store:
        assert store.get_online_features(service="words", entities=ENTITIES).to_dict()["part"] == [
            "morning", "later", "later", "morning", "morning"]
        with pytest.raises(UserInputError, match="part: text features have no number"):
            store.get_feature_vector("words", driver_id=1, request={"hour_of_day": 8})
        vec = store.get_feature_vector("plain", driver_id=1)
        assert vec.values.tolist() == [6.0, 1.0]


BIG_INTS = """\
entities:
  - {name: item, join_key: item_id, dtype: int64}
sources:
  - {name: items, path: data/items.parquet, timestamp_field: ts}
feature_views:
  - name: pop
    entity: item
    source: items
    ttl: none
    features:
      - {name: p, dtype: int64}
      - {name: pd, dtype: int64, default: -9223372036854775808}
derived_views:
  - name: d
    inputs: [pop]
    features:
      - {name: p1, dtype: int64, expr: "p + 1"}
      - {name: pd1, dtype: int64, expr: "pd + 1"}
      - {name: p_null, dtype: bool, expr: "is_null(p)"}
feature_services:
  - {name: svc, features: ["pop:p", "pop:pd", "d:*"]}
"""


def test_a_null_int_beside_ints_beyond_2_53_stays_null(make_repo):
    """Derived features read int64 inputs beyond 2**53 again exactly from the rows; a null row there
    became 0 and PRESENT (so `p + 1` served 1 where p is null, and a default was not applied) in
    to_numpy(), get_feature_vector's batch fallback and a to_dict() that follows to_numpy(), while
    training data and a plain to_dict() served null / the default."""
    root = make_repo({"defs.yaml": BIG_INTS})
    (root / "data").mkdir()
    now = datetime.now(UTC)
    pq.write_table(pa.table({
        "item_id": pa.array([1, 2, 3], pa.int64()),
        "ts": pa.array([now - timedelta(minutes=5)] * 3, pa.timestamp("us", tz="UTC")),
        "p": pa.array([2**62, None, 5], pa.int64()),
        "pd": pa.array([2**62, None, 5], pa.int64()),
    }), root / "data" / "items.parquet")
    want = {"p1": [2**62 + 1, None, 6, None], "pd1": [2**62 + 1, -(2**63) + 1, 6, -(2**63) + 1],
            "p_null": [F, T, F, T]}
    with FeatureStore(root) as store:
        store.apply()
        store.materialize_incremental(now, progress=False)
        ents = {"item_id": [1, 2, 3, 4]}
        res = store.get_online_features(service="svc", entities=ents)
        m = res.to_numpy()
        d = res.to_dict(include_statuses=True)
        assert {k: d[k] for k in want} == want
        assert d["p1__status"] == ["PRESENT", "NULL_VALUE", "PRESENT", "NULL_VALUE"]
        assert m[:, 2].tolist()[0] == float(2**62 + 1) and np.isnan(m[1, 2]) and np.isnan(m[3, 2])
        assert m[:, 3].tolist() == [float(v) for v in want["pd1"]]
        assert {k: store.get_online_features(service="svc", entities=ents).to_dict()[k] for k in want} == want
        assert res.columns["pd1"].tolist() == want["pd1"]
        training = store.get_historical_features(
            {"item_id": [1, 2, 3, 4], "event_timestamp": pa.array([now] * 4, pa.timestamp("us", tz="UTC"))},
            service="svc").to_pydict()
        assert {k: training[k] for k in want} == want
