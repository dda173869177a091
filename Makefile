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

# Ports for `make run`; empty: the data dir's config (2587, 2465, 8025 as `init` writes them).
PORT       ?=
TLS_PORT   ?=
ADMIN_PORT ?=
INIT_PORTS  = $(if $(PORT),--submission-port $(PORT)) $(if $(TLS_PORT),--submissions-port $(TLS_PORT)) $(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT))
SERVE_PORTS = $(if $(PORT),--port $(PORT)) $(if $(TLS_PORT),--tls-port $(TLS_PORT)) $(if $(ADMIN_PORT),--admin-port $(ADMIN_PORT))

## make run [PORT=2587] [TLS_PORT=2465] [ADMIN_PORT=8025] [DATA=data]: create .venv, initialise
## $(DATA) when absent, serve; the log's first lines say where SMTP and the admin listener are.
run: venv
	@test -f $(CONFIG) || $(BIN)/smtpgate init --data-dir $(DATA) $(INIT_PORTS)
	$(BIN)/smtpgate serve --config $(CONFIG) $(SERVE_PORTS)

## make test: create .venv with the test extras, install the real SMTP clients, run the whole suite,
## TEST_JOBS processes at once (pytest-xdist; a module's tests stay together in one process, so a
## module's server is started once). TEST_JOBS=0 runs it in this process alone.
TEST_JOBS ?= 2
test: test-venv
	@scripts/install-test-clients.sh
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile) $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache
