# `make test` and `make demo` work on a fresh clone with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/resilient-client demo

bench: $(STAMP)
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/strategies.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache
