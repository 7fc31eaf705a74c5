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
# Each lock file and what it adds to LOCK_FLAGS. requirements-lowest.lock pins every direct
# dependency at the lowest version pyproject.toml allows (`make test-lowest` runs the suite on it).
LOCKS := requirements.lock requirements-dev.lock requirements-lowest.lock
LOCK_ARGS_requirements.lock :=
LOCK_ARGS_requirements-dev.lock := --group dev
# -P for each direct dependency: uv keeps a pin already in the file even when its bound was
# lowered, so those are resolved afresh; transitive pins are kept (reproducible, like the others).
LOCK_ARGS_requirements-lowest.lock = --group dev --resolution lowest-direct \
	$(addprefix -P ,$(shell $(PYTHON) scripts/lower_bounds.py names))
# $(call compile_lock,LOCK,OUTPUT): pins already in OUTPUT are kept where they still fit.
compile_lock = $(UV) pip compile pyproject.toml $(LOCK_FLAGS) $(LOCK_ARGS_$(1)) -o $(2)
LOWEST_VENV := .venv-lowest
LINT_PATHS := src tests migrations scripts
# feature: realtime
LINT_PATHS += examples
# end feature: realtime

.PHONY: help venv dev test test-lowest test-python lint format typecheck deploy-check compose-check lock lock-check migrate contract clean

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

# feature: worker
# The worker too: `python -m keel_dev` runs the API and the worker, each restarted on changes.
# end feature: worker
dev: $(BIN)/.synced ## run the service with auto-reload; embedded Postgres/Redis unless DATABASE_URL/REDIS_URL are set (DEV_ARGS=--port 8001)
	$(BIN)/python -m keel_dev $(DEV_ARGS)

test: $(BIN)/.synced ## the whole suite against real PostgreSQL and Redis (TEST_*_URL or embedded)
	$(BIN)/pytest $(PYTEST_ARGS)

# The lock must be current and pin each lower bound of pyproject.toml; then the suite runs on
# exactly those versions in a venv of its own, synced every time (seconds with uv's cache).
# KEEL_COPY_SUITE=skip (here and in test-python): the tests that add code to a copy of the
# project and run the copy's suite (test_new_domain.py) run under `make test` only; the code they
# add is the same on every interpreter.
# feature: template
# test_any_api_shape.py is another such test.
# end feature: template
test-lowest: $(UV) ## the whole suite on the lowest versions pyproject.toml allows (.venv-lowest)
	@$(MAKE) --no-print-directory lock-check LOCKS=requirements-lowest.lock
	$(PYTHON) scripts/lower_bounds.py check requirements-lowest.lock
	test -x $(LOWEST_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(LOWEST_VENV)
	$(UV) pip sync --quiet --python $(LOWEST_VENV)/bin/python requirements-lowest.lock
	$(UV) pip install --quiet --python $(LOWEST_VENV)/bin/python --no-deps -e .
	KEEL_COPY_SUITE=skip $(LOWEST_VENV)/bin/pytest $(PYTEST_ARGS)

# The suite on another Python version, in a venv of its own (.venv-3.13 ...); the interpreter
# is found on PATH or through pyenv (scripts/find_python.sh). Exit 3: not on this machine.
test-python: $(UV) ## the whole suite on Python $(PY): make test-python PY=3.13
	@test -n "$(PY)" || { echo "usage: make test-python PY=3.13"; exit 2; }
	@interpreter=$$(bash scripts/find_python.sh $(PY)) || { echo "Python $(PY) is not on this machine"; exit 3; }; \
	  test -x .venv-$(PY)/bin/python || $(UV) venv --quiet --python "$$interpreter" .venv-$(PY)
	$(UV) pip sync --quiet --python .venv-$(PY)/bin/python requirements-dev.lock
	$(UV) pip install --quiet --python .venv-$(PY)/bin/python --no-deps -e .
	KEEL_COPY_SUITE=skip .venv-$(PY)/bin/pytest $(PYTEST_ARGS)

lint: $(BIN)/.synced ## ruff format --check + ruff check
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)

format: $(BIN)/.synced ## apply ruff format and autofixes
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

typecheck: $(BIN)/.synced ## mypy --strict over src and tests
	$(BIN)/mypy

deploy-check: $(BIN)/.synced ## kustomize+kubernetes-validate, promtool, hadolint, compose schema (installs tools)
	bash scripts/deploy_check.sh

# Too slow and too machine-specific for CI (minutes; needs an engine): run it before changing the
# image or the compose files. Exit 3: no Docker or podman here.
compose-check: $(BIN)/.synced ## build the image, run both compose stacks for real and check them (docs/deployment.md)
	$(BIN)/python -m scripts.compose_check

lock: $(UV) ## regenerate the hashed lock files from pyproject.toml
	$(foreach lock,$(LOCKS),$(call compile_lock,$(lock),$(lock)) &&) true

lock-check: $(UV) ## fail when the lock files are stale against pyproject.toml
	@tmp=$$(mktemp -d); cp $(LOCKS) $$tmp/; \
	$(foreach lock,$(LOCKS),$(call compile_lock,$(lock),$$tmp/$(lock)) && diff -u $(lock) $$tmp/$(lock) &&) \
	  status=0 || status=1; rm -rf $$tmp; \
	if [ $$status = 0 ]; then echo "lock files are current: $(LOCKS)"; \
	else echo "lock files are stale: run 'make lock'"; exit 1; fi

# feature: items
.PHONY: domain
domain: $(BIN)/.synced ## add a domain made from the items example: make domain NAME=projects (docs/domain.md)
	$(BIN)/keel new-domain $(NAME) $(DOMAIN_ARGS)
# end feature: items

migrate: $(BIN)/.synced ## alembic upgrade head against DATABASE_URL
	$(BIN)/keel migrate

# feature: template
.PHONY: bench new new-check
LINT_PATHS += bench
bench: $(BIN)/.synced ## every benchmark vs its reference -> bench/results/ (BENCH_QUICK=1: < 5 min)
	$(BIN)/python -m bench.run

# Needs nothing but Python: the generator is standard library only (docs/new-project.md); the
# package index too when the features chosen change the dependencies (the project's `make lock`).
new: ## a renamed service with the features you choose: make new NAME=acme-orders OPTIONS=--no-tracing
	$(PYTHON) -m scripts.new $(NAME) $(OPTIONS)

new-check: ## generate two variants and prove each (lint, types, tests, lock, deploy checks, make dev)
	bash scripts/new_check.sh
# end feature: template

contract: $(BIN)/.synced ## schemathesis CLI vs a running `make dev` (CONTRACT_URL, default http://127.0.0.1:8000)
	$(BIN)/python scripts/contract.py $(CONTRACT_ARGS)

clean: ## remove the virtualenvs and caches (embedded dev data in .keel/ is kept)
	rm -rf $(VENV) $(LOWEST_VENV) .venv-3.* $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
