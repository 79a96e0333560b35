"""fsplug: a declarative feature store for real-time ML serving, with an Aerospike online store.

Importing fsplug is cheap: store drivers (aerospike, sqlite3), pyarrow and scikit-learn are
imported only by the code paths that use them.
"""

from fsplug.errors import *  # noqa: F401,F403
from fsplug.errors import __all__ as _errors_all
from fsplug.types import DType

__version__ = "0.1.0"

__all__ = ["DType", "__version__", *_errors_all]
