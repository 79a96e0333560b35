"""Optional dependencies: the pip extras of fsplug and the one helper that imports from them.

`pip install fsplug` gives the embedded SQLite online store, offline reads and training data. The rest
is opt-in (pyproject.toml):

    pip install 'fsplug[aerospike]'   the Aerospike online store (the `aerospike` client)
    pip install 'fsplug[models]'      saving, loading and serving models (scikit-learn, joblib)
    pip install 'fsplug[bench]'       the benchmarks and their plots (both of the above, matplotlib)

Code that needs an optional package imports it through `require`, so a missing one is an fsplug error
that names the exact install line instead of a bare ModuleNotFoundError.
"""

from __future__ import annotations

import sys
from types import ModuleType

from fsplug.errors import FsplugError

__all__ = ["install_line", "require"]


def install_line(extra: str) -> str:
    """The pip command that installs fsplug's optional dependency group `extra`."""
    return f"pip install 'fsplug[{extra}]'"


def require(module: str, *, extra: str, needed_for: str, error: type[FsplugError],
            package: str | None = None) -> ModuleType:
    """Import `module` (from the distribution `package`, default the module's name) of the extra `extra`.

    Raises `error` saying what needs it (`needed_for`) and the install line when it is not installed.
    """
    try:
        __import__(module)  # the import statement's own hook, so import shims and test doubles apply
    except ImportError as exc:
        raise error(f"{needed_for} needs the `{package or module.split('.')[0]}` package, which is not "
                    f"installed: {install_line(extra)}") from exc
    return sys.modules[module]
