"""The server's Prometheus metrics, through the official client library, correct with several workers.

Every worker process writes its samples to files in `PROMETHEUS_MULTIPROC_DIR` (the client's
multiprocess mode; `fsplug.server.serve` creates and empties the directory before the workers
start), and `/metrics`, whichever worker answers it, merges all workers' files. Two series are not
kept in files but computed when scraped: each view's freshness (read from the store's
materialization state) and the registry hash the answering worker serves.

This module must be imported only after `PROMETHEUS_MULTIPROC_DIR` is set (the client picks its
storage at import): `serve()` sets it before any worker starts.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fsplug.server import pid_alive

if TYPE_CHECKING:
    from fsplug.state import ViewState

__all__ = [
    "REQUEST_SECONDS",
    "STORE_READ_SECONDS",
    "ENTITIES",
    "ERRORS",
    "IN_FLIGHT",
    "REQUESTS",
    "REGISTRY_SWAPS",
    "REGISTRY_SERVED",
    "render",
    "families",
    "reap_dead_workers",
    "CONTENT_TYPE",
    "FLUSH_S",
    "child",
    "flush",
    "request_started",
    "request_finished",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_ENTITY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

REQUEST_SECONDS = Histogram(
    "fsplug_request_duration_seconds",
    "Time from the request's body to its response, per endpoint and "
    "feature service ('' for a list of features, '?' for a request that named none it knows)",
    ["endpoint", "feature_service"],
    buckets=_LATENCY_BUCKETS,
)
STORE_READ_SECONDS = Histogram(
    "fsplug_store_read_duration_seconds",
    "Time of the online store read (validation and read) per endpoint",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
ENTITIES = Histogram(
    "fsplug_request_entities", "Entities per read request", ["endpoint"], buckets=_ENTITY_BUCKETS
)
REQUESTS = Counter(
    "fsplug_requests_total", "Requests answered, per endpoint and HTTP status", ["endpoint", "code"]
)
ERRORS = Counter(
    "fsplug_request_errors_total", "Failed requests per endpoint and kind of error", ["endpoint", "kind"]
)
IN_FLIGHT = Gauge(
    "fsplug_requests_in_flight", "Requests being answered (all live workers)", multiprocess_mode="livesum"
)
REGISTRY_SWAPS = Counter("fsplug_registry_swaps_total", "Newly applied registries a worker swapped to")
REGISTRY_SERVED = Gauge(
    "fsplug_registry_served",
    "1 for each registry hash a live worker serves",
    ["hash"],
    multiprocess_mode="livemax",
)


FLUSH_S = 1.0
"""How often each worker writes its pending samples to the shared files (also before a scrape)."""


class _PendingHistogram:
    """One histogram series' observations not yet written: per bucket counts and their sum.

    A write to the multiprocess files costs a lock and an mmap update per value (two per observation,
    about 4 us on the measuring machine); a request observes three histograms, so the samples are
    kept here and written by `flush` (the client's own bucket rule: the first bound >= the value).
    """

    __slots__ = ("child", "bounds", "counts", "total")

    def __init__(self, child: Any):
        self.child = child
        self.bounds = tuple(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        counts, total = self.counts, self.total
        if not any(counts):
            return
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.child._sum.inc(total)
        for bucket, k in zip(self.child._buckets, counts, strict=True):
            if k:
                bucket.inc(k)


class _PendingCounter:
    """One counter series' increments not yet written (see `_PendingHistogram`)."""

    __slots__ = ("child", "count")

    def __init__(self, child: Any):
        self.child = child
        self.count = 0

    def inc(self, amount: int = 1) -> None:
        self.count += amount

    def flush(self) -> None:
        if self.count:
            k, self.count = self.count, 0
            self.child.inc(k)


_CHILDREN: dict[tuple[Any, ...], Any] = {}
_in_flight = [0]  # this worker's requests in flight (a list: mutated in place, no `global`)


def child(metric: Any, *labels: str) -> Any:
    """The series of `metric` with these labels, as a pending (in-memory) series that `flush` writes."""
    key = (id(metric), *labels)
    c = _CHILDREN.get(key)
    if c is None:
        real = metric.labels(*labels)
        c = _CHILDREN[key] = _PendingHistogram(real) if isinstance(metric, Histogram) else _PendingCounter(real)
    return c


def request_started() -> None:
    """One more request in flight (the gauge is written by `flush`)."""
    _in_flight[0] += 1


def request_finished() -> None:
    """One request fewer in flight."""
    _in_flight[0] -= 1


def flush() -> None:
    """Write this worker's pending samples and its in-flight count to the shared files."""
    for c in list(_CHILDREN.values()):
        c.flush()
    IN_FLIGHT.set(_in_flight[0])


class _LiveCollector(Collector):
    """Series computed at scrape time: per-view freshness and the registry hash of this worker."""

    def __init__(self, states: Callable[[], dict[str, ViewState]], registry_hash: Callable[[], str]):
        self._states = states
        self._hash = registry_hash

    def collect(self) -> Iterator[Any]:
        fresh = GaugeMetricFamily(
            "fsplug_feature_freshness_seconds",
            "Now minus the newest event time materialized per view (from the store's materialization state)",
            labels=["view"],
        )
        try:
            states = self._states()
        except Exception:  # a store failure must not fail the scrape: the series is absent then
            states = {}
        now = time.time()
        for view, st in sorted(states.items()):
            if st.newest_event is not None:
                fresh.add_metric([view], max(0.0, now - st.newest_event.timestamp()))
        yield fresh
        info = GaugeMetricFamily(
            "fsplug_registry_info", "The registry hash the answering worker serves", labels=["hash"]
        )
        info.add_metric([self._hash()], 1.0)
        yield info


def _merged() -> Any:
    """The registry of every worker's samples (multiprocess mode), or this process's own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    from prometheus_client import REGISTRY  # not started by serve() (an app built in-process)

    return REGISTRY


def families() -> list[Any]:
    """Every worker's metric families, merged as `/metrics` serves them (the console's Serving page)."""
    flush()
    return list(_merged().collect())


def render(states: Callable[[], dict[str, ViewState]], registry_hash: Callable[[], str]) -> bytes:
    """The `/metrics` body: every worker's samples merged (this worker's flushed first; the others' as
    of their last flush, at most `FLUSH_S` old), plus the series computed now."""
    flush()
    out = generate_latest(_merged())
    live = CollectorRegistry()
    live.register(_LiveCollector(states, registry_hash))
    return out + generate_latest(live)


def reap_dead_workers() -> None:
    """Drop the live-gauge files of worker processes that are gone (a killed worker's in-flight count)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return
    for name in os.listdir(path):
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        try:
            pid = int(name.rsplit("_", 1)[1][:-3])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            multiprocess.mark_process_dead(pid, path)
