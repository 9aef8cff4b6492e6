"""What every benchmark's judge shares: the judge role's client (built only when an item needs
it), its templates under ``<paths.prompts_dir>/<evaluate.prompts_dir>/``, and who judged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from complexif.config import Params
from complexif.llm.base import LLM, BatchBackend
from complexif.llm.prompts import PromptTemplate, load_template

JudgeClient = Callable[[], LLM | BatchBackend]


def eval_template(params: Params, name: str) -> PromptTemplate:
    """A template from ``<paths.prompts_dir>/<evaluate.prompts_dir>/``."""
    return load_template(params.paths.prompts_dir, f"{params.evaluate.prompts_dir}/{name}")


def judge_info(params: Params, template: PromptTemplate) -> dict[str, str]:
    """Who judged and with which prompt: stored beside the verdicts and logged to MLflow."""
    judge = params.evaluate.judge
    return {
        "backend": judge.backend,
        "model": judge.model,
        "prompt": template.name,
        "prompt_version": template.version,
    }


@contextmanager
def judge_session(stage: str, params: Params, run: Any | None = None) -> Iterator[JudgeClient]:
    """An LLM session for ``stage`` (cache, ledger, usage; evaluate.judge_max_failure_fraction)
    yielding the judge's client factory: nothing is loaded unless an item needs the judge."""
    from complexif.llm.session import llm_session

    limit = ("evaluate.judge_max_failure_fraction", params.evaluate.judge_max_failure_fraction)
    with llm_session(stage, params, run, failure_limit=limit) as session:
        yield lambda: session.client("judge", params.evaluate.judge)
