"""The judge's scores of a curated dataset: how demanding each instruction is (complexity) and
how good each answer to it is (quality), each on a 1-6 rubric, as Deita's scorers rate samples.

Each score is one :class:`~complexif.llm.step.LLMStep` of the ``judge`` role, asked once per
sample with request id ``<sample id>/complexity``, ``<sample id>/quality`` and, for a DPO set
when the caller asks, ``<sample id>/quality_rejected`` (the losing answer, scored by the quality
rubric: chosen and rejected distributions side by side are a sanity check of the pairs). The
rubrics live in the template files (``prompts/publish/``); this module only fills them and
reads the answer.

A reply that gives no single usable score is re-asked once with the reason (the runner's
repair); what still fails is ledgered as ``parse_failed``, and a request that fails outright
is ledgered by the client. Such a sample's score is ``None`` and it counts under its ledger
reason, never as a score: every request is a score or a ledgered failure (reconciled).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from complexif.dataset.records import Sample
from complexif.llm.base import LLM, BatchBackend, GenerationParams
from complexif.llm.ledger import reconcile
from complexif.llm.prompts import PromptTemplate
from complexif.llm.step import LLMStep, ParseError, StepResult, run_step, template_prompt

ROLE = "judge"
COMPLEXITY = "complexity"
QUALITY = "quality"
QUALITY_REJECTED = "quality_rejected"
KINDS = (COMPLEXITY, QUALITY, QUALITY_REJECTED)
LOWEST, HIGHEST = 1, 6

_SCALE = f"a whole number from {LOWEST} to {HIGHEST}"
# A number token: digits with an optional decimal part, not glued to more word characters
# ("4.5x" and "4th" are no score; "4." ending a sentence is 4).
_NUMBER = r"(-?\d+(?:[.,]\d+)?)(?![\w.,]*\w)(?:\s*(?:/|out\s+of)\s*(\d+))?"
# Markdown and quoting a chat model puts around a label or a number ("**Score:** 4", "`4`").
_DECOR = r"[\s*_#>`'\"]"
_LABELLED = re.compile(rf"\bscore\b(?:{_DECOR}|[:=])*{_NUMBER}", re.IGNORECASE)
_BARE_LINE = re.compile(rf"^{_DECOR}*{_NUMBER}(?:{_DECOR}|[.!])*$")


def parse_score(text: str) -> int:
    """The 1-6 score a reply gives; :class:`ParseError` (with the reason) when it gives none or
    more than one.

    The candidates are every number that follows the word "score" (any case, with colons, "="
    and markdown between: "Score: 4", "**Score:** 4", "Final score = 4") and every line that is
    a number alone ("4", "**4**", "4." — so a bare score on the last line after reasoning
    counts). A number may say its scale as "/6" or "out of 6"; any other scale is refused.
    The reply's score is the candidates' one value, which must be a whole number from 1 to 6.
    Refused: no candidate (numbers inside the reasoning are not candidates), candidates that
    disagree (even when one is last), a decimal ("4.5", "4.0"), a number out of range (0, 7,
    10) and a scale other than 6. Nothing is rounded, clipped or picked: a refusal goes back to
    the judge once and is then ledgered.
    """
    if not text.strip():
        raise ParseError(f"the reply is empty; it must be one line 'Score: N', N {_SCALE}")
    found = [m.groups() for m in _LABELLED.finditer(text)]
    for line in text.splitlines():
        m = _BARE_LINE.match(line)
        if m:
            found.append(m.groups())
    if not found:
        raise ParseError(f"the reply gives no score; it must be one line 'Score: N', N {_SCALE}")
    # The same value written twice ("Score: 4" ... "4") is one score; "4" and "04" are one.
    written: dict[float, str] = {}
    for number, _ in found:
        written.setdefault(float(number.replace(",", ".")), number)
    if len(written) > 1:
        listed = ", ".join(written[v] for v in sorted(written))
        raise ParseError(f"the reply gives several different scores ({listed}); give exactly one")
    ((value, number),) = written.items()
    if not re.fullmatch(r"-?\d+", number):
        raise ParseError(f"the score {number} is not a whole number; it must be {_SCALE}")
    for _, scale in found:
        if scale is not None and int(scale) != HIGHEST:
            raise ParseError(
                f"the score is out of {int(scale)}; the scale is {LOWEST} to {HIGHEST}"
            )
    score = int(value)
    if not LOWEST <= score <= HIGHEST:
        raise ParseError(f"the score {score} is outside the scale; it must be {_SCALE}")
    return score


def request_id(sample_id: str, kind: str) -> str:
    return f"{sample_id}/{kind}"


def _score(row: Mapping[str, Any], text: str) -> int:
    return parse_score(text)


def complexity_step(template: PromptTemplate, repair: PromptTemplate | None) -> LLMStep[int]:
    """Scores an instruction alone; rows ``{"id", "instruction"}``, template ``$instruction``."""
    return LLMStep(
        f"score_{COMPLEXITY}",
        ROLE,
        template,
        prompt=template_prompt(template, lambda row: {"instruction": row["instruction"]}),
        parse=_score,
        repair=repair,
        key=lambda row: request_id(row["id"], COMPLEXITY),
    )


def quality_step(
    template: PromptTemplate, repair: PromptTemplate | None, kind: str
) -> LLMStep[int]:
    """Scores a response to its instruction; rows ``{"id", "instruction", "response"}``,
    template ``$instruction`` and ``$response``. ``kind`` is ``quality`` or
    ``quality_rejected`` (the same rubric; the kind names the request)."""
    if kind not in (QUALITY, QUALITY_REJECTED):
        raise ValueError(f"a quality score is {QUALITY!r} or {QUALITY_REJECTED!r}, not {kind!r}")
    return LLMStep(
        f"score_{kind}",
        ROLE,
        template,
        prompt=template_prompt(
            template,
            lambda row: {"instruction": row["instruction"], "response": row["response"]},
        ),
        parse=_score,
        repair=repair,
        key=lambda row: request_id(row["id"], kind),
    )


@dataclass(frozen=True)
class Scores:
    """The judge's scores of one dataset.

    ``scores``: kind -> sample id -> score, or None when the sample has no usable score (its
    ledger reason is then in ``failures``: kind -> sample id -> ledger kind, such as
    ``parse_failed``). Only the kinds that were scored are present (``quality_rejected`` only
    when asked). ``prompt_versions``: kind -> the version of its template (and of the repair
    template, ``<template>+<repair>``, when there is one).
    """

    scores: Mapping[str, Mapping[str, int | None]]
    failures: Mapping[str, Mapping[str, str]]
    prompt_versions: Mapping[str, str]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.scores)

    def counts(self, kind: str) -> dict[int, int]:
        """How many samples got each score, 1..6 (every score present, zeros included)."""
        got = Counter(s for s in self.scores[kind].values() if s is not None)
        return {score: got[score] for score in range(LOWEST, HIGHEST + 1)}

    def dropped(self, kind: str) -> dict[str, int]:
        """Samples without a score, by ledger reason (``parse_failed``: unparseable)."""
        return dict(sorted(Counter(self.failures[kind].values()).items()))

    def mean(self, kind: str) -> float | None:
        """The mean over the parsed scores; None when none parsed."""
        got = [s for s in self.scores[kind].values() if s is not None]
        return fmean(got) if got else None

    def step_counts(self, kind: str) -> dict[str, Any]:
        """One kind as a step's counts ({in, out, dropped}), for ``Funnel.add_counts``."""
        return {
            "in": len(self.scores[kind]),
            "out": sum(self.counts(kind).values()),
            "dropped": self.dropped(kind),
        }

    def summary(self) -> dict[str, Any]:
        """Per kind: samples, scored, the counts (keys "1".."6"), dropped by reason, the mean,
        and the prompt version; JSON-ready."""
        return {
            kind: {
                "n": len(self.scores[kind]),
                "scored": sum(self.counts(kind).values()),
                "counts": {str(s): n for s, n in self.counts(kind).items()},
                "dropped": self.dropped(kind),
                "mean": self.mean(kind),
                "prompt_version": self.prompt_versions[kind],
            }
            for kind in self.kinds
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per sample, in the order scored: ``{"id", <kind>: score or None, ...}``."""
        ids = list(self.scores[self.kinds[0]]) if self.kinds else []
        return [{"id": i, **{kind: self.scores[kind].get(i) for kind in self.kinds}} for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """The summary and every sample's scores, JSON-ready."""
        return {"kinds": self.summary(), "samples": self.rows()}


def _checked(samples: Sequence[Sample], score_rejected: bool) -> None:
    seen: set[str] = set()
    for i, sample in enumerate(samples):
        if sample.id in seen:
            raise ValueError(f"sample {i}: id {sample.id!r} repeats an earlier sample")
        seen.add(sample.id)
        if score_rejected and sample.rejected is None:
            raise ValueError(
                f"sample {i} ({sample.id}): field 'rejected' is empty, but rejected answers are "
                "to be scored (only a DPO set has them)"
            )


def _version(template: PromptTemplate, repair: PromptTemplate | None) -> str:
    return template.version if repair is None else f"{template.version}+{repair.version}"


def _collect(
    kind: str, result: StepResult[int], ids: list[str]
) -> tuple[dict[str, int | None], dict[str, str]]:
    by_request = {request_id(i, kind): i for i in ids}
    scores: dict[str, int | None] = dict.fromkeys(ids)
    failures: dict[str, str] = {}
    for out in result.outputs:
        scores[out.row["id"]] = out.value
    for failure in result.failures:
        failures[by_request[failure.request_id]] = failure.kind
    reconcile(f"score_{kind}", len(ids), len(result.outputs), len(failures))
    return scores, failures


def score_samples(
    llm: LLM | BatchBackend,
    samples: Sequence[Sample],
    *,
    complexity: PromptTemplate,
    quality: PromptTemplate,
    repair: PromptTemplate | None,
    complexity_params: GenerationParams,
    quality_params: GenerationParams,
    score_rejected: bool,
) -> Scores:
    """Score every sample's instruction (``complexity``) and response (``quality``), and with
    ``score_rejected`` its rejected answer too (every sample must have one), with the judge
    ``llm``; each kind is one :func:`run_step` call (a local judge batches it)."""
    _checked(samples, score_rejected)
    ids = [s.id for s in samples]
    asked: list[tuple[str, LLMStep[int], list[dict[str, Any]], GenerationParams, str]] = [
        (
            COMPLEXITY,
            complexity_step(complexity, repair),
            [{"id": s.id, "instruction": s.instruction} for s in samples],
            complexity_params,
            _version(complexity, repair),
        ),
        (
            QUALITY,
            quality_step(quality, repair, QUALITY),
            [{"id": s.id, "instruction": s.instruction, "response": s.response} for s in samples],
            quality_params,
            _version(quality, repair),
        ),
    ]
    if score_rejected:
        asked.append(
            (
                QUALITY_REJECTED,
                quality_step(quality, repair, QUALITY_REJECTED),
                [
                    {"id": s.id, "instruction": s.instruction, "response": s.rejected}
                    for s in samples
                ],
                quality_params,
                _version(quality, repair),
            )
        )
    scores: dict[str, dict[str, int | None]] = {}
    failures: dict[str, dict[str, str]] = {}
    versions: dict[str, str] = {}
    for kind, step, rows, params, version in asked:
        scores[kind], failures[kind] = _collect(kind, run_step(llm, step, rows, params), ids)
        versions[kind] = version
    return Scores(scores, failures, versions)
