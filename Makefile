# OpenResponses: `make run` serves the API, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: install run migrate test test-fast lint format bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) -m openresponses_site.runserver --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Providers and unit tests only: no server process, no browser, no package build (well under a minute).
test-fast: install
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# `make bench` prints the benchmark tables; `make bench COMPARE=litellm` adds the pinned LiteLLM proxy.
bench: install
	$(PY) -m bench.run $(if $(COMPARE),--compare $(COMPARE)) $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) artifacts .pytest_cache
