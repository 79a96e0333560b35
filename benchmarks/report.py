"""Result files: the JSON record of a run, its Markdown tables, and the 50-entity latency histogram."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASE_TITLES = {
    "one": "1 entity (`get_feature_vector`)",
    "fifty": "50 entities (`get_online_features`)",
    "fifty_numpy": "50 entities (`get_online_features` + `to_numpy`)",
    "fifty_dict": "50 entities (`get_online_features` + `to_dict`)",
    "predict": "`predict_decline_risk` (1 driver)",
    "dispatch": "`dispatch` (50 candidates)",
}
SYSTEM_TITLES = {"fsplug": "fsplug", "raw": "raw driver", "feast": "Feast",
                 "raw IN": "raw `apsw` IN query (hand-written, for reference)",
                 "raw+numpy": "raw call + `np.array(rows)` (floor of `to_numpy`)",
                 "floor": "raw call + arrays + result object, no checks (floor of any vector API)"}
# the baseline each case's "vs raw" column divides by
CASE_BASELINE = {"fifty_numpy": "raw+numpy"}


def _f(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, (int, float)) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _raw_title(store: str) -> str:
    return "raw `apsw`: fsplug's statement" if store == "sqlite" else "raw `aerospike` batch_read"


def reads_table(store: str, reads: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = ["| case | system | p50 (us) | p99 (us) | p99.9 (us) | calls/s | p50 vs baseline | "
             "Feast / fsplug (p50, p99) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, systems in reads.items():
        base_name = CASE_BASELINE.get(case, "raw")
        raw = systems.get(base_name) or (reads.get("fifty", {}).get("raw") if case == "fifty_dict" else None)
        feast = systems.get("feast")
        for name, s in systems.items():
            title = _raw_title(store) if name == "raw" else SYSTEM_TITLES.get(name, name)
            vs_raw = "-"
            if raw is not None and name != base_name and raw.get("p50_us"):
                vs_raw = f"{s['p50_us'] / raw['p50_us']:.2f}x"
            vs_feast = "-"
            if name == "fsplug" and feast is not None:
                vs_feast = f"{feast['p50_us'] / s['p50_us']:.1f}x, {feast['p99_us'] / s['p99_us']:.1f}x"
            lines.append(f"| {CASE_TITLES.get(case, case)} | {title} | {_f(s['p50_us'])} | {_f(s['p99_us'])} | "
                         f"{_f(s['p999_us'])} | {_f(s['throughput_per_s'], 0)} | {vs_raw} | {vs_feast} |")
    return lines


def materialize_table(mat: dict[str, Any]) -> list[str]:
    lines = ["| system | entities | seconds | entities/s | peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    for name, m in mat.items():
        lines.append(f"| {SYSTEM_TITLES.get(name, name)} | {_f(m.get('entities'))} | {_f(m.get('seconds'), 2)} | "
                     f"{_f(m.get('entities_per_s'), 0)} | {_f(m.get('peak_rss_mib'), 0)} |")
    return lines


def scale_table(scale: list[dict[str, Any]]) -> list[str]:
    lines = ["| drivers | materialize: entities/s | seconds | peak RSS (MiB) | 1 entity p50 / p99 (us): fsplug | raw | "
             "50 entities p50 / p99 (us): fsplug | raw | fsplug + to_dict | Feast + to_dict |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pp(s: dict[str, Any] | None) -> str:
        return "-" if not s else f"{_f(s['p50_us'])} / {_f(s['p99_us'])}"

    for s in scale:
        m = s["materialize"].get("fsplug", {})
        r = s["reads"]
        lines.append(f"| {s['drivers']:,} | {_f(m.get('entities_per_s'), 0)} | {_f(m.get('seconds'), 1)} | "
                     f"{_f(m.get('peak_rss_mib'), 0)} | {pp(r.get('one', {}).get('fsplug'))} | "
                     f"{pp(r.get('one', {}).get('raw'))} | {pp(r.get('fifty', {}).get('fsplug'))} | "
                     f"{pp(r.get('fifty', {}).get('raw'))} | {pp(r.get('fifty_dict', {}).get('fsplug'))} | "
                     f"{pp(r.get('fifty_dict', {}).get('feast'))} |")
    return lines


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | store | measured | goal | met |", "|---|---|---:|---:|---|"]
    for t in targets:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        if t.get("note", "").startswith("reference"):
            met = "-"
        note = f" ({t['note']})" if t.get("note") and t["met"] is None else ""
        if met == "-":
            note = f" ({t['note']})"
        lines.append(f"| {t['target']} | {t['store']} | {_f(t['value'], 2)} | {t['op']} {_f(t['limit'], 1)} | "
                     f"{met}{note} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    mc = meta["machine"]
    v = meta["versions"]
    out = [f"# fsplug benchmarks ({meta['mode']} run, {meta['started']})", "",
           f"Command: `{meta['command']}`  ",
           f"Machine: {mc.get('nproc')} cores ({mc.get('cpu', '?')}), {mc.get('mem_total_gib', '?')} GiB RAM, "
           f"{mc.get('platform')}, Python {mc.get('python')}; "
           f"load average at start {' '.join(mc.get('loadavg_start', []))}"
           f", at end {' '.join(mc.get('loadavg_end', []))}  ",
           "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "  ",
           f"Note: {meta['note']}.", "", "## Targets", "", *targets_table(result["targets"]), ""]
    for store, s in result["stores"].items():
        base = s.get("base") or {}
        title = "SQLite (file, WAL)" if store == "sqlite" else "Aerospike"
        out += [f"## {title}", ""]
        if s.get("label"):
            out += [f"**{s['label']}**", ""]
        if base:
            ds = base["dataset"]
            out += [f"### Reads: {ds['drivers']:,} drivers x {ds['days']} days, after warm-up, systems alternating", ""]
            out += reads_table(store, base["reads"]) + [""]
            if base.get("feast_not_run"):
                out += [f"Feast not run here: {base['feast_not_run']}", ""]
            if base.get("agreement"):
                out += ["Cross-check (same keys, not timed): " + ", ".join(f"{k} {val}" for k, val in
                                                                           base["agreement"].items()), ""]
            out += ["### Materialization (each in its own child process)", "",
                    *materialize_table(base["materialize"]), ""]
        if s.get("scale"):
            out += [f"### Scale: {s['scale'][0]['dataset']['days']} day(s) of data, no offers", ""]
            if s.get("scale_note"):
                out += [s["scale_note"], ""]
            out += scale_table(s["scale"]) + [""]
    return "\n".join(out) + "\n"


def histogram(result: dict[str, Any], path: Path, store: str | None = None) -> str | None:
    """The 50-entity latency histogram (fsplug vs Feast vs raw) of `store` (default: SQLite if it ran,
    else the first store run); returns why it was skipped, or None."""
    if store is None:
        stores = list(result["stores"])
        store = "sqlite" if "sqlite" in stores or not stores else stores[0]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return ("matplotlib is not installed: no histogram PNG (install the bench extra: "
                ".venv/bin/pip install -e '.[bench]')")
    base = (result["stores"].get(store) or {}).get("base") or {}
    samples = base.get("samples_fifty_us")
    if not samples:
        return f"no 50-entity samples for {store}"
    fig, ax = plt.subplots(figsize=(9, 4.8))
    allv = np.concatenate([np.asarray(v) for v in samples.values()])
    lo, hi = max(1.0, float(np.percentile(allv, 0.05))), float(np.percentile(allv, 99.95))
    bins = np.geomspace(lo, hi, 120)
    colors = {"fsplug": "#1f77b4", "raw": "#2ca02c", "feast to_dict": "#d62728", "fsplug to_dict": "#17becf"}
    labels = {"fsplug": "fsplug get_online_features", "raw": _raw_title(store).replace("`", ""),
              "fsplug to_dict": "fsplug get_online_features + to_dict",
              "feast to_dict": "Feast get_online_features + to_dict"}
    for name, vals in samples.items():
        if name not in labels:
            continue
        a = np.asarray(vals)
        label = f"{labels[name]} (p50 {np.percentile(a, 50):,.0f} us, p99 {np.percentile(a, 99):,.0f} us)"
        ax.hist(np.clip(a, lo, hi), bins=bins, alpha=0.6, label=label, color=colors.get(name))
    ax.set_xscale("log")
    ax.set_xlabel("latency per call (us, log scale)")
    ax.set_ylabel("calls")
    ds = base["dataset"]
    store_label = (result["stores"].get(store) or {}).get("label")
    ax.set_title(f"50 entities x 11 stored features, {store}, {ds['drivers']:,} drivers "
                 f"({result['meta']['started'][:10]})" + (f"\n{store_label}" if store_label else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(result: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}_latency_50.png"}
    why = histogram(result, paths["png"])
    if why:
        result["meta"]["histogram"] = f"skipped: {why}"
        paths.pop("png")
    else:
        result["meta"]["histogram"] = str(paths["png"])
    paths["json"].write_text(json.dumps(result, indent=1, default=str))
    paths["md"].write_text(markdown(result))
    return paths
