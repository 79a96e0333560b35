"""Fixtures of the console tests: one `fsplug serve` per module, one headless Chromium per session.

The browser is Debian's /usr/bin/chromium driven by Playwright (tests/console/browser.py). When it
is missing, every browser test errors with the command that installs it: they never pass or skip
silently (.ci/run installs it before `make test`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest

from tests.console.browser import BrowserMissing, check, chromium
from tests.console.site import build_console_repo
from tests.server.conftest import TOKEN, Server, start


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium context for the whole session (a fresh profile)."""
    missing = None
    try:
        check()
    except BrowserMissing as exc:
        missing = str(exc)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with chromium() as context:
        yield context


class ConsolePage:
    """A browser tab that records console errors and uncaught page errors."""

    def __init__(self, page: Any, url: str):
        self.page = page
        self.url = url
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def goto(self, path: str, status: int = 200) -> Any:
        response = self.page.goto(self.url + path)
        assert response is not None and response.status == status, (path, response and response.status)
        assert self.errors == [], (path, self.errors)
        return response


@pytest.fixture
def tab(browser, console_server) -> Iterator[ConsolePage]:
    """A new tab on the module's server; the test fails if the page logged an error."""
    page = browser.new_page()
    cp = ConsolePage(page, console_server.url)
    try:
        yield cp
        assert cp.errors == []
    finally:
        page.close()


@pytest.fixture(scope="session")
def console_repo(tmp_path_factory) -> Path:
    """The console's demo repo with the stale view and the view holding markup."""
    return build_console_repo(tmp_path_factory.mktemp("console") / "repo", hostile=True)


@pytest.fixture(scope="module")
def console_server(console_repo) -> Iterator[Server]:
    """`fsplug serve --workers 2` on the console repo (no token)."""
    srv = start(console_repo, "--workers", "2")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def guarded(console_repo) -> Iterator[Server]:
    """`fsplug serve --auth-reads` with the token set: reads, and so the console, need the token."""
    srv = start(console_repo, "--auth-reads", env={"FSPLUG_SERVE_TOKEN": TOKEN})
    yield srv
    srv.stop()
