"""Charts as plain inline SVG, drawn on the server: no script, no charting library, no request.

Each chart is one `<svg>` with a `viewBox` (it scales with the page), `<rect class="bar">` per
value with a `<title>` (the browser's tooltip), and its labels as `<text>`; all text escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fsplug.console.html import Html, el

__all__ = ["histogram_chart", "percentile_chart", "fmt_seconds"]

_W = 640
_H = 200
_LEFT = 52
_BOTTOM = 22
_TOP = 12


def fmt_seconds(s: float | None) -> str:
    """A duration for people: `85 us`, `0.42 ms`, `12.5 ms`, `1.2 s`; `-` for None."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if math.isinf(s):
        return "+Inf"
    if s < 0.001:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        ms = s * 1000
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{s:.2f} s"


def _axis(s: float) -> str:
    """A bucket bound as a short axis label: `100us`, `2.5ms`, `1s`."""
    if math.isinf(s):
        return "+Inf"
    if s < 0.001:
        return f"{s * 1e6:g}us"
    if s < 1:
        return f"{s * 1000:g}ms"
    return f"{s:g}s"


def _count(n: float) -> str:
    return f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"


def histogram_chart(bounds: Sequence[float], counts: Sequence[float], markers: Sequence[tuple[str, float | None]] = (),
                    title: str = "") -> Html:
    """Bars of observations per latency bucket, with dashed lines at the given percentiles.

    Args:
        bounds: bucket upper bounds in seconds, ascending, the last +inf.
        counts: observations per bucket (not cumulative).
        markers: (label, seconds) drawn as a vertical line where that value falls (e.g. p50, p99).
        title: the chart's accessible name.
    """
    n = len(counts)
    plot_w = _W - _LEFT - 8
    plot_h = _H - _TOP - _BOTTOM
    top = max(counts) if counts else 0
    slot = plot_w / max(n, 1)
    parts: list[Html] = [el("title", title)]
    parts.append(el("line", x1=_LEFT, y1=_TOP + plot_h, x2=_LEFT + plot_w, y2=_TOP + plot_h, class_="axis"))
    parts.append(el("text", _count(top), x=_LEFT - 6, y=_TOP + 10, class_="ylabel"))
    parts.append(el("text", "0", x=_LEFT - 6, y=_TOP + plot_h, class_="ylabel"))
    parts.append(el("text", "0", x=_LEFT, y=_TOP + plot_h + 14, class_="xlabel"))
    for i, (b, c) in enumerate(zip(bounds, counts, strict=True)):
        h = 0.0 if top <= 0 else plot_h * c / top
        x = _LEFT + i * slot
        lower = fmt_seconds(bounds[i - 1]) if i else "0"
        tip = f"{lower} to {fmt_seconds(b)}: {_count(c)} requests"
        parts.append(el("rect", el("title", tip), x=f"{x + 2:.1f}", y=f"{_TOP + plot_h - h:.1f}",
                        width=f"{max(slot - 4, 1):.1f}", height=f"{h:.1f}", class_="bar", data_count=_count(c)))
        if not math.isinf(b):  # a bound labels its bucket's right edge (the last bucket has none)
            parts.append(el("text", _axis(b), x=f"{x + slot:.1f}", y=_TOP + plot_h + 14, class_="xlabel"))
    for k, (label, value) in enumerate(markers):
        pos = _position(value, bounds)
        if pos is None:
            continue
        x = _LEFT + pos * slot
        parts.append(el("line", el("title", f"{label} {fmt_seconds(value)}"), x1=f"{x:.1f}", y1=_TOP,
                        x2=f"{x:.1f}", y2=_TOP + plot_h, class_="marker"))
        parts.append(el("text", f"{label} {fmt_seconds(value)}", x=f"{x + 3:.1f}", y=_TOP + 10 + 12 * k,
                        class_="mlabel"))
    return el("svg", *parts, viewBox=f"0 0 {_W} {_H}", class_="chart histogram", role="img",
              aria_label=title)


def _position(value: float | None, bounds: Sequence[float]) -> float | None:
    """Where `value` falls on the bucket axis (bucket index plus the fraction within it)."""
    if value is None:
        return None
    lower = 0.0
    for i, b in enumerate(bounds):
        if value <= b:
            if math.isinf(b):
                return float(i)
            return i + (value - lower) / (b - lower) if b > lower else float(i)
        lower = b
    return float(len(bounds))


def percentile_chart(rows: Sequence[tuple[str, Sequence[tuple[str, float | None]]]], title: str = "") -> Html:
    """Horizontal bars: for each row (a series' label) one bar per percentile, on a shared linear scale.

    Args:
        rows: (label, [(percentile name, seconds or None), ...]).
        title: the chart's accessible name.
    """
    label_w = 230
    bar_h = 12
    per_row = max((len(p) for _, p in rows), default=1) * (bar_h + 2) + 10
    height = _TOP + per_row * len(rows) + 10
    top = max((v for _, ps in rows for _, v in ps if v is not None), default=0.0)
    plot_w = _W - label_w - 80
    parts: list[Html] = [el("title", title)]
    y = _TOP
    for label, ps in rows:
        parts.append(el("text", label, x=label_w - 8, y=y + bar_h, class_="rlabel"))
        for k, (name, v) in enumerate(ps):
            w = 0.0 if not v or top <= 0 else plot_w * v / top
            by = y + k * (bar_h + 2)
            parts.append(el("rect", el("title", f"{label} {name} {fmt_seconds(v)}"), x=label_w, y=by,
                            width=f"{max(w, 1):.1f}", height=bar_h, class_=f"bar {name}"))
            parts.append(el("text", f"{name} {fmt_seconds(v)}", x=f"{label_w + w + 4:.1f}", y=by + bar_h - 2,
                            class_="vlabel"))
        y += per_row
    return el("svg", *parts, viewBox=f"0 0 {_W} {height}", class_="chart percentiles", role="img",
              aria_label=title)
