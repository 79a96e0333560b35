"""Optional dependencies: `pip install fsplug` is the SQLite store only, and a missing extra is an fsplug
error that names the exact install line."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from fsplug.errors import ModelDependencyMissingError, StoreDriverMissingError

ROOT = Path(__file__).resolve().parents[2]


def test_drivers_and_model_libraries_are_extras_not_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert not required & {"aerospike", "scikit-learn", "joblib", "matplotlib", "pandas"}
    extras = project["optional-dependencies"]
    assert any(d.startswith("aerospike") for d in extras["aerospike"])
    assert {d.split(">")[0] for d in extras["models"]} == {"scikit-learn", "joblib"}
    assert "fsplug[aerospike,models]" in extras["bench"]
    (self_ref,) = [d for d in extras["test"] if d.startswith("fsplug[")]
    assert {"aerospike", "models", "pandas"} <= set(self_ref[len("fsplug["):-1].split(","))


def test_a_missing_aerospike_driver_names_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "aerospike", None)  # what `import aerospike` sees when not installed
    from fsplug.online.aerospike import AerospikeConfig, AerospikeOnlineStore

    store = AerospikeOnlineStore(AerospikeConfig(hosts=["127.0.0.1:1"], hosts_env=None), tmp_path, "p")
    with pytest.raises(StoreDriverMissingError, match=re.escape("pip install 'fsplug[aerospike]'")) as info:
        store.connect()
    assert "online_store type aerospike" in str(info.value)
    store.close()


@pytest.mark.parametrize("module", ["joblib", "sklearn"])
def test_missing_model_libraries_name_the_install_line(monkeypatch, tmp_path, applied_ride_repo, module):
    from fsplug.serving import load_model, save_model
    from fsplug.store import FeatureStore

    monkeypatch.setitem(sys.modules, module, None)
    with FeatureStore(applied_ride_repo) as store, \
            pytest.raises(ModelDependencyMissingError, match=re.escape("pip install 'fsplug[models]'")) as info:
        save_model({"weights": [1.0]}, tmp_path / "model.joblib", store=store, service="decline_model_v1")
    assert ("scikit-learn" if module == "sklearn" else "joblib") in str(info.value)
    if module == "joblib":
        with pytest.raises(ModelDependencyMissingError, match=re.escape("pip install 'fsplug[models]'")):
            load_model(tmp_path / "model.joblib")


def test_the_sqlite_store_needs_no_extra(monkeypatch, make_repo):
    for module in ("aerospike", "sklearn", "joblib"):
        monkeypatch.setitem(sys.modules, module, None)
    from fsplug.store import FeatureStore

    root = make_repo({"defs.yaml": """\
        entities: [{name: driver, join_key: driver_id, dtype: int64}]
        """})
    with FeatureStore(root) as store:
        store.apply()
        assert type(store.online_store).__name__ == "SQLiteOnlineStore"
