# Vonix — two commands for a newcomer: `make run` and `make test`.
# Both install what they need on a fresh Debian machine (run as root, or with sudo available).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Exact versions with hashes (`make lock` writes them from pyproject.toml): build.txt first (pip,
# setuptools), then everything `make run`/`make test` need, then the project itself without deps.
LOCKS := requirements/build.txt requirements/test.txt
# The stamp follows the lock files and pyproject.toml (the project's own metadata: entry points,
# the dependency bounds server/dependency_check.py reads), so a change to either re-installs.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCKS) | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check

.PHONY: run test lint lock bench soak services-bin clean

# --no-build-isolation: the one sdist in the lock (http-ece) and the project build with the
# hashed setuptools of build.txt instead of one pip would fetch, unpinned, for each build.
$(STAMP): pyproject.toml $(LOCKS)
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements/build.txt
	$(PIP) --require-hashes --no-build-isolation -r requirements/test.txt
	$(BIN)/python scripts/check_lock.py
	$(PIP) --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

## lock: re-resolve requirements/*.txt after editing pyproject.toml's dependencies (keeps the other
## pins; UPGRADE=1 moves every package to the newest release its bounds allow)
lock:
	VENV=$(VENV) PYTHON=$(PYTHON) scripts/lock.sh

## run: install, migrate the embedded SQLite database and serve on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/vonix migrate
	exec $(BIN)/vonix serve

## test: install, make sure redis-server and PostgreSQL exist, run every test (both backends) on
## TEST_WORKERS processes (each starts its own Redis and PostgreSQL; tests/support/services.py gives
## each its own ports, so a server a test restarts keeps its port)
TEST_WORKERS ?= 3
test: $(STAMP) services-bin
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

services-bin:
	@scripts/ensure-test-binaries.sh

## bench: run every benchmark (real servers, reference measured in the same run) and print tables
bench: $(STAMP) services-bin
	$(BIN)/python -m bench $(BENCH_ARGS)

## soak: chaos soak (issue 19): 3 replicas, PostgreSQL, Redis Cluster, 2,000 clients for 10 minutes
## while replicas, a Redis master and PostgreSQL are killed and restarted; one-screen report, exit 1
## on any loss, duplicate or leak (docs/soak.md; knobs SOAK_DURATION, SOAK_CLIENTS, SOAK_RATE, SOAK_DIR)
soak: $(STAMP) services-bin
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy realtime server

clean:
	rm -rf $(VENV) vonix.db vonix.db-wal vonix.db-shm .pytest_cache
