# opk-sign: `make demo` runs the main job end to end on loopback; `make test` runs every check.
# Both install what they need (virtualenv, Debian packages, Go tools) and are idempotent.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built Go tools live outside the checkout so fresh clones reuse them.
export OPK_SIGN_TOOLS ?= $(HOME)/.cache/opk-sign/tools
export PATH := $(abspath $(VENV))/bin:$(OPK_SIGN_TOOLS)/bin:$(PATH)

.PHONY: install setup lint typecheck unit test demo bench clean lock shell-assets rehearse-release

install: $(VENV)/.installed

# From the locks (requirements/, `make lock`), every file checked against its hash, as CI and
# the action image install; then opk-sign itself, editable, with the locked build backend.
$(VENV)/.installed: pyproject.toml requirements/ci.txt requirements/build.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/build.txt
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/ci.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# as pip does for a wheel: no process pays for compiling our sources (PYTHONDONTWRITEBYTECODE)
	$(PY) -m compileall -q src
	@touch $@

# The hash-locked dependencies (docs/release.md, ADR 0011): runtime.txt for the action image,
# ci.txt (runtime + the test extra) for CI and `make install`, build.txt for pip and the build
# backend. For every platform and Python 3.11+ (--universal). Rerun after changing pyproject.toml.
UV_COMPILE = $(VENV)/bin/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet
lock:
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(UV_COMPILE) pyproject.toml -o requirements/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra test -o requirements/ci.txt
	$(UV_COMPILE) requirements/build.in -o requirements/build.txt

# The shell completions and the man page shipped in the package (scripts/shell_assets.py).
shell-assets: install
	$(PY) scripts/shell_assets.py

# The release steps, all of them, here (docs/release.md): RELEASE_REGISTRY, RELEASE_REPOSITORY...
rehearse-release: setup
	PYTHON=$(abspath $(PY)) bash scripts/release.sh rehearse

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

# The demo needs only a registry and the timestamp authority, not every tool the tests build
# (containerd, BuildKit, Rekor, buildah take many minutes on a fresh machine).
DEMO_SETUP := scripts/setup/10-registries.sh scripts/setup/40-timestamp-authority.sh

# `make demo DEMO_ARGS=--keep` leaves its services running (scripts/demo.sh --stop ends them).
demo: install
	@for s in $(DEMO_SETUP); do bash "$$s" || exit 1; done
	bash scripts/demo.sh $(DEMO_ARGS)

bench: setup
	bash bench/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
