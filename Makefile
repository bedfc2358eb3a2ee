# The two set-up commands: `make demo` and `make test`. Each builds its own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/verdicts demo

# The whole suite on SQLite; then again on PostgreSQL when a server is given
# (VERDICTS_TEST_POSTGRES_SERVER=postgresql+psycopg://…, as .ci/run does with scripts/postgres-server.sh).
test: $(BIN)/.installed
	env -u VERDICTS_TEST_POSTGRES $(BIN)/pytest
	@if [ -n "$$VERDICTS_TEST_POSTGRES_SERVER" ]; then \
	  echo "== the same suite on PostgreSQL =="; \
	  VERDICTS_TEST_POSTGRES="$$VERDICTS_TEST_POSTGRES_SERVER" $(BIN)/pytest; \
	fi

# Half an hour on 2 cores: the scale runs send to 100,000 and 1,000,000 readers (PostgreSQL rows
# start a private server unless VERDICTS_BENCH_POSTGRES names one; skipped without PostgreSQL).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.render_once
	$(BIN)/python -m benchmarks.providers
	$(BIN)/python -m benchmarks.web_pages
	$(BIN)/python -m benchmarks.scale

clean:
	rm -rf $(VENV) outbox verdicts.db verdicts.db-* *.egg-info
