"""fsplug's exceptions: every error a user can meet, in one tree.

    FsplugError
    ├── UserInputError (also ValueError)       bad input: fix the repo, the call or the data
    │   ├── ConfigError                        feature_store.yaml / store config
    │   ├── DefinitionError                    feature repo YAML; carries every problem found
    │   ├── ReferenceNotFoundError             unknown feature / view / service / entity
    │   ├── EntityKeyError                     missing or mistyped entity keys in a request
    │   ├── RequestFeatureError                missing or mistyped request-time features
    │   ├── OutputNameClashError               two outputs of one name: served only with full feature names
    │   └── SourceDataError                    offline Parquet data that does not match its view
    ├── RegistryError                          no registry applied yet, or a corrupt one
    ├── EngineError                            a batch job on an engine (Spark) failed or cannot start
    ├── DerivedFeatureError                    a derived feature's UDF failed (raised, wrong length or dtype)
    ├── ModelError                             model artifacts
    │   ├── ModelDependencyMissingError        scikit-learn / joblib are not installed (fsplug[models])
    │   ├── ModelIntegrityError                checksum mismatch: the file was changed
    │   └── ModelSignatureError (also ValueError)  the registry no longer serves what the model needs
    └── StoreError                             online store failures, translated at one boundary per store
        ├── StoreDriverMissingError            the store's Python driver is not installed (fsplug[aerospike])
        ├── StoreUnavailableError  [Transient] cannot reach the store
        ├── StoreTimeoutError      [Transient] a read or write exceeded its time budget
        ├── NamespaceNotFoundError [Terminal]  the configured namespace/database does not exist
        ├── RecordTooBigError      [Terminal]  a record exceeds the store's size limit
        └── TTLNotAllowedError     [Terminal]  the server refuses record TTLs (Aerospike code 22)

`TransientError` and `TerminalError` are marker bases: a retry decision is
`isinstance(err, TransientError)`.

`did_you_mean` builds the hint that "unknown name" messages end with; it lives here, beside the
errors, so every layer can use it (it is not in `__all__`: `from fsplug import *` stays errors only).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = [
    "FsplugError",
    "TransientError",
    "TerminalError",
    "UserInputError",
    "ConfigError",
    "DefinitionError",
    "Problem",
    "ReferenceNotFoundError",
    "EntityKeyError",
    "RequestFeatureError",
    "OutputNameClashError",
    "SourceDataError",
    "RegistryError",
    "EngineError",
    "DerivedFeatureError",
    "ModelError",
    "ModelDependencyMissingError",
    "ModelIntegrityError",
    "ModelSignatureError",
    "StoreError",
    "StoreDriverMissingError",
    "StoreUnavailableError",
    "StoreTimeoutError",
    "NamespaceNotFoundError",
    "RecordTooBigError",
    "TTLNotAllowedError",
]


class FsplugError(Exception):
    """Base of every error fsplug raises on purpose."""


class TransientError:
    """Marker: the same call may succeed later (retry with backoff)."""


class TerminalError:
    """Marker: retrying will not help until something is changed."""


class UserInputError(FsplugError, ValueError):
    """Bad input from the user: a definition, a call argument or data."""


class ConfigError(UserInputError):
    """feature_store.yaml or a store configuration is invalid."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a feature repo, located at `file:line:column`."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class DefinitionError(UserInputError):
    """A feature repo has invalid definitions; `problems` lists every one found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the feature repo:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class ReferenceNotFoundError(UserInputError, KeyError):
    """A feature, view, service or entity name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class EntityKeyError(UserInputError):
    """Entity keys of a request are missing or of the wrong type."""


class RequestFeatureError(UserInputError):
    """Request-time features are missing or of the wrong type."""


class OutputNameClashError(UserInputError):
    """Two outputs of a request would have one name: served only with full feature names (view__feature).

    The message names the fix in the caller's terms: `full_feature_names=True` in Python; a front end
    words it its own way with `with_fix` (the CLI: `--full-feature-names`)."""

    def __init__(self, name: str, refs: tuple[str, str], fix: str = "full_feature_names=True"):
        super().__init__(f"output name {name!r} comes from both {refs[0]} and {refs[1]}; "
                         f"use {fix} (view__feature names)")
        self.name, self.refs = name, refs

    def with_fix(self, fix: str) -> OutputNameClashError:
        """The same error, its message naming `fix` as the way to ask for full feature names."""
        return OutputNameClashError(self.name, self.refs, fix)


class SourceDataError(UserInputError):
    """Offline data does not match its declaration (file, column, expected, found)."""


class RegistryError(FsplugError):
    """The registry is missing (run `fsplug apply`) or cannot be read."""


class EngineError(FsplugError):
    """A batch job on an external engine (Spark) failed, or the engine cannot start (no Java)."""


class DerivedFeatureError(FsplugError):
    """A derived feature could not be computed: its UDF raised, or returned the wrong length or dtype
    (or, when a plan is compiled, its UDF's module is not importable on this host)."""


class ModelError(FsplugError):
    """A model artifact cannot be used."""


class ModelDependencyMissingError(ModelError, TerminalError):
    """scikit-learn or joblib, needed to save, load and serve models, is not installed."""


class ModelIntegrityError(ModelError, TerminalError):
    """The artifact's sha256 does not match its sidecar: it was changed or corrupted."""


class ModelSignatureError(ModelError, ValueError):
    """The model's feature signature differs from what the registry serves now."""


class StoreError(FsplugError):
    """An online store operation failed."""


class StoreDriverMissingError(StoreError, ConfigError):
    """The online store's Python driver is not installed."""


class StoreUnavailableError(StoreError, TransientError):
    """The online store cannot be reached."""


class StoreTimeoutError(StoreError, TransientError):
    """An online store call exceeded its time budget."""


class NamespaceNotFoundError(StoreError, TerminalError):
    """The configured namespace (or database) does not exist on the store."""


class RecordTooBigError(StoreError, TerminalError):
    """A record is larger than the store accepts."""


class TTLNotAllowedError(StoreError, TerminalError):
    """The store refuses records with a TTL (Aerospike result code 22)."""


def did_you_mean(name: str, candidates: list[str] | set[str] | tuple[str, ...]) -> str:
    """The hint for an unknown `name`: "; did you mean 'x'?" when a close candidate exists, else ''."""
    close = difflib.get_close_matches(str(name), sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
