# Dockyard: `make run` starts a registry with Dockyard in front of it; `make test` runs the suite.
# Both install what they need on a fresh Debian machine (apt packages and a virtualenv).

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= data


RUN_DEBS  := docker-registry
TEST_DEBS := docker-registry skopeo slapd ldap-utils chromium
# wrk: the load generator of bench/ingest.py and bench/token_issuance.py.
BENCH_DEBS := $(TEST_DEBS) wrk

.PHONY: run test lint bench clean debs-run debs-test debs-bench screenshots

run: $(VENV)/.run debs-run
	$(BIN)/dockyard up --data-dir $(DATA)

test: $(VENV)/.test debs-test lint
	$(BIN)/pytest

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.test debs-bench
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/activity_feed.py
	$(BIN)/python bench/push_to_visible.py
	$(BIN)/python bench/token_issuance.py
	$(BIN)/python bench/vuln_matching.py
	$(BIN)/python bench/ldap_login.py
	$(BIN)/python bench/portal_pages.py
	$(BIN)/python bench/layer_scan.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/scaleout.py
	$(BIN)/python bench/stores.py

# The portal's pages as the browser tests leave them, for the README (docs/screenshots/).
screenshots: $(VENV)/.test debs-test
	DOCKYARD_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/portal/test_portal_browser.py

# Debian packages: installed only when missing, so repeated runs cost nothing.
debs-run:
	@scripts/apt-ensure $(RUN_DEBS)
debs-test:
	@scripts/apt-ensure $(TEST_DEBS)
debs-bench:
	@scripts/apt-ensure $(BENCH_DEBS)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || scripts/apt-ensure python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test]'
	@touch $@ $(VENV)/.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
