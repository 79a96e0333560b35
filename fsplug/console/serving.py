"""The Serving page's figures: latency histograms, percentiles and error counts from the server's metrics.

The input is the server's Prometheus metric families as the client library collects them
(`fsplug.server.metrics.families()`): in multiprocess mode the library's MultiProcessCollector has
already summed every worker's samples, so the figures here cover every worker, whichever one
renders the page. Percentiles are estimated from the histogram buckets the way Prometheus'
`histogram_quantile` does (linear within the bucket that holds the rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable

__all__ = [
    "Histogram",
    "ServingStats",
    "serving_stats",
    "quantile",
    "REQUEST_SECONDS",
    "STORE_READ_SECONDS",
    "REQUESTS",
    "ERRORS",
    "IN_FLIGHT",
]

# The series fsplug.server.metrics defines (the README's metrics table); a rename there shows here
# as an empty Serving page, which the console's browser test catches.
REQUEST_SECONDS = "fsplug_request_duration_seconds"
STORE_READ_SECONDS = "fsplug_store_read_duration_seconds"
REQUESTS = "fsplug_requests_total"
ERRORS = "fsplug_request_errors_total"
IN_FLIGHT = "fsplug_requests_in_flight"


@dataclass
class Histogram:
    """One histogram series: its labels, its bucket upper bounds and cumulative counts, sum and count."""

    labels: dict[str, str]
    bounds: list[float] = field(default_factory=list)
    """Upper bounds in ascending order; the last is +inf."""
    cumulative: list[float] = field(default_factory=list)
    total: float = 0.0
    sum: float = 0.0

    @property
    def counts(self) -> list[float]:
        """Observations per bucket (not cumulative)."""
        return [c - (self.cumulative[i - 1] if i else 0.0) for i, c in enumerate(self.cumulative)]

    @property
    def mean(self) -> float | None:
        return self.sum / self.total if self.total else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile estimated from the buckets (see `quantile`)."""
        return quantile(q, self.bounds, self.cumulative)


def quantile(q: float, bounds: list[float], cumulative: list[float]) -> float | None:
    """Prometheus' `histogram_quantile`: the bucket holding rank q*total, linear inside it.

    Args:
        q: 0 to 1.
        bounds: ascending bucket upper bounds, the last +inf.
        cumulative: observations at or below each bound.

    Returns:
        The estimate in the bounds' unit; None without observations. A rank in the +inf bucket
        answers the largest finite bound (the histogram cannot say more).
    """
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    for i, c in enumerate(cumulative):
        if c >= rank:
            if math.isinf(bounds[i]):
                return bounds[i - 1] if i else None
            lower = bounds[i - 1] if i else 0.0
            below = cumulative[i - 1] if i else 0.0
            inside = c - below
            if inside <= 0:
                return bounds[i]
            return lower + (bounds[i] - lower) * (rank - below) / inside
    return bounds[-2] if len(bounds) > 1 else None


@dataclass
class ServingStats:
    """What the Serving page draws."""

    latency: list[Histogram]
    """Request latency per (endpoint, feature_service), busiest first."""
    store_reads: list[Histogram]
    """Store read latency per endpoint."""
    requests: list[tuple[str, str, float]]
    """(endpoint, HTTP status, count)."""
    errors: list[tuple[str, str, float]]
    """(endpoint, kind of error, count)."""
    in_flight: float


def _histograms(samples: Iterable[Any], name: str) -> list[Histogram]:
    series: dict[tuple[tuple[str, str], ...], Histogram] = {}
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for s in samples:
        if not s.name.startswith(name):
            continue
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        key = tuple(sorted(labels.items()))
        h = series.get(key)
        if h is None:
            h = series[key] = Histogram(labels)
        suffix = s.name[len(name):]
        if suffix == "_bucket":
            buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        elif suffix == "_count":
            h.total = s.value
        elif suffix == "_sum":
            h.sum = s.value
    for key, h in series.items():
        pairs = sorted(buckets.get(key, []))
        h.bounds = [b for b, _ in pairs]
        h.cumulative = [c for _, c in pairs]
    return sorted((h for h in series.values() if h.total > 0), key=lambda h: (-h.total, sorted(h.labels.items())))


def serving_stats(families: Iterable[Any]) -> ServingStats:
    """The Serving page's figures from the server's collected metric families (all workers merged).

    Args:
        families: `prometheus_client` Metric objects (each with `.samples`).
    """
    samples: list[Any] = [s for fam in families for s in fam.samples]
    requests = sorted(((s.labels.get("endpoint", ""), s.labels.get("code", ""), s.value)
                       for s in samples if s.name == REQUESTS and s.value > 0), key=lambda r: (r[0], r[1]))
    errors = sorted(((s.labels.get("endpoint", ""), s.labels.get("kind", ""), s.value)
                     for s in samples if s.name == ERRORS and s.value > 0), key=lambda r: (-r[2], r[0], r[1]))
    in_flight = sum(s.value for s in samples if s.name == IN_FLIGHT)
    return ServingStats(_histograms(samples, REQUEST_SECONDS), _histograms(samples, STORE_READ_SECONDS),
                        requests, errors, in_flight)
