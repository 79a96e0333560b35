"""Every bad input to a feature repo gets a located, specific error (table-driven), and nothing is written."""

from __future__ import annotations

import pytest

from fsplug.errors import DefinitionError
from fsplug.store import FeatureStore
from tests.conftest import write_empty_sources

ENTITY = """\
entities:
  - name: driver
    join_key: driver_id
    dtype: int64
"""
SOURCE = """\
sources:
  - name: stats
    path: data/stats.parquet
    timestamp_field: event_timestamp
"""


PATH = "    path: data/stats.parquet\n"
TABLE = "    type: spark_table\n    table: lake.stats\n"


def view(features: str = "      - {name: trips, dtype: int64}\n", extra: str = "", name: str = "driver_stats") -> str:
    return (
        "feature_views:\n"
        f"  - name: {name}\n"
        "    entity: driver\n"
        "    source: stats\n"
        "    ttl: 2d\n"
        f"{extra}"
        "    features:\n"
        f"{features}"
    )


GOOD = ENTITY + SOURCE + view()

# (id, files, expected "file:line:col" prefix, substrings the message must contain)
CASES = [
    ("yaml-syntax", {"defs.yaml": "entities:\n  - name: driver\n    join_key: [driver_id\n"},
     "defs.yaml:4:1", ["YAML syntax error"]),
    ("tab-indent", {"defs.yaml": "entities:\n\t- name: driver\n"},
     "defs.yaml:2:1", ["YAML syntax error", "tabs"]),
    ("duplicate-key", {"defs.yaml": "entities:\n  - name: driver\n    join_key: driver_id\n    name: rider\n"},
     "defs.yaml:4:5", ["duplicate key 'name'", "line 2"]),
    ("unknown-top-level", {"defs.yaml": GOOD + "feature_veiws: []\n"},
     "defs.yaml:16:1", ["unknown top-level key 'feature_veiws'", "did you mean 'feature_views'?"]),
    ("unknown-field", {"defs.yaml": ENTITY + "    descripton: x\n"},
     "defs.yaml:5:5", ["unknown field 'descripton'", "did you mean 'description'?"]),
    ("unknown-field-no-hint", {"defs.yaml": ENTITY + "    colour: x\n"},
     "defs.yaml:5:5", ["unknown field 'colour'", "allowed: name, join_key"]),
    ("missing-required", {"defs.yaml": "sources:\n  - name: stats\n    timestamp_field: ts\n"},
     "defs.yaml:2:5", ["required field 'path' is missing"]),
    ("list-for-map", {"defs.yaml": "entities:\n  - [driver, driver_id]\n"},
     "defs.yaml:2:5", ["expected a mapping"]),
    ("map-for-list", {"defs.yaml": "entities:\n  name: driver\n"},
     "defs.yaml:2:3", ["entities must be a list"]),
    ("unknown-dtype", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: flaot64}\n")},
     "defs.yaml:15:30", ["features[0].dtype", "unknown dtype 'flaot64'", "allowed: int64"]),
    ("feast-dtype-name", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: Int64}\n")},
     "defs.yaml:15:30", ["unknown dtype 'Int64'", "did you mean 'int64'?"]),
    ("feast-timestamp-name", {"defs.yaml": ENTITY + SOURCE + view("      - {name: t, dtype: UnixTimestamp}\n")},
     "defs.yaml:15:26", ["unknown dtype 'UnixTimestamp'", "did you mean 'timestamp'?"]),
    ("flow-style-list-dtype", {"defs.yaml": ENTITY + SOURCE + view("      - {name: emb, dtype: list[float64]}\n")},
     "defs.yaml:15:32", ["YAML syntax error", "quote the value", 'dtype: "list[float64]"']),
    ("ttl-without-unit", {"defs.yaml": ENTITY + SOURCE + view().replace("ttl: 2d", "ttl: 24")},
     "defs.yaml:13:10", ["ttl 24 has no unit", "24h"]),
    ("quoted-ttl-without-unit", {"defs.yaml": ENTITY + SOURCE + view().replace("ttl: 2d", "ttl: '90'")},
     "defs.yaml:13:10", ["has no unit", "90s"]),
    ("bad-join-key-dtype", {"defs.yaml": "entities:\n  - name: driver\n    join_key: driver_id\n    dtype: float64\n"},
     "defs.yaml:4:12", ["join key dtype must be int64 or string", "float64"]),
    ("unknown-entity", {"defs.yaml": ENTITY + SOURCE + view().replace("entity: driver", "entity: drivr")},
     "defs.yaml:11:13", ["unknown entity 'drivr'", "did you mean 'driver'?"]),
    ("unknown-source", {"defs.yaml": ENTITY + SOURCE + view().replace("source: stats", "source: stat")},
     "defs.yaml:12:13", ["unknown source 'stat'", "did you mean 'stats'?"]),
    ("bin-too-long", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, bin: ds_acceptance_rate_7d}\n")},
     "defs.yaml:15:42", ["bin 'ds_acceptance_rate_7d' is 21 bytes; Aerospike allows 15"]),
    ("bin-too-long-utf8", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, bin: \"ééééééééé\"}\n")},
     "defs.yaml:15:42", ["is 18 bytes; Aerospike allows 15"]),
    ("bin-bad-chars", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, bin: \"trips.30d\"}\n")},
     "defs.yaml:15:42", ["bin 'trips.30d' may use only"]),
    ("feature-name-needs-bin", {"defs.yaml": ENTITY + SOURCE + view("      - {name: acceptance_rate_30d, dtype: float64}\n")},
     "defs.yaml:15:9", ["'acceptance_rate_30d' is 19 bytes", "set `bin:` explicitly"]),
    ("reserved-bin", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, bin: _ts_x}\n")},
     "defs.yaml:15:42", ["reserved for fsplug's timestamp bins"]),
    ("bin-collision-same-view", {"defs.yaml": ENTITY + SOURCE + view(
        "      - {name: trips, dtype: int64, bin: t}\n      - {name: trips2, dtype: int64, bin: t}\n")},
     "defs.yaml:16:43", ["bin 't' of feature driver_stats:trips2 is already used by feature driver_stats:trips"]),
    ("bin-collision-across-views", {"a.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, bin: t}\n"),
                                     "b.yaml": view("      - {name: rides, dtype: int64, bin: t}\n", name="other")},
     "b.yaml:7:42", ["bin 't' of feature other:rides is already used by feature driver_stats:trips (a.yaml:15)",
                     "share one record"]),
    ("set-name-too-long", {"defs.yaml": "entities:\n  - name: " + "d" * 64 + "\n    join_key: id\n    dtype: int64\n"},
     "defs.yaml:2:11", ["is 64 bytes", "allows 63"]),
    ("bad-ttl", {"defs.yaml": ENTITY + SOURCE + view().replace("ttl: 2d", "ttl: 2 days")},
     "defs.yaml:13:10", ["bad ttl '2 days'", "30s, 15m"]),
    ("default-wrong-type", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, default: lots}\n")},
     "defs.yaml:15:9", ["default 'lots' does not fit dtype int64"]),
    ("default-bool-for-int", {"defs.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int64, default: true}\n")},
     "defs.yaml:15:9", ["default True does not fit dtype int64"]),
    ("empty-service", {"defs.yaml": GOOD + "feature_services:\n  - name: svc\n    features: []\n"},
     "defs.yaml:18:15", ["needs at least one feature ref"]),
    ("service-unknown-view", {"defs.yaml": GOOD + "feature_services:\n  - name: svc\n    features: [driver_stat:trips]\n"},
     "defs.yaml:18:16", ["unknown feature view 'driver_stat'", "did you mean 'driver_stats'?"]),
    ("service-unknown-feature", {"defs.yaml": GOOD + "feature_services:\n  - name: svc\n    features: [driver_stats:trip]\n"},
     "defs.yaml:18:16", ["has no feature 'trip'", "did you mean 'trips'?"]),
    ("service-bad-ref", {"defs.yaml": GOOD + "feature_services:\n  - name: svc\n    features: [trips]\n"},
     "defs.yaml:18:16", ["must look like 'view:feature'"]),
    ("duplicate-across-files", {"a.yaml": ENTITY, "b.yaml": ENTITY},
     "b.yaml:2:11", ["duplicate entity name 'driver'", "already defined at a.yaml:2"]),
    ("duplicate-feature", {"defs.yaml": ENTITY + SOURCE + view(
        "      - {name: trips, dtype: int64}\n      - {name: trips, dtype: int64, bin: t2}\n")},
     "defs.yaml:16:16", ["duplicate feature name 'trips'"]),
    ("empty-view", {"defs.yaml": ENTITY + SOURCE + view("      []\n").replace("    features:\n      []", "    features: []")},
     "defs.yaml:14:15", ["at least one feature"]),
    ("bad-name", {"defs.yaml": "entities:\n  - name: driver-id\n    join_key: id\n"},
     "defs.yaml:2:11", ["entity name 'driver-id' must start with a letter"]),
    ("source-path-missing", {"defs.yaml": GOOD},
     "defs.yaml:7:11", ["source 'stats': path 'data/stats.parquet' does not exist"]),
    ("source-path-escapes", {"defs.yaml": GOOD.replace("data/stats.parquet", "../../etc/passwd")},
     "defs.yaml:7:11", ["escapes the feature repo"]),
    ("table-source-with-path", {"defs.yaml": GOOD.replace(PATH, TABLE + PATH)},
     "defs.yaml:6:5", ["sources[0]: a spark_table source takes `table:`, not `path:`"]),
    ("table-source-without-table", {"defs.yaml": GOOD.replace(PATH, "    type: spark_table\n")},
     "defs.yaml:6:5", ["required field 'table' is missing (a spark_table source reads its table)"]),
    ("table-source-bad-name", {"defs.yaml": GOOD.replace(PATH, TABLE.replace("lake.stats", "lake.stats-v2"))},
     "defs.yaml:8:12", ["table 'lake.stats-v2' must be a Spark catalog table name: `name`, `db.name`"]),
    ("parquet-source-with-table", {"defs.yaml": GOOD.replace(PATH, PATH + "    table: lake.stats\n")},
     "defs.yaml:6:5", ["a parquet source takes `path:`, not `table:` (or set `type: spark_table`)"]),
    ("unknown-source-type", {"defs.yaml": GOOD.replace(PATH, "    type: delta\n" + PATH)},
     "defs.yaml:7:11", ["sources[0].type", "'parquet' or 'spark_table'"]),
]


@pytest.mark.parametrize("files,where,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_located_and_explained(make_repo, files, where, needles):
    repo = make_repo(files)
    store = FeatureStore(repo)
    with pytest.raises(DefinitionError) as info:
        store.apply()
    messages = [str(p) for p in info.value.problems]
    match = [m for m in messages if m.startswith(where + ":")]
    assert match, f"no problem at {where}; got {messages}"
    assert all(any(n in m for m in match) for n in needles), f"{needles} not in {match}"
    assert isinstance(info.value, ValueError)  # user-input errors are ValueErrors too
    # nothing was written when validation failed
    assert not (repo / "data" / "registry.json").exists()
    assert not (repo / "data" / "online.db").exists()


def test_all_problems_reported_at_once(make_repo):
    repo = make_repo({
        "a.yaml": ENTITY + SOURCE + view("      - {name: trips, dtype: int65}\n"),
        "b.yaml": "feature_services:\n  - name: svc\n    features: [nope:x]\n",
        "c.yaml": "entities: [\n",
    })
    with pytest.raises(DefinitionError) as info:
        FeatureStore(repo).changes()
    files = {p.file for p in info.value.problems}
    assert files == {"a.yaml", "b.yaml", "c.yaml"}
    assert str(info.value).startswith("3 problems in the feature repo:")


CASCADE = """\
entities:
  - {name: merchant, join_key: merchant_id, dtype: int64, colour: red}
sources:
  - {name: merchants, path: data/m.parquet, timestamp_field: ts, colour: red}
feature_views:
  - name: profile
    entity: merchant
    source: merchants
    ttl: 24
    features:
      - {name: mcc, dtype: int64}
  - name: other
    entity: merchant
    source: merchants
    ttl: 1d
    features:
      - {name: rate, dtype: float64}
request_sources:
  - name: req
    features:
      - {name: amount, dtype: flot64}
derived_views:
  - name: ctx
    inputs: [profile, req]
    features:
      - {name: m1, dtype: int64, expr: "mcc + 1"}
      - {name: a2, dtype: float64, expr: "amount * 2"}
      - {name: bad, dtype: int64, expr: "nope + 1"}
feature_services:
  - {name: svc, features: ["profile:mcc", "req:amount", "ctx:*", "other:rat"]}
"""


def test_an_invalid_object_is_reported_once_not_as_unknown_where_it_is_used(make_repo):
    """An object with problems of its own (an unknown field, a bad ttl or dtype) was also reported as
    unknown wherever it was named ("unknown source 'merchants'", "unknown input 'profile'; did you
    mean ...", "unknown name 'mcc'", "unknown feature view 'req'"), though it is defined a few lines
    up. Only its own problems are reported now, and the problems that do not depend on it."""
    repo = make_repo({"defs.yaml": CASCADE})
    with pytest.raises(DefinitionError) as info:
        FeatureStore(repo).changes()
    messages = [str(p) for p in info.value.problems]
    assert not [m for m in messages if "unknown entity" in m or "unknown source" in m or "unknown input" in m
                or "unknown feature view" in m or "unknown name 'mcc'" in m or "unknown name 'amount'" in m]
    assert [m.split(": ", 1)[0] for m in messages] == [
        "defs.yaml:2:59", "defs.yaml:4:66", "defs.yaml:9:10", "defs.yaml:21:31", "defs.yaml:28:42", "defs.yaml:30:66"]
    assert "unknown field 'colour' in entities[0]" in messages[0] and "ttl 24 has no unit" in messages[2]
    assert "unknown name 'nope'" in messages[4]  # (a problem of its own: still reported)
    assert "has no feature 'rat'; did you mean 'rate'?" in messages[5]


def test_plan_warns_about_missing_source_but_apply_refuses(make_repo):
    repo = make_repo({"defs.yaml": GOOD})
    store = FeatureStore(repo)
    d, warnings = store.changes()
    assert any("does not exist" in w and "warning" in w for w in warnings)
    assert [c.name for c in d.of("feature_views", "create")] == ["driver_stats"]
    with pytest.raises(DefinitionError):
        store.apply()


def test_bad_feature_store_yaml(make_repo):
    repo = make_repo({}, config="project: x\nonline_store:\n  type: sqlit\n")
    with pytest.raises(DefinitionError) as info:
        FeatureStore(repo).changes()
    msg = str(info.value)
    assert "feature_store.yaml:3:9" in msg and "did you mean 'sqlite'?" in msg


@pytest.mark.parametrize("project", ["-rank", "1st", "Rängé", "a.b"])
def test_a_bad_project_name_says_the_rule(make_repo, project):
    """The rule is a first letter or '_', then letters, digits, '_' and '-' (ASCII): '-rank' used to be
    refused with a message saying only "letters, digits, '_' and '-'", which it is made of."""
    repo = make_repo({}, config=f"project: {project}\nonline_store:\n  type: sqlite\n")
    with pytest.raises(DefinitionError, match=r"feature_store.yaml:1:10: .*must start with an ASCII letter or '_', "
                                              r"then ASCII letters, digits, '_' and '-'"):
        FeatureStore(repo).changes()


def test_bad_store_option_is_located(make_repo):
    repo = make_repo({}, config="project: x\nonline_store:\n  type: sqlite\n  pth: a.db\n")
    with pytest.raises(DefinitionError) as info:
        FeatureStore(repo).changes()
    assert "feature_store.yaml:4:3: unknown field 'pth' in online_store" in str(info.value)
    assert "did you mean 'path'?" in str(info.value)


def test_missing_feature_store_yaml(tmp_path):
    from fsplug.errors import ConfigError

    with pytest.raises(ConfigError, match="not a feature repo"):
        FeatureStore(tmp_path).changes()


def test_yaml_alias_bomb_is_refused(make_repo):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    repo = make_repo({"defs.yaml": bomb})
    with pytest.raises(DefinitionError, match="too many YAML nodes"):
        FeatureStore(repo).changes()


def test_symlinked_data_inside_the_repo_is_allowed(make_repo, tmp_path):
    elsewhere = tmp_path / "big_disk"
    elsewhere.mkdir()
    repo = make_repo({"defs.yaml": GOOD})
    (repo / "data").symlink_to(elsewhere, target_is_directory=True)
    write_empty_sources(repo)  # written through the symlink
    assert (elsewhere / "stats.parquet").is_file()
    FeatureStore(repo).apply()  # the user's own symlink is followed; only '..' escapes are refused


@pytest.mark.parametrize("seconds", [None, 1, 59, 60, 90, 3600, 5400, 86400, 90061, 172800, 604800, 694861, 10**9])
def test_a_ttl_is_shown_as_yaml_writes_it(seconds):
    """`fsplug list views` printed `ttl 86400s` for a view whose YAML says `ttl: 1d`: every place that
    shows a ttl writes it in YAML's units, the form parse_ttl reads back to the same seconds."""
    from fsplug.types import format_ttl, parse_ttl

    text = format_ttl(seconds)
    assert parse_ttl(text) == seconds
    assert seconds is None or seconds < 60 or not text.endswith(f"{seconds}s")
