# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The test extra holds everything the tests need (the aerospike and models extras too); the demo
# trains a model, so it needs the models extra (`pip install fsplug` alone is the SQLite store).
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DEMO_STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[models]'
	touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m ruff check fsplug tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) feature_repo/data/*.parquet feature_repo/data/*.db* feature_repo/data/registry.json
