# One entry point for people and CI. `make test` builds its own environment.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Most tests wait (on servers, leases, child processes), so more workers than cores pay off.
TEST_WORKERS ?= 4

.PHONY: test lint demo bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/queue-consumer demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fault injection across processes, hosts and brokers; writes docs/RELIABILITY.md.
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
