"""help() documents the public API: every public FeatureStore method and OnlineResult conversion says
what it is for, and each of its parameters is named in its docstring."""

from __future__ import annotations

import inspect

import pytest

from fsplug.result import OnlineResult
from fsplug.store import FeatureStore

PUBLIC = [(cls, name) for cls in (FeatureStore, OnlineResult) for name, fn in vars(cls).items()
          if not name.startswith("_") and (inspect.isfunction(fn) or isinstance(fn, property))]


@pytest.mark.parametrize("cls,name", PUBLIC, ids=[f"{c.__name__}.{n}" for c, n in PUBLIC])
def test_public_methods_say_what_they_do_and_name_their_parameters(cls, name):
    member = vars(cls)[name]
    fn = member.fget if isinstance(member, property) else member
    doc = inspect.getdoc(fn) or getattr(member, "__doc__", None)
    assert doc and len(doc.split()) >= 4, f"{cls.__name__}.{name} has no real docstring"
    if isinstance(member, property):
        return
    params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    missing = [p for p in params if p.lstrip("*") not in doc and p.rstrip("_") not in doc]
    assert not missing, f"{cls.__name__}.{name} does not document {missing}"


def test_the_class_and_its_constructor_are_documented():
    assert "feature repo" in inspect.getdoc(FeatureStore)
    assert "feature_store.yaml" in inspect.getdoc(FeatureStore.__init__)
