# Two entry points for a fresh clone: `make demo` (set up + run the main job) and
# `make test` (set up + lint + tests). Both build their own virtualenv in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo demo-v1 demo-v2 demo-v2-weak-teacher test lint bench clean

$(VENV)/.installed: setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m rqa_jax.demo --workdir demo_out

# RocketQA v1's four steps on the sample (about 20 minutes): demo_out/v1/report.md
demo-v1: setup
	$(VENV)/bin/rqa pipeline v1 --config configs/demo_pipeline_v1.py --workdir demo_out/v1

# RocketQAv2 on the sample (about 20 minutes after demo-v1, whose de0 and ce it starts
# from; without demo_out/v1 it trains those first): demo_out/v2/report.md
demo-v2: setup
	$(VENV)/bin/rqa pipeline v2 --config configs/demo_pipeline_v2.py --workdir demo_out/v2 \
		$(if $(wildcard demo_out/v1/ce/done.json),--config.init.v1_workdir=demo_out/v1)

# RocketQAv2 from a re-ranker with room to learn (v1's ce stopped after 80 of 640 steps),
# where joint and static distillation part ways (about 8 minutes, on its own):
# demo_out/v2_weak_teacher/report.md. Weak on purpose, so past the re-ranker guard.
demo-v2-weak-teacher: setup
	$(VENV)/bin/rqa pipeline v2 --config configs/demo_pipeline_v2.py \
		--workdir demo_out/v2_weak_teacher --config.ablation_other_variant=False \
		--config.guard.allow_weak_reranker=True \
		--config.v1.reranker.num_train_steps=80 --config.v1.reranker.checkpoint_every=80

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	cd benchmarks && ../$(PY) encode.py && ../$(PY) data.py && ../$(PY) train_dual.py && ../$(PY) index.py

# Removes what the demos and the tools wrote: demo_out/, the package's build metadata and
# the caches. Keeps .venv (`rm -rf .venv` to rebuild it; `make setup` does so).
clean:
	rm -rf demo_out build dist *.egg-info .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
