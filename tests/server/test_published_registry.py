"""The registry published in the online store (`fsplug.registry.published`) and `registry: online`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fsplug.errors import RecordTooBigError, RegistryError
from fsplug.registry.published import (
    HASH_KEY,
    REGISTRY_KEY,
    decode,
    encode,
    load_published,
    publish,
    published_hash,
)
from fsplug.store import FeatureStore


def test_import_fsplug_does_not_import_the_server():
    code = (
        "import sys, fsplug, fsplug.store, fsplug.cli; fsplug.FeatureStore;"
        "bad = [m for m in ('fsplug.server', 'uvicorn', 'orjson', 'prometheus_client') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_apply_publishes_and_a_repo_less_host_reads_it(applied_ride_repo, tmp_path):
    with FeatureStore(applied_ride_repo) as fs:
        reg = fs.registry
        assert published_hash(fs.online_store) == reg.hash
        assert load_published(fs.online_store).to_json() == reg.to_json()
        assert publish(fs.online_store, reg) is False  # unchanged: not rewritten
        db = fs.online_store.path
        project = reg.project
    host = tmp_path / "host"
    host.mkdir()
    (host / "feature_store.yaml").write_text(
        f"project: {project}\nregistry: online\nonline_store:\n  type: sqlite\n  path: {db}\n"
    )
    with FeatureStore(host) as fs:
        assert fs.registry.hash == reg.hash
        assert fs.plan(service="decline_model_v1").names
    other = tmp_path / "other"
    other.mkdir()
    (other / "feature_store.yaml").write_text(
        f"project: someone_else\nregistry: online\nonline_store:\n  type: sqlite\n  path: {db}\n"
    )
    with FeatureStore(other) as fs, pytest.raises(RegistryError, match="no registry published"):
        _ = fs.registry  # another project's registry is not this one's


def test_encoding_round_trips_and_refuses_garbage(applied_ride_repo):
    with FeatureStore(applied_ride_repo) as fs:
        reg = fs.registry
    text = encode(reg)
    assert text.startswith("zlib:") and len(text) < len(reg.to_json())
    assert decode(text).hash == reg.hash
    with pytest.raises(RegistryError, match="unreadable"):
        decode("zlib:not-base64!")


def test_a_registry_too_big_for_a_record_says_what_to_do(applied_ride_repo):
    with FeatureStore(applied_ride_repo) as fs:
        store = fs.online_store
        real_write = store.write_state

        def too_big(view, text):
            if view == REGISTRY_KEY:
                raise RecordTooBigError("Aerospike write: record too big")
            real_write(view, text)

        store.write_state = too_big
        store.write_state(HASH_KEY, "old")
        with pytest.raises(RegistryError, match="shared registry file"):
            publish(store, fs.registry)
        assert published_hash(store) == "old"  # the hash is written only after the registry


def test_server_libraries_are_an_extra_that_the_test_extra_installs():
    import tomllib

    from tests.conftest import ROOT

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    names = {d.split(">")[0].split(";")[0].strip() for d in extras["server"]}
    assert {"uvicorn", "orjson", "prometheus_client"} <= names
    assert not names & {d.split(">")[0] for d in meta["dependencies"]}
    (self_ref,) = [d for d in extras["test"] if d.startswith("fsplug[")]
    assert "server" in self_ref[len("fsplug["):-1].split(",")


def test_teardown_removes_the_published_registry_and_apply_restores_it(applied_ride_repo):
    with FeatureStore(applied_ride_repo) as fs:
        h = fs.registry.hash
        fs.teardown()
        assert published_hash(fs.online_store) is None and load_published(fs.online_store) is None
        fs.apply()  # the file did not change, the store had lost it: published again
        assert published_hash(fs.online_store) == h


def test_apply_with_registry_online_keeps_no_file(ride_repo):
    from tests.conftest import write_empty_sources

    cfg = ride_repo / "feature_store.yaml"
    cfg.write_text(
        "project: only_online\nregistry: online\nonline_store:\n  type: sqlite\n  path: data/online.db\n"
    )
    write_empty_sources(ride_repo)
    with FeatureStore(ride_repo) as fs:
        first = fs.apply()
        assert first.written
        again = fs.apply()
        assert not again.written and not again.diff  # the registry read back from the store is the same
        h = fs.registry.hash
    assert not (ride_repo / "online").exists() and not (ride_repo / "data" / "registry.json").exists()
    with FeatureStore(ride_repo) as fs:
        assert fs.registry.hash == h and published_hash(fs.online_store) == h


def test_metric_dirs_of_gone_servers_are_removed_at_start(tmp_path, monkeypatch):
    import tempfile

    from fsplug.server import _remove_stale_metric_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=False)
    gone = tmp_path / f"fsplug-metrics-{int(proc.stdout)}-abc"
    alive = tmp_path / f"fsplug-metrics-{os.getppid()}-def"
    other = tmp_path / "fsplug-metrics-notapid"
    for d in (gone, alive, other):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"x")
    _remove_stale_metric_dirs()
    assert not gone.exists() and alive.exists() and other.exists()
