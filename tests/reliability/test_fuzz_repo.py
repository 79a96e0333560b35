"""Fuzzing the shipped feature repo: any mutation of its YAML loads and compiles, or fails with a user error.

Each example takes the shipped feature_repo's `feature_store.yaml` and `features/driver.yaml`,
applies one to three random mutations (drop, rename or duplicate a key or list entry, swap a
value for one of another type, delete/duplicate a line, insert a tab, truncate the text) and
runs what `fsplug plan` runs: load the config, load and compile the definitions, diff against
the applied registry, then compile a retrieval plan for every service. The only exceptions
allowed are fsplug's DefinitionError / UserInputError (ConfigError is one): never a TypeError,
KeyError, RecursionError or a YAML library error.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsplug.errors import DefinitionError, UserInputError
from fsplug.plan import compile_plan
from fsplug.store import FeatureStore
from tests.conftest import FEATURE_REPO
from tests.conftest import write_empty_sources

FILES = ["feature_store.yaml", "features/driver.yaml"]
ORIGINAL = {f: (FEATURE_REPO / f).read_text() for f in FILES}
KNOWN_KEYS = sorted({
    "project", "registry", "online_store", "type", "path", "hosts", "namespace", "entities", "sources",
    "feature_views", "request_sources", "feature_services", "name", "join_key", "join_keys", "dtype",
    "description", "timestamp_field", "created_timestamp_field", "entity", "source", "ttl", "online", "owner",
    "tags", "features", "bin", "column", "default",
})

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "int64", "string", "list[float64]", "driver", "driver_stats:*", "2d", "x:y:z", "../..",
                     "/abs/path.parquet", "2024-13-45", "é", "_ts_x", "a" * 70]),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.sampled_from(KNOWN_KEYS), st.one_of(st.integers(), st.text(max_size=4)), max_size=3),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate_data(data: Any, draw: Any) -> Any:
    paths = [p for p in _paths(data) if p]
    if not paths:
        return draw(VALUES)
    path = draw(st.sampled_from(paths))
    parent, last = _get(data, path[:-1]), path[-1]
    kind = draw(st.sampled_from(["drop", "rename", "swap_type", "duplicate", "null"]))
    if kind == "drop":
        del parent[last]
    elif kind == "rename" and isinstance(parent, dict):
        new = draw(st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=8)))
        parent[new] = parent.pop(last)
    elif kind == "duplicate":
        if isinstance(parent, list):
            parent.insert(last, parent[last])  # a duplicate entry (same name twice)
        else:
            parent[f"{last}"] = parent[last]
    elif kind == "null":
        parent[last] = None
    else:
        parent[last] = draw(VALUES)
    return data


def mutate_text(text: str, draw: Any) -> str:
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["truncate", "delete_line", "duplicate_line", "tab", "char"]))
    if kind == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    if kind == "delete_line" and lines:
        del lines[i]
    elif kind == "duplicate_line" and lines:
        lines.insert(i, lines[i])
    elif kind == "tab" and lines:
        j = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:j] + "\t" + lines[i][j:]
    elif lines:
        j = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:j] + draw(st.sampled_from([":", "-", "[", "{", "}", "&a", "*a", "!!", "#", "'", '"', "\0",
                                                          "\ufeff", "é", "  ", "? "])) + lines[i][j:]
    return "".join(lines)


@pytest.fixture(scope="module")
def applied(tmp_path_factory) -> Path:
    """The shipped repo applied once (placeholder sources), so that `plan` diffs against a registry."""
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    shutil.copytree(FEATURE_REPO, root, ignore=shutil.ignore_patterns("data"))
    write_empty_sources(root)
    with FeatureStore(root) as store:
        store.apply()
    return root


def check(root: Path) -> str:
    """What `fsplug plan` does, then a retrieval plan per service; returns 'ok' or the user error's class."""
    try:
        store = FeatureStore(root)
        reg, _ = store.compile(check_paths=False)
        store.changes()
        for name in reg.feature_services:
            compile_plan(reg, service=name)
        return "ok"
    except (DefinitionError, UserInputError) as exc:
        str(exc)  # the message itself must render
        return type(exc).__name__


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_repo_loads_or_raises_a_user_error(applied, data):
    texts = dict(ORIGINAL)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        f = data.draw(st.sampled_from(FILES), label="file")
        if data.draw(st.booleans(), label="structural"):
            try:
                parsed = yaml.safe_load(texts[f])
            except (yaml.YAMLError, ValueError):  # an earlier text mutation left it unparsable
                texts[f] = mutate_text(texts[f], data.draw)
                continue
            texts[f] = yaml.safe_dump(mutate_data(parsed, data.draw), allow_unicode=True, sort_keys=False)
        else:
            texts[f] = mutate_text(texts[f], data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(applied, root)
        for f, text in texts.items():
            (root / f).write_text(text, encoding="utf-8")
        check(root)  # anything but a user error propagates and fails the test


def test_the_unmutated_repo_compiles(applied):
    assert check(applied) == "ok"


def test_mutations_do_reach_the_compiler(applied, tmp_path):
    """The fuzzer is not vacuous: a swapped type and a duplicated entry are caught by the compiler."""
    root = tmp_path / "repo"
    shutil.copytree(applied, root)
    p = root / "features" / "driver.yaml"
    data = yaml.safe_load(p.read_text())
    data["feature_views"][0]["ttl"] = [1]
    data["feature_views"].append(data["feature_views"][1])
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(DefinitionError) as info:
        FeatureStore(root).changes()
    text = str(info.value)
    assert "bad ttl [1]" in text and "duplicate feature view name 'driver_activity'" in text
