"""One shape for every LLM call the pipeline makes, and one runner for all of them.

A step says only what is particular to it: how a row becomes chat messages (``prompt``) and how
an answer becomes a value (``parse``), which role answers it and from which template. The
runner gives every step the same machinery: the response cache, rate limits, the budget cap and
the progress bar (all from :class:`~complexif.llm.client.LLMClient`), one re-ask with the parse
error for an answer that does not parse, the failure ledger, and reconciliation (every row is an
output or a ledgered failure)::

    reframe = LLMStep("reframe", "teacher", template, prompt=..., parse=numbered_list)
    result = run_step(session.client("teacher", cfg), reframe, seeds, params)
    for out in result.outputs: ...   # out.row, out.value, out.response
    result.counts()                  # {"in": 24, "out": 21, "dropped": {"parse_failed": 3}}

This mirrors how bespoke curator and distilabel keep a call's prompt and parse apart from the
call itself: a new step is two small functions and a template file, never a new client loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from complexif.llm.base import (
    LLM,
    BatchBackend,
    ChatFailure,
    ChatRequest,
    ChatResponse,
    ChatResult,
    GenerationParams,
    Message,
)
from complexif.llm.ledger import reconcile
from complexif.llm.prompts import PromptTemplate
from complexif.llm.structured import JSONExtractError, parse_json, repair_request

V = TypeVar("V")
Row = Mapping[str, Any]


class ParseError(ValueError):
    """An answer the step cannot use; the message says why (it goes back to the model once)."""


def _row_id(row: Row) -> str:
    return str(row["id"])


@dataclass(frozen=True)
class LLMStep(Generic[V]):
    """One kind of LLM call.

    ``parse(row, text)`` returns the value or raises ``ValueError`` (:class:`ParseError`) with a
    reason; with a ``repair`` template the answer and the reason go back to the model once, and
    what still fails is ledgered as ``parse_failed``. ``template`` is the prompt the messages are
    rendered from: its version is part of the cache key, so editing it never serves old answers.
    """

    name: str
    role: str
    template: PromptTemplate | None  # None: the messages are the rows' own (answering prompts)
    prompt: Callable[[Row], Sequence[Message]]
    parse: Callable[[Row, str], V]
    repair: PromptTemplate | None = None
    key: Callable[[Row], str] = _row_id

    def request(self, row: Row, params: GenerationParams, request_id: str) -> ChatRequest:
        return ChatRequest(
            id=request_id,
            messages=tuple(self.prompt(row)),
            params=params,
            prompt_version=self.template.version if self.template is not None else "",
        )


@dataclass(frozen=True)
class StepOutput(Generic[V]):
    row: Row
    value: V
    response: ChatResponse
    sample: int = 0

    @property
    def request_id(self) -> str:
        return self.response.request_id


@dataclass
class StepResult(Generic[V]):
    step: str
    n_in: int
    outputs: list[StepOutput[V]] = field(default_factory=list)
    failures: list[ChatFailure] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """Requests in, values out, and the rest by ledger reason."""
        return {
            "in": self.n_in,
            "out": len(self.outputs),
            "dropped": dict(sorted(Counter(f.kind for f in self.failures).items())),
        }

    @property
    def values(self) -> list[V]:
        return [o.value for o in self.outputs]


def text_answer(row: Row, text: str) -> str:
    """The answer as written (a step whose value is the model's text)."""
    return text


def json_answer(validate: Callable[[Row, Any], V] | None = None) -> Callable[[Row, str], V]:
    """A parse for JSON answers: the first JSON value in the text (fenced or not) that
    ``validate(row, value)`` accepts; ``validate`` raises ``ValueError`` on the wrong shape."""

    def parse(row: Row, text: str) -> V:
        check = None if validate is None else (lambda value: validate(row, value))
        try:
            return parse_json(text, check)
        except JSONExtractError as exc:
            raise ParseError(str(exc)) from exc

    return parse


def _record(llm: LLM | BatchBackend, failure: ChatFailure) -> None:
    record = getattr(llm, "record_failure", None)
    if record is not None:
        record(failure)


def _count_repairs(llm: LLM | BatchBackend, n: int) -> None:
    meter, role = getattr(llm, "meter", None), getattr(llm, "role", None)
    if meter is not None and role is not None:
        meter.role(role).repairs += n


def run_step(
    llm: LLM | BatchBackend,
    step: LLMStep[V],
    rows: Sequence[Row],
    params: GenerationParams,
    samples: int = 1,
) -> StepResult[V]:
    """Ask ``step`` of every row, ``samples`` times, and parse every answer.

    Sample ``i`` is its own request, seeded ``params.seed + i`` and with id ``<key>#<i>`` (the
    bare key when ``samples == 1``): each is cached on its own, so a larger ``samples`` later
    reuses the first ones. Outputs come sample by sample, rows in order within a sample.
    Failed requests are ledgered by the client; answers that do not parse (after the repair
    re-ask) are ledgered here as ``parse_failed``. Raises ``ReconcileError`` if a row went
    missing.
    """
    if params.n != 1:
        raise ValueError(f"step {step.name}: one answer per request (n=1); use samples={params.n}")
    if samples < 1:
        raise ValueError(f"step {step.name}: samples must be at least 1, got {samples}")
    result: StepResult[V] = StepResult(step.name, len(rows) * samples)
    for i in range(samples):
        sample_params = replace(params, seed=params.seed + i) if samples > 1 else params
        requests = [
            step.request(
                row, sample_params, f"{step.key(row)}#{i}" if samples > 1 else step.key(row)
            )
            for row in rows
        ]
        _answer_and_parse(llm, step, rows, requests, i, result)
    reconcile(step.name, result.n_in, len(result.outputs), len(result.failures))
    return result


def _answer_and_parse(
    llm: LLM | BatchBackend,
    step: LLMStep[V],
    rows: Sequence[Row],
    requests: list[ChatRequest],
    sample: int,
    result: StepResult[V],
) -> None:
    got: dict[int, StepOutput[V] | ChatFailure] = {}
    retry_at: list[tuple[int, str]] = []
    retries: list[ChatRequest] = []
    for i, res in enumerate(_generate(llm, requests)):
        if isinstance(res, ChatFailure):
            got[i] = res  # the client has ledgered it
            continue
        try:
            got[i] = StepOutput(rows[i], step.parse(rows[i], res.text), res, sample)
        except ValueError as exc:
            if step.repair is None:
                got[i] = _parse_failed(llm, requests[i].id, str(exc), attempts=1)
            else:
                retry_at.append((i, str(exc)))
                retries.append(repair_request(requests[i], res.text, str(exc), step.repair))
    if retries:
        _count_repairs(llm, len(retries))
        for (i, first_error), res in zip(retry_at, _generate(llm, retries), strict=True):
            if isinstance(res, ChatFailure):
                got[i] = res
                continue
            try:
                got[i] = StepOutput(rows[i], step.parse(rows[i], res.text), res, sample)
            except ValueError as exc:
                reason = f"{first_error}; after one repair re-ask: {exc}"
                got[i] = _parse_failed(llm, requests[i].id, reason, attempts=2)
    for i in range(len(requests)):
        item = got[i]
        if isinstance(item, ChatFailure):
            result.failures.append(item)
        else:
            result.outputs.append(item)


def _generate(llm: LLM | BatchBackend, requests: list[ChatRequest]) -> list[ChatResult]:
    results: list[ChatResult] = list(llm.generate(requests))
    if len(results) != len(requests):
        # An LLM answers every request (a response or a failure); one that does not is named
        # here rather than surfacing as a row missing somewhere later.
        raise RuntimeError(f"{llm.name}: {len(results)} results for {len(requests)} requests")
    return results


def _parse_failed(
    llm: LLM | BatchBackend, request_id: str, reason: str, attempts: int
) -> ChatFailure:
    failure = ChatFailure(request_id, "parse_failed", reason, attempts=attempts)
    _record(llm, failure)
    return failure


def user_turn(text: str) -> tuple[Message, ...]:
    return ({"role": "user", "content": text},)


def template_prompt(
    template: PromptTemplate, fields: Callable[[Row], Mapping[str, object]]
) -> Callable[[Row], tuple[Message, ...]]:
    """A ``prompt`` that renders ``template`` with ``fields(row)``: one user turn, or the
    conversation the template's turn markers delimit (few-shot demonstrations)."""
    return lambda row: template.render_messages(**fields(row))


def answer_step(role: str) -> LLMStep[str]:
    """A model answers each row's own ``prompt`` as one user turn, and the answer is the value.

    No template: the prompt is the data (the student answering instructions, a model answering
    IFEval), so the request carries no prompt version and its cache key is that of the bare
    prompt.
    """
    return LLMStep(
        "answer", role, None, prompt=lambda row: user_turn(str(row["prompt"])), parse=text_answer
    )
