"""Answer benchmark prompts with a model: one user turn per prompt, greedy by default."""

from __future__ import annotations

from collections.abc import Sequence

from complexif.llm.base import LLM, ChatRequest, GenerationParams


def answer_prompts(
    llm: LLM, prompts: Sequence[tuple[str, str]], params: GenerationParams
) -> list[dict]:
    """``prompts`` is a list of ``(id, text)``; returns ``{id, prompt, response, ...}`` rows in order."""
    requests = [
        ChatRequest(id=str(pid), messages=({"role": "user", "content": text},), params=params)
        for pid, text in prompts
    ]
    responses = llm.generate(requests)
    return [
        {
            "id": req.id,
            "prompt": req.messages[0]["content"],
            "response": resp.text,
            "model": resp.model,
            "finish_reason": resp.finish_reason,
            "completion_tokens": resp.completion_tokens,
        }
        for req, resp in zip(requests, responses, strict=True)
    ]
