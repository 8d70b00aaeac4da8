# opk-sign: `make demo` runs the main job end to end on loopback; `make test` runs every check.
# Both install what they need (virtualenv, Debian packages, Go tools) and are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built Go tools live outside the checkout so fresh clones reuse them.
export OPK_SIGN_TOOLS ?= $(HOME)/.cache/opk-sign/tools
export PATH := $(abspath $(VENV))/bin:$(OPK_SIGN_TOOLS)/bin:$(PATH)

.PHONY: install setup lint typecheck unit test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# Debian packages and Go tools the tests and the demo run against (each script is idempotent).
setup: install
	@for s in scripts/setup/*.sh; do bash "$$s" || exit 1; done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest -q -m 'not slow' tests/unit

test: setup lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

# `make demo DEMO_ARGS=--keep` leaves its services running (scripts/demo.sh --stop ends them).
demo: setup
	bash scripts/demo.sh $(DEMO_ARGS)

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
