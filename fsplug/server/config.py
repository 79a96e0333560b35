"""The server's settings: one frozen object, passed to worker processes as JSON in an env variable."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

from fsplug.errors import ConfigError

__all__ = ["ServerConfig", "CONFIG_ENV", "DEFAULT_TOKEN_ENV"]

CONFIG_ENV = "FSPLUG_SERVE_CONFIG"
"""The env variable that carries the ServerConfig (JSON) from `serve()` to its worker processes."""
DEFAULT_TOKEN_ENV = "FSPLUG_SERVE_TOKEN"


@dataclass(frozen=True)
class ServerConfig:
    """What `fsplug serve` runs with (the CLI flags and `fsplug.server.serve` keywords)."""

    repo: str = "."
    """The feature repo (or a folder holding only feature_store.yaml with `registry: online`)."""
    host: str = "127.0.0.1"
    port: int = 6566
    workers: int = 1
    """Worker processes on one port; uvicorn's supervisor replaces a worker that dies."""
    read_timeout_ms: int = 1000
    """Budget of one request's store read: past it the request answers 504."""
    body_timeout_s: float = 10.0
    """Time a client has to send a request's body: past it 408."""
    max_body_bytes: int = 1 << 20
    """Largest request body: a larger one answers 413 without being read."""
    registry_poll_s: float = 5.0
    """How often each worker checks for a newly applied registry (0: never)."""
    enable_push: bool = False
    """Serve `POST /push` (off by default); it needs the token."""
    token_env: str = DEFAULT_TOKEN_ENV
    """Env variable holding the API token (`Authorization: Bearer <token>`); the token is never logged."""
    auth_reads: bool = False
    """Require the token on read endpoints too (always on /push)."""
    graceful_timeout_s: float = 30.0
    """On SIGTERM: how long requests in flight may still take before the worker exits anyway."""
    access_log: bool = False
    log_level: str = "info"

    def check(self) -> None:
        """Refuse settings the server cannot run with.

        Raises:
            ConfigError: a setting is out of range, or a token is needed and its env variable is unset.
        """
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port (1-65535)")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: at least 1")
        if self.read_timeout_ms <= 0 or self.max_body_bytes <= 0 or self.body_timeout_s <= 0:
            raise ConfigError("timeouts and the body size limit must be positive")
        if self.registry_poll_s < 0:
            raise ConfigError(f"--registry-poll {self.registry_poll_s}: 0 (off) or a number of seconds")
        if (self.enable_push or self.auth_reads) and not (os.environ.get(self.token_env) or "").strip():
            what = "--enable-push" if self.enable_push else "--auth-reads"
            raise ConfigError(
                f"{what} needs an API token: set the environment variable {self.token_env} "
                "(clients send it as `Authorization: Bearer <token>`)"
            )

    def to_env(self) -> str:
        """This config as the JSON text of CONFIG_ENV."""
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerConfig:
        """The config `serve()` left in CONFIG_ENV (defaults when unset)."""
        text = os.environ.get(CONFIG_ENV)
        if not text:
            return cls()
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
