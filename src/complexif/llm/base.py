"""The one interface every model role (student, teacher, judge) is called through."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. ``id`` ties the answer back to the record that asked."""

    id: str
    messages: tuple[Message, ...]
    params: GenerationParams = field(default_factory=GenerationParams)


@dataclass(frozen=True)
class ChatResponse:
    request_id: str
    text: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``generate`` returns one response per request, in request order."""

    name: str

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResponse]: ...
