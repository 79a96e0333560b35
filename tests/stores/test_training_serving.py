"""Training data equals serving data: for entity rows at time t, `get_historical_features` gives what
`get_online_features` serves at t after materializing up to t — values, defaults and statuses —
over random histories (nulls, NaN, stale and missing entities, defaults and request defaults), on
every store; and the same for random derived features (random expressions over those inputs, with
and without defaults, one reading the others), both as outputs beside their inputs and alone (their
inputs read only for them).
"""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fsplug.result import STATUS_NAMES
from fsplug.store import FeatureStore
from tests.conftest import write_repo
from tests.stores.test_state import _config

DEFS = """\
entities:
  - {name: customer, join_key: customer_id, dtype: string}
sources:
  - {name: txn_src, path: data/txn.parquet, timestamp_field: event_ts, created_timestamp_field: created}
feature_views:
  - name: txn
    entity: customer
    source: txn_src
    ttl: 1h
    features:
      - {name: txn_count, dtype: int64, default: 0}
      - {name: amount, dtype: float64}
      - {name: ratio, dtype: float32, default: 1.5}
      - {name: segment, dtype: string, default: unknown}
      - {name: active, dtype: bool}
request_sources:
  - name: checkout
    features:
      - {name: cart_value, dtype: float64}
      - {name: surge, dtype: float64, default: 1.0}
feature_services:
  - name: fraud_v1
    features: [txn:*, checkout:*]
"""

DERIVED = """derived_views:
  - name: derived
    inputs: [txn, checkout]
    features:
      - {{name: d_num, dtype: float64, expr: "{num}"{num_default}}}
      - {{name: d_bool, dtype: bool, expr: "{flag}"{bool_default}}}
      - {{name: d_chain, dtype: float64, expr: "d_num if d_bool else coalesce(amount, -1.0)"}}
  - name: alone
    inputs: [txn, checkout]
    features:
      - {{name: d_only, dtype: float64, expr: "{num2}"}}
"""
DERIVED_SERVICES = """\
  - name: fraud_derived
    features: [txn:*, derived:*, checkout:*]
  - name: derived_only
    features: [alone:d_only, derived:d_chain]
  - name: derived_numbers
    features: [txn:txn_count, txn:amount, derived:d_num, derived:d_bool, derived:d_chain, checkout:surge]
"""

# Random expressions: every operand subtree holds an input name (constants only as right operands,
# never zero), so each one type-checks and no constant division by zero is drawn.
NUM_NAMES = st.sampled_from(["txn_count", "amount", "ratio", "cart_value", "surge"])
CONSTS = st.sampled_from(["0.5", "2", "3.5", "-1", "7"])


def _num(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return NUM_NAMES
    sub = _num(depth - 1)
    return st.one_of(
        NUM_NAMES,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "//", "%"]), st.one_of(sub, CONSTS)).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["max", "min"]), sub, st.one_of(sub, CONSTS)).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(st.sampled_from(["abs", "log", "sqrt", "float", "round", "exp"]), sub).map(
            lambda t: f"{t[0]}({t[1]})"),
        st.tuples(sub, CONSTS).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        st.tuples(sub, CONSTS, CONSTS).map(lambda t: f"clip({t[0]}, {min(t[1:], key=float)}, {max(t[1:], key=float)})"),
        st.tuples(sub, _flag(depth - 1), sub).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


def _flag(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["active", "segment == 'gold'", "segment != 'unknown'", "is_null(amount)",
                            "is_null(active)", "not active"])
    if depth == 0:
        return leaf
    sub = _flag(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(_num(depth - 1), st.sampled_from(["<", ">=", "==", "!="]), st.one_of(_num(depth - 1), CONSTS)).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda b: f"(not {b})"),
    )


DERIVED_FEATURES = st.fixed_dictionaries({
    "num": _num(3), "flag": _flag(2), "num2": _num(2),
    "num_default": st.sampled_from(["", ", default: 0.25"]),
    "bool_default": st.sampled_from(["", ", default: true"]),
})

CUSTOMERS = [f"c{i}" for i in range(6)]
# event times, in seconds before the read; none near the 1h ttl edge (the read's `now` is a few ms
# after the training rows' time), none in the future
AGES = st.one_of(st.integers(10, 3590), st.integers(3610, 3 * 3600))
ROW = st.fixed_dictionaries({
    "customer": st.sampled_from(CUSTOMERS),
    "age": AGES,
    "txn_count": st.one_of(st.none(), st.integers(-5, 10**6), st.sampled_from([2**53 + 1, 2**62 + 3, -(2**63) + 5])),
    "amount": st.one_of(st.none(), st.just(math.nan), st.floats(-1e6, 1e6, allow_nan=False)),
    "ratio": st.one_of(st.none(), st.floats(-10, 10, allow_nan=False, width=32)),
    "segment": st.one_of(st.none(), st.sampled_from(["gold", "silver", "é"])),
    "active": st.one_of(st.none(), st.booleans()),
})
_counter = itertools.count()


def _numeric_forms(store, service, cart):
    """to_numpy() of a fresh result, to_numpy() then to_dict() of another (the result keeps what it
    computed), get_feature_vector of each customer: (values, statuses), and to_numpy() of a read of
    each customer alone (a result of one row computes derived features in plain Python)."""
    entities = {"customer_id": CUSTOMERS, **cart}
    matrix = store.get_online_features(service=service, entities=entities).to_numpy()
    res = store.get_online_features(service=service, entities=entities)
    matrix_first = res.to_numpy()
    after = res.to_dict()
    plain = store.get_online_features(service=service, entities=entities).to_dict()
    assert all(all(_same(a, b) for a, b in zip(plain[k], after[k], strict=True)) for k in plain), (plain, after)
    vectors, rows = [], []
    for i, customer in enumerate(CUSTOMERS):
        request = {"cart_value": cart["cart_value"][i]} if cart else None
        v = store.get_feature_vector(service, request=request, customer_id=customer)
        vectors.append((v.values.tolist(), v.statuses.tolist()))
        one = {"customer_id": [customer], **({"cart_value": [cart["cart_value"][i]]} if cart else {})}
        rows.append(store.get_online_features(service=service, entities=one).to_numpy()[0].tolist())
    return matrix, matrix_first, vectors, rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=25, unique_by=lambda r: (r["customer"], r["age"])),
       carts=st.lists(st.floats(0, 500, allow_nan=False), min_size=len(CUSTOMERS), max_size=len(CUSTOMERS)),
       derived=DERIVED_FEATURES)
@example(rows=[{"customer": CUSTOMERS[0], "age": 100, "txn_count": 2**53 + 1, "amount": 1.0, "ratio": None,
                "segment": None, "active": True}], carts=[0.0] * len(CUSTOMERS),
         derived={"num": "(txn_count + 2)", "flag": "active", "num2": "(txn_count - 3)", "num_default": "",
                  "bool_default": ""})  # ints a float64 does not hold: derived features read them exactly
def test_training_rows_equal_what_serving_serves(tmp_path_factory, store_kind, request, rows, carts, derived):
    address = request.getfixturevalue("aerospike_address") if store_kind == "aerospike" else None
    root = tmp_path_factory.mktemp("ts") / f"r{next(_counter)}"
    defs = DEFS.replace("feature_services:\n", DERIVED.format(**derived) + "feature_services:\n") + DERIVED_SERVICES
    write_repo(root, {"defs.yaml": defs}, config=_config(store_kind, address, f"ts_{uuid.uuid4().hex[:8]}"))
    (root / "data").mkdir(exist_ok=True)
    now = datetime.now(UTC)
    ts = pa.timestamp("us", tz="UTC")
    times = [now - timedelta(seconds=r["age"]) for r in rows]
    pq.write_table(pa.table({
        "customer_id": pa.array([r["customer"] for r in rows], pa.string()),
        "event_ts": pa.array(times, ts), "created": pa.array(times, ts),
        "txn_count": pa.array([r["txn_count"] for r in rows], pa.int64()),
        "amount": pa.array([r["amount"] for r in rows], pa.float64()),
        "ratio": pa.array([r["ratio"] for r in rows], pa.float32()),
        "segment": pa.array([r["segment"] for r in rows], pa.string()),
        "active": pa.array([r["active"] for r in rows], pa.bool_()),
    }), root / "data" / "txn.parquet")
    with FeatureStore(root) as store:
        try:
            store.apply()
            store.materialize_incremental(now, progress=False)
            t = datetime.now(UTC)
            compared = []
            forms = []
            for service in ("fraud_v1", "fraud_derived", "derived_only", "derived_numbers"):
                # (a service whose derived features do not read cart_value refuses the column)
                cart = {"cart_value": carts} if "cart_value" in store.plan(service=service).accepted else {}
                online = store.get_online_features(service=service, entities={"customer_id": CUSTOMERS, **cart})
                served = online.to_dict(include_statuses=True)
                training = store.get_historical_features(
                    {"customer_id": CUSTOMERS, "event_timestamp": pa.array([t] * len(CUSTOMERS), ts),
                     **cart, "label": list(range(len(CUSTOMERS)))},
                    service=service, include_statuses=True).to_pydict()
                singles = [store.get_online_features(service=service, entities={
                    "customer_id": [c], **({"cart_value": [carts[i]]} if cart else {})}).to_dict(include_statuses=True)
                    for i, c in enumerate(CUSTOMERS)]
                compared.append((service, served, training, singles))
                if service in ("derived_only", "derived_numbers"):  # numbers only: every numeric form too
                    forms.append((service, served, _numeric_forms(store, service, cart)))
        finally:
            store.teardown()
    for service, served, (matrix, matrix_first, vectors, rows) in forms:
        # to_numpy (alone, and before to_dict on the same result) and get_feature_vector serve the
        # values to_dict serves: defaults in place, NaN where to_dict has None
        for j, name in enumerate(served_names := [k for k in served if not k.endswith("__status")]):
            want = [math.nan if v is None else float(v) for v in served[name]]
            for got in (matrix[:, j].tolist(), matrix_first[:, j].tolist(), [v[0][j] for v in vectors],
                        [r[j] for r in rows]):
                assert all(_same(a, b) for a, b in zip(want, got, strict=True)), (service, derived, name, want, got)
            statuses = [v[1][j] for v in vectors]
            assert [STATUS_NAMES[s] for s in statuses] == served[f"{name}__status"], (service, derived, name)
        assert len(served_names) == matrix.shape[1]
    for service, served, training, singles in compared:
        for name, values in served.items():  # each entity read alone: its row of the read of all
            alone = [one[name][0] for one in singles]
            assert all(_same(a, b) for a, b in zip(values, alone, strict=True)), (service, derived, name, values, alone)
        assert training["label"] == list(range(len(CUSTOMERS)))  # extra columns pass through
        assert set(served) <= set(training), (service, set(served) - set(training))
        for name, values in served.items():
            got = training[name]
            assert all(_same(a, b) for a, b in zip(values, got, strict=True)), (service, derived, name, values, got)
