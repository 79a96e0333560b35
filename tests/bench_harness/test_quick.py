"""Smoke test of the benchmark harness: the quick suite on tiny sizes produces well-formed results.

Never asserts timings (CI machines are shared and noisy); Feast is not needed (--with-feast is optional).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_quick_suite_writes_json_and_markdown(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks", "run", "--quick", "--entities", "300", "--days", "3", "--calls", "30",
           "--rounds", "2", "--warmup", "5", "--scale-sizes", "400", "--scale-calls", "20", "--out", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    files = sorted(tmp_path.glob("*_quick.json"))
    assert len(files) == 1
    res = json.loads(files[0].read_text())
    assert res["meta"]["mode"] == "quick"
    assert res["meta"]["machine"]["nproc"] >= 1
    sq = res["stores"]["sqlite"]
    base = sq["base"]
    assert set(base["reads"]) == {"one", "fifty", "fifty_numpy", "fifty_dict", "predict", "dispatch"}
    for case, systems in base["reads"].items():
        assert "fsplug" in systems
        if case in ("one", "fifty"):
            assert "raw" in systems
        for s in systems.values():
            assert s["n"] == 30
            assert 0 < s["p50_us"] <= s["p99_us"] <= s["p999_us"]
            assert s["throughput_per_s"] > 0
    assert "floor" in base["reads"]["one"] and "raw IN" in base["reads"]["fifty"]
    assert "raw+numpy" in base["reads"]["fifty_numpy"]
    assert base["agreement"]["fsplug_vs_raw_mismatches"] == 0
    mat = base["materialize"]["fsplug"]
    assert mat["entities"] > 0 and mat["seconds"] > 0 and mat["peak_rss_mib"] > 0
    assert [s["drivers"] for s in sq["scale"]] == [400]
    assert {t["target"] for t in res["targets"]} >= {"1 entity: fsplug / raw driver at p50",
                                                     "dispatch 50 candidates: p99 (us)"}
    for t in res["targets"]:  # each verdict follows from its value, limit and direction
        if t["value"] is None:
            assert t["met"] is None, t
        elif t["met"] is not None:
            assert t["met"] == (t["value"] >= t["limit"] if t["op"] == ">=" else t["value"] <= t["limit"]), t
    assert any(t["met"] is not None for t in res["targets"])  # SQLite targets are judged

    md = files[0].with_suffix(".md").read_text()
    assert md.startswith("# fsplug benchmarks (quick run")
    assert "## Targets" in md and "## SQLite" in md and "### Scale" in md
    for block in md.split("\n\n"):  # every table is rectangular
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            widths = {ln.count("|") for ln in rows}
            assert len(widths) == 1, block
    pngs = list(tmp_path.glob("*_latency_50.png"))
    assert pngs or "skipped" in res["meta"]["histogram"]


def test_scale_sizes_take_suffixes():
    import argparse

    from benchmarks.__main__ import sizes

    assert sizes("10k,100k, 1M,10m") == (10_000, 100_000, 1_000_000, 10_000_000)
    assert sizes("5000,1e6,2.5k") == (5_000, 1_000_000, 2_500)
    assert sizes("") == ()
    for bad in ("ten", "1.5", "0", "-3k"):
        with pytest.raises(argparse.ArgumentTypeError):
            sizes(bad)
