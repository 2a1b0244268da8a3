# `make run` starts the service; `make test` runs every check. Both install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install run test lint typecheck pytest lock

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Migrate, then web (gunicorn on $$PORT, default 8000) and the RQ worker; SQLite unless DATABASE_URL
# says otherwise; an embedded Redis when none is configured or running (scripts/run.py).
run: install
	python scripts/run.py

test: install lint typecheck pytest

lint: install
	ruff check .

typecheck: install
	mypy

pytest: install
	scripts/bootstrap
	pytest -n 2 $(PYTEST_ARGS)

# Re-pin constraints.txt to what is installed now (after changing pyproject.toml).
lock: install
	$(BIN)/pip freeze --exclude-editable | grep -v '^todoapi' > constraints.txt
