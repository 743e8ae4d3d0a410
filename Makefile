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

# one pytest worker per core (pytest-xdist), each training on one thread (tests/conftest.py)
WORKERS ?= auto

test: setup  ## lint, then the whole suite, slow end-to-end runs included (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS)

test-fast: setup  ## lint, then the suite without the slow end-to-end runs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(WORKERS) -m "not slow"

bench: setup  ## training throughput of the presets on this machine
	$(BIN)/python benchmarks/train_throughput.py
