"""pandas where Feast users have it (without making pandas a dependency): DataFrames in, DataFrames out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from fsplug.errors import UserInputError
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
      - {name: segment, dtype: string, default: unknown}
"""


@pytest.fixture
def repo(tmp_path):
    root = write_repo(tmp_path / "r", {"defs.yaml": DEFS})
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
    return root


def test_push_takes_a_dataframe_and_historical_features_take_entity_rows_as_one(repo):
    now = datetime.now(UTC).replace(microsecond=0)
    rows = pd.DataFrame({"customer_id": ["a", "b"], "event_ts": [now - timedelta(minutes=5)] * 2,
                         "txn_count_24h": [3, 4], "segment": ["gold", None]}, index=[10, 11])
    rows.to_parquet(repo / "data" / "txn.parquet", index=False)
    with FeatureStore(repo) as store:
        assert store.push("txn", rows) == 2
        got = store.get_online_features(features=["txn:*"], entities={"customer_id": ["a", "b"]}).to_dict()
        assert got == {"txn_count_24h": [3, 4], "segment": ["gold", "unknown"]}
        entity_rows = pd.DataFrame({"customer_id": ["a", "b"], "event_timestamp": [now, now], "label": [1, 0]})
        training = store.get_historical_features(entity_rows, features=["txn:txn_count_24h"])
        assert training.column("txn_count_24h").to_pylist() == [3, 4]
        assert training.column("label").to_pylist() == [1, 0]  # extra columns pass through


def test_a_missing_event_timestamp_column_names_the_parameter(repo):
    with FeatureStore(repo) as store, pytest.raises(UserInputError, match="event_timestamp_column="):
        store.get_historical_features(pd.DataFrame({"customer_id": ["a"], "ts": [datetime.now(UTC)]}),
                                      features=["txn:txn_count_24h"])


def test_something_else_is_refused_with_what_is_accepted(repo):
    with FeatureStore(repo) as store:
        with pytest.raises(UserInputError, match="pandas DataFrame"):
            store.push("txn", [("a", 1)])
        with pytest.raises(UserInputError, match="pandas DataFrame"):
            store.get_historical_features([("a", 1)], features=["txn:txn_count_24h"])


def test_online_results_convert_to_dataframes(repo):
    now = datetime.now(UTC)
    with FeatureStore(repo) as store:
        store.push("txn", pd.DataFrame({"customer_id": ["a"], "event_ts": [now], "txn_count_24h": [2],
                                        "segment": ["gold"]}))
        df = store.get_online_features(features=["txn:*"], entities={"customer_id": ["a", "zz"]}).to_pandas()
        assert isinstance(df, pd.DataFrame) and list(df.columns) == ["txn_count_24h", "segment"]
        assert df["txn_count_24h"].tolist() == [2, 0] and df["segment"].tolist() == ["gold", "unknown"]
