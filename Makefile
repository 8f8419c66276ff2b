# The project's commands. `make demo` and `make test` are the two a new user needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9
export AIRFLOW_HOME := $(CURDIR)/.airflow
export PATH := $(CURDIR)/$(BIN):$(PATH)
# dags/ too: the DAG files import dags/_governance_deployment.py, and `airflow dags list --local` (unlike the
# DAG processor, the task runner and `airflow dags test`) parses without putting the DAGs folder on sys.path.
export PYTHONPATH := $(CURDIR):$(CURDIR)/dags

INSTALLED := $(VENV)/.installed
# The MLflow tracking server's own virtualenv (requirements-mlflow.in says why it is apart).
MLFLOW_VENV := .venv-mlflow
MLFLOW_INSTALLED := $(MLFLOW_VENV)/.installed
export PROJECT_MLFLOW_SERVER := $(CURDIR)/$(MLFLOW_VENV)/bin/mlflow
CONFIGURED := $(AIRFLOW_HOME)/.configured
MIGRATED := $(AIRFLOW_HOME)/.migrated

.PHONY: help setup demo test lint bench lock clean browser

help:
	@echo "make demo    set up, then run the main job (batch approval -> release) on the embedded sandboxes"
	@echo "make test    set up, then run the whole test suite"
	@echo "make setup   create .venv, install pinned dependencies and the provider, prepare .airflow/"
	@echo "make lint    ruff and the type checker"
	@echo "make bench   benchmarks (ratios measured side by side)"
	@echo "make lock    recompile requirements*.txt from requirements*.in"

setup: $(INSTALLED) $(MIGRATED) $(MLFLOW_INSTALLED)

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# uv installs the ~600 pinned packages in seconds where pip takes minutes; the pins are the same.
# --compile-bytecode writes the .pyc files up front (as pip does): without them, where PYTHONDONTWRITEBYTECODE
# is set, every Airflow process compiles Airflow from source again (~2.5 s per process start).
$(INSTALLED): $(UV) requirements.txt requirements-dev.txt pyproject.toml
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(MLFLOW_INSTALLED): $(UV) requirements-mlflow.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(MLFLOW_VENV)/bin/python -r requirements-mlflow.txt
	touch $@

$(CONFIGURED): $(INSTALLED) scripts/configure_airflow_home.py
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow config get-value core dags_folder > /dev/null
	$(BIN)/python scripts/configure_airflow_home.py $(AIRFLOW_HOME)
	touch $@

$(MIGRATED): $(CONFIGURED)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || { tail -30 $(AIRFLOW_HOME)/migrate.log; exit 1; }
	touch $@

# Debian's Chromium for the browser tests (a test tool's own browser download cannot work offline).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    (apt-get install -y -qq chromium chromium-driver > /dev/null 2>&1 || \
	     { apt-get update -qq && apt-get install -y -qq chromium chromium-driver > /dev/null; }) \
	    || echo "could not install Debian's chromium: browser tests will skip"; \
	  else echo "no /usr/bin/chromium: install Debian's chromium package to run the browser tests"; fi; \
	fi

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: setup browser
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

demo: setup
	$(BIN)/python -m scripts.demo

# ruff over the repository; mypy over the provider (settings in pyproject.toml).
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

lock: $(UV)
	$(UV) pip compile requirements.in --python-version 3.11 --no-header -q -o requirements.txt
	$(UV) pip compile requirements-dev.in --python-version 3.11 --no-header -q -o requirements-dev.txt
	$(UV) pip compile requirements-mlflow.in --python-version 3.11 --no-header -q -o requirements-mlflow.txt

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) $(AIRFLOW_HOME) .pytest_cache .ruff_cache
