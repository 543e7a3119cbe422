# fedgate: every target bootstraps .venv from the committed lock file (uv.lock) on a fresh machine.
# pyproject.toml keeps ranges for people who install fedgate as a library; `make lock` re-resolves them into
# uv.lock, and `make lint` fails when the lock no longer matches pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv

.PHONY: demo test lint lock proto proto-baseline bench venv clean

$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(UV) sync --frozen --inexact --extra dev --python $(BIN)/python
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedgate demo $(DEMO_FLAGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(UV) lock --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy gateway agents bench proto/fedgate/cli.py proto/fedgate/completion.py proto/fedgate/common tests
	$(BIN)/lint-imports
	cd proto && ../$(BIN)/buf lint && ../$(BIN)/buf format --exit-code -d
	cd proto && ../$(BIN)/buf breaking --against baseline.binpb

lock: $(STAMP)
	$(UV) lock

proto: $(STAMP)
	$(BIN)/python proto/generate.py

# The contract as last released: `make lint` runs `buf breaking` (FILE rules) against proto/baseline.binpb, so a
# change that breaks a released client (a field renumbered, renamed or removed, a type changed, an RPC gone) fails
# lint. There are no release tags yet: the baseline is the image committed with the contract. At a release, run
# `make proto-baseline` and commit proto/baseline.binpb with it; a breaking change needs a new API version
# (fedgate.v2) or, before 1.0 only and agreed at a release, a new baseline made the same way.
proto-baseline: $(STAMP)
	cd proto && ../$(BIN)/buf build --exclude-source-info -o baseline.binpb

# `make bench` runs every benchmark; `make bench BENCH="ingest gangs"` only those (the others are carried over).
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
