# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lionflow-installed

.PHONY: demo test lint install clean system

# The programs the tests drive, from Debian's packages, installed where missing (as root, with
# apt-get): Chromium for the playground, PostgreSQL's server for the shared store (its programs live
# in /usr/lib/postgresql/VERSION/bin, off the PATH). Elsewhere, say what to install; the tests that
# need them skip naming them (and fail under CI, which sets CI=true).
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq $$missing >/dev/null || { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; }; \
	else \
		echo "make: missing$$missing; install with: sudo apt-get install$$missing"; \
	fi

# torch==2.13.0 goes in first: it is the CPU build this machine keeps on disk. Installed later by the
# `transformers` extra, pip would pick a multi-GB CUDA build instead.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m lionflow demo

test: $(STAMP) system
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check lionflow tests benchmarks docs/examples
	$(PY) -m ruff format --check lionflow tests benchmarks docs/examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
