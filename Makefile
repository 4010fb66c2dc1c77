# modelyard developer commands.
#   make serve   run the server from a local virtualenv (HOST, PORT, DATA_DIR)
#   make test    system packages + dev install + the test suite (PYTEST_ARGS)
#   make test-fast  the layers that need no live server and no PostgreSQL
#   make lint    ruff + ruff format --check + mypy
#   make schema-snapshot   rewrite the SQLite head schema after adding a migration

PYTHON   ?= python3
VENV     ?= .venv
HOST     ?= 127.0.0.1
PORT     ?= 8080
DATA_DIR ?= ./.modelyard
PYTEST_ARGS ?=

PG_BIN := /usr/lib/postgresql/15/bin
VENV_PY := $(VENV)/bin/python
# Stamps live inside the venv: deleting the venv forgets them too. pip runs only
# when pyproject.toml is newer than the stamp, so repeated runs are fast.
STAMP_RUNTIME := $(VENV)/.stamp-install
STAMP_DEV := $(VENV)/.stamp-install-dev

.PHONY: serve test test-fast lint system-deps schema-snapshot

serve: $(STAMP_RUNTIME)
	@# Bytecode for the source tree: an editable install never gets it written
	@# when PYTHONDONTWRITEBYTECODE is set, and compiling at each start costs ~90 ms.
	@$(VENV_PY) -m compileall -q src
	$(VENV)/bin/modelyard server --host "$(HOST)" --port "$(PORT)" --data-dir "$(DATA_DIR)"

test: system-deps $(STAMP_DEV)
	$(VENV_PY) -m pytest -n 2 -q $(PYTEST_ARGS)

# A developer's quick loop: domain, store, service and API contract on SQLite
# only (about a minute); `make test` still runs everything.
test-fast: $(STAMP_DEV)
	$(VENV_PY) -m pytest -n 2 -q -m "(domain or store or service or api) and not postgres and not slow" $(PYTEST_ARGS)

lint: $(STAMP_DEV)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

schema-snapshot: $(STAMP_DEV)
	$(VENV_PY) -c "from modelyard.store.metadata.migrate import write_sqlite_snapshot as w; w()"

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUNTIME): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install -e '.[dev]'
	touch $@

# PostgreSQL 15 server binaries for the throwaway test cluster (tests/pgcluster.py),
# and Debian's Chromium for the UI's browser tests (tests/web/test_browser.py,
# driven by Playwright through executable_path: Playwright's own browser
# download is not used).
# The package's own default cluster (port 5432), if its postinst starts one, is
# not used by the tests and is left alone.
system-deps:
	@if [ ! -x $(PG_BIN)/initdb ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing postgresql-15 (test dependency)"; \
	    apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
	  else \
	    echo "warning: $(PG_BIN)/initdb missing and not root; install postgresql-15" \
	         "(PostgreSQL tests skip, or fail when CI is set)" >&2; \
	  fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (browser tests)"; \
	    apt-get update && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	  else \
	    echo "warning: /usr/bin/chromium missing and not root; install chromium" \
	         "(browser tests skip, or fail when CI is set)" >&2; \
	  fi; \
	fi
