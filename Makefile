# Two entry points for a newcomer: `make run` and `make test`. Each builds .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test certify differential fuzz reliability bench lock venv clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e '.[dev]'
	$(BIN)/python -m compileall -q engine exchange >/dev/null
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ep4 run-examples

test: $(STAMP)
	$(BIN)/python -m pytest

# every bundle in policies/ against the committed corpus and its signed certificate (make test does it too)
certify: $(STAMP)
	set -e; for b in policies/*.yaml; do $(BIN)/ep4 certify "$$b" --cases tests/cases --jobs 2 --no-progress; done

# generated hostile decisions, contexts, bundles and CEL: counts, slowest answer, peak memory
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz.py --count 1000000 --seed 20261127 --jobs 2

# 1,000 SIGKILLs inside write-ahead -> call -> ack -> audit against `ep4 paper serve`, 4 processes x 50
# decisions on one state directory, the fault matrix; the figures go into docs/reliability.md
reliability: $(STAMP)
	$(BIN)/python tests/reliability.py --kills 1000 --processes 4 --rounds 50 --tear-audit-round 3 --doc docs/reliability.md

# Rules 1-4 (both evaluators), a 100,000-line dry-run batch, the bundle load (files vs cache), one paper
# execution over loopback, ep4 certify over a 10,000-case corpus (tests/bench/bench_compare.py --before REV
# compares this tree with an earlier revision, interleaved)
bench: $(STAMP)
	$(BIN)/python -m compileall -q engine exchange >/dev/null  # bytecode, as pip gives installed packages
	$(BIN)/ep4 bench
	$(BIN)/python tests/bench/bench_batch.py
	$(BIN)/python tests/bench/bench_load.py
	$(BIN)/python tests/bench/bench_exchange.py
	$(BIN)/python tests/bench/bench_ledger.py
	$(BIN)/python tests/bench/bench_certify.py

# compiled gates vs cel-python's interpreter on 100,000 random (expression, activation) pairs
differential: $(STAMP)
	$(BIN)/python tests/differential.py --count 100000 --seed 20261127

# re-pin requirements.lock from pyproject.toml, in a clean virtual environment
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev]'
	{ head -3 requirements.lock; .lock-venv/bin/python -m pip freeze --exclude ep4; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache
