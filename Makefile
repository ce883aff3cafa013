# pg2rds - every target installs what it needs first (virtualenv, Python packages, PostgreSQL, graphviz).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export PYTHONUNBUFFERED := 1

.PHONY: install system-deps demo test test-unit lint validate checkov bench build deploy clean

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
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory validate
	$(MAKE) --no-print-directory checkov
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

# The fast inner loop: no cluster, no state machine run (seconds).
test-unit: $(VENV)/.installed
	$(VENV)/bin/pytest -q tests/unit

validate: $(VENV)/.installed
	$(VENV)/bin/sam validate --lint --region us-east-1

# checkov pins boto3 below what aws-sam-cli and moto need, so it lives in a virtualenv of its own.
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2,<4'
	touch $@

# Every check runs except these, which do not apply to this template:
#  CKV_AWS_115 (reserved concurrency) and CKV_AWS_116 (dead-letter queue): every function is invoked
#    synchronously by Step Functions, whose Retry/Catch handle its errors; nothing invokes one
#    asynchronously, so a DLQ would never receive anything, and the executions bound the concurrency.
#  CKV_AWS_173 (KMS key for environment variables): they hold no secret (service name, log level, a role
#    ARN); the database credentials stay in Secrets Manager.
#  CKV_AWS_158 (customer-managed key for the log group): CloudWatch Logs encrypts it at rest already, and
#    execution data holds secret ARNs, never a password.
CHECKOV_SKIP := CKV_AWS_115,CKV_AWS_116,CKV_AWS_173,CKV_AWS_158

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml \
		--skip-check $(CHECKOV_SKIP)

bench: install
	$(PY) bench/run_all.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

build: install
	$(VENV)/bin/sam build --use-container

deploy: build
	$(VENV)/bin/sam deploy --guided

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache
