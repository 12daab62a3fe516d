# Two entry points, both self-contained on a fresh machine with Python 3.11, git and make:
#   make demo   set up .venv and run `vizdebug demo`
#   make test   set up .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# visdom 0.2.4 is an sdist whose setup.py imports pkg_resources: a constraints file named by
# PIP_CONSTRAINT reaches pip's isolated build environment and keeps setuptools below 81 there.
PIPENV := PIP_CONSTRAINT=$(CURDIR)/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: demo test lint typecheck pytest bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt vizdebug/_rowkernel.c
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PIPENV) $(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vizdebug demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	bash scripts/setup-browser.sh
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
