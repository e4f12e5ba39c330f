# One entry point for people and CI. `make test` builds its own environment.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Most tests wait (on servers, leases, child processes), so more workers than cores pay off.
TEST_WORKERS ?= 4
# KEDA's CRD schemas (npm), for tests/docs/test_manifests.py. Without npm the test skips
# locally and fails in CI.
KEDA_MODELS  = @kubernetes-models/keda@2.0.0
KEDA_STAMP   = $(VENV)/npm/.installed
DOCS_PY      = $(wildcard docs/*.py)

.PHONY: test lint demo bench chaos docs docs-build docs-cli keda-schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(KEDA_STAMP): Makefile
	@if command -v npm >/dev/null; then \
		npm install --prefix $(VENV)/npm --no-save --no-audit --no-fund --loglevel=error $(KEDA_MODELS) \
		&& touch $(KEDA_STAMP); \
	else echo "npm not found: the KEDA manifest checks will skip (and fail in CI)"; fi

keda-schemas: $(KEDA_STAMP)

test: $(STAMP) $(KEDA_STAMP)
	$(BIN)/ruff check src tests benchmarks $(DOCS_PY)
	$(BIN)/ruff format --check src tests benchmarks $(DOCS_PY)
	$(BIN)/mypy
	$(MAKE) docs-build
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks $(DOCS_PY)
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/queue-consumer demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fault injection across processes, hosts and brokers; writes docs/RELIABILITY.md.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos

# The documentation site: `make docs` serves it on http://127.0.0.1:8000 (reloads on edits);
# `make docs-build` builds it into build/site and fails on any warning (broken link, missing
# page, stale CLI reference); `make docs-cli` regenerates docs/reference/cli.md.
docs: $(STAMP)
	$(BIN)/mkdocs serve

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # not --quiet: it hides the warnings strict counts

docs-cli: $(STAMP)
	$(BIN)/python docs/_gen_cli.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build/site
