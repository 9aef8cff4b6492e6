"""The student answers each composed instruction, ``generation.n`` times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from complexif.config import GenerationConfig
from complexif.ids import content_id
from complexif.llm.base import LLM, ChatFailure
from complexif.llm.factory import generation_params
from complexif.llm.step import answer_step, run_step


def respond_all(
    llm: LLM, instructions: Sequence[dict[str, Any]], gen: GenerationConfig
) -> tuple[list[dict[str, Any]], list[ChatFailure]]:
    """One response record per answered (instruction, sample), and the failures for the rest.

    Sample ``i`` is its own request seeded ``seed + i`` (id ``<instruction id>#<i>`` when
    ``n > 1``), so each is cached on its own and a larger ``n`` later reuses the first samples.
    """
    params = replace(generation_params(gen), n=1)
    result = run_step(llm, answer_step("student"), instructions, params, samples=gen.n)
    records = [
        {
            "id": content_id(
                out.request_id, out.response.model, gen.model_dump(), out.value, prefix="res-"
            ),
            "instruction_id": out.row["id"],
            "sample": out.sample,
            "response": out.value,
            "model": out.response.model,
            "finish_reason": out.response.finish_reason,
            "completion_tokens": out.response.completion_tokens,
            "generation": gen.model_dump(),
        }
        for out in result.outputs
    ]
    return records, result.failures
