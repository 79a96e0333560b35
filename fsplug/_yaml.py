"""Internal: YAML loading that remembers where every node came from.

PyYAML's safe composer builds the node tree (no Python objects); we turn it into plain data
ourselves so that duplicate keys are errors (PyYAML keeps the last one silently) and every
value's `line:column` is known for error messages. Only plain YAML is accepted: a node with an
explicit tag other than the core ones (`!!python/object:...`, `!!binary`, `!!set`, `!custom`)
is a located problem, never constructed; so is nesting deeper than MAX_DEPTH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fsplug.errors import Problem

Loc = tuple[Any, ...]


@dataclass
class YamlDoc:
    """A parsed YAML file: its data and the 1-based (line, column) of every node by path."""

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Position of the node at `loc`, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        if key and loc in self.key_positions:
            return self.key_positions[loc]
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(loc, key=key)
        return Problem(self.file, line, col, message)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("null", "bool", "int", "float", "str", "timestamp")}


class _Rejected(Exception):
    """A node that is not plain YAML; the problem was recorded."""


def _reject(node: yaml.Node, doc: YamlDoc, problems: list[Problem], message: str) -> _Rejected:
    line, col = _pos(node)
    problems.append(Problem(doc.file, line, col, message))
    return _Rejected()


def _scalar(node: yaml.ScalarNode, doc: YamlDoc, problems: list[Problem]) -> Any:
    # Resolve the implicit tag (int, float, bool, null, str, timestamp) the way SafeLoader does.
    if node.tag == _CORE + "value":  # a lone '=' resolves to this tag; it is just a string
        return node.value
    if node.tag not in _SCALAR_TAGS:
        raise _reject(node, doc, problems, _tag_message(node.tag))
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. the date 2024-13-45
        if node.tag == _CORE + "timestamp" and node.style is None:
            return node.value  # looked like a date but is not one: keep the text
        raise _reject(node, doc, problems, f"cannot read value {node.value!r}: {exc}") from None
    finally:
        loader.dispose()


def _tag_message(tag: str) -> str:
    shown = tag.replace(_CORE, "!!")
    return (f"YAML tag {shown!r} is not allowed: fsplug reads plain YAML (mappings, lists, strings, "
            "numbers, booleans, null) and never builds objects from tags")


def load_yaml(path: Path, display: str, problems: list[Problem]) -> YamlDoc | None:
    """Parse `path`; append syntax and duplicate-key problems to `problems` (then return None)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(display, 1, 1, f"cannot read file: {exc}"))
        return None
    doc = YamlDoc(display, None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        problems.append(Problem(display, 1, 1, f"YAML nesting is too deep (over {MAX_DEPTH} levels)"))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or str(exc)
        lines = text.splitlines()
        if "\\t" in what or (0 < line <= len(lines) and "\t" in lines[line - 1]):
            what += " (tabs cannot indent YAML; use spaces)"
        elif "got '['" in what and 0 < line <= len(lines) and "{" in lines[line - 1]:
            # `{name: x, dtype: list[string]}`: in a flow mapping `[` starts a list
            word = re.search(r"([\w.-]+\[[^\]]*\])", lines[line - 1][max(col - 12, 0):])
            example = word.group(1) if word else "list[float64]"
            what += f" (inside {{...}} a '[' starts a list: quote the value, like dtype: \"{example}\")"
        problems.append(Problem(display, line, col, f"YAML syntax error: {what}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(display, 1, 1, f"YAML syntax error: {exc}"))
        return None
    if node is None:
        doc.data = {}
        doc.positions[()] = (1, 1)
        return doc
    before = len(problems)
    try:
        doc.data = _convert(node, (), doc, problems)
    except _TooBig:
        problems.append(Problem(display, 1, 1, f"too many YAML nodes (over {MAX_NODES:,}; aliases expanding?)"))
        return None
    return doc if len(problems) == before else None


MAX_NODES = 200_000
MAX_DEPTH = 64


class _TooBig(Exception):
    pass


def _convert(node: yaml.Node, loc: Loc, doc: YamlDoc, problems: list[Problem]) -> Any:
    try:
        return _node(node, loc, doc, problems)
    except _Rejected:
        return None


def _node(node: yaml.Node, loc: Loc, doc: YamlDoc, problems: list[Problem]) -> Any:
    doc.positions[loc] = _pos(node)
    if len(doc.positions) > MAX_NODES:
        raise _TooBig
    if len(loc) > MAX_DEPTH:
        raise _reject(node, doc, problems, f"YAML nesting is too deep (over {MAX_DEPTH} levels)")
    if isinstance(node, yaml.MappingNode):
        if node.tag != _CORE + "map":
            raise _reject(node, doc, problems, _tag_message(node.tag))
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _pos(key_node)
                problems.append(Problem(doc.file, line, col, "mapping keys must be plain scalars"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                line, col = _pos(key_node)
                problems.append(Problem(doc.file, line, col, "YAML merge keys ('<<') are not supported"))
                continue
            try:
                key = _scalar(key_node, doc, problems)
            except _Rejected:
                continue
            if key in out:
                line, col = _pos(key_node)
                first = doc.key_positions[loc + (key,)]
                problems.append(
                    Problem(doc.file, line, col, f"duplicate key {key!r} (first defined at line {first[0]})")
                )
                continue
            doc.key_positions[loc + (key,)] = _pos(key_node)
            out[key] = _convert(value_node, loc + (key,), doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _CORE + "seq":
            raise _reject(node, doc, problems, _tag_message(node.tag))
        return [_convert(item, loc + (i,), doc, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode), node  # the composer makes only these three kinds
    return _scalar(node, doc, problems)
