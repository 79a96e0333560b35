"""Screenshots of every console page for the README: `python -m tests.console.screenshots [OUT_DIR]`.

Builds the console's demo repo (tests/console/site.py) in a temporary folder, starts
`fsplug serve --workers 2` on it, sends some traffic, and saves one PNG per page with headless
Chromium (/usr/bin/chromium) into OUT_DIR (default docs/console/).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.console.browser import chromium
from tests.console.site import build_console_repo, traffic
from tests.server.conftest import start

ROOT = Path(__file__).resolve().parents[2]

PAGES = [
    ("overview", "/ui/"),
    ("views", "/ui/views"),
    ("view", "/ui/views/driver_stats"),
    ("service", "/ui/services/decline_model_v1"),
    ("entities", "/ui/entities"),
    ("sources", "/ui/sources"),
    ("freshness", "/ui/freshness"),
    ("serving", "/ui/serving"),
    ("lookup", "/ui/lookup?service=decline_model_v1&driver_id=1001%2C1002%2C999999&pickup_distance_km=1.2"
               "&hour_of_day=8"),
]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "docs" / "console"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_console_repo(Path(tmp) / "repo")
        srv = start(repo, "--workers", "2")
        try:
            traffic(srv.url)
            with chromium() as browser:
                page = browser.new_page()
                for name, path in PAGES:
                    page.goto(srv.url + path)
                    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                    print(out / f"{name}.png")
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
