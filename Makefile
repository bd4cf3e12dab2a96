# OpsView developer commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'

# SQLite + eager Celery unless DATABASE_URL / CELERY_BROKER_URL point at PostgreSQL / Redis.
test: $(BIN)/python
	$(BIN)/python -m pytest $(PYTEST_ARGS)
