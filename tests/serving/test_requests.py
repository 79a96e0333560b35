"""Requests as a Feast user writes them: optional request features may be left out of a row, a typo
in a request column is an error (not a silently served default), and hints point the right way."""

from __future__ import annotations

import pytest

from fsplug.errors import EntityKeyError, UserInputError
from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources, write_repo

DEFS = """\
entities:
  - {name: customer, join_key: customer_id, dtype: string}
sources:
  - {name: txn_src, path: data/txn.parquet, timestamp_field: event_ts}
feature_views:
  - name: txn
    entity: customer
    source: txn_src
    ttl: 1d
    features:
      - {name: txn_count_24h, dtype: int64, default: 0}
request_sources:
  - name: checkout
    features:
      - {name: cart_value, dtype: float64}
      - {name: surge, dtype: float64, default: 1.0}
feature_services:
  - {name: fraud, features: ["txn:*", "checkout:*"]}
"""


@pytest.fixture
def store(tmp_path):
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS})
    write_empty_sources(root)
    with FeatureStore(root) as s:
        s.apply()
        yield s


def test_a_row_may_leave_out_a_request_feature_with_a_default(store):
    res = store.get_online_features(service="fraud", entity_rows=[
        {"customer_id": "a", "cart_value": 10.0, "surge": 2.0},
        {"customer_id": "b", "cart_value": 20.0},  # surge left out: its default
    ])
    assert res.to_dict()["surge"] == [2.0, 1.0]
    with pytest.raises(EntityKeyError, match=r"entity_rows\[1\] has no 'cart_value' \(entity_rows\[0\] has it\)"):
        store.get_online_features(service="fraud", entity_rows=[{"customer_id": "a", "cart_value": 1.0},
                                                                 {"customer_id": "b"}])


def test_a_typo_in_a_request_column_is_refused_with_a_hint(store):
    with pytest.raises(UserInputError, match="'cartvalue', which is no join key or request feature of service "
                                             "'fraud'; did you mean 'cart_value'"):
        store.get_online_features(service="fraud", entities={"customer_id": ["a"], "cart_value": [1.0],
                                                             "cartvalue": [2.0]})
    with pytest.raises(UserInputError, match="did you mean 'surge'"):
        store.get_feature_vector("fraud", customer_id="a", request={"cart_value": 1.0, "surg": 2.0})
    vec = store.get_feature_vector("fraud", customer_id="a", request={"cart_value": 1.0})
    assert vec.as_dict()["surge"] == 1.0


def test_a_missing_join_key_hint_points_from_the_typo_to_the_key(store):
    with pytest.raises(UserInputError) as info:
        store.get_feature_vector("fraud", cust_id="a", request={"cart_value": 1.0})
    assert "missing join key 'customer_id'" in str(info.value)
    assert "the request has 'cust_id': did you mean 'customer_id'?" in str(info.value)


def test_registry_swaps_keep_only_the_served_registrys_plans(store, tmp_path):
    """A server swaps registries for its whole life: the plans of registries it no longer serves are
    dropped, so memory does not grow with every apply."""
    old = store.registry
    root = write_repo(tmp_path / "r2", {"defs.yaml": DEFS.replace("ttl: 1d", "ttl: 2d")})
    write_empty_sources(root)
    with FeatureStore(root) as other:
        other.apply()
        new = other.registry
    assert new.hash != old.hash
    for i in range(20):
        reg = (new, old)[i % 2]
        store.use_registry(reg, services=["fraud"])
        plan = store.plan(service="fraud")
        assert plan is store.plan(service="fraud")  # cached while served
        assert store.get_feature_vector("fraud", customer_id="c1", request={"cart_value": 1.0}).names
        assert {k[0] for k in store._plans} == {reg.hash}
        assert all(hit[0] is reg for hit in store._by_service.values())


TYPED = """\
entities:
  - {name: customer, join_key: customer_id, dtype: string}
sources:
  - {name: txn_src, path: data/txn.parquet, timestamp_field: event_ts}
feature_views:
  - {name: txn, entity: customer, source: txn_src, ttl: 0, features: [{name: total, dtype: float64, default: 1.0}]}
request_sources:
  - name: checkout
    features:
      - {name: ratio, dtype: float32}
      - {name: vip, dtype: bool}
      - {name: items, dtype: int64}
derived_views:
  - name: ctx
    inputs: [txn, checkout]
    features:
      - {name: scaled, dtype: float64, expr: "total * 10 + ratio"}
      - {name: vip_items, dtype: int64, expr: "items if vip else 0"}
feature_services:
  - {name: typed, features: ["checkout:*", "ctx:*"]}
  - {name: vec, features: ["txn:total", "checkout:items"]}
"""


def test_request_values_are_served_as_their_dtype_as_in_training_data(tmp_path):
    """A float32 request feature was served at float64 precision (0.1, where training data casts it to
    float32: 0.10000000149011612, and so did every derived feature reading it), a bool one as the
    number given (2) and an int64 one as the float given (3.0)."""
    from datetime import UTC, datetime

    import pyarrow as pa

    root = write_repo(tmp_path / "typed", {"defs.yaml": TYPED})
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
        ents = {"customer_id": ["a", "b"], "ratio": [0.1, 1e300], "vip": [2, 0], "items": [3.0, 4]}
        online = store.get_online_features(service="typed", entities=ents).to_dict()
        rows = {**ents, "event_timestamp": pa.array([datetime.now(UTC)] * 2, pa.timestamp("us", tz="UTC"))}
        training = store.get_historical_features(rows, service="typed").to_pydict()
        for name in ("ratio", "vip", "items", "scaled", "vip_items"):
            assert online[name] == training[name], name
        assert online["ratio"] == [0.10000000149011612, float("inf")] and online["vip"] == [True, False]
        assert [type(v) for v in online["items"]] == [int, int]
        vec = store.get_feature_vector("typed", customer_id="a", request={"ratio": 0.1, "vip": 2, "items": 3.0})
        assert vec.values.tolist() == [0.10000000149011612, 1.0, 3.0, 10.100000001490116, 3.0]


def test_an_int64_request_value_beyond_int64_is_refused(tmp_path):
    """It was taken: echoed as given, and a derived feature reading it failed with a bare OverflowError
    (a 500 from the server); training data cannot cast it either."""
    from fsplug.errors import RequestFeatureError

    root = write_repo(tmp_path / "typed", {"defs.yaml": TYPED})
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
        for bad in (2**63, -(2**63) - 1, 1e30):
            for features in (["checkout:items", "checkout:vip"], ["ctx:vip_items"]):
                with pytest.raises(RequestFeatureError, match="request feature 'items' is int64; .* out of its range"):
                    store.get_online_features(features=features, entities={"items": [1, bad], "vip": [True, True]})
            with pytest.raises(RequestFeatureError, match="out of its range"):  # the one-entity path too
                store.get_feature_vector("vec", customer_id="a", request={"items": bad})
        ok = store.get_online_features(features=["checkout:items"], entities={"items": [2**63 - 1, -(2**63)]})
        assert ok.to_dict() == {"items": [2**63 - 1, -(2**63)]}
        assert store.get_feature_vector("vec", customer_id="a", request={"items": 5}).values.tolist() == [1.0, 5.0]


def test_a_null_bytes_request_value_takes_the_default_as_bytes(tmp_path):
    """Left out of the request, a bytes request feature's default was served as bytes; left null in
    a row, as the declared text ('x' instead of b'x')."""
    root = write_repo(tmp_path / "b", {"defs.yaml": DEFS.replace(
        "      - {name: surge, dtype: float64, default: 1.0}",
        "      - {name: surge, dtype: float64, default: 1.0}\n      - {name: tag, dtype: bytes, default: x}")})
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
        left_out = store.get_online_features(features=["checkout:tag"], entities={"tag": [b"y"]})
        assert left_out.to_dict() == {"tag": [b"y"]}
        null = store.get_online_features(features=["checkout:tag"], entities={"tag": [None, b"y"]})
        assert null.to_dict() == {"tag": [b"x", b"y"]}
        default = store.get_online_features(features=["checkout:tag", "txn:txn_count_24h"],
                                            entities={"customer_id": ["a"]})
        assert default.to_dict()["tag"] == [b"x"]


def test_bytes_and_list_request_values_are_checked_online_as_training_data_checks_them(tmp_path):
    """Any value was taken for a bytes or list[float64] request feature online ('abc' for bytes, 'x' for a
    list) and served as given, where training data refused it or served another value: text for bytes is
    base64 (JSON's form of bytes) on both paths, a list is floats."""
    from datetime import UTC, datetime

    import numpy as np
    import pyarrow as pa

    from fsplug.errors import RequestFeatureError

    root = write_repo(tmp_path / "b", {"defs.yaml": DEFS.replace(
        "      - {name: surge, dtype: float64, default: 1.0}",
        "      - {name: surge, dtype: float64, default: 1.0}\n      - {name: tag, dtype: bytes}\n"
        '      - {name: weights, dtype: "list[float64]"}')})
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
        refs = ["checkout:tag", "checkout:weights"]
        ents = {"tag": [b"\x00\xff", "AP8=", bytearray(b"z")], "weights": [[1, 2.5, None], np.array([0.5]), ()]}
        online = store.get_online_features(features=refs, entities=ents).to_dict()
        assert online == {"tag": [b"\x00\xff", b"\x00\xff", b"z"], "weights": [[1.0, 2.5, None], [0.5], []]}
        at = pa.array([datetime.now(UTC)] * 2, pa.timestamp("us", tz="UTC"))
        training = store.get_historical_features(
            {"tag": ["AP8=", "eg=="], "weights": [[1, 2], [3]], "event_timestamp": at}, features=refs).to_pydict()
        assert training["tag"] == [b"\x00\xff", b"z"] and training["weights"] == [[1.0, 2.0], [3.0]]
        for ents, match in [({"tag": ["abc"], "weights": [[]]}, "'tag' is bytes; 'abc' is not base64"),
                            ({"tag": [7], "weights": [[]]}, "'tag' is bytes; got 7"),
                            ({"tag": [b""], "weights": ["x"]}, "'weights' is list.float64.; got 'x'"),
                            ({"tag": [b""], "weights": [[1, "2"]]}, "its item '2' .str. is no number"),
                            ({"tag": [b""], "weights": [[True]]}, "its item True .bool. is no number")]:
            with pytest.raises(RequestFeatureError, match=match):
                store.get_online_features(features=refs, entities=ents)
        with pytest.raises(RequestFeatureError, match="'abc' is not base64"):
            store.get_historical_features({"tag": ["abc"], "weights": [[1.0]], "event_timestamp": at[:1]},
                                          features=refs)
