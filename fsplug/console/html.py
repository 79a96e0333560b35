"""Markup for the console's pages: every value escaped unless it is `Html` built here.

Pages are built from `el(tag, *children, **attrs)` calls, never by formatting user text into
markup: a name, description or tag value is a plain `str` and comes out escaped (`<script>` shows
as text), in element content and in attribute values alike. `Html` marks text that is already
markup (what `el` returns, or a constant written in this package).
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from typing import Any
from collections.abc import Iterable
from urllib.parse import quote, urlencode

__all__ = ["Html", "esc", "el", "join", "href", "raw"]


class Html(str):
    """Text that is markup already (built by `el`, or a constant of this package): sent as is."""

    __slots__ = ()


def raw(text: str) -> Html:
    """Mark a constant written in this package (CSS, a fixed fragment) as markup; never user text."""
    return Html(text)


def esc(value: Any) -> Html:
    """`value` as markup: `Html` as is, None as nothing, a list or tuple item by item, anything
    else as its escaped `str` (quotes included, so the result is safe in attribute values too)."""
    t = type(value)
    if t is Html:
        return value
    if t is str:
        return Html(escape(value, quote=True))
    if value is None:
        return Html("")
    if isinstance(value, Html):
        return value
    if isinstance(value, list | tuple):
        return Html("".join([esc(v) for v in value]))
    return Html(escape(str(value), quote=True))


def join(items: Iterable[Any], sep: Any = ", ") -> Html:
    """Items as markup separated by `sep` (each escaped unless `Html`)."""
    s = esc(sep)
    return Html(s.join(esc(i) for i in items))


_VOID = frozenset({"br", "hr", "input", "meta", "link", "img"})


def el(tag: str, *children: Any, **attrs: Any) -> Html:
    """One element: `el("a", name, href=url, class_="x")` -> `<a href="..." class="x">name</a>`.

    Children are escaped unless `Html`; attribute values are always escaped. A trailing `_` is
    dropped from attribute names (`class_`), other `_` become `-` (`data_view` -> `data-view`);
    True gives a bare attribute, None and False leave it out.
    """
    parts = [f"<{tag}"]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = _ATTR_NAMES.get(key)
        if name is None:
            name = _ATTR_NAMES[key] = key[:-1] if key.endswith("_") else key.replace("_", "-")
        if value is True:
            parts.append(f" {name}")
        else:
            parts.append(f' {name}="{esc(value)}"')
    parts.append(">")
    if tag in _VOID:
        return Html("".join(parts))
    parts += [c if type(c) is Html else esc(c) for c in children]
    parts.append(f"</{tag}>")
    return Html("".join(parts))


_ATTR_NAMES: dict[str, str] = {}


def href(*segments: str, **query: Any) -> str:
    """A console URL: `/ui/` + the path segments, each percent-encoded, + a query string
    (None values left out). The result is plain text: `el` escapes it in the attribute."""
    path = "/ui/" + "/".join([_segment(s) for s in segments])
    q = {k: v for k, v in query.items() if v is not None}
    return path + ("?" + urlencode(q) if q else "")


@lru_cache(maxsize=65536)
def _segment(text: str) -> str:
    return quote(text, safe="")
