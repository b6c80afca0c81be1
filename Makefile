# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The browser tests drive Debian's chromium through Playwright, which must never download a browser.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

# The official SDK's latest 2.x release, for `make sdk2`: installed into .sdk2 (put first on
# PYTHONPATH) without its dependencies, which .venv holds, except the two that 3.x dropped.
SDK2_DIR := .sdk2
SDK2_PACKAGES := openai==2.54.0 distro==1.9.0 tqdm==4.70.1
SDK2_STAMP := $(SDK2_DIR)/.installed

.PHONY: demo demo-ui test lint typecheck unit system-test chromium sdk2 wheel-check oldest-airflow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m airflow_batch_provider.demo

# The demo, then the batch pages in a local Airflow API server until Ctrl-C.
demo-ui: $(STAMP)
	$(BIN)/python -m airflow_batch_provider.demo --ui

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy airflow_batch_provider

unit: $(STAMP) chromium
	$(BIN)/pytest --ignore=tests/system $(PYTEST_ARGS)

# A real Airflow deployment (API server, scheduler, DAG processor, triggerers; LocalExecutor, and
# CeleryExecutor with Redis) and the emulator as processes, driven over HTTP and in chromium.
# PostgreSQL and Redis come from ABP_SYSTEM_POSTGRES_URL and ABP_SYSTEM_REDIS_URL; without the
# first the deployments use SQLite and the Celery tests skip (README: System tests).
system-test: $(STAMP) chromium
	$(BIN)/pytest -p no:cacheprovider tests/system $(PYTEST_ARGS)

# Installs Debian's chromium when it is missing (root, as on the project's machines).
chromium:
	test -x $(CHROMIUM) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

$(SDK2_STAMP): $(STAMP) Makefile
	rm -rf $(SDK2_DIR)
	$(BIN)/python -m pip install --quiet --no-deps --target $(SDK2_DIR) $(SDK2_PACKAGES)
	touch $(SDK2_STAMP)

# The emulator's tests marked `sdk` again, driven by the SDK's 2.x release. pytest fails when the
# SDK imported is not 2.x, when a module of them is missing, or (exit 5) when it ran no test.
sdk2: $(SDK2_STAMP)
	PYTHONPATH=$(SDK2_DIR) $(BIN)/pytest -p no:cacheprovider -m sdk --openai-major 2 tests/emulator

# The built sdist and wheel, and the wheel installed in a fresh venv as a user installs it.
wheel-check: $(STAMP)
	bash .ci/check_wheel.sh

# The oldest Airflow the package declares: the unit and DAG-level suites pass there too.
OLDEST_AIRFLOW := 3.1.8
OLDEST_VENV := .venv-airflow-$(OLDEST_AIRFLOW)

$(OLDEST_VENV)/.installed: pyproject.toml
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet -e '.[test]' 'apache-airflow==$(OLDEST_AIRFLOW)'
	touch $@

# Then the LocalExecutor system tests there, on SQLite: the fallback of a machine with no PostgreSQL.
oldest-airflow: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/pytest -p no:cacheprovider tests/core tests/client tests/hooks tests/operators tests/dags
	env -u ABP_SYSTEM_POSTGRES_URL -u ABP_SYSTEM_REDIS_URL \
		$(OLDEST_VENV)/bin/pytest -p no:cacheprovider tests/system/test_local.py

test: lint typecheck unit system-test sdk2 wheel-check oldest-airflow

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(SDK2_DIR) .mypy_cache .ruff_cache .pytest_cache
