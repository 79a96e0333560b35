"""Security: safe YAML, JSON registry, no unpickling of unverified files, secrets kept out of every
output, paths confined to the repo, no shell, and a test server that listens on loopback only."""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import traceback
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fsplug.errors import ConfigError, DefinitionError, RegistryError, StoreError
from fsplug.registry import RegistryStore
from fsplug.store import FeatureStore

from .conftest import SQLITE_CONFIG, UTC, aerospike_config, build_repo, stats_table

ROOT = Path(__file__).resolve().parents[2]
FSPLUG = ROOT / "fsplug"

# ---------------------------------------------------------------------------------------------
# YAML, registry, model files


@pytest.mark.parametrize("where", ["defs.yaml", "feature_store.yaml"])
def test_yaml_tags_that_would_run_code_are_refused_and_never_run(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    repo = build_repo(tmp_path / "repo", apply=False)
    if where == "defs.yaml":
        (repo / "defs.yaml").write_text(f"entities:\n  - name: {payload}\n    join_key: id\n")
    else:
        (repo / "feature_store.yaml").write_text(f"project: {payload}\n")
    with pytest.raises(DefinitionError, match="YAML tag '!!python/object/apply:os.system' is not allowed"):
        FeatureStore(repo).apply()
    assert not marker.exists()


def _sources(package: Path) -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(package.rglob("*.py"))]


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_fsplug_never_unpickles_evaluates_or_shells_out():
    """Static check of every module: no unsafe YAML loader, no pickle/marshal, no eval/exec, no shell."""
    problems = []
    for path, tree in _sources(FSPLUG):
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                unpicklers = ("pickle", "marshal", "shelve", "dill", "cloudpickle")
                if any((n or "").split(".")[0] in unpicklers for n in names):
                    problems.append(f"{rel}:{node.lineno}: imports {names}")
        for node, owner, name in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if name in ("eval", "exec") and not owner:
                problems.append(f"{where}: {name}()")
            if owner == "os" and name in ("system", "popen") or name in ("getoutput", "getstatusoutput"):
                problems.append(f"{where}: {owner}.{name}()")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                problems.append(f"{where}: shell=...")
            if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "full_load_all"):
                problems.append(f"{where}: yaml.{name}()")
            if owner == "joblib" and name == "load" and "serving.py" not in str(rel):
                problems.append(f"{where}: joblib.load outside serving.py")
    assert not problems, problems


def test_subprocesses_are_argument_lists_built_from_fixed_parts():
    """The only subprocess in fsplug starts the test server: sys.executable and options, no shell."""
    for path, tree in _sources(FSPLUG):
        for node, owner, name in _calls(tree):
            if owner == "subprocess":
                assert path.name == "remote.py" and name == "Popen", f"{path}:{node.lineno}"
                assert isinstance(node.args[0], ast.Name) and node.args[0].id == "cmd"


def test_registry_is_json_and_anything_else_is_refused(applied_ride_repo):
    path = applied_ride_repo / "data" / "registry.json"
    data = json.loads(path.read_text())
    assert data["format"] == 1 and "online_store" not in data  # store settings never enter the registry
    path.write_bytes(pickle.dumps({"format": 1}))
    with pytest.raises(RegistryError, match="unreadable"):
        RegistryStore(path).load()


def test_model_checksum_is_integrity_not_authenticity(tmp_path):
    """The sha256 sidecar catches a changed or corrupted file; someone who can rewrite both files
    can still ship a model, which is why a joblib file must come from a trusted author (README)."""
    import hashlib

    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from fsplug.serving import load_model, save_model

    repo = build_repo(tmp_path / "repo")
    x = np.random.default_rng(0).normal(size=(50, 5))
    y = (x[:, 0] > 0).astype(int)
    with FeatureStore(repo) as store:
        art = save_model(LogisticRegression().fit(x, y), tmp_path / "m.joblib", store=store, service="svc")
        other = LogisticRegression(C=0.01).fit(x, 1 - y)
        joblib.dump(other, art.path)
        side = art.path.with_name(art.path.name + ".json")
        sig = json.loads(side.read_text())
        sig["sha256"] = hashlib.sha256(art.path.read_bytes()).hexdigest()
        side.write_text(json.dumps(sig))
        assert load_model(art.path, store).model.C == 0.01  # accepted: the checksum is not a signature
    readme = (ROOT / "README.md").read_text()
    assert "A joblib file can execute code when loaded" in readme
    assert "only load artifacts you produced" in (FSPLUG / "serving.py").read_text()


# ---------------------------------------------------------------------------------------------
# secrets

SECRETS = {
    "FSPLUG_REL_USER": "user-7f3Q-secret",
    "FSPLUG_REL_PASSWORD": "pw-Xk29-hunter2-secret",
    "FSPLUG_REL_KEYPW": "keypw-R8s1-secret",
}
CREDS = "  user_env: FSPLUG_REL_USER\n  password_env: FSPLUG_REL_PASSWORD\n"


def _leaks(text: str) -> list[str]:
    return [v for v in SECRETS.values() if v in text or v.lower() in text.lower()]


def _cli(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fsplug.cli", "--repo", str(repo), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


@pytest.fixture
def secrets_env(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)


def test_credentials_are_sent_but_never_printed(tmp_path, child_server, secrets_env):
    srv = child_server
    repo = build_repo(tmp_path / "repo", aerospike_config(srv.address), apply=True)  # registry without creds
    pq.write_table(stats_table([1], [datetime(2026, 1, 1, tzinfo=UTC)]), repo / "data" / "stats.parquet")
    cfg = repo / "feature_store.yaml"
    cfg.write_text(cfg.read_text() + CREDS)
    outputs = []
    for args in (["plan"], ["plan", "--service", "svc"], ["registry-dump"], ["apply"],
                 ["get-online-features", "--features", "stats:a", "--entity", "driver_id=1"],
                 ["materialize-incremental", "2026-01-02T00:00:00", "--quiet"], ["teardown", "--yes"]):
        p = _cli(repo, *args)
        outputs.append((args, p.returncode, p.stdout + p.stderr))
    assert [o[1] for o in outputs[:3]] == [0, 0, 0], outputs[:3]
    for args, code, text in outputs[3:]:  # every command that connects fails: the server has no security
        assert code == 1 and "no security (access control) enabled" in text, (args, text)
    assert srv.stats.get("security", 0) >= 1  # the credentials were presented to the server
    for args, _, text in outputs:
        assert not _leaks(text), (args, text)
    # the same through the Python API: the exception, its traceback, the store's state
    with FeatureStore(repo) as store:
        with pytest.raises(StoreError) as info:
            store.get_online_features(features=["stats:a"], entities={"driver_id": [1]})
        assert not _leaks(_exception_text(info.value))
        online = store.online_store
        assert not _leaks(repr(online.config) + repr(vars(online)) + repr(store.config.store))
    assert not _leaks((repo / "data" / "registry.json").read_text())


def test_secrets_stay_out_of_connection_failures_and_driver_logs(tmp_path, secrets_env):
    """A refused connect and a TLS setup failure, with the driver's own log at TRACE level."""
    free = _free_port()
    refused = build_repo(tmp_path / "refused", aerospike_config(f"127.0.0.1:{free}", CREDS), apply=False)
    tls = build_repo(tmp_path / "tls", aerospike_config(
        f"127.0.0.1:{free}", CREDS + f"  tls: {{cafile: {tmp_path / 'missing-ca.pem'}, keyfile_password_env: "
                                     "FSPLUG_REL_KEYPW}\n"), apply=False)
    code = textwrap.dedent("""
        import sys, traceback, aerospike
        logs = []
        aerospike.set_log_handler(lambda *a: logs.append(" ".join(map(str, a))))
        aerospike.set_log_level(aerospike.LOG_LEVEL_TRACE)
        from fsplug.store import FeatureStore
        for repo in sys.argv[1:]:
            try:
                FeatureStore(repo).apply()
            except Exception as exc:
                print("ERROR", type(exc).__name__, exc)
                traceback.print_exception(exc)
        print("\\n".join(logs))
        print("LOG LINES", len(logs))
    """)
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, str(refused), str(tls)], env=env, capture_output=True,
                       text=True, timeout=120, check=False)
    out = p.stdout + p.stderr
    assert "ERROR StoreUnavailableError" in out and "ERROR StoreError" in out and "CAFile" in out, out
    assert int(out.split("LOG LINES ")[1].split()[0]) > 0  # the driver did log at TRACE
    assert not _leaks(out), out


def test_missing_credential_variable_is_named_not_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("FSPLUG_REL_USER", SECRETS["FSPLUG_REL_USER"])
    monkeypatch.delenv("FSPLUG_REL_PASSWORD", raising=False)
    repo = build_repo(tmp_path / "repo", aerospike_config(f"127.0.0.1:{_free_port()}", CREDS), apply=False)
    with FeatureStore(repo) as store, pytest.raises(
            ConfigError, match="password_env names the environment variable FSPLUG_REL_PASSWORD, which is not set"
    ) as info:
        store.apply()
    assert not _leaks(_exception_text(info.value))


def test_a_secret_written_into_the_config_is_not_echoed(tmp_path):
    for extra in ("  password: " + SECRETS["FSPLUG_REL_PASSWORD"] + "\n",  # an unknown field
                  "  user_env: U\n  password_env: '" + SECRETS["FSPLUG_REL_PASSWORD"] + "'\n",  # the value, not a name
                  "  user_env: U\n  password_env: 4242424242\n"):
        repo = build_repo(tmp_path / "repo", aerospike_config("127.0.0.1:3000", extra), apply=False)
        with pytest.raises(DefinitionError) as info:
            FeatureStore(repo).changes()
        text = _exception_text(info.value)
        assert not _leaks(text) and "4242424242" not in text, text
        shutil.rmtree(repo)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# paths


@pytest.mark.parametrize("path", ["../outside.parquet", "data/../../outside.parquet",
                                  "data/x/../../../outside.parquet"])
def test_relative_paths_cannot_climb_out_of_the_repo(tmp_path, path):
    (tmp_path / "outside.parquet").write_bytes(b"")
    repo = build_repo(tmp_path / "repo", apply=False)
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("data/zone.parquet", path))
    with pytest.raises(DefinitionError, match="escapes the feature repo.*write an absolute path"):
        FeatureStore(repo).apply()
    assert not (repo / "data" / "registry.json").exists()


def test_rule_a_symlink_placed_inside_the_repo_is_followed(tmp_path):
    """The check is lexical: the user put the link there (e.g. data/ on a big disk), so it is theirs."""
    big_disk = tmp_path / "big_disk"
    big_disk.mkdir()
    repo = build_repo(tmp_path / "repo", apply=False)
    shutil.copy(repo / "data" / "zone.parquet", big_disk / "zone.parquet")
    (repo / "bulk").symlink_to(big_disk, target_is_directory=True)
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("data/zone.parquet", "bulk/zone.parquet"))
    with FeatureStore(repo) as store:
        assert store.apply().registry.sources["zone_src"].path == "bulk/zone.parquet"


def test_an_absolute_path_is_taken_as_written(tmp_path):
    outside = tmp_path / "elsewhere" / "zone.parquet"
    outside.parent.mkdir()
    repo = build_repo(tmp_path / "repo", apply=False)
    shutil.copy(repo / "data" / "zone.parquet", outside)
    defs = repo / "defs.yaml"
    defs.write_text(defs.read_text().replace("data/zone.parquet", str(outside)))
    with FeatureStore(repo) as store:
        assert store.apply().registry.sources["zone_src"].path == str(outside)


def test_store_and_registry_paths_cannot_leave_the_repo(tmp_path):
    repo = build_repo(tmp_path / "repo", SQLITE_CONFIG.replace("data/online.db", "../online.db"), apply=False)
    with pytest.raises(ConfigError, match="escapes the feature repo"):
        FeatureStore(repo).apply()
    assert not (tmp_path / "online.db").exists()
    repo2 = build_repo(tmp_path / "repo2", SQLITE_CONFIG.replace("data/registry.json", "../registry.json"), apply=False)
    with pytest.raises(DefinitionError, match="feature_store.yaml:2:11: .*escapes the feature repo"):
        FeatureStore(repo2).apply()
    assert not (tmp_path / "registry.json").exists()


def test_definition_files_are_not_read_through_symlinked_folders(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.yaml").write_text("entities: [this is not a valid repo file]\n")
    repo = build_repo(tmp_path / "repo", apply=False)
    (repo / "more").symlink_to(outside, target_is_directory=True)
    (repo / "loop").symlink_to(repo, target_is_directory=True)  # and a loop does not hang the loader
    with FeatureStore(repo) as store:
        assert "driver" in store.apply().registry.entities


# ---------------------------------------------------------------------------------------------
# the test server


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on `port` (from the kernel's table, IPv4 and IPv6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # TCP_LISTEN
                out.add(addr)
    return out


def test_test_server_listens_on_loopback_only_and_says_so(child_server):
    from fsplug.testing import aerospike_server
    from fsplug.testing.aerospike_server import AerospikeTestCluster, AerospikeTestServer

    with AerospikeTestServer() as srv:
        assert srv.host == "127.0.0.1" and srv.address == f"127.0.0.1:{srv.port}"
        assert _listening_addresses(srv.port) == {"0100007F"}  # 127.0.0.1, little-endian hex
    with AerospikeTestCluster(nodes=3) as cluster:
        for port in cluster.ports:
            assert _listening_addresses(port) == {"0100007F"}
        assert all(h.startswith("127.0.0.1:") for h in cluster.hosts)
    assert _listening_addresses(child_server.port) == {"0100007F"}  # the child process's server too
    assert "It listens on 127.0.0.1 only" in aerospike_server.__doc__
    p = subprocess.run([sys.executable, "-m", "fsplug.testing.aerospike_server", "--help"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert "listens on 127.0.0.1 only" in " ".join(p.stdout.split())
