# Vonix — two commands for a newcomer: `make run` and `make test`.
# Both install what they need on a fresh Debian machine (run as root, or with sudo available).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench services-bin clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip setuptools wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## run: install, migrate the embedded SQLite database and serve on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/vonix migrate
	exec $(BIN)/vonix serve

## test: install, make sure redis-server and PostgreSQL exist, run every test (both backends)
test: $(STAMP) services-bin
	$(BIN)/python -m pytest $(PYTEST_ARGS)

services-bin:
	@scripts/ensure-test-binaries.sh

## bench: run every benchmark (real servers, reference measured in the same run) and print tables
bench: $(STAMP) services-bin
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy realtime server

clean:
	rm -rf $(VENV) vonix.db vonix.db-wal vonix.db-shm .pytest_cache
