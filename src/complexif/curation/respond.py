"""The student answers each composed instruction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from complexif.config import GenerationConfig
from complexif.evaluation.generate import answer_prompts
from complexif.ids import content_id
from complexif.llm.base import LLM, ChatFailure
from complexif.llm.factory import generation_params


def respond_all(
    llm: LLM, instructions: Sequence[dict[str, Any]], gen: GenerationConfig
) -> tuple[list[dict[str, Any]], list[ChatFailure]]:
    """One response record per answered instruction, and the failures for the rest."""
    params = generation_params(gen)
    rows, failures = answer_prompts(llm, [(r["id"], r["prompt"]) for r in instructions], params)
    records = [
        {
            "id": content_id(
                row["id"], row["model"], gen.model_dump(), row["response"], prefix="res-"
            ),
            "instruction_id": row["id"],
            "response": row["response"],
            "model": row["model"],
            "finish_reason": row["finish_reason"],
            "completion_tokens": row["completion_tokens"],
            "generation": gen.model_dump(),
        }
        for row in rows
    ]
    return records, failures
