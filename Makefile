# wikilm: `make run` runs the pipeline, `make test` runs the tests. Both create .venv and
# install what is missing first, idempotently.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every install takes exactly what locks/ holds, hash-checked (see locks/README.md): cpu.txt
# (the project's dependencies with the CPU build of torch), data.txt (a data package
# installed without its dependencies). `make lock` writes them from pyproject.toml.
LOCK := locks/cpu.txt
DATA_LOCK := locks/data.txt
# Where the CPU build of torch is found when locking: this folder holds it on the machines
# the project is developed and tested on; elsewhere point it at a folder of wheels or
# https://download.pytorch.org/whl/cpu.
TORCH_CPU_WHEELS ?= /opt/wheels
LOCK_FOR := --python-version 3.11 --python-platform x86_64-manylinux_2_28
# `make lock UV_FLAGS=--upgrade` moves every pin to the newest release that fits.
UV_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes $(LOCK_FOR) $(UV_FLAGS) \
	--custom-compile-command "make lock"
export PATH := $(abspath $(BIN)):$(PATH)
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install lock lbzip2 chromium run test lint format bench clean-outputs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# --no-deps: nothing but the lock's pins; --no-build-isolation: the editable install is built
# with the lock's setuptools instead of one fetched for the build.
$(STAMP): $(LOCK) $(DATA_LOCK) pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(DATA_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) lbzip2 chromium  ## create .venv and install the project from locks/ (idempotent)

# The CUDA lock (infra/Dockerfile.cuda) differs from the CPU one only in torch and what
# torch's CUDA build needs; tests/test_locks.py holds the three to pyproject.toml.
lock: install  ## regenerate locks/ from pyproject.toml, then install from them
	$(UV_COMPILE) pyproject.toml --extra dev --group lock --find-links $(TORCH_CPU_WHEELS) -o $(LOCK)
	$(UV_COMPILE) pyproject.toml --extra dev --group lock -o locks/cuda.txt
	$(UV_COMPILE) --group data --no-deps -o $(DATA_LOCK)
	$(MAKE) install

# lbzip2 decodes bz2 dumps on every core with less CPU than Python's bz2 module, which ingest
# uses without it (params: ingest.bz2_decoder). Installed with apt-get when make runs as root.
lbzip2:
	@command -v lbzip2 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing lbzip2 with apt-get"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq lbzip2 >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq lbzip2 >/dev/null 2>&1; } \
	      || echo "note: apt-get could not install lbzip2; ingest decodes bz2 with Python's bz2"; \
	  else \
	    echo "note: lbzip2 is not installed; ingest decodes bz2 with Python's bz2 (apt install lbzip2)"; \
	  fi; }

# Chromium and its WebDriver: the tests drive the model registry's review pages in a real
# headless browser (tests/servers/browser.py), which Selenium finds at these paths and never
# downloads. Installed with apt-get when make runs as root; without recommends, which add a
# desktop's printing, power and GPU stacks that a headless browser never uses.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver with apt-get"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    get="apt-get install -y -qq --no-install-recommends chromium chromium-driver"; \
	    $$get >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && $$get >/dev/null 2>&1; } \
	      || echo "note: apt-get could not install chromium and chromium-driver; browser tests fail"; \
	  else \
	    echo "note: no chromium or chromedriver: browser tests fail (apt install chromium chromium-driver)"; \
	  fi; }

run: install  ## run the pipeline on params.yaml (builtin sample by default)
	wikilm run

test: install  ## run the test suite
	$(BIN)/python -m pytest

lint: install  ## ruff check, format check, and the import contracts (layers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## benchmarks: ingest+clean against WikiExtractor; Lightning against a plain loop; no-op run; predict against pyfunc
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/noop_run.py
	$(BIN)/python benchmarks/predict.py

clean-outputs:  ## remove pipeline outputs (not the DVC cache)
	rm -rf data models reports metrics plots
