"""Answer prompts with a model: one user turn per prompt, greedy by default."""

from __future__ import annotations

from collections.abc import Sequence

from complexif.llm.base import LLM, BatchBackend, ChatFailure, ChatRequest, GenerationParams


def answer_prompts(
    llm: LLM | BatchBackend, prompts: Sequence[tuple[str, str]], params: GenerationParams
) -> tuple[list[dict], list[ChatFailure]]:
    """``prompts`` is a list of ``(id, text)``.

    Returns the ``{id, prompt, response, ...}`` rows of the answered prompts, in order, and the
    failures (already ledgered by the client): together they account for every prompt.
    """
    requests = [
        ChatRequest(id=str(pid), messages=({"role": "user", "content": text},), params=params)
        for pid, text in prompts
    ]
    rows, failures = [], []
    for req, resp in zip(requests, llm.generate(requests), strict=True):
        if isinstance(resp, ChatFailure):
            failures.append(resp)
            continue
        rows.append(
            {
                "id": req.id,
                "prompt": req.messages[0]["content"],
                "response": resp.text,
                "model": resp.model,
                "finish_reason": resp.finish_reason,
                "completion_tokens": resp.completion_tokens,
            }
        )
    return rows, failures
