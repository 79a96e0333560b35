"""JSON-ready (de)serialization of the registry's frozen dataclasses, driven by their fields and type hints.

This is the one place that knows how registry objects become JSON data and back: a field added to a
model class in model.py is written and read without further code. A field missing from an older
file takes its default; a field the class does not know is an error (a file from a newer fsplug).

The rules reproduce the format fsplug has always written:

- a dataclass is an object of its fields (all of them, defaults included, but for a field marked
  `omit_empty` in its metadata, left out when empty: a field added later keeps older files' hashes);
- an Enum (DType) is its value; a tuple (`tuple[X, ...]` or `tuple[A, B]`) is a list;
- `dict[str, X]` where X is a dataclass with a `name` field is the list of its values, in order (the
  key is each value's name); any other dict is an object;
- `Any` is plain JSON data, stored as it is (tuples become lists, enums their values).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any

__all__ = ["encode", "decode"]

_PRIMITIVES: tuple[type, ...] = (str, int, float, bool)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_named_dataclass(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type) and "name" in {
        f.name for f in dataclasses.fields(tp)}


def _optional_arg(tp: Any) -> Any:
    """X for `X | None`; TypeError for any other union (the registry has none)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) != 1:
        raise TypeError(f"unsupported union type {tp!r} in a registry class")
    return args[0]


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def encode(tp: Any, value: Any) -> Any:
    """`value` (declared as `tp`) as JSON-ready data: dicts, lists, str, int, float, bool, None."""
    if value is None:
        return None
    if tp is Any:
        return _plain(value)
    if _is_union(tp):
        return encode(_optional_arg(tp), value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return {f.name: encode(hints[f.name], getattr(value, f.name)) for f in dataclasses.fields(tp)
                if not (f.metadata.get("omit_empty") and not getattr(value, f.name))}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value.value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [encode(args[0], v) for v in value]
        return [encode(a, v) for a, v in zip(args, value, strict=True)]
    if origin is dict:
        if _is_named_dataclass(args[1]):
            return [encode(args[1], v) for v in value.values()]
        return {k: encode(args[1], v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def decode(tp: Any, data: Any, where: str = "registry") -> Any:
    """The object of type `tp` that `encode(tp, ...)` returned `data` for; TypeError/ValueError naming
    the place (`where`) when `data` does not fit."""
    if tp is Any:
        return data
    if _is_union(tp):
        return None if data is None else decode(_optional_arg(tp), data, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        _expect(data, list, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(data) != len(args):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    if origin is dict:
        if _is_named_dataclass(args[1]) and isinstance(data, list):
            items = [decode(args[1], v, f"{where}[{i}]") for i, v in enumerate(data)]
            return {item.name: item for item in items}
        _expect(data, dict, where)
        return {k: decode(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if tp in _PRIMITIVES:
        ok = isinstance(data, (int, float) if tp is float else tp)
        ok = ok and (tp is bool or not isinstance(data, bool))
        if not ok:
            raise TypeError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"unsupported type {tp!r} in a registry class")


def _expect(data: Any, kind: type, where: str) -> None:
    if not isinstance(data, kind):
        raise TypeError(f"{where}: expected a JSON {'array' if kind is list else 'object'}, got "
                        f"{type(data).__name__}")


def _decode_dataclass(cls: type, data: Any, where: str) -> Any:
    _expect(data, dict, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TypeError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} of {cls.__name__}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = decode(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"{where}: missing field {name!r} of {cls.__name__}")
    return cls(**kwargs)
