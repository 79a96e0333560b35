"""The Python daemon of the local-mode Spark sessions the engine starts (`spark.python.daemon.module`):
pyspark's own daemon (`pyspark.daemon`, which forks the Python workers), importing pyspark from the
installed package instead of the `pyspark.zip` that Spark puts first on its workers' path.

Python keeps no compiled code for modules imported from a zip, so every daemon and every worker Spark
starts compiles pyspark's sources again (about 1.1 CPU-seconds per application, on the first Python
job). pip's pyspark carries that zip inside the package itself (`<site-packages>/pyspark/python/lib/
pyspark.zip`), built from the same sources as the package beside it, which pip compiled when it
installed them. Only that zip leaves the path here: a zip from a SPARK_HOME of its own (another
version of Spark than the installed package, maybe) stays first, as Spark put it. Nothing else changes:
the daemon, and the workers it forks, are pyspark's.
"""

from __future__ import annotations

import os
import sys


def prefer_installed_pyspark(path: list[str]) -> bool:
    """Drop from `path` the `pyspark.zip` of the installed pyspark package itself (the package then
    comes from its directory on `path`); True when it did. A zip elsewhere is left where it is."""
    for i, entry in enumerate(path):
        if os.path.basename(entry) != "pyspark.zip":
            continue
        package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(entry))))  # .../pyspark
        if os.path.basename(package) != "pyspark" or not os.path.isfile(os.path.join(package, "__init__.py")):
            return False
        site = os.path.dirname(package)
        if not any(os.path.abspath(p) == site for p in path[i + 1:]):
            return False
        del path[i]
        return True
    return False


if __name__ == "__main__":
    prefer_installed_pyspark(sys.path)
    from pyspark.daemon import manager

    manager()
