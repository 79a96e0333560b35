"""Latency statistics: percentiles and throughput from per-call samples (nanoseconds)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["summarize", "ratio", "median_of"]


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 / mean in microseconds and single-caller throughput (calls/s = 1 / mean).

    Throughput is sequential calls per second from one thread: the mean latency inverted
    (the harness measures each call, so no extra timing wraps the loop).
    """
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    if not len(a):
        return {"n": 0, "p50_us": math.nan, "p99_us": math.nan, "p999_us": math.nan, "mean_us": math.nan,
                "min_us": math.nan, "throughput_per_s": math.nan}
    mean = float(a.mean())
    return {
        "n": int(len(a)),
        "p50_us": round(float(np.percentile(a, 50)), 2),
        "p99_us": round(float(np.percentile(a, 99)), 2),
        "p999_us": round(float(np.percentile(a, 99.9)), 2),
        "mean_us": round(mean, 2),
        "min_us": round(float(a.min()), 2),
        "throughput_per_s": round(1e6 / mean, 1) if mean > 0 else math.nan,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either is missing."""
    if a is None or b is None or not b or a != a or b != b:
        return None
    return round(a / b, 3)


def median_of(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    return round(float(np.median(vals)), 3) if vals else None
