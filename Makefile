# `make test` and `make demo` work on a fresh clone with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test redis-server demo-redis-server lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: redis-server $(STAMP) lint typecheck pytest

# The tests start their own redis-server (a free loopback port, nothing saved); this only makes sure
# the program is there, installing Debian's package when run as root (as CI is).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	  else \
	    echo "redis-server is missing: install it with 'sudo apt-get install -y redis-server' (the tests start their own)"; \
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
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	} || echo "could not install redis-server; the fleet demo will be skipped"

demo: demo-redis-server $(STAMP)
	$(BIN)/resilient-client demo
	$(BIN)/resilient-client fleet

bench: redis-server $(STAMP)
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/redis_store.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/fleet.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache
