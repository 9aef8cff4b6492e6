"""What every Conifer step shares: its generation settings and its prompt template."""

from __future__ import annotations

from dataclasses import replace

from complexif.config import LLMRoleConfig, Params, StepSampling
from complexif.llm.base import GenerationParams
from complexif.llm.factory import generation_params
from complexif.llm.prompts import PromptTemplate, load_template


def step_params(role: LLMRoleConfig, step: StepSampling) -> GenerationParams:
    """The role's generation settings with the step's length and sampling (one answer)."""
    return replace(
        generation_params(role.generation),
        max_new_tokens=step.max_new_tokens,
        temperature=step.temperature,
        top_p=step.top_p,
        n=1,
    )


def conifer_template(params: Params, name: str) -> PromptTemplate:
    """A template from ``<paths.prompts_dir>/<conifer.prompts_dir>/``."""
    return load_template(params.paths.prompts_dir, f"{params.conifer.prompts_dir}/{name}")
