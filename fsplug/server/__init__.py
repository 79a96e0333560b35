"""`fsplug serve`: the feature server (HTTP/JSON in Feast's format, Prometheus metrics).

    from fsplug.server import serve
    serve("feature_repo", host="127.0.0.1", port=6566, workers=2)

Needs the `server` extra (`pip install 'fsplug[server]'`: uvicorn, orjson, prometheus_client).
`import fsplug` never imports this package. The app lives in app.py, the metrics in metrics.py,
the settings in config.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

from fsplug.server.config import CONFIG_ENV, ServerConfig

__all__ = ["serve", "ServerConfig"]


def serve(repo: str | Path = ".", **options: Any) -> None:
    """Serve a feature repo's applied registry over HTTP until SIGTERM / SIGINT.

    Args:
        repo: the feature repo, or a folder with only a feature_store.yaml saying `registry: online`.
        **options: any `ServerConfig` field: host, port, workers, read_timeout_ms, max_body_bytes,
            body_timeout_s, registry_poll_s, enable_push, token_env, auth_reads, graceful_timeout_s,
            access_log, log_level.

    Raises:
        ConfigError: refused settings (see `ServerConfig.check`), or the `server` extra is missing.
        FsplugError: the registry or the store cannot be opened (checked before the workers start).
    """
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"serve() got unknown options {unknown}; known: {sorted(known - {'repo'})}")
    config = ServerConfig(repo=str(Path(repo).resolve()), **options)
    config.check()
    _check_server_deps()
    _check_repo(config)
    os.environ[CONFIG_ENV] = config.to_env()
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _remove_stale_metric_dirs()
        own_dir = tempfile.mkdtemp(prefix=f"fsplug-metrics-{os.getpid()}-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    else:  # a directory given by the operator: emptied, as the client library requires at start
        path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.db"):
            f.unlink()
    import uvicorn  # after PROMETHEUS_MULTIPROC_DIR: the metrics client picks its storage at import

    try:
        uvicorn.run(
            "fsplug.server.app:app_from_env",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers if config.workers > 1 else None,
            http="fsplug.server.protocol:FeatureServerProtocol",  # httptools; reads answered directly
            loop=_loop(),
            lifespan="on",
            access_log=config.access_log,
            log_level=config.log_level,
            timeout_graceful_shutdown=max(1, round(config.graceful_timeout_s)),  # uvicorn takes whole seconds
            server_header=False,
        )
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _remove_stale_metric_dirs() -> None:
    """Remove the metrics directories of `serve()` processes that are gone.

    uvicorn ends the process by re-raising SIGTERM once it has shut down, so `serve()`'s own cleanup
    does not always run; the next start removes what such a process left.
    """
    for d in Path(tempfile.gettempdir()).glob("fsplug-metrics-*-*"):
        try:
            pid = int(d.name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (used to clean up after processes that are gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_server_deps() -> None:
    """Raise ConfigError naming the extra when a server dependency is missing (imports none of them)."""
    from importlib.util import find_spec

    from fsplug.errors import ConfigError

    for name in ("uvicorn", "orjson", "prometheus_client", "httptools"):
        if find_spec(name) is None:
            raise ConfigError(
                f"fsplug serve needs the server extra ({name} is missing): pip install 'fsplug[server]'"
            )


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _check_repo(config: ServerConfig) -> None:
    """Fail before starting workers when the registry cannot be loaded (a clear message, exit 1)."""
    from fsplug.store import FeatureStore

    with FeatureStore(config.repo) as store:
        _ = store.registry
