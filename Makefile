# Two entry points for a fresh clone: `make demo` (set up + run the main job) and
# `make test` (set up + lint + tests). Both build their own virtualenv in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m rqa_jax.demo --workdir demo_out

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	cd benchmarks && ../$(PY) encode.py && ../$(PY) data.py && ../$(PY) train_dual.py && ../$(PY) index.py
