"""Build the LLM for a role from params; the one place a backend name becomes an object."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from complexif.config import (
    APIConfig,
    ConfigError,
    GenerationConfig,
    LLMRoleConfig,
    Params,
    StepSampling,
)
from complexif.llm.base import AsyncBackend, BatchBackend, GenerationParams


def generation_params(cfg: GenerationConfig) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
        n=cfg.n,
    )


def step_params(role: LLMRoleConfig, step: StepSampling) -> GenerationParams:
    """The role's generation settings with the step's length and sampling (one answer)."""
    return replace(
        generation_params(role.generation),
        max_new_tokens=step.max_new_tokens,
        temperature=step.temperature,
        top_p=step.top_p,
        n=1,
    )


def make_local_llm(
    path: str | Path, gen: GenerationConfig, device: str, name: str | None = None
) -> BatchBackend:
    from complexif.llm.transformers_backend import TransformersLLM

    return TransformersLLM(
        path,
        batch_size=gen.batch_size,
        device=device,
        name=name,
        engine=gen.engine,
        precision=gen.precision,
    )


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(env_name: str, env_file: str | Path) -> str | None:
    """A secret from the environment, else from the .env file; None if unset or blank."""
    value = os.environ.get(env_name)
    if not value and Path(env_file).is_file():
        from dotenv import dotenv_values

        value = dotenv_values(env_file).get(env_name)
    return (value or "").strip() or None


def resolve_api_key(api: APIConfig, env_file: str | Path) -> str:
    """The key from the environment, else from the .env file; a local server needs none."""
    key = read_secret(api.api_key_env, env_file)
    if key:
        return key
    if _is_loopback(api.base_url):
        return "not-needed"  # the SDK insists on a key; local servers ignore it
    raise ConfigError(
        f"no API key for {api.base_url}: set {api.api_key_env} in the environment or in "
        f"{env_file} (the key never goes in params.yaml)"
    )


def make_backend(role: LLMRoleConfig, params: Params) -> BatchBackend | AsyncBackend:
    if role.backend == "transformers":
        return make_local_llm(
            params.paths.resolve_model(role.model),
            role.generation,
            params.train.device,
            name=role.model,
        )
    if role.backend == "openai":
        from complexif.llm.openai_backend import OpenAIBackend
        from complexif.llm.retry import RetryPolicy

        api = role.api
        return OpenAIBackend(
            role.model,
            base_url=api.base_url,
            api_key=resolve_api_key(api, params.llm.env_file),
            concurrency=api.concurrency,
            rpm=api.rpm,
            tpm=api.tpm,
            timeout_s=api.timeout_s,
            retry=RetryPolicy(api.max_retries, api.backoff_base_s, api.backoff_max_s),
        )
    raise ConfigError(f"unknown LLM backend {role.backend!r}; expected transformers or openai")
