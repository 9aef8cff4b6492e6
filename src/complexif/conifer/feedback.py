"""Conifer's process feedback: how an answer meets its constraints, and what a weaker one missed.

Internal feedback: for an instruction with format or numerical constraints, the teacher writes
its response and then, after a fixed marker, how the response meets each of them. The whole text
is the training target (Conifer's original code capped this call at ``max_tokens=6``, which
leaves a few words and no explanation; here the step asks for its own ``max_new_tokens``, and
feedback cut off by that limit is dropped as ``cut_off``, never kept in part).

External feedback: the weak model answers the hardest level of each query; the teacher judges
that answer against its own and says, as JSON, whether it follows every constraint and what it
misses. A verdict that does not parse (after one repair re-ask) is ledgered and counts as neither
a pass nor a fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from complexif.config import LLMRoleConfig, Params
from complexif.conifer.common import conifer_template, step_params
from complexif.curation.funnel import Funnel
from complexif.llm.base import LLM, BatchBackend, GenerationParams
from complexif.llm.factory import generation_params
from complexif.llm.prompts import PromptTemplate, load_template
from complexif.llm.step import (
    LLMStep,
    ParseError,
    StepOutput,
    json_answer,
    run_step,
    template_prompt,
)

Row = Mapping[str, Any]

# What separates the response from its explanation; the template asks for it by name ($marker).
# Found anywhere, decorated or not: a small model writes it inline, a large one as a heading.
EXPLANATION_MARKER = "How the requirements are met:"
_MARKER = re.compile(
    r"[#*_]*[ \t]*" + re.escape(EXPLANATION_MARKER.rstrip(":")) + r"[ \t]*:?[*_]*",
    re.IGNORECASE,
)


class Clients(Protocol):
    """What the feedback steps need of a stage's LLM session: a client per role."""

    def client(self, role: str, cfg: LLMRoleConfig) -> LLM | BatchBackend: ...


@dataclass
class Feedback:
    """Feedback values by instruction id, and the versions of the templates that asked."""

    values: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


def nonempty_text(row: Row, text: str) -> str:
    """The answer without surrounding whitespace; an empty one is unusable."""
    text = text.strip()
    if not text:
        raise ParseError("the answer is empty")
    return text


def split_cut_off(
    outputs: Sequence[StepOutput[Any]],
) -> tuple[list[StepOutput[Any]], list[StepOutput[Any]]]:
    """(finished, cut off by the token limit): a cut-off answer is never a target."""
    done = [o for o in outputs if o.response.finish_reason != "length"]
    cut = [o for o in outputs if o.response.finish_reason == "length"]
    return done, cut


def numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))


# ----------------------------------------------------------------------------------------------
# Internal process feedback


def parse_internal_feedback(row: Row, text: str) -> str:
    """The whole text, once it has a response, the marker, then an explanation."""
    text = text.strip()
    match = _MARKER.search(text)
    if match is None:
        raise ParseError(f"no {EXPLANATION_MARKER!r} between the response and its explanation")
    if not text[: match.start()].strip():
        raise ParseError(f"no response before {EXPLANATION_MARKER!r}")
    if not text[match.end() :].strip():
        raise ParseError(f"no explanation after {EXPLANATION_MARKER!r}")
    return text


def internal_feedback_step(template: PromptTemplate) -> LLMStep[str]:
    return LLMStep(
        "internal_feedback",
        "teacher",
        template,
        prompt=lambda row: template.render_messages(
            instruction=row["instruction"],
            constraints=numbered(row["format_numerical"]),
            marker=EXPLANATION_MARKER,
        ),
        parse=parse_internal_feedback,
        key=lambda row: f"{row['id']}/internal",
    )


def internal_feedback(
    teacher: LLM | BatchBackend, answered: Sequence[Row], params: Params, funnel: Funnel
) -> Feedback:
    """The teacher's response with its explanation, for each answered instruction that has
    format or numerical constraints."""
    cfg = params.conifer.internal_feedback
    eligible = [r for r in answered if r["format_numerical"]]
    if not cfg.enabled:
        funnel.add("internal_feedback", len(eligible), 0, {"disabled": len(eligible)})
        return Feedback()
    step = internal_feedback_step(conifer_template(params, cfg.template))
    result = run_step(teacher, step, eligible, step_params(params.conifer.teacher, cfg))
    done, cut = split_cut_off(result.outputs)
    funnel.add_result(result, cut_off=len(cut))
    return Feedback(
        {o.row["id"]: o.value for o in done},
        {"internal_feedback": _version(step)},
    )


# ----------------------------------------------------------------------------------------------
# External process feedback


@dataclass(frozen=True)
class Verdict:
    follows: bool
    critique: str


def _verdict(row: Row, value: Any) -> Verdict:
    if not isinstance(value, dict):
        raise ValueError('expected a JSON object {"follows": ..., "critique": ...}')
    follows = value.get("follows")
    if not isinstance(follows, bool):
        raise ValueError(f"'follows' must be true or false, got {follows!r}")
    critique = value.get("critique", "")
    if not isinstance(critique, str):
        raise ValueError(f"'critique' must be a string, got {type(critique).__name__}")
    if not follows and not critique.strip():
        # It becomes the user turn that asks for a revision: it must say what to revise.
        raise ValueError("'follows' is false but 'critique' is empty: say what the answer misses")
    return Verdict(follows, critique.strip())


parse_verdict = json_answer(_verdict)


def instruction_answer_step(
    name: str, role: str, template: PromptTemplate, key_suffix: str | None = None
) -> LLMStep[str]:
    """``role`` answers each row's instruction (the template's only value) in plain text; with
    ``key_suffix`` the request id names the step (``<id>/<suffix>``)."""
    return LLMStep(
        name,
        role,
        template,
        prompt=template_prompt(template, lambda row: {"instruction": row["instruction"]}),
        parse=nonempty_text,
        key=(lambda row: f"{row['id']}/{key_suffix}") if key_suffix else (lambda row: row["id"]),
    )


def weak_answer_step(template: PromptTemplate) -> LLMStep[str]:
    return instruction_answer_step("weak_answer", "weak", template, key_suffix="weak")


def judge_step(template: PromptTemplate, repair: PromptTemplate) -> LLMStep[Verdict]:
    return LLMStep(
        "judge",
        "teacher",
        template,
        prompt=template_prompt(
            template,
            lambda row: {
                "instruction": row["instruction"],
                "reference": row["answer"],
                "answer": row["weak_answer"],
            },
        ),
        parse=parse_verdict,
        repair=repair,
        key=lambda row: f"{row['id']}/judge",
    )


def judge_params(params: Params) -> GenerationParams:
    """The teacher role's own sampling (a verdict has no step settings of its own) with the
    judge's length."""
    cfg = params.conifer
    return replace(
        generation_params(cfg.teacher.generation),
        max_new_tokens=cfg.external_feedback.judge_max_new_tokens,
        n=1,
    )


def hardest_levels(answered: Sequence[Row]) -> list[Row]:
    """Each query's highest answered level, in the order the queries first appear."""
    best: dict[str, Row] = {}
    for row in answered:
        current = best.get(row["query_id"])
        if current is None or row["level"] > current["level"]:
            best[row["query_id"]] = row
    return list(best.values())


def external_feedback(
    session: Clients, answered: Sequence[Row], params: Params, funnel: Funnel
) -> Feedback:
    """The weak model's answer to each query's hardest level and the teacher's verdict on it:
    ``{"weak_answer", "weak_model", "follows", "critique"}`` by instruction id."""
    cfg = params.conifer.external_feedback
    asked = hardest_levels(answered)
    if not cfg.enabled:
        funnel.add("weak_answer", len(asked), 0, {"disabled": len(asked)})
        return Feedback()
    if not asked:
        # No model to load for nothing.
        funnel.add("weak_answer", 0, 0)
        funnel.add("judge", 0, 0)
        return Feedback()
    weak_step = weak_answer_step(conifer_template(params, cfg.template))
    weak = session.client("weak", params.conifer.weak)
    answers = run_step(weak, weak_step, asked, step_params(params.conifer.weak, cfg))
    done, cut = split_cut_off(answers.outputs)
    funnel.add_result(answers, cut_off=len(cut))

    repair = load_template(params.paths.prompts_dir, params.llm.json_repair_template)
    judge = judge_step(conifer_template(params, cfg.judge_template), repair)
    to_judge = [{**o.row, "weak_answer": o.value, "weak_model": o.response.model} for o in done]
    teacher = session.client("teacher", params.conifer.teacher)
    verdicts = run_step(teacher, judge, to_judge, judge_params(params))
    follows = sum(1 for o in verdicts.outputs if o.value.follows)
    # Out of the judge: the weak answers that failed, each a 4-turn sample to be.
    funnel.add_result(verdicts, judged_follows=follows)
    values = {
        o.row["id"]: {
            "weak_answer": o.row["weak_answer"],
            "weak_model": o.row["weak_model"],
            "follows": o.value.follows,
            "critique": o.value.critique,
        }
        for o in verdicts.outputs
    }
    return Feedback(values, {"weak_answer": _version(weak_step), "judge": _version(judge)})


def _version(step: LLMStep[Any]) -> str:
    return step.template.version if step.template is not None else ""
