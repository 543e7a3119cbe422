# fedgate: every target bootstraps .venv from the committed lock file (uv.lock) on a fresh machine.
# pyproject.toml keeps ranges for people who install fedgate as a library; `make lock` re-resolves them into
# uv.lock, and `make lint` fails when the lock no longer matches pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
UV := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv

.PHONY: demo test lint lock proto bench venv clean

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
	$(BIN)/mypy gateway agents bench proto/fedgate/cli.py proto/fedgate/common tests
	$(BIN)/lint-imports
	cd proto && ../$(BIN)/buf lint && ../$(BIN)/buf format --exit-code -d

lock: $(STAMP)
	$(UV) lock

proto: $(STAMP)
	$(BIN)/python proto/generate.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
