"""Import rules of the fsplug package (fsplug/testing excluded), checked on the source with `ast`:

- no module imports another module's private (`_name`) symbols: what several modules share gets a
  public name in a module of its own (e.g. offline/arrow.py);
- no import cycles among fsplug modules, counting imports inside functions (a cycle is a design
  problem even when laziness hides it at runtime); `if TYPE_CHECKING:` imports do not count;
- the layers the structure work separated stay separated (config.py knows no store, online/base.py
  no YAML definitions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "fsplug"

# Files still allowed to import private names (none today: offline/pit.py was the last). An entry needs
# a comment saying which work removes it, e.g. "being removed by the kernel/state work".
KNOWN_PRIVATE_IMPORTS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py")) if "testing" not in p.relative_to(PKG).parts}


def fsplug_imports(source: str) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) of every fsplug import, TYPE_CHECKING blocks excluded."""
    found: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "fsplug")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fsplug":
            found.extend((node.module, a.name, node.lineno) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def private_imports(source: str, where: str) -> list[str]:
    """`where:line: _name from module` for every private name imported from an fsplug module."""
    return [f"{where}:{line}: {name} from {module}" for module, name, line in fsplug_imports(source)
            if name and name.startswith("_") and not name.startswith("__")]


def _target(module: str, name: str | None) -> str | None:
    """The fsplug module an import loads (`from fsplug.online import base` loads fsplug.online.base)."""
    candidate = f"{module}.{name}" if name else module
    while candidate and candidate not in MODULES:
        candidate = candidate.rpartition(".")[0]
    return candidate or None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for module, name, _ in fsplug_imports(path.read_text(encoding="utf-8")):
            target = _target(module, name)
            if target and target != mod and target != "fsplug":  # every module loads the package root
                graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_the_checks_catch_what_they_look_for():
    src = "from fsplug.offline.parquet import _plain, open_source\nfrom fsplug import __version__\n"
    assert private_imports(src, "x.py") == ["x.py:1: _plain from fsplug.offline.parquet"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fsplug.store import _x\n"
    assert private_imports(guarded, "x.py") == []
    inside = "def f():\n    from fsplug.registry import _hash\n"
    assert private_imports(inside, "x.py") == ["x.py:2: _hash from fsplug.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_private_names_of_another():
    found = set()
    for path in MODULES.values():
        found.update(private_imports(path.read_text(encoding="utf-8"), path.relative_to(PKG.parent).as_posix()))
    known = {f for f in found if f.split(":")[0] in KNOWN_PRIVATE_IMPORTS}
    assert sorted(found - known) == []


def test_no_import_cycles_among_fsplug_modules():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module, forbidden", [
    ("fsplug.config", "fsplug.online"),
    ("fsplug.online.base", "fsplug.definitions"),
    ("fsplug.types", "fsplug.definitions"),
    ("fsplug.errors", "fsplug"),
])
def test_layers_stay_apart(module, forbidden):
    imported = import_graph()[module]
    assert not {m for m in imported if m == forbidden or m.startswith(forbidden + ".")}
