"""fsplug: a declarative feature store for real-time ML serving, with an Aerospike online store.

    from fsplug import FeatureStore
    store = FeatureStore("feature_repo")

Importing fsplug is cheap: the facade and the model tools load on first use, and store drivers
(aerospike, apsw for SQLite), pyarrow and scikit-learn only with the code paths that need them.
"""

from typing import Any

from fsplug.errors import *  # noqa: F401,F403
from fsplug.errors import __all__ as _errors_all
from fsplug.types import DType

__version__ = "0.1.0"

_LAZY = {
    "FeatureStore": "fsplug.store",
    "FeatureVector": "fsplug.store",
    "RetrievalPlan": "fsplug.plan",
    "OnlineResult": "fsplug.result",
    "FieldStatus": "fsplug.result",
    "Predictor": "fsplug.serving",
    "save_model": "fsplug.serving",
    "load_model": "fsplug.serving",
}

__all__ = ["DType", "__version__", *_LAZY, *_errors_all]  # noqa: PLE0604 - the names (strings) of both


def __getattr__(name: str) -> Any:
    """Load the public classes on first use (PEP 562), keeping `import fsplug` light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fsplug' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
