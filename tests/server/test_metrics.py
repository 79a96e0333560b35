"""The server's pending metric series write what the Prometheus client's own calls would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from fsplug.server import metrics as m


def _exposition(reg: CollectorRegistry) -> list[str]:
    """The samples whatever the metric's name (`_created` stamps differ by construction); sums rounded,
    as a batch adds its values in another order than one observation at a time."""
    out = []
    for line in generate_latest(reg).decode().splitlines():
        if line and not line.startswith("#") and "_created" not in line:
            sample = line.split("_", 2)[-1]
            if sample.startswith("sum"):
                name, value = sample.rsplit(" ", 1)
                sample = f"{name} {float(value):.9g}"
            out.append(sample)
    return out


def test_pending_histograms_and_counters_flush_to_the_clients_own_samples():
    rng = random.Random(3)
    buckets = (0.0001, 0.001, 0.01, 0.1, 1.0)
    values = [rng.choice([0.0001, 0.001, 0.1, 5.0, 0.0]) if rng.random() < 0.3 else rng.expovariate(50)
              for _ in range(500)]  # bucket bounds exactly, past the last bound, zero, and random
    direct_reg, pending_reg = CollectorRegistry(), CollectorRegistry()
    h_direct = Histogram("a_h", "h", ["k"], buckets=buckets, registry=direct_reg)
    h_pending = Histogram("b_h", "h", ["k"], buckets=buckets, registry=pending_reg)
    c_direct = Counter("a_c", "c", ["k"], registry=direct_reg)
    c_pending = Counter("b_c", "c", ["k"], registry=pending_reg)
    for i, v in enumerate(values):
        h_direct.labels("x").observe(v)
        m.child(h_pending, "x").observe(v)
        c_direct.labels("x").inc()
        m.child(c_pending, "x").inc()
        if i == 200:
            assert _exposition(direct_reg) != _exposition(pending_reg)  # pending until flushed
            m.flush()  # a flush midway, as the worker's timer does
            assert _exposition(direct_reg) == _exposition(pending_reg)
    assert _exposition(direct_reg) != _exposition(pending_reg)
    m.flush()
    assert _exposition(direct_reg) == _exposition(pending_reg)
    m.flush()  # nothing pending: nothing changes
    assert _exposition(direct_reg) == _exposition(pending_reg)


def test_in_flight_is_written_at_flush():
    m.request_started()
    m.request_started()
    m.flush()
    assert m.IN_FLIGHT._value.get() == 2
    m.request_finished()
    m.request_finished()
    m.flush()
    assert m.IN_FLIGHT._value.get() == 0
