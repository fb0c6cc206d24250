# dsar developer tasks. `make test` on a fresh Debian 12 (python3 only) creates .venv,
# installs the project with [test], makes sure PostgreSQL, MariaDB and Redis are
# available (scripts/ensure-test-deps.sh), lints, type-checks and runs pytest against
# the real servers: running ones, or throwaway ones the tests start and stop.
#
#   make test PYTEST_ARGS='tests/test_infra_postgres.py -x'   # pass arguments to pytest
#   make test PYTEST_JOBS=0                                    # in one process (default: xdist)
#
# Each server is chosen by an env var: host:port uses that server (exit 3 if it does not
# answer), `start` forces a throwaway one, unset probes the default address (override
# with the _PROBE var) and falls back to a throwaway one:
#   DSAR_TEST_PG=start make test        # PostgreSQL, probe DSAR_TEST_PG_PROBE (127.0.0.1:5432)
#   DSAR_TEST_MARIADB=start make test   # MariaDB, probe DSAR_TEST_MARIADB_PROBE (127.0.0.1:3306)
#   DSAR_TEST_REDIS=start make test     # Redis, probe DSAR_TEST_REDIS_PROBE (127.0.0.1:6379)
# See tests/support/{postgres,mariadb,redis}.py, and tests/support/servers.py for what
# they share.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers: one per core, at least 2 (the tests wait on servers and
# subprocesses as much as they compute), at most 4; PYTEST_JOBS=0 runs in one process.
PYTEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -lt 2 ] && n=2; \
                 [ $$n -gt 4 ] && n=4; echo $$n)

# Quieter pip: no version nag, no progress bars.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_PROGRESS_BAR := off

.DEFAULT_GOAL := test
.PHONY: venv test-deps lint types pytest test run bench bench-deps bench-compare mutate \
        mutate-deps mutate-save mutate-summary clean

venv: $(STAMP)

# Re-install only when the packaging metadata changes.
$(STAMP): setup.cfg pyproject.toml
	@echo "==> venv: $(VENV) with dsar-toolkit[test]"
	@if [ ! -x $(BIN)/python ]; then \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { \
	    echo "   '$(PYTHON) -m venv' failed: Debian's python3-venv is probably missing"; \
	    rm -rf $(VENV); \
	    PYTHON=$(PYTHON) scripts/ensure-test-deps.sh python-venv && $(PYTHON) -m venv $(VENV); \
	  }; \
	fi
	@$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

test-deps:
	@echo "==> test-deps"
	@scripts/ensure-test-deps.sh

lint: $(STAMP)
	@echo "==> lint: ruff check ."
	@$(BIN)/ruff check --output-format=concise .

types: $(STAMP)
	@echo "==> types: mypy (mypy.ini, package dsar)"
	@$(BIN)/mypy --config-file mypy.ini

pytest: $(STAMP)
	@echo "==> pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS)"
	@$(BIN)/python -m pytest -n $(PYTEST_JOBS) $(PYTEST_ARGS)

# Golden files (README, Tests): write tests/__snapshots__ again from what the code renders
# now, after a deliberate change of an output; read `git diff tests/__snapshots__` first.
.PHONY: golden
golden: $(STAMP)
	@scripts/ensure-test-deps.sh postgresql
	@echo "==> pytest tests/test_golden_*.py --snapshot-update"
	@$(BIN)/python -m pytest tests/test_golden_*.py --snapshot-update

# Screenshots of the portal and the console (README): the browser journeys of
# tests/{portal,console}/test_browser.py on SQLite save each page they pass (the portal at
# 1280 and 390 px) as
# docs/screenshots/portal-<page>[-mobile].png and console-<page>.png (the viewport only).
# Not in `make test`.
.PHONY: screenshots
screenshots: $(STAMP)
	@scripts/ensure-test-deps.sh postgresql
	@scripts/ensure-test-deps.sh browser
	@echo "==> screenshots: docs/screenshots/portal-*.png, console-*.png"
	@DSAR_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q \
	  tests/portal/test_browser.py tests/console/test_browser.py -k 'journey and sqlite'

test: venv test-deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory types
	@$(MAKE) --no-print-directory pytest

run: $(STAMP)
	$(BIN)/dsar demo
	$(BIN)/dsar run

# Benchmarks (README, Performance). Options by variable or DSAR_BENCH_* env, e.g.
#   make bench BENCH_ARGS='--large 1000000'      # also at 1M customers, and the 1M/10k ratio
#   make bench-compare                           # the leader (../shared/fides-bench) alternated
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed

bench-deps: $(BENCH_STAMP)

# The bench extra (py-spy, requests and psutil for the leader's driver): not in [test].
$(BENCH_STAMP): $(STAMP)
	@echo "==> venv: dsar-toolkit[bench]"
	@$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

# PostgreSQL answering (DSAR_BENCH_PG or 127.0.0.1:5432) or its binaries for a throwaway
# one; the leader also needs redis-server.
bench: $(BENCH_STAMP)
	@DSAR_TEST_PG="$${DSAR_BENCH_PG:-}" scripts/ensure-test-deps.sh postgresql
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-compare: $(BENCH_STAMP)
	@DSAR_TEST_PG="$${DSAR_BENCH_PG:-}" scripts/ensure-test-deps.sh postgresql
	@DSAR_TEST_REDIS=start scripts/ensure-test-deps.sh redis
	$(BIN)/python -m bench --compare $(BENCH_ARGS)

# Mutation testing (README, Tests): mutmut over the modules setup.cfg's [mutmut] names, each
# mutant against the SQLite tests that reach it; two to three hours on 2 cores from nothing.
# Not in `make test`. Results stay in mutants/ (a rerun tests only mutants whose function
# changed or that have no result yet) and are kept in bench/mutate-state/ (committed), so a
# fresh checkout starts from them; `rm -rf mutants bench/mutate-state` for a full run. The
# summary goes to bench/results/.
#   make mutate MUTATE_ARGS='dsar.crypto*'    # only these mutants, tested again
#   make mutate-summary                       # the JSON again from the results in mutants/
MUTATE_ARGS ?=
MUTATE_JOBS ?= 2
MUTATE_OUT  ?= bench/results/mutate-$(shell date -u +%Y-%m-%d).json
MUTATE_STAMP := $(VENV)/.mutate-installed
MUTATE_STATE := bench/mutate-state

mutate-deps: $(MUTATE_STAMP)

$(MUTATE_STAMP): $(STAMP)
	@echo "==> venv: dsar-toolkit[mutate]"
	@$(BIN)/python -m pip install --quiet -e '.[mutate]'
	@touch $@

# The tests choose a PostgreSQL server at start-up even when none of the selected tests
# uses it: one answering, or binaries for a throwaway one.
mutate: $(MUTATE_STAMP)
	@scripts/ensure-test-deps.sh postgresql
	@if [ ! -d mutants ] && [ -d $(MUTATE_STATE) ]; then \
	  echo "==> results of earlier runs from $(MUTATE_STATE)"; \
	  mkdir -p mutants && cp -r $(MUTATE_STATE)/. mutants/; fi
	@# mutmut copies dsar/ once and refreshes only its .py files: templates and static too
	@if [ -d mutants/dsar ]; then (cd dsar && find . -type f ! -name '*.py' \
	  ! -path '*/__pycache__/*' -exec cp --parents {} ../mutants/dsar/ \;); fi
	@echo "==> mutmut run --max-children $(MUTATE_JOBS) $(MUTATE_ARGS)"
	@start=$$(date +%s) && \
	  nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE_ARGS) && \
	  echo "$$(date -u -d @$$start +%FT%TZ) $$(( $$(date +%s) - start )) $(MUTATE_ARGS)" \
	    >> mutants/runs.log
	@$(MAKE) --no-print-directory mutate-save mutate-summary

# each mutated file's results (mutmut's .meta: exit code per mutant, hash per function)
mutate-save:
	@rm -rf $(MUTATE_STATE) && mkdir -p $(MUTATE_STATE)
	@cd mutants && find dsar -name '*.py.meta' -exec cp --parents {} ../$(MUTATE_STATE)/ \;
	@echo "==> results kept in $(MUTATE_STATE)"

mutate-summary: $(MUTATE_STAMP)
	$(BIN)/python -m bench.mutate --out $(MUTATE_OUT)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
