# pg2rds - every target installs what it needs first (virtualenv, Python packages, PostgreSQL, graphviz).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export PYTHONUNBUFFERED := 1

.PHONY: install system-deps demo test test-unit lint validate bench build deploy clean

$(VENV)/.installed: pyproject.toml layers/pg2rds/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[emulator,test,dev]'
	touch $@

# PostgreSQL server binaries (initdb, pg_ctl) and graphviz (dot), from the distribution when missing.
system-deps:
	@bash scripts/install-system-deps.sh

install: system-deps $(VENV)/.installed

demo: install
	$(VENV)/bin/pg2rds demo --graph .pg2rds/demo-execution.svg

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory validate
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

# The fast inner loop: no cluster, no state machine run (seconds).
test-unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q tests/unit

validate: $(VENV)/.installed
	$(VENV)/bin/sam validate --lint --region us-east-1

bench: install
	$(PY) bench/run_all.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

build: install
	$(VENV)/bin/sam build --use-container

deploy: build
	$(VENV)/bin/sam deploy --guided

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache
