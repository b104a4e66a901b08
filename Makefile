# K2: `make run` starts the whole stack, `make test` runs the whole suite. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Settings that let lint/type tools import Django settings without a running stack.
TOOL_ENV := K2_ENV=test DJANGO_SECRET_KEY=lint-only DATABASE_URL=postgres://lint@127.0.0.1:1/lint DATABASE_POOL_MAX_SIZE=0 \
	REDIS_URL=redis://127.0.0.1:1/0 K2_VAULT_MASTER_KEYS=lint:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
	K2_VAULT_ACTIVE_KEY_ID=lint
ARGS ?=

.PHONY: run test lint fmt check migrations-check bench shell clean-data help

help:
	@echo "make run    - install what is missing, start PostgreSQL, Redis, simulators, web, worker, beat, feed"
	@echo "make test   - install what is missing, run the whole suite on throwaway PostgreSQL and Redis"
	@echo "make lint   - ruff (lint + format check), mypy, makemigrations --check"
	@echo "make bench  - run the benchmarks under bench/"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base-installed: requirements/base.txt requirements/constraints.txt | $(VENV)/bin/python
	$(PIP) install -q -r requirements/base.txt -c requirements/constraints.txt
	touch $@

$(VENV)/.dev-installed: requirements/dev.txt requirements/base.txt requirements/constraints.txt | $(VENV)/bin/python
	$(PIP) install -q -r requirements/dev.txt -c requirements/constraints.txt
	touch $@ $(VENV)/.base-installed

run: $(VENV)/.base-installed
	$(PY) -m k2.devstack serve

test: $(VENV)/.dev-installed lint
	$(PY) -m k2.devstack run -- $(PY) -m pytest -p no:cacheprovider $(ARGS)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TOOL_ENV) $(VENV)/bin/mypy .
	@# (no database runs here: Django's check of the applied history against one is skipped, not a fault)
	$(TOOL_ENV) $(PY) -W "ignore:Got an error checking a consistent migration history:RuntimeWarning" \
		manage.py makemigrations --check --dry-run

fmt: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.dev-installed
	$(PY) -m k2.devstack run --durable -- $(PY) -m bench $(ARGS)

shell: $(VENV)/.base-installed
	$(PY) manage.py shell

clean-data:
	rm -rf var/
