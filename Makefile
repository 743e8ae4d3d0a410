# Set-up and entry points. Every target creates .venv (pinned torch first, then this project)
# on first use, so on a fresh machine `make quick-arith` and `make test` are all the set-up there is.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0

.PHONY: setup quick-arith test test-fast bench

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH_PIN)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

quick-arith: setup  ## train a tiny BitNet on `a + b = c` and print the verdict (ARGS="--seed 1 ...")
	$(BIN)/bitcheck quick-arith $(ARGS)

# pytest-xdist workers: 0 runs the suite in one process on two torch threads, which is what CI runs (measured
# on this 2-core machine: 2 workers on one thread each took longer, 50 min vs 35, and starved the tests whose
# trainings have a time budget); WORKERS=auto (one per core, one thread each: tests/conftest.py) for the fast suite
WORKERS ?= 0

test: setup  ## lint, then the whole suite, slow end-to-end runs included (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS)

test-fast: setup  ## lint, then the suite without the slow end-to-end runs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) -m "not slow"

bench: setup  ## training throughput of the presets on this machine
	$(BIN)/python benchmarks/train_throughput.py
