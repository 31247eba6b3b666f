# Every target sets up what it needs: a fresh clone only needs Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv

.DEFAULT_GOAL := help
.PHONY: help install run test lint format migrate pin clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv

$(VENV)/.runtime: requirements.txt pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -r requirements.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

# The Python client (clients/python) is installed too: its tests run against the service.
$(VENV)/.dev: requirements-dev.txt pyproject.toml clients/python/pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -r requirements-dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e . -e clients/python
	@touch $@ $(VENV)/.runtime

install: $(VENV)/.dev ## Create the virtual environment with the pinned dependencies

run: $(VENV)/.runtime ## Serve on 127.0.0.1:8000 (embedded PostgreSQL when DATABASE_URL is unset)
	$(BIN)/billing serve --migrate --load-catalog

test: $(VENV)/.dev ## Run the whole test suite (embedded PostgreSQL when TEST_DATABASE_URL is unset)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev ## Reformat with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(VENV)/.runtime ## Apply the database migrations (embedded PostgreSQL when DATABASE_URL is unset)
	$(BIN)/billing migrate

pin: | $(UV) ## Re-pin requirements*.txt from the ranges in pyproject.toml
	$(UV) pip compile --quiet --python-version 3.11 pyproject.toml -o requirements.txt
	$(UV) pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements-dev.txt

clean: ## Remove the virtual environment and caches (keeps the embedded database in .data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

.PHONY: schemathesis chaos

schemathesis: $(VENV)/.dev ## Long Schemathesis run on a real `billing serve` (SCHEMATHESIS_MAX_EXAMPLES, default 100)
	SCHEMATHESIS_SERVE=1 SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-100} \
		TEST_DATABASE_URL=$${TEST_DATABASE_URL:-$$DATABASE_URL} \
		$(BIN)/pytest tests/test_schemathesis.py -k 'test_every_operation or test_catalog_loaders' $(PYTEST_ARGS)

chaos: $(VENV)/.runtime ## Kill a worker and crash PostgreSQL under load; fails if an event is lost or doubled
	$(BIN)/python scripts/chaos.py $(CHAOS_ARGS)

.PHONY: bench

# wrk is the load generator; `make bench` installs the Debian package when it is missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench: $(VENV)/.dev ## Benchmarks against the database's own limit (~13 min; DATABASE_URL or embedded; see BENCHMARKS.md)
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y wrk || ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk)
	$(BIN)/python -m bench.run
