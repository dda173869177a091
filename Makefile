# The two commands of the quick start: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    ?= data
CONFIG  := $(DATA)/smtpgate.toml

.PHONY: run test venv test-venv lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
test-venv: $(VENV)/.installed-test

## make run: create .venv, initialise ./data when absent, serve on the embedded default.
run: venv
	@test -f $(CONFIG) || $(BIN)/smtpgate init --data-dir $(DATA)
	$(BIN)/smtpgate serve --config $(CONFIG)

## make test: create .venv with the test extras, install the real SMTP clients, run the whole suite.
test: test-venv
	@scripts/install-test-clients.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
