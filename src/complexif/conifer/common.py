"""What every Conifer step shares: its generation settings and its prompt template."""

from __future__ import annotations

from complexif.config import Params
from complexif.llm.factory import step_params
from complexif.llm.prompts import PromptTemplate, load_template

__all__ = ["conifer_template", "step_params"]


def conifer_template(params: Params, name: str) -> PromptTemplate:
    """A template from ``<paths.prompts_dir>/<conifer.prompts_dir>/``."""
    return load_template(params.paths.prompts_dir, f"{params.conifer.prompts_dir}/{name}")
