# OpsView developer commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'

# ruff over the whole tree, then mypy over the apps (pyproject.toml's [tool.ruff], [tool.mypy]).
lint: $(BIN)/python
	$(BIN)/ruff check .
	DEBUG=1 $(BIN)/mypy  # settings load only with a key or DEBUG; mypy needs no secret

# SQLite + eager Celery unless DATABASE_URL / CELERY_BROKER_URL point at PostgreSQL / Redis.
test: $(BIN)/python
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A living firm on http://127.0.0.1:$(PORT) (8000 unless PORT= says otherwise): SQLite and
# eager Celery unless DATABASE_URL and CELERY_BROKER_URL are set, in which case a worker and
# beat run beside the server. DEBUG=1 (unless set otherwise) lets every step run on the
# demo's key; production sets SECRET_KEY. The demo credentials are printed last, once the
# server answers.
PORT ?= 8000
demo: export DEBUG := $(or $(DEBUG),1)
demo: export STATIC_ROOT := $(or $(STATIC_ROOT),$(CURDIR)/staticfiles-demo)
demo: $(BIN)/python
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_demo
	$(BIN)/python manage.py simulate --size small --process
	$(BIN)/python manage.py process_inbox
	$(BIN)/python manage.py collectstatic --noinput -v0
	@if [ -n "$$CELERY_BROKER_URL" ]; then \
	  $(BIN)/celery -A config worker -l warning & $(BIN)/celery -A config beat -l warning & \
	fi; \
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT) & server=$$!; \
	$(BIN)/python manage.py setup_demo --credentials \
	  --wait-for http://127.0.0.1:$(PORT)/accounts/login/; \
	wait $$server
