"""The student answers each composed instruction, ``generation.n`` times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from complexif.config import GenerationConfig
from complexif.evaluation.generate import answer_prompts
from complexif.ids import content_id
from complexif.llm.base import LLM, ChatFailure
from complexif.llm.factory import generation_params


def respond_all(
    llm: LLM, instructions: Sequence[dict[str, Any]], gen: GenerationConfig
) -> tuple[list[dict[str, Any]], list[ChatFailure]]:
    """One response record per answered (instruction, sample), and the failures for the rest.

    Sample ``i`` is its own request seeded ``seed + i``, so each is cached on its own and a
    larger ``n`` later reuses the first samples.
    """
    rows, failures = [], []
    base = generation_params(gen)
    for i in range(gen.n):
        params = replace(base, n=1, seed=gen.seed + i)
        ids = [(f"{r['id']}#{i}" if gen.n > 1 else r["id"], r["prompt"]) for r in instructions]
        got, failed = answer_prompts(llm, ids, params)
        rows += [{**row, "instruction_id": row["id"].split("#")[0], "sample": i} for row in got]
        failures += failed
    records = [
        {
            "id": content_id(
                row["id"], row["model"], gen.model_dump(), row["response"], prefix="res-"
            ),
            "instruction_id": row["instruction_id"],
            "sample": row["sample"],
            "response": row["response"],
            "model": row["model"],
            "finish_reason": row["finish_reason"],
            "completion_tokens": row["completion_tokens"],
            "generation": gen.model_dump(),
        }
        for row in rows
    ]
    return records, failures
