"""The one interface every model role (student, teacher, judge) is called through.

A stage asks an :class:`LLM` for answers to :class:`ChatRequest` s and gets back, in request order,
one :class:`ChatResult` each: a :class:`ChatResponse`, or a :class:`ChatFailure` saying why there
is no answer (the failure ledger records it; nothing is dropped silently).

Backends come in two shapes. A :class:`BatchBackend` (local transformers) wants many requests at
once to fill a batch; an :class:`AsyncBackend` (an OpenAI-compatible server) completes one request
per coroutine and is run concurrently. :class:`complexif.llm.client.LLMClient` puts the response
cache, cost accounting, the budget cap and the progress bar in front of either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol, runtime_checkable

Message = dict[str, str]

FailureKind = Literal["request_failed", "parse_failed", "budget_exhausted"]


@dataclass(frozen=True)
class GenerationParams:
    """How to answer one request. No defaults: the values come from a ``generation`` section
    of params.yaml (``factory.generation_params``) or from an API request's own fields."""

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    n: int

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. ``id`` ties the answer back to the record that asked.

    ``prompt_version`` is the version of the template the messages were rendered from; it is part
    of the cache key so that editing a prompt never serves answers to the old one.
    """

    id: str
    messages: tuple[Message, ...]
    params: GenerationParams
    prompt_version: str = ""


@dataclass(frozen=True)
class ChatResponse:
    request_id: str
    text: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # All n sampled answers when params.n > 1 (``text`` is the first); empty means just ``text``.
    choices: tuple[str, ...] = ()
    cached: bool = False

    @property
    def texts(self) -> tuple[str, ...]:
        return self.choices or (self.text,)


@dataclass(frozen=True)
class ChatFailure:
    """A request that has no usable answer, and why: it goes to the failure ledger."""

    request_id: str
    kind: FailureKind
    reason: str
    attempts: int = 0


ChatResult = ChatResponse | ChatFailure


class CallFailed(Exception):
    """An :class:`AsyncBackend` gave up on one request (retries spent, or not retryable)."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class InvalidRequest(ValueError):
    """The request cannot be served as asked (longer than the model's context): a 400."""


class FatalBackendError(RuntimeError):
    """The backend cannot serve any request (bad API key, unknown model): stop the stage now."""


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``generate`` returns one result per request, in request order."""

    name: str

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResult]: ...


@runtime_checkable
class BatchBackend(Protocol):
    """A backend that generates a whole list at once (a local model batching on its device).

    ``fingerprint`` identifies the weights, so a retrained model under the same name never
    hits the answers cached for its predecessor.
    """

    name: str
    fingerprint: str

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResponse]: ...


@runtime_checkable
class AsyncBackend(Protocol):
    """A backend called one request per coroutine, ``concurrency`` at a time.

    ``complete`` raises :class:`CallFailed` when it gives up on a request and
    :class:`FatalBackendError` when no request can succeed.
    """

    name: str
    fingerprint: str
    concurrency: int

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None: ...


def split_samples(request: ChatRequest) -> list[ChatRequest]:
    """A request for n samples as n single-sample requests, seeded ``seed, seed+1, ...``.

    For backends with no native ``n``: each sample is then reproducible on its own.
    """
    if request.params.n == 1:
        return [request]
    return [
        replace(
            request,
            id=f"{request.id}#{i}",
            params=replace(request.params, n=1, seed=request.params.seed + i),
        )
        for i in range(request.params.n)
    ]


def merge_samples(request: ChatRequest, samples: Sequence[ChatResponse]) -> ChatResponse:
    """The n single-sample answers from :func:`split_samples` as one response to ``request``."""
    if len(samples) == 1 and request.params.n == 1:
        return replace(samples[0], request_id=request.id)
    first = samples[0]
    return ChatResponse(
        request_id=request.id,
        text=first.text,
        model=first.model,
        finish_reason=first.finish_reason,
        # The prompt is billed once per sample by local backends, once per request by APIs:
        # report what was actually computed.
        prompt_tokens=sum(s.prompt_tokens for s in samples),
        completion_tokens=sum(s.completion_tokens for s in samples),
        choices=tuple(s.text for s in samples),
    )
