# Two entry points for a newcomer: `make run` and `make test`. Each builds .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test differential bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ep4 run-examples

test: $(STAMP)
	$(BIN)/python -m pytest

# Rules 1-4 (both evaluators), a 100,000-line dry-run batch, one paper execution over loopback
bench: $(STAMP)
	$(BIN)/ep4 bench
	$(BIN)/python tests/bench/bench_batch.py
	$(BIN)/python tests/bench/bench_exchange.py

# compiled gates vs cel-python's interpreter on 100,000 random (expression, activation) pairs
differential: $(STAMP)
	$(BIN)/python tests/differential.py --count 100000 --seed 20261127

clean:
	rm -rf $(VENV) .pytest_cache
