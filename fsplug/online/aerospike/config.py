"""`online_store` settings for `type: aerospike`: the typed model, host parsing, credentials from the environment.

Credentials and TLS key passwords are never in this model: it holds the NAMES of environment
variables, read by `env_value` when the store connects.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from fsplug.errors import ConfigError
from fsplug.online.base import StoreConfig
from fsplug.types import parse_ttl

__all__ = ["AerospikeConfig", "TLSConfig", "parse_host", "env_value", "MAX_NAMESPACE_BYTES", "MAX_SET_BYTES"]

MAX_NAMESPACE_BYTES = 31
MAX_SET_BYTES = 63

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SET_CHARS = re.compile(r"^[A-Za-z0-9_$-]+$")


def _check_env_name(v: Any) -> str | None:
    # The message never repeats the value: a secret pasted here by mistake must not be echoed.
    if v is not None and not (isinstance(v, str) and _ENV_NAME.match(v)):
        raise ValueError("must be the name of an environment variable (letters, digits and '_'), not the "
                         "value itself")
    return v


class TLSConfig(StoreConfig):
    """TLS settings; file paths only (never key material inline)."""

    type: str = "tls"
    enable: bool = Field(default=True, description="Use TLS to talk to the cluster.")
    name: str | None = Field(default=None, description="TLS name of the nodes (for certificate checks).")
    cafile: str | None = Field(default=None, description="CA bundle path.")
    certfile: str | None = Field(default=None, description="Client certificate path (mutual TLS).")
    keyfile: str | None = Field(default=None, description="Client private key path (mutual TLS).")
    keyfile_password_env: str | None = Field(default=None, description="Env var holding the key's password.")

    @field_validator("keyfile_password_env", mode="before")
    @classmethod
    def _env_name(cls, v: Any) -> str | None:
        return _check_env_name(v)


class AerospikeConfig(StoreConfig):
    """`online_store` settings for `type: aerospike`. Credentials come from environment variables."""

    type: str = "aerospike"
    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:3000"],
                             description="Seed nodes as host:port (or host:tls_name:port).")
    hosts_env: str | None = Field(default="FSPLUG_AEROSPIKE_HOSTS",
                                  description="Env var that, when set, overrides hosts (comma-separated).")
    namespace: str = Field(default="test", description="Namespace holding fsplug's sets (at most 31 bytes).")
    sets: dict[str, str] = Field(default_factory=dict, description="Per-entity set name overrides (default: "
                                 "`<project>-<entity>`); `{driver: driver}` keeps a set name of fsplug 0.1.")
    state_set: str = Field(default="fsplug_state", description="Set of the materialization state records, "
                           "one per (project, view).")
    teardown_timeout_ms: int = Field(default=60_000, ge=1, description="How long teardown waits for every "
                                     "node to finish truncating the project's sets.")
    record_ttl: str | int = Field(
        default="never",
        description="Record TTL: `never` (default; works with nsup-period 0), `namespace-default`, or a "
                    "duration like 30d. Feature freshness is the view's ttl, checked at read time.")
    read_total_timeout_ms: int = Field(default=50, ge=0, description="Total budget of a batch read, retries included.")
    read_socket_timeout_ms: int = Field(default=20, ge=0,
                                        description="Budget of one read attempt; retries fire inside the total.")
    write_total_timeout_ms: int = Field(default=5000, ge=0, description="Total budget of one batch_write chunk.")
    write_socket_timeout_ms: int = Field(default=2000, ge=0, description="Budget of one write attempt.")
    max_retries: int = Field(default=2, ge=0, description="Retries of a read within its total timeout.")
    sleep_between_retries_ms: int = Field(default=0, ge=0, description="Pause between retries.")
    connect_timeout_ms: int = Field(default=1000, ge=1, description="Timeout of the initial connection to a seed.")
    min_conns_per_node: int = Field(default=4, ge=0, description="Connections opened per node at connect (warm-up).")
    max_conns_per_node: int = Field(default=100, ge=1, description="Connection pool cap per node.")
    write_batch_size: int = Field(default=5000, ge=1, le=100_000, description="Records per batch_write call.")
    max_read_batch: int = Field(default=5000, ge=1, description="Keys per batch_read; larger requests are chunked.")
    tend_interval_ms: int = Field(default=1000, ge=250, description="Cluster tend interval.")
    user_env: str | None = Field(default=None, description="Env var holding the user name (security enabled clusters).")
    password_env: str | None = Field(default=None, description="Env var holding the password.")
    tls: TLSConfig | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    use_services_alternate: bool = Field(default=False, description="Use nodes' alternate addresses (NAT).")

    @field_validator("user_env", "password_env", "hosts_env", mode="before")
    @classmethod
    def _env_name(cls, v: Any) -> str | None:
        return _check_env_name(v)

    @model_validator(mode="after")
    def _credentials(self) -> AerospikeConfig:
        if (self.user_env is None) != (self.password_env is None):
            raise ValueError("user_env and password_env go together: name both environment variables, or neither")
        return self

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        if not v or len(v.encode()) > MAX_NAMESPACE_BYTES:
            raise ValueError(f"namespace {v!r} is {len(v.encode())} bytes; Aerospike allows 1 to {MAX_NAMESPACE_BYTES}")
        return v

    @field_validator("sets")
    @classmethod
    def _sets(cls, v: dict[str, str]) -> dict[str, str]:
        for entity, name in v.items():
            if not name or len(name.encode()) > MAX_SET_BYTES:
                raise ValueError(f"set {name!r} for entity {entity!r} is {len(name.encode())} bytes; "
                                 f"Aerospike allows 1 to {MAX_SET_BYTES}")
        return v

    @field_validator("state_set")
    @classmethod
    def _state_set(cls, v: str) -> str:
        if not v or len(v.encode()) > MAX_SET_BYTES or not _SET_CHARS.match(v):
            raise ValueError(f"state_set {v!r} must be 1 to {MAX_SET_BYTES} bytes of letters, digits, '_', '-'")
        return v

    @field_validator("record_ttl")
    @classmethod
    def _ttl(cls, v: str | int) -> str | int:
        if v in ("never", "namespace-default"):
            return v
        try:
            if parse_ttl(v) is None:
                raise ValueError("a record_ttl of 0 is ambiguous: write `never` or `namespace-default`")
        except ValueError as exc:
            raise ValueError(f"record_ttl: {exc}; or `never` / `namespace-default`") from None
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("hosts needs at least one host:port")
        for h in v:
            parse_host(h)
        return v

    def seed_hosts(self) -> list[str]:
        env = os.environ.get(self.hosts_env) if self.hosts_env else None
        if env:
            hosts = [h.strip() for h in env.split(",") if h.strip()]
            for h in hosts:
                parse_host(h)
            return hosts
        return list(self.hosts)

    def ttl_seconds(self) -> int:
        """The TTL written with records: -1 never expire, 0 namespace default, else seconds."""
        if self.record_ttl == "never":
            return -1
        if self.record_ttl == "namespace-default":
            return 0
        return parse_ttl(self.record_ttl) or 0  # validated: never None here


def parse_host(text: str) -> tuple[Any, ...]:
    """`host:port` or `host:tls_name:port` -> a tuple for the client's config."""
    parts = text.rsplit(":", 2) if text.count(":") >= 2 and not text.startswith("[") else text.rsplit(":", 1)
    try:
        port = int(parts[-1])
    except (ValueError, IndexError):
        raise ConfigError(f"host {text!r} must look like host:port (e.g. 127.0.0.1:3000)") from None
    if not 0 < port < 65536:
        raise ConfigError(f"host {text!r}: port {port} is out of range")
    if len(parts) == 3:
        return (parts[0], port, parts[1])
    return (parts[0], port)



def env_value(name: str, key: str) -> str:
    """The value of environment variable `name` (named by online_store.`key`); never echoed in errors."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"online_store.{key} names the environment variable {name}, which is not set")
    return value

