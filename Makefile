# Keel: the two commands are `make dev` and `make test`; everything else they need is set up here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" --quiet

.PHONY: help venv dev test lint format typecheck deploy-check lock lock-check domain migrate bench contract clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# uv itself lives in its own small venv, so `uv pip sync` of the project venv never removes it.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(BIN)/.synced: $(UV) requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(BIN)/python requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

venv: $(BIN)/.synced

dev: $(BIN)/.synced ## run API (auto-reload) + worker; embedded Postgres/Redis unless DATABASE_URL/REDIS_URL are set
	$(BIN)/python -m keel_dev

test: $(BIN)/.synced ## the whole suite against real PostgreSQL and Redis (TEST_*_URL or embedded)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.synced ## ruff format --check + ruff check
	$(BIN)/ruff format --check src tests migrations bench scripts
	$(BIN)/ruff check src tests migrations bench scripts

format: $(BIN)/.synced ## apply ruff format and autofixes
	$(BIN)/ruff format src tests migrations bench scripts
	$(BIN)/ruff check --fix src tests migrations bench scripts

typecheck: $(BIN)/.synced ## mypy --strict over src and tests
	$(BIN)/mypy

deploy-check: $(BIN)/.synced ## kustomize+kubernetes-validate, promtool, hadolint, compose schema (installs tools)
	bash scripts/deploy_check.sh

lock: $(UV) ## regenerate the hashed lock files from pyproject.toml
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(UV) pip compile pyproject.toml --group dev $(LOCK_FLAGS) -o requirements-dev.lock

lock-check: $(UV) ## fail when the lock files are stale against pyproject.toml
	@tmp=$$(mktemp -d); cp requirements.lock requirements-dev.lock $$tmp/; \
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o $$tmp/requirements.lock && \
	$(UV) pip compile pyproject.toml --group dev $(LOCK_FLAGS) -o $$tmp/requirements-dev.lock && \
	diff -u requirements.lock $$tmp/requirements.lock && diff -u requirements-dev.lock $$tmp/requirements-dev.lock \
	  && echo "lock files are current" || { echo "lock files are stale: run 'make lock'"; exit 1; }

domain: $(BIN)/.synced ## add a domain made from the items example: make domain NAME=projects (docs/domain.md)
	$(BIN)/keel new-domain $(NAME) $(DOMAIN_ARGS)

migrate: $(BIN)/.synced ## alembic upgrade head against DATABASE_URL
	$(BIN)/keel migrate

bench: $(BIN)/.synced ## every benchmark vs its reference -> bench/results/ (BENCH_QUICK=1: < 5 min)
	$(BIN)/python -m bench.run

contract: $(BIN)/.synced ## schemathesis CLI vs a running `make dev` (CONTRACT_URL, default http://127.0.0.1:8000)
	$(BIN)/python scripts/contract.py $(CONTRACT_ARGS)

clean: ## remove the virtualenvs and caches (embedded dev data in .keel/ is kept)
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
