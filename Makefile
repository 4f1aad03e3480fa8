# `make test` and `make demo` work on a fresh clone with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo and the docs each get a venv with only what they need: no dev toolchain to wait for.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed
# The floor: a second venv with each '>=X' of pyproject.toml pinned to X (scripts/floor_requirements.py).
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed

.PHONY: test test-floor redis-server demo-redis-server lint typecheck pytest demo docs bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: redis-server $(STAMP) lint typecheck pytest

# Made anew whenever pyproject.toml changes, so nothing newer than the floor lingers from a past run.
# The runtime dependencies go in first, alone: the package must import without what '.[dev]' brings.
$(FLOOR_STAMP): pyproject.toml scripts/floor_requirements.py
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PYTHON) scripts/floor_requirements.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/python -m pip install --quiet -c $(FLOOR_VENV)/constraints.txt -e .
	$(FLOOR_VENV)/bin/python -c 'import resilient_client'
	$(FLOOR_VENV)/bin/python -m pip install --quiet -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	touch $(FLOOR_STAMP)

# The suite on the declared floor (SPEC 12 rule 7); ruff and mypy judge the newest set only (`make test`).
test-floor: redis-server $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/pytest

# The tests start their own redis-server (a free loopback port, nothing saved); this only makes sure
# the program is there, installing Debian's package when run as root (as CI is).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	  else \
	    echo "redis-server is missing (the tests start their own); install it, then run make again:"; \
	    if command -v apt-get >/dev/null 2>&1; then echo "    sudo apt-get install -y redis-server"; \
	    elif command -v brew >/dev/null 2>&1; then echo "    brew install redis"; \
	    elif command -v dnf >/dev/null 2>&1; then echo "    sudo dnf install -y redis"; \
	    else echo "    your system's redis-server package (Debian and Ubuntu: sudo apt-get install -y redis-server)"; fi; \
	    exit 1; \
	  fi; \
	}

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: redis-server $(STAMP)
	$(BIN)/pytest

# The fleet demo starts its own redis-server; as root (as CI is) it is installed when missing. Without
# it, `resilient-client fleet` says how to install it in one line and the rest of the demo runs.
demo-redis-server:
	@command -v redis-server >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { \
	  echo "demo: installing redis-server (Debian's package) for the fleet scene"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	} || echo "demo: could not install redis-server; the fleet scene will be skipped"

# Only what the demo runs: the package, uvicorn (the simulator's server) and redis-py (the fleet).
$(DEMO_STAMP): pyproject.toml
	@echo "demo: making $(DEMO_VENV) with '.[server,redis]' (the first time only; under a minute)"
	@test -d $(DEMO_VENV) || $(PYTHON) -m venv $(DEMO_VENV)
	@$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[server,redis]'
	@touch $(DEMO_STAMP)

demo: demo-redis-server $(DEMO_STAMP)
	@echo "demo: resilient-client demo (the simulator on 127.0.0.1, every scenario against it)"
	$(DEMO_VENV)/bin/resilient-client demo
	@echo "demo: resilient-client fleet (worker processes sharing one redis-server)"
	$(DEMO_VENV)/bin/resilient-client fleet

$(DOCS_STAMP): pyproject.toml
	@echo "docs: making $(DOCS_VENV) with '.[docs]' (the first time only)"
	@test -d $(DOCS_VENV) || $(PYTHON) -m venv $(DOCS_VENV)
	@$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	@touch $(DOCS_STAMP)

# The site, from docs/ and the docstrings, into site/; --strict turns every warning (a broken link, a
# page missing from the nav, a docstring mkdocstrings cannot read) into a failure. Needs no network.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

bench: redis-server $(STAMP)
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/redis_store.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(DEMO_VENV) $(DOCS_VENV) site build dist .mypy_cache .ruff_cache
