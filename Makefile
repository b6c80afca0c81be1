# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit wheel-check oldest-airflow bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m airflow_batch_provider.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy airflow_batch_provider

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

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

oldest-airflow: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/pytest -p no:cacheprovider tests/core tests/client tests/hooks tests/operators tests/dags

test: lint typecheck unit wheel-check oldest-airflow

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .mypy_cache .ruff_cache .pytest_cache
