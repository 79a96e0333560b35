"""The registry file: read and written atomically (temp file + rename), under a file lock so two
`apply`s cannot interleave their read-modify-write."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator

from fsplug.errors import RegistryError
from fsplug.registry.model import Registry

__all__ = ["RegistryStore"]


class RegistryStore:
    """Reads and writes the registry file atomically; `locked()` serializes read-modify-write."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> Registry:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RegistryError(f"no registry at {self.path}: run `fsplug apply` first") from None
        except UnicodeDecodeError as exc:
            raise RegistryError(f"registry {self.path} is unreadable (not UTF-8 JSON: {exc}); "
                                "run `fsplug apply` again") from None
        try:
            return Registry.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"registry {self.path} is unreadable ({exc}); run `fsplug apply` again") from exc

    def load_or_none(self) -> Registry | None:
        return self.load() if self.exists() else None

    def save(self, registry: Registry) -> None:
        """Write atomically: a crash leaves either the old or the new file, never a torn one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(registry.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on `<registry>.lock` (blocks other applies/watermark updates)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            # Every writer holds this lock, so a temp file seen now is a crashed writer's leftover.
            for stale in self.path.parent.glob(".registry-*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
