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

$(VENV)/.dev: requirements-dev.txt pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python -r requirements-dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
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
