# simplecqrs — the two commands: `make up` and `make test`.
# Everything installs itself idempotently; downloads and builds are cached per
# user in $(SIMPLECQRS_CACHE) (default ~/.cache/simplecqrs), per-checkout state in .local/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: up down status test test-faults test-soak clean venv help dev

help:
	@echo "make up          install + start the stores, a Kubernetes control plane and a node,"
	@echo "                 then simplecqrs as pods (Helm charts); API on http://127.0.0.1:8080"
	@echo "make dev         skaffold dev on the local node (profile local; Ctrl-C cleans up)"
	@echo "make test        run the full test suite (starts what it needs)"
	@echo "make test-faults run only the fault-injection suite"
	@echo "make test-soak   the Kafka SIGKILL scenario ten times in a row (not part of make test)"
	@echo "make status      table of components"
	@echo "make down        stop what make up started"
	@echo "make clean       remove local data (asks first; FORCE=1 to skip)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> Python environment $(VENV) (pip cache: ~/.cache/pip)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q -e '.[dev]' --progress-bar on
	@rm -f $(VENV)/.installed-* && touch $@

up: venv
	@$(PY) -m scripts.stack up

# down, status and clean run on .venv's Python like up, and depend on `venv` like up: the harness
# imports its libraries from .venv (psutil, tenacity, cryptography, the Cassandra, Kafka and Docker
# clients), and the stamp brings an existing .venv up to date first, so a pull that adds a dependency
# never leaves `make down` unable to stop a running stack.  A fresh clone's `make down` builds .venv
# first (the step `make up` starts with; pip's cache keeps it short) and then finds nothing to stop.
down: venv
	@$(PY) -m scripts.stack down

status: venv
	@$(PY) -m scripts.stack status

test: venv
	@$(PY) -m scripts.stack test -- $(PYTEST_ARGS)

test-faults: venv
	@$(PY) -m scripts.stack test -- -m faults $(PYTEST_ARGS)

test-soak: venv
	@$(PY) -m scripts.stack test -- -m soak $(PYTEST_ARGS)

dev: venv
	@$(PY) -c "from scripts.stack import gotools; gotools.ensure('skaffold')"
	@DOCKER_HOST=unix://$(CURDIR)/.local/run/docker.sock KUBECONFIG=$(CURDIR)/.local/kubeconfig \
	  .local/bin/skaffold dev -p local --trigger=polling $(SKAFFOLD_ARGS)

clean: venv
	@$(PY) -m scripts.stack clean $(if $(FORCE),--yes,)
