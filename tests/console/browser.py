"""Headless Chromium through Playwright, pointed at the system browser (Debian's `chromium` package).

Playwright's own browser downloads are never used (`playwright install` is not run): the tests
and the screenshot script launch /usr/bin/chromium with a fresh profile and the flags that keep it
from opening connections of its own (a closed network refuses them, and tests must not depend on
them). A missing browser or package raises `BrowserMissing` with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Iterator

CHROMIUM = Path(os.environ.get("FSPLUG_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class BrowserMissing(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install it."""


def check() -> None:
    """Raise BrowserMissing unless Playwright and the system Chromium are installed."""
    if not CHROMIUM.is_file():
        raise BrowserMissing(f"chromium not found at {CHROMIUM}: apt-get install -y chromium "
                             "(.ci/run installs it before make test)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise BrowserMissing("the playwright package is missing: pip install -e '.[test]'") from None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (Playwright's Browser) with a fresh user-data dir, closed after."""
    check()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="fsplug-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=ARGS,
                viewport={"width": 1280, "height": 720})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
