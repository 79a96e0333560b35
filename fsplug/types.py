"""Feature value types: the dtype vocabulary of feature repos and how each maps to storage, plus the
value helpers every layer shares: `parse_ttl` (durations), `check_default` (defaults per dtype) and
`as_utc` / `EPOCH` (times: every time fsplug takes is read by one rule, naive = UTC).

| dtype          | numpy (results)   | Arrow (offline)            | Aerospike bin         | SQLite column |
|----------------|-------------------|----------------------------|-----------------------|---------------|
| int64          | int64             | int64 (any int width)      | integer               | INTEGER       |
| float64        | float64           | float64 (float32 widened)  | double                | REAL          |
| float32        | float32           | float32 / float64          | double                | REAL          |
| string         | object (str)      | string / large_string      | string                | TEXT          |
| bool           | bool              | bool                       | boolean               | INTEGER 0/1   |
| bytes          | object (bytes)    | binary / large_binary      | blob (bytes)          | BLOB          |
| timestamp      | datetime64[us]    | timestamp (UTC)            | integer (us, UTC)     | INTEGER (us)  |
| list[float64]  | object (ndarray)  | list<float64>              | list of doubles       | BLOB (f8 LE)  |

Nothing here imports pyarrow at module import time: `import fsplug` stays light.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

__all__ = ["DType", "parse_dtype", "DTYPE_NAMES", "parse_ttl", "check_default", "as_utc", "EPOCH"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_utc(t: datetime) -> datetime:
    """`t` as an aware UTC datetime: a naive one is taken as UTC, an aware one converted (the same instant)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class DType(StrEnum):
    """A feature's declared value type."""

    INT64 = "int64"
    FLOAT64 = "float64"
    FLOAT32 = "float32"
    STRING = "string"
    BOOL = "bool"
    BYTES = "bytes"
    TIMESTAMP = "timestamp"
    FLOAT64_LIST = "list[float64]"

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype of result arrays for this feature."""
        return _NUMPY[self]

    @property
    def is_numeric(self) -> bool:
        """True where a value can go straight into a model's float vector."""
        return self in _NUMERIC

    def arrow_type(self) -> Any:
        """The pyarrow type used for this dtype in offline tables (imports pyarrow)."""
        import pyarrow as pa

        return {
            DType.INT64: pa.int64(),
            DType.FLOAT64: pa.float64(),
            DType.FLOAT32: pa.float32(),
            DType.STRING: pa.string(),
            DType.BOOL: pa.bool_(),
            DType.BYTES: pa.binary(),
            DType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
            DType.FLOAT64_LIST: pa.list_(pa.float64()),
        }[self]


_NUMPY: dict[DType, np.dtype] = {
    DType.INT64: np.dtype("int64"),
    DType.FLOAT64: np.dtype("float64"),
    DType.FLOAT32: np.dtype("float32"),
    DType.STRING: np.dtype(object),
    DType.BOOL: np.dtype(bool),
    DType.BYTES: np.dtype(object),
    DType.TIMESTAMP: np.dtype("datetime64[us]"),
    DType.FLOAT64_LIST: np.dtype(object),
}

_NUMERIC = frozenset({DType.INT64, DType.FLOAT64, DType.FLOAT32, DType.BOOL})

_ALIASES = {
    "list<float64>": DType.FLOAT64_LIST,
    "array<float64>": DType.FLOAT64_LIST,
    "list[double]": DType.FLOAT64_LIST,
}

DTYPE_NAMES: tuple[str, ...] = tuple(d.value for d in DType)


def parse_dtype(name: str) -> DType:
    """Return the DType named `name` (canonical spelling or a documented alias); ValueError otherwise."""
    key = str(name).strip()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return DType(key)
    except ValueError:
        pass
    hint = _FEAST_TYPES.get(key) or _FEAST_TYPES.get(key.replace(" ", ""))
    if hint is None:
        close = difflib.get_close_matches(key.lower(), [*DTYPE_NAMES, *_ALIASES], n=1, cutoff=0.6)
        hint = close[0] if close else None
    raise ValueError(f"unknown dtype {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                     + f" (allowed: {', '.join(DTYPE_NAMES)})") from None


# Feast's type names (and common spellings) -> the fsplug dtype to suggest; never accepted silently.
_FEAST_TYPES = {
    "Int64": "int64", "Int32": "int64", "int32": "int64", "int": "int64", "integer": "int64", "long": "int64",
    "Float64": "float64", "double": "float64", "float": "float64", "Float32": "float32",
    "String": "string", "str": "string", "Bool": "bool", "boolean": "bool", "Bytes": "bytes",
    "UnixTimestamp": "timestamp", "datetime": "timestamp", "Array(Float64)": "list[float64]",
    "Array(Float32)": "list[float64]", "List[Float64]": "list[float64]",
}


_TTL_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_ttl(value: Any) -> int | None:
    """Seconds of a ttl (`30s`, `15m`, `12h`, `2d`, `1w`, `1d12h`); None = never stale (0, none, never).

    A number without a unit is refused (is `24` hours or seconds?), with the fix in the message.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"ttl must be a duration like 30s, 15m, 12h, 2d, 1w, or 0/none; got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"ttl cannot be negative; got {value}")
        if value:  # `ttl: 24` meant hours to some, seconds to others: say which
            raise ValueError(f"ttl {value} has no unit: write {value}s, {value}m, {value}h or {value}d "
                             "(0 or none: never stale)")
        return None
    text = str(value).strip().lower()
    if text in ("none", "never", "0", ""):
        return None
    if text.isdigit():
        raise ValueError(f"ttl {value!r} has no unit: write {text}s, {text}m, {text}h or {text}d "
                         "(0 or none: never stale)")
    m = _TTL_RE.match(text)
    if not m or not any(m.groups()):
        raise ValueError(
            f"bad ttl {value!r}: use a duration like 30s, 15m, 12h, 2d, 1w (or combined, 1d12h), or 0/none"
        )
    seconds = sum(int(g) * _UNIT[u] for g, u in zip(m.groups(), "wdhms", strict=True) if g)
    return seconds or None


def format_ttl(seconds: int | None) -> str:
    """A ttl as YAML writes it, the inverse of `parse_ttl`: `2d`, `1d12h`, `90s`; `none` for None (or 0)."""
    if not seconds:
        return "none"
    parts = []
    for unit, size in _UNIT.items():
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def check_default(dtype: DType, value: Any) -> Any:
    """Return `value` as a valid default of `dtype`, or raise ValueError saying what fits."""
    if value is None:
        return None
    ok: bool
    if dtype is DType.INT64:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    elif dtype in (DType.FLOAT64, DType.FLOAT32):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif dtype is DType.BOOL:
        ok = isinstance(value, bool)
    elif dtype in (DType.STRING, DType.BYTES):
        ok = isinstance(value, str)
    elif dtype is DType.TIMESTAMP:
        ok = isinstance(value, (str, datetime))
        if ok:
            try:
                value = (value if isinstance(value, datetime) else datetime.fromisoformat(value)).isoformat()
            except ValueError:
                ok = False
    else:  # list[float64]
        ok = isinstance(value, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
        )
        value = [float(x) for x in value] if ok else value
    if not ok:
        raise ValueError(f"default {value!r} does not fit dtype {dtype.value}")
    return value
