"""The evaluated model answers a benchmark's prompts: one greedy answer each, none missing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from complexif.config import GenerationConfig
from complexif.io import write_jsonl
from complexif.llm.base import LLM, BatchBackend
from complexif.llm.factory import generation_params
from complexif.llm.step import answer_step, run_step

RESPONSES_FILE = "responses.jsonl"


def generate_answers(
    llm: LLM | BatchBackend,
    rows: Sequence[dict[str, Any]],
    generation: GenerationConfig,
    what: str,
) -> list[dict[str, Any]]:
    """Answer every row's ``prompt`` (rows carry a unique ``id``); returns the rows with the
    answer (``response``) and how it ended. Raises if any prompt got no answer: a benchmark
    score over the prompts that happened to succeed would not be comparable."""
    result = run_step(llm, answer_step("evaluated"), rows, generation_params(generation))
    if result.failures:
        first = result.failures[0]
        raise RuntimeError(
            f"{what}: {len(result.failures)} of {len(rows)} prompts got no answer "
            f"(first: {first.request_id}: {first.reason})"
        )
    return [
        {
            **out.row,
            "response": out.value,
            "model": out.response.model,
            "finish_reason": out.response.finish_reason,
            "completion_tokens": out.response.completion_tokens,
        }
        for out in result.outputs
    ]


def answer_length(generation: GenerationConfig, max_new_tokens: int | None) -> GenerationConfig:
    """The evaluated model's settings with a benchmark's own answer length, if it sets one."""
    if max_new_tokens is None:
        return generation
    return generation.model_copy(update={"max_new_tokens": max_new_tokens})


def write_answers(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> Path:
    path = Path(out_dir) / RESPONSES_FILE
    write_jsonl(path, rows)
    return path
