"""Engines that run fsplug's batch jobs (materialization, training data) somewhere other than this process.

The local engine is the code in `fsplug/materialize.py` and `fsplug/training.py` itself; `spark.py`
runs the same jobs on Apache Spark with the same results (`spark_tasks.py`: the code its tasks run in Spark's
Python workers; `spark_daemon.py`: the daemon that forks those workers). Which one runs is `materialization.engine`
in feature_store.yaml, or `--engine` / `engine=`.
"""
