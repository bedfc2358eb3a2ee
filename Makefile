# The two set-up commands: `make demo` and `make test`. Both install into .venv from constraints.txt,
# the lock: the same versions on every machine and every day, until `make lock` changes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
UPGRADE_PIP := $(BIN)/pip install --quiet --constraint $(LOCK) pip
# setuptools warns at every editable install that maps a folder (templates/ installs as
# pipeline.templates): nothing to act on, so it is not shown. The build backend is pinned too.
PIP_INSTALL := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet \
	--constraint $(LOCK) --build-constraint $(LOCK)

.PHONY: demo test lint reliability bench lock lock-upgrade clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# What the demo needs and no more: no browser driver, test libraries or SES/SendGrid extras.
$(VENV)/.demo-installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(UPGRADE_PIP)
	$(PIP_INSTALL) -e .
	touch $@

# The test extra: the suite's libraries and every provider's (it holds all the demo needs too).
$(VENV)/.test-installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(UPGRADE_PIP)
	$(PIP_INSTALL) -e '.[test]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/verdicts demo

# The whole suite on SQLite; then again on PostgreSQL when a server is given
# (VERDICTS_TEST_POSTGRES_SERVER=postgresql+psycopg://…, as .ci/run does with scripts/postgres-server.sh).
test: $(VENV)/.test-installed
	env -u VERDICTS_TEST_POSTGRES $(BIN)/pytest
	@if [ -n "$$VERDICTS_TEST_POSTGRES_SERVER" ]; then \
	  echo "== the same suite on PostgreSQL =="; \
	  VERDICTS_TEST_POSTGRES="$$VERDICTS_TEST_POSTGRES_SERVER" $(BIN)/pytest; \
	fi

# ruff (lint and format), mypy and import-linter's layer contracts, as configured in pyproject.toml: zero findings.
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Rewrites docs/RELIABILITY.md (tracked, so `make test` never does): the database fault and SIGKILL trials on
# SQLite, then on PostgreSQL when a server is given as for `make test`. A few minutes per database.
RELIABILITY_TESTS := tests/test_reliability.py tests/test_database_faults.py
reliability: $(VENV)/.test-installed
	env -u VERDICTS_TEST_POSTGRES RELIABILITY_REPORT_FILE=$(CURDIR)/docs/RELIABILITY.md $(BIN)/pytest $(RELIABILITY_TESTS)
	@if [ -n "$$VERDICTS_TEST_POSTGRES_SERVER" ]; then \
	  echo "== the same trials on PostgreSQL =="; \
	  VERDICTS_TEST_POSTGRES="$$VERDICTS_TEST_POSTGRES_SERVER" RELIABILITY_REPORT_FILE=$(CURDIR)/docs/RELIABILITY.md \
	    $(BIN)/pytest $(RELIABILITY_TESTS); \
	fi

# Writes docs/BENCHMARKS.md. Half an hour on 2 cores: the scale runs send to 100,000 and 1,000,000 readers
# (PostgreSQL rows start a private server unless VERDICTS_BENCH_POSTGRES names one; skipped without PostgreSQL).
bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks.render_once
	$(BIN)/python -m benchmarks.lineups
	$(BIN)/python -m benchmarks.providers
	$(BIN)/python -m benchmarks.web_pages
	$(BIN)/python -m benchmarks.web_burst
	$(BIN)/python -m benchmarks.scale

# After changing the dependencies in pyproject.toml: the lock for every platform and Python >= 3.11,
# keeping the versions it already pins. `make lock-upgrade` moves every pin to the newest allowed.
lock: | $(BIN)/python
	$(BIN)/pip install --quiet 'uv>=0.9,<1'
	printf 'pip\nsetuptools\n' | $(BIN)/uv pip compile pyproject.toml - --all-extras --universal --python-version 3.11 \
	  --custom-compile-command 'make lock' --quiet --output-file $(LOCK) $(LOCK_FLAGS)

lock-upgrade: LOCK_FLAGS = --upgrade
lock-upgrade: lock

clean:
	rm -rf $(VENV) outbox verdicts.db verdicts.db-* *.egg-info
