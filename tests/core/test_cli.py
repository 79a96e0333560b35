"""The `fsplug` command line: exit codes, output and errors without tracebacks."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from fsplug.cli import main
from tests.conftest import write_empty_sources
from datetime import UTC, datetime


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_apply_dump(ride_repo, capsys):
    (ride_repo / "data").mkdir()
    code, out, err = run(capsys, "--repo", str(ride_repo), "plan")
    assert code == 0
    assert "+ create feature view driver_stats" in out
    assert "warning" in err and "does not exist" in err

    code, out, err = run(capsys, "--repo", str(ride_repo), "apply")
    assert code == 1
    assert err.startswith("error: 2 problems in the feature repo:")
    assert "features/driver.yaml:10:11: source 'driver_stats_daily'" in err
    assert "Traceback" not in err
    assert not (ride_repo / "data" / "registry.json").exists()

    for name in ("driver_stats", "driver_activity"):
        (ride_repo / "data" / f"{name}.parquet").write_bytes(b"x")
    code, out, err = run(capsys, "--repo", str(ride_repo), "apply")  # files that are not Parquet
    assert code == 1 and "cannot be read as Parquet" in err and "features/driver.yaml:" in err

    write_empty_sources(ride_repo)
    code, out, _ = run(capsys, "--repo", str(ride_repo), "apply")
    assert code == 0 and "9 to create" in out and "created table dispatch-driver" in out

    code, out, _ = run(capsys, "--repo", str(ride_repo), "apply")
    assert code == 0 and out.startswith("No changes")

    code, out, _ = run(capsys, "--repo", str(ride_repo), "registry-dump")
    data = json.loads(out)
    assert data["project"] == "dispatch"
    assert {v["name"] for v in data["feature_views"]} == {"driver_stats", "driver_activity"}

    code, out, _ = run(capsys, "--repo", str(ride_repo), "plan", "--service", "decline_model_v1")
    assert code == 0 and "RetrievalPlan for service decline_model_v1" in out

    code, out, _ = run(capsys, "--repo", str(ride_repo), "plan", "--features",
                       "driver_stats:trips_30d,driver_activity:*")
    assert code == 0 and "6 declines_1h" not in out and "5 declines_1h" in out


def test_user_error_exit_1(ride_repo, capsys):
    code, _, err = run(capsys, "--repo", str(ride_repo), "registry-dump")
    assert code == 1 and "run `fsplug apply` first" in err


def test_usage_error_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["materialize", "yesterday", "now"])
    assert info.value.code == 2
    assert "is not an ISO-8601 time" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "fsplug.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("plan", "apply", "registry-dump", "materialize", "materialize-incremental", "get-online-features",
                "teardown"):
        assert cmd in out.stdout


def test_import_fsplug_is_light():
    code = ("import sys, fsplug, fsplug.store, fsplug.cli; fsplug.FeatureStore; fsplug.Predictor;"
            "bad = [m for m in ('aerospike', 'sklearn', 'pyarrow') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_materialize_serve_teardown(ride_repo, capsys, monkeypatch):
    from datetime import datetime

    from examples.generate_data import DRIVER_ID_BASE, generate

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    generate(ride_repo / "data", n_drivers=50, days=3, seed=2, end=end, offers_per_driver_day=0)
    repo = ["--repo", str(ride_repo)]
    assert run(capsys, *repo, "apply")[0] == 0
    code, out, err = run(capsys, *repo, "materialize", "2000-01-01", "now", "--views", "driver_stats", "--quiet")
    assert code == 0 and "driver_stats: 50 entities" in out and err == ""
    code, out, _ = run(capsys, *repo, "materialize-incremental", "now")
    assert code == 0 and "driver_activity:" in out and "driver_stats:" in out
    d = DRIVER_ID_BASE + 1
    code, out, _ = run(capsys, *repo, "get-online-features", "--features",
                       "driver_stats:trips_30d,driver_stats:tenure_days", "--entity", f"driver_id={d}",
                       "--entity", "driver_id=1")
    data = json.loads(out)
    assert code == 0 and data["driver_id"] == [d, 1]
    assert data["statuses"]["trips_30d"][1] == "NOT_FOUND" and data["trips_30d"][1] == 0
    assert data["statuses"]["tenure_days"][0] == "PRESENT" and isinstance(data["tenure_days"][0], int)
    code, out, err = run(capsys, *repo, "get-online-features", "--service", "decline_model_v1",
                         "--entity", f"driver_id={d}")
    assert code == 1 and "missing request feature 'pickup_distance_km'" in err
    code, out, _ = run(capsys, *repo, "get-online-features", "--service", "decline_model_v1",
                       "--entity", f"driver_id={d}", "--request", "pickup_distance_km=1.5",
                       "--request", "hour_of_day=8")
    assert code == 0 and json.loads(out)["pickup_distance_km"] == [1.5]
    code, _, err = run(capsys, *repo, "get-online-features", "--features", "driver_stats:trips_30d",
                       "--entity", "driver_id=abc")
    assert code == 1 and "driver_id is int64" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: nobody to ask
    code, _, err = run(capsys, *repo, "teardown")
    assert code == 1 and "--yes" in err
    code, out, _ = run(capsys, *repo, "teardown", "--yes")
    assert code == 0 and "dropped table dispatch-driver" in out
    # the state rows of the materialized views, not the published registry's rows counted as views
    assert "cleared the materialization state of project 'dispatch' (2 views) and its published registry" in out


# ---------------------------------------------------------------------------------------------
# what a Feast user reaches for: options anywhere, --version, list/describe, init, honest apply


def test_repo_option_goes_before_or_after_the_command(applied_ride_repo, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the repo: only --repo can find it
    for argv in (["--repo", str(applied_ride_repo), "plan"], ["plan", "--repo", str(applied_ride_repo)]):
        code, out, err = run(capsys, *argv)
        assert code == 0 and out.startswith("No changes"), (argv, out, err)


def test_version_and_a_description_for_every_command(capsys):
    from fsplug import __version__
    from fsplug.cli import build_parser

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"fsplug {__version__}"
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # argparse keeps subparsers here only
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) == set(sub.choices)
    for name, command in sub.choices.items():
        assert helps[name] and command.description and len(command.description) > len(helps[name]), name


def test_list_and_describe(applied_ride_repo, capsys):
    repo = str(applied_ride_repo)
    code, out, _ = run(capsys, "list", "views", "--repo", repo)
    assert code == 0 and out.splitlines()[0].startswith("driver_stats: entity driver, source driver_stats_daily, "
                                                        "7 features, ttl 2d")
    code, out, _ = run(capsys, "list", "sources", "--repo", repo, "--json")
    kinds = {(s["name"], s["kind"]) for s in json.loads(out)}
    assert ("driver_stats_daily", "source") in kinds and ("ride_request", "request source") in kinds
    code, out, _ = run(capsys, "describe", "driver_activity", "--repo", repo)
    assert code == 0 and out.startswith("feature view driver_activity")
    assert "hours_on_shift: dtype float64, bin da_shift_h, column hours_on_shift, default 0.0" in out
    assert "feature services: decline_model_v1" in out
    code, out, _ = run(capsys, "describe", "decline_model_v1", "--repo", repo, "--json")
    (svc,) = json.loads(out)
    assert svc["kind"] == "feature service" and svc["features"][-1] == "ride_request:*"
    code, _, err = run(capsys, "describe", "driver_stat", "--repo", repo)
    assert code == 1 and "did you mean 'driver_stats'" in err


def test_init_gives_a_repo_that_works_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "init", "starter")
    assert code == 0 and "Next: cd starter" in out
    repo = str(tmp_path / "starter")
    assert run(capsys, "apply", "--repo", repo)[0] == 0
    code, out, _ = run(capsys, "materialize-incremental", "now", "--repo", repo, "--quiet")
    assert code == 0 and "driver_hourly_stats: 5 entities" in out
    code, out, _ = run(capsys, "get-online-features", "--repo", repo, "--service", "driver_activity_v1",
                       "--entity", "driver_id=1001", "--entity", "driver_id=1005")
    data = json.loads(out)
    assert code == 0 and data["statuses"]["conv_rate"] == ["PRESENT", "PRESENT"]
    assert data["pickup_distance_km"] == [1.0, 1.0]  # the request feature's default
    code, _, err = run(capsys, "init", "starter")
    assert code == 1 and "already holds a feature repo" in err


def test_apply_says_whether_it_wrote_and_has_a_short_repr(applied_ride_repo, capsys):
    from fsplug.store import FeatureStore

    registry = applied_ride_repo / "data" / "registry.json"
    before = registry.stat().st_mtime_ns
    code, out, _ = run(capsys, "apply", "--repo", str(applied_ride_repo))
    assert code == 0 and out.startswith("No changes") and "is up to date (not rewritten)" in out
    assert " written to " not in out and registry.stat().st_mtime_ns == before
    res = FeatureStore(applied_ride_repo).apply()
    assert not res.written and len(repr(res)) < 120 and "project 'dispatch'" in repr(res)


def test_apply_with_an_online_registry_says_where_it_went(applied_ride_repo, capsys):
    """`registry: online` keeps no file: apply named a file `<repo>/online` that it never wrote."""
    cfg = applied_ride_repo / "feature_store.yaml"
    cfg.write_text(cfg.read_text().replace("registry: data/registry.json", "registry: online"))
    code, out, _ = run(capsys, "apply", "--repo", str(applied_ride_repo))
    db = applied_ride_repo / "data" / "online.db"
    assert code == 0 and f"in the online store {db} is up to date (not rewritten)" in out, out
    assert str(applied_ride_repo / "online") not in out and not (applied_ride_repo / "online").exists()
    (applied_ride_repo / "features" / "rider.yaml").write_text(
        "entities: [{name: rider, join_key: rider_id, dtype: int64}]\n")
    code, out, _ = run(capsys, "apply", "--repo", str(applied_ride_repo))
    assert code == 0 and f"published in the online store {db}" in out, out


@pytest.mark.parametrize("command", [["materialize", "2000-01-01", "now"], ["materialize-incremental", "now"],
                                     ["status"]])
def test_an_empty_views_list_is_a_usage_error_not_all_views(applied_ride_repo, capsys, command):
    """`--views "$VIEWS"` with VIEWS unset materialized every view: an empty list read as no list."""
    for empty in ("", ",", " , "):
        with pytest.raises(SystemExit) as info:
            main([*command, "--repo", str(applied_ride_repo), "--views", empty])
        assert info.value.code == 2
        assert "argument --views: " in (err := capsys.readouterr().err) and "names nothing" in err


def test_a_derived_view_named_for_materialize_is_said_to_be_one(applied_ride_repo, capsys):
    code, _, err = run(capsys, "materialize", "2000-01-01", "now", "--repo", str(applied_ride_repo),
                       "--views", "trip_context")
    assert code == 1 and "'trip_context' is a derived view" in err and "never stored" in err, err


@pytest.mark.parametrize("damage", [b"garbage{", b"", b"\xff\xfe"])
def test_an_unreadable_registry_file_is_rewritten_by_apply(applied_ride_repo, capsys, damage):
    """A truncated or corrupt registry file stopped plan and apply alike with "... is unreadable; run
    `fsplug apply` again", which failed the same way: the file had to be deleted by hand. apply (and
    plan) now compare with the registry apply last published in the online store."""
    registry = applied_ride_repo / "data" / "registry.json"
    registry.write_bytes(damage)
    code, out, err = run(capsys, "plan", "--repo", str(applied_ride_repo))
    assert code == 0 and out.startswith("No changes"), err
    code, out, err = run(capsys, "apply", "--repo", str(applied_ride_repo))
    assert code == 0 and out.startswith("No changes") and " written to " in out, err
    code, out, err = run(capsys, "list", "views", "--repo", str(applied_ride_repo))
    assert code == 0 and "driver_stats" in out, err


def test_only_definition_files_are_read(applied_ride_repo, capsys):
    """A copy of feature_store.yaml broke plan and apply (read as definitions); .fsplugignore skips more."""
    repo = applied_ride_repo
    (repo / "feature_store.sqlite.yaml").write_text((repo / "feature_store.yaml").read_text())
    (repo / "drafts").mkdir()
    (repo / "drafts" / "wip.yaml").write_text("entities: [{name: broken\n")  # not even YAML
    (repo / "features" / "old.yml").write_text("feature_views: [{name: nope}]\n")
    (repo / ".fsplugignore").write_text("drafts/\n*.yml\n!features/keep.yml\n")
    (repo / "features" / "keep.yml").write_text("entities: [{name: rider, join_key: rider_id, dtype: int64}]\n")
    code, out, err = run(capsys, "plan", "--repo", str(repo))
    assert code == 0, err
    assert out.splitlines()[0] == "+ create entity rider"  # keep.yml is read (negated), nothing else new
    (repo / ".fsplugignore").unlink()
    code, _, err = run(capsys, "plan", "--repo", str(repo))
    assert code == 1 and "drafts/wip.yaml" in err and "features/old.yml" in err
    assert "feature_store.sqlite.yaml" not in err  # never a definitions file


def test_a_project_change_is_shown_and_applied(applied_ride_repo, capsys):
    cfg = applied_ride_repo / "feature_store.yaml"
    cfg.write_text(cfg.read_text().replace("project: dispatch", "project: dispatch_v2"))
    code, out, _ = run(capsys, "plan", "--repo", str(applied_ride_repo))
    assert code == 0 and out.startswith("~ project: dispatch -> dispatch_v2"), out
    code, out, _ = run(capsys, "apply", "--repo", str(applied_ride_repo))
    assert code == 0 and "~ project: dispatch -> dispatch_v2" in out and " written to " in out
    code, out, _ = run(capsys, "plan", "--repo", str(applied_ride_repo))
    assert out.startswith("No changes")


def test_a_catalog_table_source_is_listed_described_and_diffed_by_its_table(applied_ride_repo, capsys):
    """No Spark needed to apply and list a `spark_table` source: `list` names its table, `describe` gives the
    one of `path` / `table` that applies, and `plan` shows the emptied one as (none) when a source switches."""
    repo = str(applied_ride_repo)
    drivers = applied_ride_repo / "features" / "driver.yaml"
    parquet = drivers.read_text()
    drivers.write_text(parquet.replace("    path: data/driver_stats.parquet\n",
                                       "    type: spark_table\n    table: lake.driver_stats\n"))
    code, out, _ = run(capsys, "plan", "--repo", repo)
    assert code == 0 and "    path: data/driver_stats.parquet -> (none)\n" in out, out
    assert "    table: (none) -> lake.driver_stats\n" in out
    assert run(capsys, "apply", "--repo", repo)[0] == 0
    code, out, _ = run(capsys, "list", "sources", "--repo", repo)
    assert code == 0 and ("driver_stats_daily: spark_table lake.driver_stats, event time event_timestamp"
                          in out.splitlines()[0]), out
    assert out.splitlines()[1].startswith("driver_activity_hourly: parquet data/driver_activity.parquet")
    code, out, _ = run(capsys, "describe", "driver_stats_daily", "--repo", repo, "--json")
    (table,) = json.loads(out)
    code, out, _ = run(capsys, "describe", "driver_activity_hourly", "--repo", repo, "--json")
    (parquet_source,) = json.loads(out)
    assert table["table"] == "lake.driver_stats" and "path" not in table
    assert parquet_source["path"] == "data/driver_activity.parquet" and "table" not in parquet_source
    drivers.write_text(parquet)
    code, out, _ = run(capsys, "plan", "--repo", repo)
    assert code == 0 and "    path: (none) -> data/driver_stats.parquet\n" in out, out


def test_times_are_read_as_utc_by_one_rule(capsys):
    """CLI times, materialize windows and stored state all go through `as_utc`: naive is UTC, an offset is
    converted, so the same instant gives the same datetime whichever way it was written."""
    from datetime import datetime, timedelta, timezone

    from fsplug.cli import _parse_time
    from fsplug.types import EPOCH, as_utc

    want = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    for text in ("2026-11-01T00:00:00", "2026-11-01T00:00:00Z", "2026-11-01T02:00:00+02:00",
                 "2026-10-31T19:00:00-05:00"):
        got = _parse_time(text)
        assert got == want and got.utcoffset() == timedelta(0), text
        assert str(got) == "2026-11-01 00:00:00+00:00", text
    aware = datetime(1970, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert as_utc(aware) == EPOCH and as_utc(aware).tzinfo is UTC
    assert as_utc(datetime(1970, 1, 1)) == EPOCH
    with pytest.raises(SystemExit) as info:  # past the last year once in UTC: a usage error, not a traceback
        main(["materialize", "2026-11-01", "9999-12-31T23:59:59-05:00"])
    assert info.value.code == 2 and "is not an ISO-8601 time" in capsys.readouterr().err


def test_get_online_features_prints_bytes_and_times_as_the_server_writes_them(tmp_path, capsys):
    """The values went through `default=str`: bytes as Python's repr ("b'\\\\x00\\\\xff'"), which no JSON
    reader can turn back into the bytes, and times as "2026-11-30 12:00:00+00:00"."""
    import pyarrow as pa

    from fsplug.store import FeatureStore
    from tests.conftest import write_repo

    repo = write_repo(tmp_path / "r", {"defs.yaml": """\
        entities: [{name: thing, join_key: thing_id, dtype: string}]
        sources: [{name: things, path: data/things.parquet, timestamp_field: ts}]
        feature_views:
          - {name: v, entity: thing, source: things, ttl: 0,
             features: [{name: raw, dtype: bytes}, {name: at, dtype: timestamp}]}
        """})
    write_empty_sources(repo)
    ts = pa.array([datetime(2026, 11, 30, 12, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    with FeatureStore(repo) as fs:
        fs.apply()
        fs.push("v", {"thing_id": ["a"], "ts": ts, "raw": pa.array([b"\x00\xff\x10"]), "at": ts})
    code, out, err = run(capsys, "get-online-features", "--repo", str(repo), "--features", "v:*",
                         "--entity", "thing_id=a")
    assert code == 0, err
    data = json.loads(out)
    assert data["raw"] == ["AP8Q"] and data["at"] == ["2026-11-30T12:00:00+00:00"]


def test_apply_from_a_folder_without_definitions_deletes_nothing(applied_ride_repo, capsys, tmp_path):
    """A serving host's folder holds only feature_store.yaml (`registry: online`); `fsplug apply` run there,
    as a Feast user runs `feast apply`, published an empty registry (every serving host swapped to it)
    and deleted every view's materialization state."""
    from fsplug.store import FeatureStore

    cfg = applied_ride_repo / "feature_store.yaml"
    cfg.write_text(cfg.read_text().replace("registry: data/registry.json", "registry: online")
                   .replace("path: data/online.db", f"path: {applied_ride_repo / 'data' / 'online.db'}"))
    assert run(capsys, "apply", "--repo", str(applied_ride_repo))[0] == 0
    host = tmp_path / "host"
    host.mkdir()
    (host / "feature_store.yaml").write_text(cfg.read_text())
    code, out, err = run(capsys, "apply", "--repo", str(host))
    assert code == 1 and "no definition files" in err and "fsplug teardown" in err, err
    with FeatureStore(host) as fs:
        assert "driver_stats" in fs.registry.feature_views


def test_clashing_output_names_are_answered_with_the_cli_flag(clashing_repo, capsys):
    """Two views' `x` in one service: the CLI said "use full_feature_names=True" (the Python argument);
    it names its own flag, which serves the outputs as view__feature."""
    repo = clashing_repo
    lookup = ["get-online-features", "--service", "both", "--entity", "driver_id=1"]
    for argv in (["plan", "--service", "both"], lookup):
        code, _, err = run(capsys, *argv, "--repo", str(repo))
        assert code == 1 and "use --full-feature-names (view__feature names)" in err, err
        code, out, err = run(capsys, *argv, "--full-feature-names", "--repo", str(repo))
        assert code == 0 and "a__x" in out and "b__x" in out, err
