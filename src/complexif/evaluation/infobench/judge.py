"""The InFoBench judge: one chat per item, one YES/NO question per user turn.

The first user turn (from the template: the rubric, the item's input if any, the generated text
and the first question) opens the chat; each later question is a user turn of its own after the
judge's earlier answers, so the judge sees everything it has already said about the text. The
chats advance in rounds: round ``k`` asks question ``k`` of every item whose chat is still going,
all in one :func:`~complexif.llm.step.run_step` call (a local backend batches them), with
request id ``<item id>/infobench/q<k>`` (``k`` from 1).

An answer that is not a usable YES or NO is re-asked once with the parse error (the runner's
repair); if it still is not, the runner ledgers it as ``parse_failed`` and that item's chat stops:
the answer is ``None`` and the questions after it are never asked (``None`` too). A request that
fails outright (``request_failed``, ``budget_exhausted``) stops the chat the same way.
:class:`JudgeResult` keeps where and why each chat stopped, so the metrics can tell an
unparseable answer from a failed request and from a question never asked.

After a repaired answer the chat goes on from the usable answer alone: the next question follows
the question and its YES/NO, as it would have had the judge answered well at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from complexif.llm.base import LLM, BatchBackend, GenerationParams, Message
from complexif.llm.ledger import reconcile
from complexif.llm.prompts import PromptTemplate
from complexif.llm.step import LLMStep, ParseError, StepResult, run_step

STEP_NAME = "infobench_judge"
ROLE = "judge"

# Leading decoration a chat model puts before its verdict ("**YES**", "> No", '"Yes"'): skipped
# before the first word is read. The original judge (GPT-4) answered plainly; a small local judge
# often does not, and a bolded YES means YES.
_DECORATION = " \t\r\n*_#>`\"'"


def parse_yes_no(text: str) -> bool:
    """The judge's verdict: True for YES, False for NO; :class:`ParseError` when unusable.

    As InFoBench reads it: an answer starting with "yes" or "no" (any case) is that; otherwise
    one containing an upper-case "YES" and no "NO" is YES, one with "NO" and no "YES" is NO,
    and anything else (neither, both, nothing) is unusable.
    """
    head = text.lstrip(_DECORATION).lower()
    if head.startswith("yes"):
        return True
    if head.startswith("no"):
        return False
    says_yes, says_no = "YES" in text, "NO" in text
    if says_yes and not says_no:
        return True
    if says_no and not says_yes:
        return False
    if not text.strip():
        raise ParseError("the reply is empty; it must be YES or NO")
    if says_yes:
        raise ParseError("the reply says both YES and NO; it must be one of them")
    raise ParseError("the reply says neither YES nor NO")


@dataclass(frozen=True)
class Stop:
    """Where an item's chat ended early: the 1-based question left without an answer, and the
    ledger kind saying why (``parse_failed``, ``request_failed`` or ``budget_exhausted``)."""

    question: int
    kind: str
    reason: str


@dataclass(frozen=True)
class JudgeResult:
    """What the judge said about each item.

    ``answers``: item id -> one entry per question, True (YES), False (NO) or None (no usable
    answer, or never asked). ``stops``: the items whose chat ended early, and why; an item not
    in it had every question answered. ``chats``: each item's conversation as it ended (every
    question asked and the usable answers). ``rounds``: the step result of each round, in order.
    """

    answers: dict[str, tuple[bool | None, ...]]
    stops: dict[str, Stop]
    chats: dict[str, tuple[Message, ...]]
    rounds: tuple[StepResult[bool], ...]
    prompt_version: str

    def counts(self) -> dict[str, Any]:
        """All rounds as one step's counts ({in, out, dropped}), for ``Funnel.add_counts``:
        requests made, usable answers, and the rest by ledger reason."""
        dropped: Counter[str] = Counter()
        for r in self.rounds:
            dropped.update(r.counts()["dropped"])
        return {
            "in": sum(r.n_in for r in self.rounds),
            "out": sum(len(r.outputs) for r in self.rounds),
            "dropped": dict(sorted(dropped.items())),
        }


def input_block(input_text: str) -> str:
    """The Input section of the first turn, or nothing when the item has no input."""
    if not input_text:
        return ""
    # Only the section's label and fences live here: the template cannot say "this part only
    # when there is an input", and the rubric's wording stays in the template file.
    return f'Input:\n"""\n{input_text}\n"""\n\n'


def request_id(item_id: str, k: int) -> str:
    return f"{item_id}/infobench/q{k}"


def judge_step(template: PromptTemplate, repair: PromptTemplate | None) -> LLMStep[bool]:
    """The judge's step: a round's row carries its whole chat so far (``messages``)."""
    return LLMStep(
        STEP_NAME,
        ROLE,
        template,
        prompt=lambda row: row["messages"],
        parse=lambda row, text: parse_yes_no(text),
        repair=repair,
        key=lambda row: request_id(row["id"], row["k"]),
    )


def _checked(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for name in ("id", "input", "output", "questions"):
            if name not in row:
                raise ValueError(f"judge row {i}: missing field {name!r}")
        item_id = row["id"]
        if item_id in seen:
            raise ValueError(f"judge row {i}: id {item_id!r} repeats an earlier row")
        seen.add(item_id)
        if not row["questions"]:
            raise ValueError(f"judge row {i} ({item_id}): no questions")
    return list(rows)


def judge_infobench(
    llm: LLM | BatchBackend,
    rows: Sequence[Mapping[str, Any]],
    template: PromptTemplate,
    repair: PromptTemplate | None,
    params: GenerationParams,
) -> JudgeResult:
    """Ask every row's questions in its own chat (rows: ``{"id", "input", "output",
    "questions"}``); see the module docstring for the protocol."""
    rows = _checked(rows)
    step = judge_step(template, repair)
    answers: dict[str, list[bool | None]] = {r["id"]: [None] * len(r["questions"]) for r in rows}
    chats: dict[str, tuple[Message, ...]] = {r["id"]: () for r in rows}
    stops: dict[str, Stop] = {}
    rounds: list[StepResult[bool]] = []
    going = rows
    k = 1
    while going:
        asked = [_round_row(row, k, chats[row["id"]], template) for row in going]
        result = run_step(llm, step, asked, params)
        rounds.append(result)
        by_request = {request_id(row["id"], k): row["id"] for row in asked}
        for out in result.outputs:
            item_id = out.row["id"]
            answers[item_id][k - 1] = out.value
            chats[item_id] = (
                *out.row["messages"],
                {"role": "assistant", "content": out.response.text},
            )
        for failure in result.failures:
            item_id = by_request[failure.request_id]
            stops[item_id] = Stop(k, failure.kind, failure.reason)
            # The unanswered question stays in the chat, so the transcript shows where it ended.
            chats[item_id] = next(r for r in asked if r["id"] == item_id)["messages"]
        k += 1
        going = [r for r in going if r["id"] not in stops and len(r["questions"]) >= k]
    total = sum(len(r["questions"]) for r in rows)
    unasked = sum(len(answers[i]) - s.question for i, s in stops.items())
    reconcile(STEP_NAME, total, sum(len(r.outputs) for r in rounds) + unasked, len(stops))
    return JudgeResult(
        {i: tuple(a) for i, a in answers.items()}, stops, chats, tuple(rounds), template.version
    )


def _round_row(
    row: Mapping[str, Any], k: int, chat: tuple[Message, ...], template: PromptTemplate
) -> dict[str, Any]:
    question = row["questions"][k - 1]
    if k == 1:
        messages = template.render_messages(
            input_block=input_block(row["input"] or ""), output=row["output"], question=question
        )
    else:
        messages = (*chat, {"role": "user", "content": question})
    return {"id": row["id"], "k": k, "messages": tuple(messages)}
