"""Request features of dtype timestamp, and request features read only by derived features.

A timestamp request value is checked and normalized like any other request value: a datetime (naive =
UTC), an ISO-8601 string (what JSON clients send) or a numpy datetime64 is taken, as a UTC datetime;
anything else is a RequestFeatureError. Every read form then works with it: before, `columns` failed
on a datetime or a string, `to_dict` / `to_arrow` on a datetime64, `to_numpy()` and
`get_feature_vector` (and the server's /get-feature-vector, a 500) on any value when a derived
feature read the timestamp, and a garbage string or a bool went through unchecked. A string request
feature read only by a derived feature broke `to_numpy()` the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.errors import RequestFeatureError
from fsplug.store import FeatureStore
from tests.conftest import write_repo

DEFS = """\
entities:
  - {name: card, join_key: card_id, dtype: string}
sources:
  - {name: card_src, path: data/card.parquet, timestamp_field: ts}
feature_views:
  - name: card_stats
    entity: card
    source: card_src
    ttl: none
    features:
      - {name: opened_at, dtype: timestamp}
      - {name: avg_amount, dtype: float64}
request_sources:
  - name: txn
    features:
      - {name: txn_time, dtype: timestamp}
      - {name: amount, dtype: float64}
      - {name: channel, dtype: string, default: web}
      - {name: seen_at, dtype: timestamp, default: "2026-01-01T06:00:00+02:00"}
derived_views:
  - name: ctx
    inputs: [card_stats, txn]
    features:
      - {name: since_open, dtype: float64, expr: "txn_time - opened_at"}
      - {name: txn_hour, dtype: int64, expr: "hour(txn_time)"}
      - {name: seen_hour, dtype: int64, expr: "hour(seen_at)"}
      - {name: is_mobile, dtype: bool, expr: "channel == 'mobile'"}
feature_services:
  - name: model        # numbers only: the timestamp and string request features are read, not served
    features: [card_stats:avg_amount, txn:amount, ctx:since_open, ctx:txn_hour, ctx:seen_hour, ctx:is_mobile]
  - name: everything
    features: [card_stats:*, txn:*, ctx:*]
"""

OPENED = datetime(2026, 11, 1, tzinfo=UTC)
TXN = datetime(2026, 12, 1, 3, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = write_repo(tmp_path_factory.mktemp("tsreq") / "repo", {"defs.yaml": DEFS})
    (root / "data").mkdir(exist_ok=True)
    pq.write_table(pa.table({
        "card_id": ["c1"], "ts": pa.array([datetime.now(UTC) - timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
        "opened_at": pa.array([OPENED], pa.timestamp("us", tz="UTC")), "avg_amount": [60.0]}),
        root / "data" / "card.parquet")
    with FeatureStore(root) as s:
        s.apply()
        s.materialize_incremental(datetime.now(UTC))
        yield s


# the same instant, as callers write it
FORMS = [
    TXN,
    TXN.replace(tzinfo=None),  # naive = UTC
    TXN.astimezone(timezone(timedelta(hours=2))),
    "2026-12-01T03:30:00Z",
    "2026-12-01T05:30:00+02:00",
    "2026-12-01 03:30:00",
    np.datetime64("2026-12-01T03:30:00", "us"),
    np.datetime64("2026-12-01T03:30:00.000000000", "ns"),
]
EXPECTED = [60.0, 12.5, (TXN - OPENED).total_seconds(), 3.0, 4.0, 1.0]  # `model`'s vector


@pytest.mark.parametrize("form", FORMS, ids=[repr(f) for f in FORMS])
def test_every_read_form_takes_a_timestamp_request_value(store, form):
    ents = {"card_id": ["c1"], "txn_time": [form], "amount": [12.5], "channel": ["mobile"]}
    res = store.get_online_features(service="model", entities=ents)
    assert res.to_numpy().tolist() == [EXPECTED]
    assert res.to_dict()["since_open"] == [EXPECTED[2]]
    vec = store.get_feature_vector("model", card_id="c1",
                                   request={"txn_time": form, "amount": 12.5, "channel": "mobile"})
    assert vec.values.tolist() == EXPECTED

    res = store.get_online_features(service="everything", entities=ents)
    assert res.to_dict()["txn_time"] == [TXN]  # a UTC datetime, as stored timestamps are served
    assert res.to_dict()["seen_at"] == [datetime(2026, 1, 1, 4, tzinfo=UTC)]  # the default
    assert res.columns["txn_time"].tolist() == [TXN.replace(tzinfo=None)]
    assert res.columns["txn_time"].dtype == np.dtype("datetime64[us]")
    assert res.to_arrow().column("txn_time").to_pylist() == [TXN]
    assert res.to_dict()["since_open"] == [EXPECTED[2]] and res.to_dict()["txn_hour"] == [3]


def test_several_rows_and_a_null_with_a_default(store):
    res = store.get_online_features(service="model", entities={
        "card_id": ["c1", "nope"], "txn_time": [TXN, "2026-12-01T23:00:00Z"], "amount": [1.0, 2.0],
        "seen_at": [None, "2026-12-02T10:00:00Z"]})
    m = res.to_numpy()
    assert m[:, 3].tolist() == [3.0, 23.0] and m[:, 4].tolist() == [4.0, 10.0]
    assert m[0, 2] == EXPECTED[2] and np.isnan(m[1, 2])  # no card: opened_at is null
    assert res.columns["since_open"][0] == EXPECTED[2]


@pytest.mark.parametrize("bad, says", [
    ("abc", "'abc' is not an ISO-8601 time"),
    ("", "'' is not an ISO-8601 time"),
    (1.5, "got 1.5 (float)"),
    (True, "got True (bool)"),
    (1764559800, "got 1764559800 (int)"),
    (np.datetime64("NaT"), "is null and has no default"),
    (None, "is null and has no default"),
])
def test_a_value_that_is_no_time_is_refused(store, bad, says):
    with pytest.raises(RequestFeatureError, match=re.escape(says)):
        store.get_online_features(service="everything",
                                  entities={"card_id": ["c1"], "txn_time": [bad], "amount": [1.0]})
    with pytest.raises(RequestFeatureError, match="txn_time"):
        store.get_feature_vector("model", card_id="c1", request={"txn_time": bad, "amount": 1.0})


def test_a_string_request_feature_read_only_by_a_derived_feature(store):
    res = store.get_online_features(features=["ctx:is_mobile", "txn:amount"],
                                    entities={"channel": ["mobile", "web"], "amount": [1.0, 2.0]})
    assert res.to_numpy().tolist() == [[1.0, 1.0], [0.0, 2.0]]
    assert res.to_dict() == {"is_mobile": [True, False], "amount": [1.0, 2.0]}


def test_the_feast_response_carries_the_normalized_time(store):
    import orjson

    from fsplug.server.app import feast_response

    ents = {"card_id": ["c1"], "txn_time": ["2026-12-01T05:30:00+02:00"], "amount": [1.0]}
    body = orjson.loads(feast_response(store.get_online_features(service="everything", entities=ents), ents))
    values = dict(zip(body["metadata"]["feature_names"], (r["values"] for r in body["results"]), strict=True))
    # as Feast's server writes a timestamp value (unix_timestamp_val): whole seconds since the epoch
    assert values["txn_time"] == [int(datetime(2026, 12, 1, 3, 30, tzinfo=UTC).timestamp())]
    assert values["opened_at"] == [int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())] and values["txn_hour"] == [3]


@pytest.mark.parametrize("column", [
    pa.array([TXN], pa.timestamp("us", tz="UTC")),
    pa.array([TXN.replace(tzinfo=None)], pa.timestamp("ms")),  # naive = UTC, another unit
    pa.array([TXN], pa.timestamp("s", tz="Europe/Paris")),
    pa.array([TXN.replace(tzinfo=None)], pa.timestamp("ns")),
    pa.array(["2026-12-01T05:30:00+02:00"]),  # ISO strings, as online
    [TXN],
], ids=["us-utc", "ms-naive", "s-paris", "ns-naive", "iso-string", "datetime"])
def test_training_data_takes_a_timestamp_request_column_of_any_unit(store, column):
    """The entity rows' request columns were passed through as they came: a timestamp column in another
    unit than microseconds was read as microseconds by derived features (a naive ms column gave
    hour(txn_time) 18 for 03:30) and served in its own type; an ISO string column failed with a
    ValueError. They are cast to the declared dtype now (strings parsed as online)."""
    t = datetime.now(UTC)
    rows = {"card_id": ["c1"], "event_timestamp": pa.array([t], pa.timestamp("us", tz="UTC")),
            "txn_time": column, "amount": pa.array([12], pa.int32())}
    out = store.get_historical_features(rows, service="everything")
    assert out.schema.field("txn_time").type == pa.timestamp("us", tz="UTC")
    assert out.schema.field("amount").type == pa.float64()  # the declared dtype, not the column's int32
    got = out.to_pylist()[0]
    assert got["txn_time"] == TXN and got["amount"] == 12.0
    assert got["txn_hour"] == 3 and got["since_open"] == EXPECTED[2]


@pytest.mark.parametrize("column, says", [
    (pa.array(["yesterday"]), "'yesterday' is not an ISO-8601 time"),
    (pa.array([1.5]), "request feature 'txn_time' is timestamp; the entity rows' column has type double"),
])
def test_training_data_refuses_a_request_column_that_does_not_fit(store, column, says):
    rows = {"card_id": ["c1"], "event_timestamp": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            "txn_time": column, "amount": [1.0]}
    with pytest.raises(RequestFeatureError, match=re.escape(says)):
        store.get_historical_features(rows, service="everything")
    rows = {"card_id": ["c1"], "event_timestamp": rows["event_timestamp"], "txn_time": [TXN], "amount": [1.5]}
    with pytest.raises(RequestFeatureError, match="request feature 'amount' is float64; the entity rows' column "
                                                  "has type string"):
        store.get_historical_features({**rows, "amount": ["1.5"]}, service="everything")


def test_training_data_marks_a_null_request_value_without_a_default_null_value(store):
    """Online, a request without a value for a request feature that has no default is refused; in
    training data such a row's value is null, and its status says so (it said PRESENT)."""
    t = pa.array([datetime.now(UTC)] * 2, pa.timestamp("us", tz="UTC"))
    rows = {"card_id": ["c1", "c1"], "event_timestamp": t, "txn_time": [TXN, None], "amount": [None, 12.5]}
    out = store.get_historical_features(rows, service="everything", include_statuses=True).to_pylist()
    assert [r["amount"] for r in out] == [None, 12.5]
    assert [r["amount__status"] for r in out] == ["NULL_VALUE", "PRESENT"]
    assert [r["txn_time__status"] for r in out] == ["PRESENT", "NULL_VALUE"]
    assert [r["channel__status"] for r in out] == ["PRESENT", "PRESENT"]  # left out: its default
    assert out[1]["txn_hour"] is None and out[1]["txn_hour__status"] == "NULL_VALUE"
