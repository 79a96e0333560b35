"""fsplug's benchmark harness: fsplug side by side with Feast and the raw driver calls it wraps.

    python -m benchmarks run [--quick] [--store sqlite|aerospike] [--entities N] [--with-feast]

Modules: `data` (generated data sets, repos), `reads` (read cases, raw baselines, the alternating
scheduler), `materialize` (materialization in a child process), `feast_side` + `feast_worker`
(Feast in its own venv, driven through a worker), `suite` (the run and its targets), `report`
(JSON, Markdown, histogram), `aggregate` (medians over several runs), `materialize_scan` (the
Parquet scan scale benchmark, also `python -m benchmarks scan`).
"""
