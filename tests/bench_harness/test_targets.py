"""Target evaluation of the benchmark harness: ratios judged only where the figures mean something."""

from __future__ import annotations

from benchmarks.suite import TEST_SERVER_LABEL, targets


def _result(label):
    reads = {"fifty_dict": {"fsplug": {"p50_us": 100.0, "p99_us": 200.0}, "feast": {"p50_us": 5000.0, "p99_us": 900.0}},
             "fifty": {"fsplug": {"p50_us": 110.0}, "raw": {"p50_us": 100.0}},
             "one": {"fsplug": {"p50_us": 12.0}, "raw": {"p50_us": 6.0}, "floor": {"p50_us": 8.0}}}
    return {"stores": {"aerospike": {"label": label, "base": {"reads": reads, "materialize": {}}, "scale": []}}}


def test_real_store_figures_are_judged():
    t = {x["target"]: x for x in targets(_result(None))}
    assert t["50 entities: Feast / fsplug at p50 (x faster)"]["met"] is True  # 50x
    assert t["50 entities: Feast / fsplug at p99 (x faster)"]["met"] is False  # 4.5x
    assert t["50 entities: fsplug / raw driver at p50"]["met"] is True  # 1.1x
    assert t["1 entity: fsplug / raw driver at p50"]["met"] is False  # 2x
    floor = t["1 entity: floor of any vector API / raw driver at p50"]
    assert floor["value"] == 1.333 and floor["met"] is None  # a reference, never judged


def test_test_server_figures_are_never_judged():
    for t in targets(_result(TEST_SERVER_LABEL)):
        assert t["met"] is None, t
