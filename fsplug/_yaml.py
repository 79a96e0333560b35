"""Internal: YAML loading that remembers where every node came from.

PyYAML's safe composer builds the node tree (no tags, no Python objects); we turn it into
plain data ourselves so that duplicate keys are errors (PyYAML keeps the last one silently)
and every value's `line:column` is known for error messages.
"""

from __future__ import annotations

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


def _scalar(node: yaml.ScalarNode) -> Any:
    # Resolve the implicit tag (int, float, bool, null, str) the way SafeLoader does.
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


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
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or str(exc)
        lines = text.splitlines()
        if "\\t" in what or (0 < line <= len(lines) and "\t" in lines[line - 1]):
            what += " (tabs cannot indent YAML; use spaces)"
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


class _TooBig(Exception):
    pass


def _convert(node: yaml.Node, loc: Loc, doc: YamlDoc, problems: list[Problem]) -> Any:
    doc.positions[loc] = _pos(node)
    if len(doc.positions) > MAX_NODES:
        raise _TooBig
    if isinstance(node, yaml.MappingNode):
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
            key = _scalar(key_node)
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
        return [_convert(item, loc + (i,), doc, problems) for i, item in enumerate(node.value)]
    return _scalar(node)
