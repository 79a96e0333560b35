"""The Python daemon of the local-mode Spark sessions the engine starts (`spark.python.daemon.module`):
pyspark's own daemon (`pyspark.daemon`, which forks the Python workers), importing pyspark from the
installed package instead of the `pyspark.zip` that Spark puts first on its workers' path.

Python keeps no compiled code for modules imported from a zip, so every daemon and every worker Spark
starts compiles pyspark's sources again (about 1.1 CPU-seconds per application, on the first Python
job). pip's pyspark carries that zip inside the package itself (`<site-packages>/pyspark/python/lib/
pyspark.zip`), built from the same sources as the package beside it, which pip compiled when it
installed them. Only that zip leaves the path here: a zip from a SPARK_HOME of its own (another
version of Spark than the installed package, maybe) stays first, as Spark put it.

A worker that Spark reuses (`spark.python.worker.reuse`, on by default) runs a full `gc.collect()` after
every task (pyspark's daemon does), and the garbage collector walks every object the worker holds: the
modules of pyspark, pyarrow, numpy, pandas and fsplug that the first task imported, ~90k objects, some
70-100 ms of CPU per task on a slow core, for tasks of a few hundred ms. So once a task has imported
modules, the worker collects its garbage and freezes what is left (`gc.freeze`): the objects that
live as long as the worker, which later collections skip (they are still freed when no longer
referenced; only a reference cycle among them would stay). Nothing else changes: the daemon, and the
workers it forks, are pyspark's.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable


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


def freezing(worker: Callable[..., int]) -> Callable[..., int]:
    """`worker` (pyspark's `daemon.worker`, which runs one task; the daemon calls it again for the next task of
    a reused worker) followed, when the task imported modules, by a collection and `gc.freeze()`: the objects
    left then (mostly the modules') are skipped by the collections after later tasks and by the automatic ones."""
    modules = [len(sys.modules)]

    def run(*args: object) -> int:
        code = worker(*args)
        if len(sys.modules) != modules[0]:
            gc.collect()
            gc.freeze()
            modules[0] = len(sys.modules)
        return code

    return run


if __name__ == "__main__":
    prefer_installed_pyspark(sys.path)
    import pyspark.daemon

    pyspark.daemon.worker = freezing(pyspark.daemon.worker)
    pyspark.daemon.manager()
