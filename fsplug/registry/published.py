"""The registry published in the online store, so every serving host reads the same one without the repo.

`fsplug apply` publishes the compiled registry into the project's online store, next to the
materialization state and through the same store calls (`write_state` / `read_state`), under two
reserved names that no feature view can have (view names are identifiers; these start with ':'):

- `:registry`: the registry JSON, zlib-compressed and base64-encoded (`zlib:<base64>`);
- `:registry-hash`: its content hash, written after the JSON, so a host polls one small record;
- `:registry-applied`: `<hash> <ISO time>`, when that registry was applied (the console shows it).

SQLite keeps them as rows of `fsplug_state`; Aerospike as records `<project>/:registry` and
`<project>/:registry-hash` of the `state_set`. An Aerospike record holds at most the namespace's
`max-record-size` (1 MiB by default); compressed, that is a registry of several MiB of JSON (tens of
thousands of features). A larger one is refused at apply with a RegistryError that says so; such a
project serves from a shared registry file instead (`registry: /shared/path/registry.json`).

A feature_store.yaml with `registry: online` makes `FeatureStore` read (and `apply` write) the
registry only here: a serving host needs that file alone (project and online_store), no definitions.
"""

from __future__ import annotations

import base64
import contextlib
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from collections.abc import Iterator

from fsplug.errors import RecordTooBigError, RegistryError
from fsplug.registry.model import Registry
from fsplug.types import as_utc

if TYPE_CHECKING:
    from fsplug.online.base import OnlineStore

__all__ = [
    "ONLINE",
    "REGISTRY_KEY",
    "HASH_KEY",
    "publish",
    "published_hash",
    "load_published",
    "published_applied_at",
    "APPLIED_KEY",
    "OnlineRegistryStore",
]

ONLINE = "online"
"""The value of feature_store.yaml's `registry` that means: the registry published in the online store."""
REGISTRY_KEY = ":registry"
HASH_KEY = ":registry-hash"
APPLIED_KEY = ":registry-applied"
_PREFIX = "zlib:"


def encode(registry: Registry) -> str:
    """The text stored for a registry: `zlib:` + base64 of its compressed JSON."""
    return _PREFIX + base64.b64encode(zlib.compress(registry.to_json().encode("utf-8"), 6)).decode("ascii")


def decode(text: str) -> Registry:
    """The registry of a stored text; raises RegistryError for text this version cannot read."""
    try:
        if not text.startswith(_PREFIX):
            raise ValueError("unknown encoding")
        return Registry.from_json(zlib.decompress(base64.b64decode(text[len(_PREFIX) :])).decode("utf-8"))
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        raise RegistryError(
            f"the registry published in the online store is unreadable ({exc}); run `fsplug apply` again"
        ) from None


def published_hash(store: OnlineStore) -> str | None:
    """The hash of the registry published in `store` for its project (one small read), or None.

    Raises:
        StoreError: the store cannot be read.
    """
    return store.read_state([HASH_KEY]).get(HASH_KEY)


def load_published(store: OnlineStore) -> Registry | None:
    """The registry published in `store` for its project, or None when none was published.

    Raises:
        RegistryError: the stored text cannot be read by this version.
        StoreError: the store cannot be read.
    """
    text = store.read_state([REGISTRY_KEY]).get(REGISTRY_KEY)
    return None if text is None else decode(text)


def publish(store: OnlineStore, registry: Registry) -> bool:
    """Publish `registry` in `store` unless it is already the published one.

    The JSON is written before the hash, so a host that sees the new hash finds the new JSON.

    Returns:
        True when it was written, False when the store already held this registry.

    Raises:
        RegistryError: the registry is larger than one store record can hold (Aerospike).
        StoreError: the store failed.
    """
    if published_hash(store) == registry.hash:
        return False
    text = encode(registry)
    try:
        store.write_state(REGISTRY_KEY, text)
    except RecordTooBigError as exc:
        raise RegistryError(
            f"the registry ({len(text):,} bytes compressed) does not fit in one record of the online store "
            f"({exc}); serve from a shared registry file instead (registry: /shared/path/registry.json)"
        ) from None
    store.write_state(APPLIED_KEY, f"{registry.hash} {datetime.now(UTC).isoformat()}")
    store.write_state(HASH_KEY, registry.hash)
    return True


def published_applied_at(store: OnlineStore, registry_hash: str) -> datetime | None:
    """When the registry with `registry_hash` was published by `apply`, or None when the store does not
    say (another registry published since, or one published before fsplug kept the time).

    Raises:
        StoreError: the store cannot be read.
    """
    text = store.read_state([APPLIED_KEY]).get(APPLIED_KEY)
    if not text:
        return None
    h, _, when = text.partition(" ")
    if h != registry_hash:
        return None
    try:
        at = datetime.fromisoformat(when)
    except ValueError:
        return None
    return as_utc(at)


class OnlineRegistryStore:
    """The registry kept only in the online store (`registry: online`), with RegistryStore's interface."""

    def __init__(self, store: OnlineStore):
        self.store = store

    def exists(self) -> bool:
        """Whether a registry was published for the project."""
        return published_hash(self.store) is not None

    def load(self) -> Registry:
        """The published registry; raises RegistryError when there is none."""
        reg = load_published(self.store)
        if reg is None:
            raise RegistryError(
                f"no registry published in the online store for project {self.store.project!r}: "
                "run `fsplug apply` from the feature repo first"
            )
        return reg

    def load_or_none(self) -> Registry | None:
        """The published registry, or None."""
        return load_published(self.store)

    def save(self, registry: Registry) -> None:
        """Publish `registry` (see `publish`)."""
        publish(self.store, registry)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """No lock across hosts: two concurrent applies of one project publish in turn (the last wins)."""
        yield
