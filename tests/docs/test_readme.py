"""The README's examples run as written: every ```python and ```sh block, against a demo repo.

Blocks run in order from a scratch copy of the repository layout whose `feature_repo/` holds
generated data (drivers 1001 and up), applied, materialized and with a trained model, as after
`make demo`; shell blocks run with this environment's `fsplug` and `python` first on PATH. A block
right after `<!-- readme-test: skip: <reason> -->` is not run (only the setup commands this suite
itself runs under may be); syntax synopses use plain ``` fences, not ```sh.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_served_repo

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip: (.+?) -->\s*$")
ALLOWED_SKIPS = {"make demo", "make test"}  # the commands CI itself runs: not run again inside the suite


def blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, skip reason) of every fenced block of `text`."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.search(prev)
        out.append((start + 1, lang, "\n".join(lines[start + 1:j]) + "\n", skip.group(1) if skip else None))
        i = j + 1
    return out


RUNNABLE = [(line, lang, code, skip) for line, lang, code, skip in blocks(README.read_text(encoding="utf-8"))
            if lang in ("python", "sh", "bash", "shell")]


def test_the_readme_has_runnable_blocks_and_skips_only_setup_commands():
    assert sum(lang == "python" for _, lang, _, _ in RUNNABLE) >= 2
    assert sum(lang != "python" for _, lang, _, _ in RUNNABLE) >= 2
    for line, _, code, skip in RUNNABLE:
        if skip is not None:
            commands = {c.split("#")[0].strip() for c in code.splitlines() if c.strip()}
            assert commands <= ALLOWED_SKIPS, f"README.md:{line} is skipped ({skip}) but runs {commands}"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    cfg = (ROOT / "feature_repo" / "feature_store.yaml").read_text()
    build_served_repo(root / "feature_repo", cfg, n_drivers=60, days=3)
    return root


@pytest.mark.parametrize("line,lang,code", [(b[0], b[1], b[2]) for b in RUNNABLE if b[3] is None],
                         ids=[f"README.md:{b[0]}" for b in RUNNABLE if b[3] is None])
def test_readme_block_runs(demo_root, line, lang, code):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    p = subprocess.run(cmd, cwd=demo_root, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode == 0, (f"README.md:{line} failed:\n{code}\n--- stdout\n{p.stdout[-3000:]}\n"
                               f"--- stderr\n{p.stderr[-3000:]}")
