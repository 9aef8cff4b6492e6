"""Build the LLM for a role from params; the one place a backend name becomes an object."""

from __future__ import annotations

from pathlib import Path

from complexif.config import GenerationConfig, LLMRoleConfig, Params
from complexif.llm.base import LLM, GenerationParams


def generation_params(cfg: GenerationConfig) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )


def make_local_llm(
    path: str | Path, gen: GenerationConfig, device: str = "auto", name: str | None = None
) -> LLM:
    from complexif.llm.transformers_backend import TransformersLLM

    return TransformersLLM(path, batch_size=gen.batch_size, device=device, name=name)


def make_llm(role: LLMRoleConfig, params: Params) -> LLM:
    if role.backend == "transformers":
        return make_local_llm(
            params.paths.resolve_model(role.model),
            role.generation,
            params.train.device,
            name=role.model,
        )
    raise ValueError(f"unknown LLM backend {role.backend!r}; expected 'transformers'")
