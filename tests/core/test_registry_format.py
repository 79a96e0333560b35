"""The registry file format and content hash are pinned: files written by earlier fsplug versions load,
and the same definitions always hash the same (plan/apply and cached plans rely on it)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from fsplug.definitions import load_repo_definitions
from fsplug.errors import RegistryError
from fsplug.registry import Registry, RegistryStore, compile_repo
from fsplug.registry.codec import decode, encode
from fsplug.types import DType

DATA = Path(__file__).parent / "data" / "registry_v1"
ROOT = Path(__file__).resolve().parents[2]
# Written by fsplug at commit 524e2a2 (registry.py, before the registry became a package).
PINNED_HASH = "21ed3ea74740309db66505ae23b0632749ac57c0dfc092e3305060361b3cbe3e"
# the shipped feature_repo, with its derived view (issue 15)
FEATURE_REPO_HASH = "1799afc965fa1097b94f1984d23f6127bbee6f9b5b2086606d562db7787317b8"


def _compile(root: Path, project: str) -> Registry:
    return compile_repo(load_repo_definitions(root), project, check_paths=False, warnings=[])


def test_a_file_written_by_the_old_code_loads_and_writes_back_without_its_state():
    """fsplug 0.1 kept materialization state in the registry file; it lives in the online store now,
    so an old file loads (its "state" ignored) and is written back the same but for that key."""
    text = (DATA / "registry.json").read_text(encoding="utf-8")
    reg = RegistryStore(DATA / "registry.json").load()
    assert reg.hash == PINNED_HASH
    assert "driver_stats" in json.loads(text)["state"] and not hasattr(reg, "state")
    view = reg.view("driver_stats")
    assert view.ttl_seconds == 36 * 3600 and view.tags == (("refresh", "daily"), ("team", "dispatch"))
    assert view.feature("embedding").dtype is DType.FLOAT64_LIST
    assert [k.dtype for k in reg.entity("trip_leg").join_keys] == [DType.STRING, DType.INT64]
    old = json.loads(text)
    del old["state"]
    assert reg.to_json() == json.dumps(old, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_the_same_definitions_compile_to_the_pinned_hash():
    loaded = RegistryStore(DATA / "registry.json").load()
    compiled = _compile(DATA, "compat")
    assert compiled.hash == PINNED_HASH
    assert compiled == loaded
    assert _compile(ROOT / "feature_repo", "dispatch").hash == FEATURE_REPO_HASH


def test_the_registry_round_trips_through_its_json():
    reg = _compile(DATA, "compat")
    assert Registry.from_json(reg.to_json()) == reg


def test_a_hand_edited_value_of_the_wrong_type_is_named(tmp_path):
    path = tmp_path / "registry.json"
    data = json.loads((DATA / "registry.json").read_text(encoding="utf-8"))
    data["feature_views"][0]["ttl_seconds"] = "1d"
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match=r"feature_views\[0\]\.ttl_seconds: expected int, got str"):
        RegistryStore(path).load()
    data["feature_views"][0]["ttl_seconds"] = 1
    data["feature_views"][0]["colour"] = "red"
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="unknown field"):
        RegistryStore(path).load()


def test_an_older_file_without_a_defaulted_field_loads(tmp_path):
    shutil.copy(DATA / "registry.json", tmp_path / "registry.json")
    data = json.loads((tmp_path / "registry.json").read_text(encoding="utf-8"))
    del data["state"]
    for e in data["entities"]:
        del e["description"]
    reg = decode(Registry, {k: v for k, v in data.items() if k != "format"})
    assert reg.entity("trip_leg").description == ""


@dataclasses.dataclass(frozen=True)
class Thing:
    name: str
    dtype: DType
    sizes: tuple[int, ...] = ()
    added_later: float | None = None


@dataclasses.dataclass(frozen=True)
class Box:
    things: dict[str, Thing]
    meta: dict[str, str] = dataclasses.field(default_factory=dict)


def test_a_new_field_is_stored_and_read_with_no_other_code():
    box = Box({"a": Thing("a", DType.INT64, (1, 2), 0.5)}, {"k": "v"})
    data = encode(Box, box)
    assert data == {"things": [{"name": "a", "dtype": "int64", "sizes": [1, 2], "added_later": 0.5}],
                    "meta": {"k": "v"}}
    assert decode(Box, json.loads(json.dumps(data))) == box
    del data["things"][0]["added_later"]
    assert decode(Box, data).things["a"].added_later is None
