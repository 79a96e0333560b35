"""Bad input at every entry point: a clear error (or a documented rule), nothing written, nothing lost.

The CASES tables below are the record of what is covered (the README's Troubleshooting section
summarizes them):

- REPO_CASES: feature repo YAML and feature_store.yaml (extends tests/core/test_validation.py,
  which covers syntax errors, unknown fields, bins, names, ttl, defaults, services...);
- SOURCE_CASES: offline Parquet data met by `materialize` (and `push`);
- RETRIEVAL_CASES: arguments of `get_online_features` / `get_feature_vector`;
- MODEL_CASES: model artifacts and their signatures.

Each error case checks the error class (user errors are ValueErrors too), the message and that
nothing was recorded: no registry written, or the view's watermark unchanged.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsplug.errors import (
    DefinitionError,
    EntityKeyError,
    ModelIntegrityError,
    ModelSignatureError,
    RecordTooBigError,
    ReferenceNotFoundError,
    RequestFeatureError,
    SourceDataError,
    UserInputError,
)
from fsplug.result import FieldStatus
from fsplug.store import MAX_ENTITIES_PER_REQUEST, FeatureStore
from tests.conftest import DEFAULT_CONFIG

from .conftest import TS, UTC, aerospike_config, build_repo, stats_table

# ---------------------------------------------------------------------------------------------
# feature repos

ENTITY = "entities:\n  - name: driver\n    join_key: driver_id\n    dtype: int64\n"
SOURCE = "sources:\n  - name: stats\n    path: data/stats.parquet\n    timestamp_field: ts\n"


def view(features: str = "      - {name: trips, dtype: int64}\n", extra: str = "", name: str = "driver_stats",
         entity: str = "driver") -> str:
    return (f"feature_views:\n  - name: {name}\n    entity: {entity}\n    source: stats\n    ttl: 2d\n{extra}"
            f"    features:\n{features}")


GOOD = ENTITY + SOURCE + view()
PY_TAG = "YAML tag '!!python/"

# (id, {file: text} (bytes allowed), feature_store.yaml or None for the default,
#  expected "file:line:column", substrings of that problem's message)
REPO_CASES = [
    # wrong types
    ("name-int", {"defs.yaml": "entities:\n  - name: 12\n    join_key: id\n"}, None,
     "defs.yaml:2:11", ["entities[0].name", "valid string", "got 12"]),
    ("ttl-bool", {"defs.yaml": GOOD.replace("ttl: 2d", "ttl: yes")}, None,
     "defs.yaml:13:10", ["ttl must be a duration", "got True"]),
    ("ttl-list", {"defs.yaml": GOOD.replace("ttl: 2d", "ttl: [2d]")}, None,
     "defs.yaml:13:10", ["bad ttl ['2d']"]),
    ("online-not-bool", {"defs.yaml": ENTITY + SOURCE + view(extra="    online: maybe\n")}, None,
     "defs.yaml:14:13", ["feature_views[0].online", "valid boolean", "'maybe'"]),
    ("dtype-int", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: 5}\n")}, None,
     "defs.yaml:15:30", ["features[0].dtype", "dtype must be one of int64", "got 5"]),
    ("default-list-for-float", {"defs.yaml": ENTITY + SOURCE + view(
        "      - {name: trips, dtype: float64, default: [1]}\n")}, None,
     "defs.yaml:15:9", ["default [1] does not fit dtype float64"]),
    ("default-impossible-date", {"defs.yaml": ENTITY + SOURCE + view(
        "      - {name: trips, dtype: timestamp, default: 2024-13-45}\n")}, None,
     "defs.yaml:15:9", ["default '2024-13-45' does not fit dtype timestamp"]),
    ("project-int", {}, "project: 5\n",
     "feature_store.yaml:1:10", ["project: Input should be a valid string", "got 5"]),
    # lists for maps and maps for lists
    ("features-map-for-list", {"defs.yaml": ENTITY + SOURCE + view("      name: trips\n      dtype: int64\n")}, None,
     "defs.yaml:15:7", ["feature_views[0].features", "valid list"]),
    ("feature-list-for-map", {"defs.yaml": ENTITY + SOURCE + view("      - [trips, int64]\n")}, None,
     "defs.yaml:15:9", ["features[0]: expected a mapping", "['trips', 'int64']"]),
    ("feature-string-for-map", {"defs.yaml": ENTITY + SOURCE + view("      - trips\n")}, None,
     "defs.yaml:15:9", ["features[0]: expected a mapping", "'trips'"]),
    ("tags-list-for-map", {"defs.yaml": ENTITY + SOURCE + view(extra="    tags: [a, b]\n")}, None,
     "defs.yaml:14:11", ["feature_views[0].tags", "valid dictionary"]),
    ("join-keys-string-for-list", {"defs.yaml": "entities:\n  - name: zone\n    join_keys: city\n"}, None,
     "defs.yaml:3:16", ["entities[0].join_keys", "valid list", "'city'"]),
    ("file-is-a-list", {"defs.yaml": "- entities: []\n"}, None,
     "defs.yaml:1:1", ["a definitions file must be a mapping"]),
    ("file-is-a-scalar", {"defs.yaml": "hello\n"}, None,
     "defs.yaml:1:1", ["a definitions file must be a mapping"]),
    ("online-store-list", {}, "project: x\nonline_store: [sqlite]\n",
     "feature_store.yaml:2:15", ["online_store", "valid dictionary"]),
    ("online-store-empty", {}, "project: x\nonline_store:\n",
     "feature_store.yaml:2:14", ["online_store", "valid dictionary", "got None"]),
    # tabs
    ("tab-in-flow-mapping", {"defs.yaml": "entities:\n  - {name: driver,\tjoin_key: id}\n"}, None,
     "defs.yaml:2:19", ["YAML syntax error", "use spaces"]),
    ("tab-after-colon", {"defs.yaml": "entities:\n  - name:\tdriver\n    join_key: id\n"}, None,
     "defs.yaml:2:10", ["YAML syntax error", "use spaces"]),
    ("tab-in-feature-store-yaml", {}, "project: x\nonline_store:\n\ttype: sqlite\n",
     "feature_store.yaml:3:1", ["YAML syntax error", "use spaces"]),
    # missing required keys
    ("view-without-entity", {"defs.yaml": GOOD.replace("    entity: driver\n", "")}, None,
     "defs.yaml:10:5", ["required field 'entity' is missing"]),
    ("feature-without-dtype", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips}\n")}, None,
     "defs.yaml:15:9", ["features[0].dtype: required field 'dtype' is missing"]),
    ("entity-without-key", {"defs.yaml": "entities:\n  - name: driver\n    dtype: int64\n"}, None,
     "defs.yaml:2:5", ["an entity needs join_key"]),
    ("service-without-features", {"defs.yaml": GOOD + "feature_services:\n  - name: svc\n"}, None,
     "defs.yaml:17:5", ["required field 'features' is missing"]),
    ("project-missing", {}, "registry: data/registry.json\n",
     "feature_store.yaml:1:1", ["required field 'project' is missing"]),
    # references across files
    ("view-entity-in-other-file", {"a.yaml": ENTITY + SOURCE, "b.yaml": view(entity="drivr")}, None,
     "b.yaml:3:13", ["unknown entity 'drivr'", "did you mean 'driver'?"]),
    ("service-feature-in-other-file", {"a.yaml": ENTITY + SOURCE, "b.yaml": view(),
                                       "c.yaml": "feature_services:\n  - name: svc\n    features:\n"
                                                 "      - driver_stats:trip\n"}, None,
     "c.yaml:4:9", ["feature view 'driver_stats' has no feature 'trip'", "did you mean 'trips'?"]),
    ("view-defined-in-two-files", {"a.yaml": GOOD, "b.yaml": view("      - {name: trips, dtype: int64, bin: t2}\n")},
     None, "b.yaml:2:11", ["duplicate feature view name 'driver_stats'", "already defined at a.yaml:10"]),
    ("request-source-named-like-a-view", {"a.yaml": GOOD, "b.yaml": "request_sources:\n  - name: driver_stats\n"
                                                                    "    features: [{name: x, dtype: int64}]\n"},
     None, "b.yaml:2:11", ["duplicate request source name 'driver_stats'", "already defined at a.yaml:10"]),
    # files that are not plain YAML text
    ("undecodable-bytes", {"defs.yaml": b"entities:\n  - name: \xff\xfe\n"}, None,
     "defs.yaml:1:1", ["cannot read file", "utf-8"]),
    ("nul-character", {"defs.yaml": b"entities:\x00\n"}, None,
     "defs.yaml:1:1", ["YAML syntax error", "special characters"]),
    ("top-level-key-not-a-string", {"defs.yaml": "1: x\n"}, None,
     "defs.yaml:1:1", ["unknown top-level key 1"]),
    ("deep-nesting", {"defs.yaml": "entities: " + "[" * 80 + "]" * 80 + "\n"}, None,
     "defs.yaml:1:75", ["YAML nesting is too deep"]),
    ("very-deep-nesting", {"defs.yaml": "entities: " + "[" * 3000 + "]" * 3000 + "\n"}, None,
     "defs.yaml:1:1", ["YAML nesting is too deep"]),
    # tags: never constructed (see also test_security.py)
    ("python-object-tag", {"defs.yaml": "entities:\n  - !!python/object:collections.OrderedDict "
                                        "{name: driver, join_key: id}\n"}, None,
     "defs.yaml:2:5", [PY_TAG + "object:collections.OrderedDict' is not allowed"]),
    ("python-apply-tag", {"defs.yaml": "entities:\n  - name: !!python/object/apply:os.system ['true']\n"
                                       "    join_key: id\n"}, None,
     "defs.yaml:2:11", [PY_TAG + "object/apply:os.system' is not allowed"]),
    ("python-name-tag", {"defs.yaml": "entities:\n  - name: !!python/name:os.system\n    join_key: id\n"}, None,
     "defs.yaml:2:11", [PY_TAG + "name:os.system' is not allowed"]),
    ("custom-tag", {"defs.yaml": "entities:\n  - name: !driver x\n    join_key: id\n"}, None,
     "defs.yaml:2:11", ["YAML tag '!driver' is not allowed"]),
    ("binary-tag", {"defs.yaml": "entities:\n  - name: !!binary ZHJpdmVy\n    join_key: id\n"}, None,
     "defs.yaml:2:11", ["YAML tag '!!binary' is not allowed"]),
    ("set-tag", {"defs.yaml": "entities: !!set {driver}\n"}, None,
     "defs.yaml:1:11", ["YAML tag '!!set' is not allowed"]),
    ("python-tag-in-feature-store-yaml", {}, "project: !!python/object/apply:os.getcwd []\n",
     "feature_store.yaml:1:10", [PY_TAG + "object/apply:os.getcwd' is not allowed"]),
    # store settings
    ("unknown-store-type", {}, "project: x\nonline_store: {type: redis}\n",
     "feature_store.yaml:2:22", ["unknown online store type 'redis'", "known types: aerospike, sqlite"]),
    ("host-without-port", {}, "project: x\nonline_store:\n  type: aerospike\n  hosts: [localhost]\n",
     "feature_store.yaml:4:10", ["host 'localhost' must look like host:port"]),
    ("secret-instead-of-env-var-name", {}, "project: x\nonline_store:\n  type: aerospike\n  user_env: ADMIN\n"
                                           "  password_env: 'hunter2!'\n",
     "feature_store.yaml:5:17", ["password_env: must be the name of an environment variable"]),
    ("user-without-password", {}, "project: x\nonline_store:\n  type: aerospike\n  user_env: ADMIN\n",
     "feature_store.yaml:3:3", ["user_env and password_env go together"]),
    ("registry-path-escapes", {}, "project: x\nregistry: ../../elsewhere/registry.json\n",
     "feature_store.yaml:2:11", ["escapes the feature repo", "absolute path"]),
    ("registry-path-unknown-home", {}, "project: x\nregistry: ~no_such_user_fsplug/registry.json\n",
     "feature_store.yaml:2:11", ["no home directory for '~no_such_user_fsplug'"]),
]


@pytest.mark.parametrize("files,config,where,needles", [c[1:] for c in REPO_CASES], ids=[c[0] for c in REPO_CASES])
def test_repo_case(tmp_path, files, config, where, needles):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "feature_store.yaml").write_text(config if config is not None else DEFAULT_CONFIG)
    (root / "data").mkdir()
    pq.write_table(pa.table({"x": [1]}), root / "data" / "stats.parquet")  # the sources exist
    for name, text in files.items():
        (root / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).apply()
    err = info.value
    assert isinstance(err, UserInputError) and isinstance(err, ValueError)
    messages = [str(p) for p in err.problems]
    match = [m for m in messages if m.startswith(where + ":")]
    assert match, f"no problem at {where}; got {messages}"
    assert all(any(n in m for m in match) for n in needles), f"{needles} not in {match}"
    assert not (root / "data" / "registry.json").exists()
    assert not (root / "data" / "online.db").exists()


# Rules rather than errors: these inputs are accepted on purpose.
ACCEPTED_REPO_INPUTS = [
    ("empty-file", "", 0),
    ("comments-only", "# nothing here yet\n", 0),
    ("null-list", "entities:\n", 0),
    ("byte-order-mark", "\ufeff" + ENTITY, 1),
    ("lone-equals-sign-is-text", ENTITY.replace("dtype: int64", "dtype: int64\n    description: ="), 1),
]


@pytest.mark.parametrize("text,entities", [c[1:] for c in ACCEPTED_REPO_INPUTS], ids=[c[0] for c in ACCEPTED_REPO_INPUTS])
def test_accepted_repo_inputs(make_repo, text, entities):
    repo = make_repo({"defs.yaml": text})
    with FeatureStore(repo) as store:
        assert len(store.apply().registry.entities) == entities


def test_renamed_view_with_data_online_plans_delete_and_create(tmp_path):
    """A rename is a delete + a create: the plan says so and warns that the old data stays until teardown."""
    repo = build_repo(tmp_path / "repo")
    now = datetime.now(UTC)
    with FeatureStore(repo) as store:
        store.push("stats", stats_table([1, 2], [now, now]))
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("  - name: stats\n", "  - name: stats_v2\n")
                    .replace('"stats:*"', '"stats_v2:*"'))
    with FeatureStore(repo) as store:
        d, _ = store.changes()
        text = d.render()
        assert "+ create feature view stats_v2" in text
        assert "- delete feature view stats\n    ! its online data stays until `fsplug teardown`" in text
        assert "~ update feature service svc" in text
        store.apply()
        # the new view shares the bins but not the timestamp bin: nothing is misattributed to it
        res = store.get_online_features(features=["stats_v2:a"], entities={"driver_id": [1, 2]})
        assert res.status_names()["a"] == ["NOT_FOUND", "NOT_FOUND"]
        # and the old rows are still stored (until teardown)
        import apsw  # (the store's driver: two SQLite libraries on one file in one process break its locks)

        conn = apsw.Connection(str(repo / "data" / "online.db"))
        assert conn.execute('SELECT count(*) FROM "rel-driver" WHERE _ts_stats IS NOT NULL').fetchone() == (2,)
        conn.close()
        store.push("stats_v2", stats_table([1], [now]))
        assert store.get_online_features(features=["stats_v2:a"], entities={"driver_id": [1]}).to_dict()["a"] == [10]


# ---------------------------------------------------------------------------------------------
# Parquet sources met by materialize

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=1)
END = NOW + timedelta(seconds=1)


def _write(root, table, name="stats.parquet"):
    pq.write_table(table, root / "data" / name)


def _missing(root):
    (root / "data" / "stats.parquet").unlink()


def _corrupt(root):
    (root / "data" / "stats.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)


def _truncated(root):
    _write(root, stats_table([1, 2, 3], [T0] * 3))
    p = root / "data" / "stats.parquet"
    p.write_bytes(p.read_bytes()[:-20])


def _empty_file(root):
    (root / "data" / "stats.parquet").write_bytes(b"")


def _directory_without_parquet(root):
    (root / "data" / "stats.parquet").unlink()
    (root / "data" / "stats.parquet").mkdir()
    (root / "data" / "stats.parquet" / "_SUCCESS").write_text("")


def _directory_with_one_bad_file(root):
    d = root / "data" / "stats_dir"
    d.mkdir()
    pq.write_table(stats_table([1], [T0]), d / "part-0.parquet")
    (d / "part-1.parquet").write_bytes(b"not parquet at all")
    defs = root / "defs.yaml"
    defs.write_text(defs.read_text().replace("data/stats.parquet", "data/stats_dir"))


def _missing_column(root):
    _write(root, stats_table([1], [T0]).drop(["b"]))


def _wrong_type(root):
    _write(root, stats_table([1], [T0], a=pa.array(["many"])))


def _timestamp_as_string(root):
    _write(root, stats_table([1], [T0], ts=pa.array([T0.isoformat()])))


def _key_as_string(root):
    _write(root, stats_table([1], [T0], driver_id=pa.array(["1"])))


def _uint64_overflow(root):
    _write(root, stats_table([1], [T0], a=pa.array([2**63 + 5], pa.uint64())))


SOURCE_ERRORS = [
    # (id, breaks the source, substrings of the SourceDataError)
    ("missing-file", _missing, ["stats.parquet", "no such file or directory"]),
    ("corrupt-file", _corrupt, ["stats.parquet", "Parquet"]),
    ("truncated-file", _truncated, ["stats.parquet", "Parquet"]),
    ("empty-file", _empty_file, ["stats.parquet", "Parquet"]),
    ("directory-without-parquet-files", _directory_without_parquet, ["stats.parquet", "holds no Parquet files"]),
    ("one-bad-file-in-a-directory", _directory_with_one_bad_file, ["part-1.parquet", "not a readable Parquet file"]),
    ("missing-column", _missing_column, ["feature 'b' needs column 'b' (float64)", "does not have", "columns are:"]),
    ("wrong-column-type", _wrong_type, ["feature 'a' declares int64", "column 'a' of data/stats.parquet has type string"]),
    ("timestamp-column-as-string", _timestamp_as_string, ["timestamp field declares a timestamp",
                                                          "column 'ts' of data/stats.parquet has type string"]),
    ("key-column-as-string", _key_as_string, ["join key 'driver_id' declares int64",
                                              "column 'driver_id' of data/stats.parquet has type string"]),
    ("uint64-value-beyond-int64", _uint64_overflow, ["column 'a'", "cannot be read as int64"]),
]


@pytest.mark.parametrize("breaks,needles", [c[1:] for c in SOURCE_ERRORS], ids=[c[0] for c in SOURCE_ERRORS])
def test_source_error_records_nothing(sqlite_repo, breaks, needles):
    with FeatureStore(sqlite_repo) as store:
        store.materialize_incremental(T0 - timedelta(days=1), views=["stats"], progress=False)
        mark = store.materialization_state()["stats"]
    breaks(sqlite_repo)
    with FeatureStore(sqlite_repo) as store:
        if breaks is _directory_with_one_bad_file:  # the source now points at the directory: apply checks it
            with pytest.raises(DefinitionError) as info:
                store.apply()
        else:
            with pytest.raises(SourceDataError) as info:
                store.materialize_incremental(END, views=["stats"], progress=False)
        assert isinstance(info.value, ValueError)
        assert all(n in str(info.value) for n in needles), str(info.value)
        assert store.materialization_state()["stats"] == mark  # the watermark did not move
        res = store.get_online_features(features=["stats:a"], entities={"driver_id": [1, 2, 3]})
        assert (res.statuses == FieldStatus.NOT_FOUND).all()  # and nothing was written


def _materialize(repo, table, start=None, end=END):
    _write(repo, table)
    with FeatureStore(repo) as store:
        report = store.materialize(start, end, views=["stats"], progress=False)
        return store, report


def test_rule_null_entity_keys_are_skipped_and_counted(sqlite_repo):
    t = stats_table([1, 2, 3], [T0] * 3, driver_id=pa.array([1, None, 3], pa.int64()))
    store, report = _materialize(sqlite_repo, t)
    assert report.views[0].skipped_null_keys == 1 and report.views[0].entities == 2
    with store:
        assert store.get_online_features(features=["stats:a"], entities={"driver_id": [1, 3]}).to_dict()["a"] == [10, 30]


def test_rule_duplicate_keys_latest_event_then_created_then_last_row_wins(sqlite_repo):
    t1, t2 = T0, T0 + timedelta(minutes=1)
    t = stats_table([1, 1, 2, 2, 3, 3], [t1, t2, t2, t2, t1, t1],
                    created=pa.array([t1, t1, t1, t2, t1, t1], TS),
                    a=pa.array([100, 101, 200, 201, 300, 301], pa.int64()))
    store, report = _materialize(sqlite_repo, t)
    assert report.views[0].entities == 3
    with store:
        d = store.get_online_features(features=["stats:a"], entities={"driver_id": [1, 2, 3]}).to_dict()
        assert d["a"] == [101, 201, 301]  # later event; later created; last row


def test_rule_naive_timestamps_are_utc(tmp_path):
    naive = stats_table([1], [T0], ts=pa.array([T0.replace(tzinfo=None)], pa.timestamp("us")),
                        created=pa.array([T0.replace(tzinfo=None)], pa.timestamp("ms")))
    aware_other_zone = stats_table([1], [T0], ts=pa.array([T0], pa.timestamp("ns", tz="Asia/Kolkata")))
    got = []
    for i, table in enumerate([naive, aware_other_zone]):
        repo = build_repo(tmp_path / f"r{i}")
        # a window ending 1us after the event: naive read as UTC must fall inside it
        store, report = _materialize(repo, table, start=T0, end=T0 + timedelta(microseconds=1))
        with store:
            assert report.views[0].entities == 1
            got.append(store.get_online_features(features=["stats:a"], entities={"driver_id": [1]})
                       .event_timestamps["stats"][0])
    assert got[0] == got[1] == np.datetime64(T0.replace(tzinfo=None), "us")


def test_rule_rows_outside_the_window_are_not_written(sqlite_repo):
    start, end = T0, T0 + timedelta(minutes=10)
    t = stats_table([1, 2, 3, 4], [start - timedelta(microseconds=1), start, end - timedelta(microseconds=1), end])
    store, report = _materialize(sqlite_repo, t, start=start, end=end)
    with store:
        res = store.get_online_features(features=["stats:a"], entities={"driver_id": [1, 2, 3, 4]})
        assert res.status_names()["a"] == ["NOT_FOUND", "PRESENT", "PRESENT", "NOT_FOUND"]  # [start, end)
        assert store.materialization_state()["stats"].watermark == end


def test_rule_null_event_timestamps_fall_outside_every_window(sqlite_repo):
    t = stats_table([1, 2], [T0, T0], ts=pa.array([T0, None], TS))
    store, report = _materialize(sqlite_repo, t)
    assert report.views[0].entities == 1


@pytest.fixture(params=["sqlite", "aerospike"])
def any_store_repo(request, tmp_path):
    if request.param == "sqlite":
        yield build_repo(tmp_path / "repo")
        return
    srv = request.getfixturevalue("aerospike_server")
    yield build_repo(tmp_path / "repo", aerospike_config(srv.address))


def test_rule_nan_is_null_and_infinities_are_kept(any_store_repo):
    t = stats_table([1, 2, 3], [T0] * 3, b=pa.array([math.nan, math.inf, -math.inf]))
    store, _ = _materialize(any_store_repo, t)
    with store:
        res = store.get_online_features(features=["stats:b"], entities={"driver_id": [1, 2, 3]})
        assert res.status_names()["b"] == ["NULL_VALUE", "PRESENT", "PRESENT"]
        assert res.to_dict()["b"] == [None, math.inf, -math.inf]


def test_record_too_big_names_view_and_entity_and_keeps_the_watermark(tmp_path, aerospike_server):
    """The test server's namespace caps a record at 1 MiB, as Aerospike's default max-record-size."""
    repo = build_repo(tmp_path / "repo", aerospike_config(aerospike_server.address))
    with FeatureStore(repo) as store:
        store.materialize_incremental(T0 - timedelta(days=1), views=["stats"], progress=False)
        mark = store.materialization_state()["stats"]
        big = "x" * (1024 * 1024 + 1)
        _write(repo, stats_table([7, 8], [T0, T0], c=pa.array(["small", big])))
        with pytest.raises(RecordTooBigError) as info:
            store.materialize_incremental(END, views=["stats"], progress=False)
        msg = str(info.value)
        assert "view 'stats'" in msg and "entity key 8" in msg and "max-record-size" in msg
        assert store.materialization_state()["stats"] == mark
        with pytest.raises(RecordTooBigError, match="entity key 9"):  # the same through push
            store.push("stats", stats_table([9], [NOW], c=pa.array([big])))


def test_push_with_bad_columns_is_refused(sqlite_repo):
    with FeatureStore(sqlite_repo) as store:
        with pytest.raises(SourceDataError, match="column 'ts' is missing"):
            store.push("stats", {"driver_id": [1], "a": [1], "b": [0.5], "c": ["x"]})
        with pytest.raises(SourceDataError, match="column 'a' has type string"):
            store.push("stats", stats_table([1], [NOW], a=pa.array(["x"])))
        with pytest.raises(UserInputError, match="expected a pyarrow Table, a pandas DataFrame or a dict"):
            store.push("stats", [1, 2])
        # an int beyond int64 in a dict column (a JSON push too) was a bare OverflowError (a 500 from the server)
        with pytest.raises(SourceDataError, match="cannot build a table from the columns: .*too large"):
            store.push("stats", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                                 "a": [2**63], "b": [0.5], "c": ["x"]})
        with pytest.raises(ReferenceNotFoundError, match="did you mean 'stats'"):
            store.push("stat", stats_table([1], [NOW]))
        res = store.get_online_features(features=["stats:a"], entities={"driver_id": [1]})
        assert res.status_names()["a"] == ["NOT_FOUND"]


# ---------------------------------------------------------------------------------------------
# retrieval

E = {"driver_id": [1, 2]}
R = {"dist": [1.0, 2.0]}

RETRIEVAL_CASES = [
    # (id, get_online_features kwargs, error class, message substring)
    ("unknown-feature", dict(features=["stats:zz"], entities=E), ReferenceNotFoundError, "has no feature 'zz'"),
    ("unknown-view", dict(features=["stat:a"], entities=E), ReferenceNotFoundError, "did you mean 'stats'?"),
    ("unknown-service", dict(service="svcc", entities={**E, **R}), ReferenceNotFoundError, "did you mean 'svc'?"),
    ("ref-not-view-colon-feature", dict(features=["a"], entities=E), ReferenceNotFoundError, "view:feature"),
    ("ref-not-a-string", dict(features=[7], entities=E), ReferenceNotFoundError, "view:feature"),
    ("features-and-service", dict(features=["stats:a"], service="svc", entities=E), UserInputError, "exactly one"),
    ("no-features-at-all", dict(entities=E), UserInputError, "exactly one"),
    ("empty-feature-list", dict(features=[], entities=E), UserInputError, "empty"),
    ("feature-requested-twice", dict(features=["stats:a", "stats:*"], entities=E), UserInputError, "requested twice"),
    ("key-string-for-int64", dict(features=["stats:a"], entities={"driver_id": ["1"]}), EntityKeyError, "is int64"),
    ("key-float-for-int64", dict(features=["stats:a"], entities={"driver_id": [1.0]}), EntityKeyError, "is int64"),
    ("key-bool-for-int64", dict(features=["stats:a"], entities={"driver_id": [True]}), EntityKeyError, "is int64"),
    ("key-null", dict(features=["stats:a"], entities={"driver_id": [1, None]}), EntityKeyError, "None"),
    ("key-beyond-int64", dict(features=["stats:a"], entities={"driver_id": [2**63]}), EntityKeyError, "out of its range"),
    ("key-mixed-numpy-and-str", dict(features=["stats:a"], entities={"driver_id": [np.int64(1), "2"]}), EntityKeyError,
     "is int64; got '2'"),
    ("key-int-for-string", dict(features=["zone_stats:demand"], entities={"city": [1]}), EntityKeyError, "is string"),
    ("key-missing", dict(features=["stats:a"], entities={"driverid": [1]}), UserInputError,
     "column 'driverid', which is no join key or request feature of these features; did you mean 'driver_id'?"),
    ("string-as-key-column", dict(features=["zone_stats:demand"], entities={"city": "sfo"}), EntityKeyError,
     "must be a list of values"),
    ("scalar-as-key-column", dict(features=["stats:a"], entities={"driver_id": 5}), EntityKeyError,
     "must be a list of values"),
    ("columns-of-different-lengths", dict(features=["stats:a"], entities={"driver_id": [1, 2], "x": [1]}),
     EntityKeyError, "differ in length"),
    ("empty-entities", dict(features=["stats:a"], entities={}), EntityKeyError, "empty"),
    ("empty-key-column", dict(features=["stats:a"], entities={"driver_id": []}), EntityKeyError, "no entities"),
    ("empty-entity-rows", dict(features=["stats:a"], entity_rows=[]), EntityKeyError, "empty"),
    ("entity-rows-not-mappings", dict(features=["stats:a"], entity_rows=[1, 2]), EntityKeyError, "must be a mapping"),
    ("entity-rows-a-single-dict", dict(features=["stats:a"], entity_rows={"driver_id": 1}), EntityKeyError,
     "list of mappings"),
    ("entity-rows-with-other-keys", dict(features=["stats:a"], entity_rows=[{"driver_id": 1}, {"id": 2}]),
     UserInputError, "column 'id', which is no join key or request feature"),
    ("entity-row-without-its-key", dict(features=["stats:a"], entity_rows=[{"driver_id": 1}, {}]),
     EntityKeyError, "entity_rows[1] has no 'driver_id' (entity_rows[0] has it)"),
    ("unknown-request-key", dict(features=["stats:a", "req:*"], entities={"driver_id": [1], "dist": [1.0],
                                                                         "hours": [3]}),
     UserInputError, "column 'hours', which is no join key or request feature of these features; did you mean 'hour'?"),
    ("rows-and-columns", dict(features=["stats:a"], entities=E, entity_rows=[{"driver_id": 1}]), EntityKeyError,
     "exactly one"),
    ("above-the-batch-limit", dict(features=["stats:a"],
                                   entities={"driver_id": list(range(MAX_ENTITIES_PER_REQUEST + 1))}),
     UserInputError, f"the limit is {MAX_ENTITIES_PER_REQUEST}"),
    ("request-feature-missing", dict(service="svc", entities=E), RequestFeatureError, "missing request feature 'dist'"),
    ("request-feature-string", dict(service="svc", entities={**E, "dist": ["1.0", "2"]}), RequestFeatureError,
     "'dist' is float64"),
    ("request-feature-bool", dict(service="svc", entities={**E, "dist": [True, False]}), RequestFeatureError,
     "'dist' is float64"),
    ("request-feature-null-no-default", dict(service="svc", entities={**E, "dist": [1.0, None]}), RequestFeatureError,
     "null and has no default"),
    ("request-feature-fraction-for-int64", dict(service="svc", entities={**E, **R, "hour": [1.5, 2]}),
     RequestFeatureError, "'hour' is int64"),
    ("request-feature-scalar", dict(service="svc", entities={**E, "dist": 1.0}), EntityKeyError,
     "must be a list of values"),
    ("timeout-zero", dict(features=["stats:a"], entities=E, timeout_ms=0), UserInputError, "positive"),
    ("timeout-negative", dict(features=["stats:a"], entities=E, timeout_ms=-5), UserInputError, "positive"),
]


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory):
    repo = build_repo(tmp_path_factory.mktemp("served") / "repo")
    with FeatureStore(repo) as store:
        store.push("stats", stats_table([1, 2], [NOW, NOW]))
    return repo


@pytest.mark.parametrize("kwargs,error,needle", [c[1:] for c in RETRIEVAL_CASES], ids=[c[0] for c in RETRIEVAL_CASES])
def test_retrieval_case(served_repo, kwargs, error, needle):
    with FeatureStore(served_repo) as store:
        with pytest.raises(error) as info:
            store.get_online_features(**kwargs)
        assert isinstance(info.value, UserInputError) and isinstance(info.value, ValueError)
        assert needle in str(info.value), str(info.value)
        # the store is fine afterwards
        assert store.get_online_features(features=["stats:a"], entities=E).to_dict()["a"] == [10, 20]


OFFLINE_VIEW = """\
entities:
  - {name: driver, join_key: driver_id, dtype: int64}
sources:
  - {name: stats, path: data/stats.parquet, timestamp_field: ts}
  - {name: history, path: data/history.parquet, timestamp_field: ts}
feature_views:
  - {name: live, entity: driver, source: stats, ttl: 1d, features: [{name: a, dtype: int64}]}
  - {name: yearly, entity: driver, source: history, online: false, features: [{name: km, dtype: float64}]}
feature_services:
  - {name: mixed, features: ["live:a", "yearly:km"]}
"""


def test_an_offline_view_is_refused_by_online_reads(tmp_path):
    """`online: false` views have no online data: reading one failed inside the store (SQLite: `no such
    column`, a StoreError and a 500 from the server; Aerospike: NOT_FOUND forever)."""
    from tests.conftest import write_empty_sources, write_repo

    repo = write_repo(tmp_path / "offline", {"defs.yaml": OFFLINE_VIEW})
    write_empty_sources(repo)
    with FeatureStore(repo) as store:
        store.apply()
        for kwargs in (dict(features=["yearly:km"]), dict(service="mixed")):
            with pytest.raises(UserInputError, match="'yearly' is offline only \\(online: false\\)"):
                store.get_online_features(**kwargs, entities=E)
        with pytest.raises(UserInputError, match="'yearly' is offline only"):
            store.get_feature_vector("mixed", driver_id=1)
        assert store.get_online_features(features=["live:a"], entities=E).status_names() == {
            "a": ["NOT_FOUND", "NOT_FOUND"]}
        rows = {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC"))}
        training = store.get_historical_features(rows, service="mixed", event_timestamp_column="ts")
        assert training.column_names == ["driver_id", "ts", "a", "km"]  # training data reads it


def test_an_offline_view_is_neither_materialized_nor_pushed(tmp_path):
    """Naming an `online: false` view in `materialize --views` (or pushing to it) wrote into the online
    store: SQLite stopped half-way with `table ... has no column named km`, Aerospike wrote bins that
    online reads never serve."""
    from tests.conftest import write_empty_sources, write_repo

    repo = write_repo(tmp_path / "offline", {"defs.yaml": OFFLINE_VIEW})
    write_empty_sources(repo)
    with FeatureStore(repo) as store:
        store.apply()
        with pytest.raises(UserInputError, match="'yearly' is offline only \\(online: false\\): nothing to"):
            store.materialize(NOW - timedelta(days=1), NOW, views=["live", "yearly"], progress=False)
        with pytest.raises(UserInputError, match="'yearly' is offline only"):
            store.materialize_incremental(NOW, views=["yearly"], progress=False)
        with pytest.raises(UserInputError, match="'yearly' is offline only"):
            store.push("yearly", {"driver_id": [1], "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                                  "km": [1.0]})
        assert store.materialization_state() == {}  # nothing ran
        assert [v.view for v in store.materialize_incremental(NOW, progress=False).views] == ["live"]


def test_retrieval_rules(served_repo):
    with FeatureStore(served_repo) as store:
        # the batch limit itself is accepted
        res = store.get_online_features(features=["stats:a"],
                                        entities={"driver_id": list(range(MAX_ENTITIES_PER_REQUEST))})
        assert len(res) == MAX_ENTITIES_PER_REQUEST
        # numpy keys and a request feature's null with a default are fine
        d = store.get_online_features(service="svc", entities={"driver_id": np.array([1, 2]), **R,
                                                               "hour": [None, 3]}).to_dict()
        assert d["a"] == [10, 20] and d["hour"] == [12, 3]
        # an unknown entity is NOT_FOUND, served as the declared default
        d = store.get_online_features(features=["stats:a"], entities={"driver_id": [99]}).to_dict(include_statuses=True)
        assert d == {"a": [-1], "a__status": ["NOT_FOUND"]}
        # the single-vector path validates the same way
        with pytest.raises(EntityKeyError, match="is int64"):
            store.get_feature_vector("svc", driver_id="1", request={"dist": 1.0})
        with pytest.raises(EntityKeyError, match="did you mean"):
            store.get_feature_vector("svc", driverid=1, request={"dist": 1.0})
        with pytest.raises(RequestFeatureError, match="missing request feature 'dist'"):
            store.get_feature_vector("svc", driver_id=1)
        with pytest.raises(UserInputError, match="positive"):
            store.get_feature_vector("svc", driver_id=1, request={"dist": 1.0}, timeout_ms=0)
        with pytest.raises(UserInputError, match="c: text, bytes and list features"):  # no silent NaN for `c`
            store.get_feature_vector("svc", driver_id=1, request={"dist": 1.0})


# ---------------------------------------------------------------------------------------------
# model artifacts


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory):
    """A repo with a small logistic regression saved for service `svc`."""
    from sklearn.linear_model import LogisticRegression

    from fsplug.serving import save_model

    repo = build_repo(tmp_path_factory.mktemp("model") / "repo")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
    with FeatureStore(repo) as store:
        save_model(LogisticRegression().fit(x, y), repo / "data" / "model.joblib", store=store, service="svc")
    return repo


def _append_byte(model):
    with open(model, "ab") as fh:
        fh.write(b"\0")


def _sidecar_not_json(model):
    model.with_name(model.name + ".json").write_text("{ this is not json")


def _sidecar_list(model):
    model.with_name(model.name + ".json").write_text("[1, 2]")


def _sidecar_without_sha(model):
    side = model.with_name(model.name + ".json")
    data = json.loads(side.read_text())
    del data["sha256"]
    side.write_text(json.dumps(data))


def _sidecar_missing(model):
    model.with_name(model.name + ".json").unlink()


def _model_missing(model):
    model.unlink()


def _default_changed(model):
    repo = model.parent.parent
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("{name: a, dtype: int64, default: -1}", "{name: a, dtype: int64, default: 0}"))
    with FeatureStore(repo) as store:
        store.apply()


def _feature_dropped(model):
    repo = model.parent.parent
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("      - {name: c, dtype: string}\n", ""))
    with FeatureStore(repo) as store:
        store.apply()


MODEL_CASES = [
    # (id, what is done to the artifact, error class, message substrings)
    ("model-file-changed", _append_byte, ModelIntegrityError, ["changed or corrupted", "refusing to load"]),
    ("signature-not-json", _sidecar_not_json, ModelIntegrityError, ["unreadable", "refusing to load"]),
    ("signature-not-a-mapping", _sidecar_list, ModelIntegrityError, ["unreadable"]),
    ("signature-without-checksum", _sidecar_without_sha, ModelIntegrityError, ["records no sha256"]),
    ("signature-missing", _sidecar_missing, UserInputError, ["is missing", "train the model first"]),
    ("model-missing", _model_missing, UserInputError, ["is missing"]),
    ("feature-default-changed", _default_changed, ModelSignatureError, ["a: default -1 -> 0", "Retrain"]),
    ("feature-removed", _feature_dropped, ModelSignatureError, ["missing now: c"]),
]


@pytest.mark.parametrize("tamper,error,needles", [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_model_case(model_repo, tmp_path, monkeypatch, tamper, error, needles):
    import joblib

    from fsplug.serving import load_model

    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    model = repo / "data" / "model.joblib"
    tamper(model)
    loads = []
    real_load = joblib.load
    monkeypatch.setattr(joblib, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    with FeatureStore(repo) as store, pytest.raises(error) as info:
        load_model(model, store)
    assert all(n in str(info.value) for n in needles), str(info.value)
    if error is ModelIntegrityError:
        assert not loads  # refused before unpickling
