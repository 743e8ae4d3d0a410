# Set-up and entry points. Every target creates .venv (pinned torch first, then this project)
# on first use, so on a fresh machine `make quick-arith` and `make test` are all the set-up there is.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0

.PHONY: setup quick-arith test test-fast test-all bench

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH_PIN)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

quick-arith: setup  ## train a tiny BitNet on `a + b = c` and print the verdict (ARGS="--seed 1 ...")
	$(BIN)/bitcheck quick-arith $(ARGS)

# `make test` (what CI runs) is the suite without the long end-to-end runs, on one pytest-xdist worker per
# core, each on one torch thread (tests/conftest.py); each of its trainings ends at a step limit, not a time
# budget, so two workers cannot starve one. `make test-all` adds the `slow` runs (full quick/tinystories runs to PASS, the
# bisections, the full selftest matrix) in one process on two threads, the slow ones first: ~75 minutes here.
WORKERS ?= 2

test: setup  ## lint, then the suite without the long end-to-end runs, on two workers (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) --dist worksteal --durations=25 -m "not slow"

test-fast: setup  ## lint, then the suite without any test that trains or runs a command end to end (~2.5 min)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) --dist worksteal -m "not slow and not training"

test-all: setup  ## lint, then every test, the long end-to-end runs included (~75 min, one process)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 0

bench: setup  ## training throughput of the presets on this machine
	$(BIN)/python benchmarks/train_throughput.py
