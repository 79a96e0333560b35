"""The web console at `/ui/` of `fsplug serve`: the registry, freshness, serving latency and a lookup.

Server-rendered HTML with inline SVG charts (no script, no build step), read only, behind the
feature server's token rule. Built by the feature server in each worker (`Console`), it imports
nothing of the server: the server hands it the store, its own ASGI app (lookups go through
`POST /get-online-features`), the token and its metrics.

- app.py: `Console`, the routes, the lookup through the API;
- auth.py: the token rule (bearer header or session cookie);
- catalog_pages.py / ops_pages.py: the pages; layout.py, html.py (escaping builder), charts.py (SVG);
- context.py (what a page reads), freshness.py, serving.py (histograms and percentiles), lookup.py (the form).
"""

from fsplug.console.app import Console

__all__ = ["Console"]
