"""From-Complex-to-Simple "discrimination": fix a response one failed constraint at a time.

Each response is verified against every constraint of its instruction. While some constraint fails,
the first failing one is fixed, by an exact program repair where one exists (when the strategy
allows) or else by the teacher LLM, and the candidate is re-verified. The published code trusted
the teacher's fix; here a candidate is accepted only if the target constraint now passes and no
constraint that passed before now fails, so the chain of accepted answers improves monotonically
and the final answer of a ``verified`` trajectory passes every constraint by construction.

The whole trajectory is kept: the SFT target is the final verified answer, every earlier failing
answer in the accepted chain is a DPO ``rejected`` beside it. Each answer carries the finish reason
of the text it came from (a program repair of an answer cut off by the token limit is still cut
off), so a truncated answer never becomes a target.

Strategy ``none`` only verifies (the Generation baseline: answers are used as written).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from complexif.constraints.repair import REPAIRABLE_IDS, repair
from complexif.constraints.verify import check_all
from complexif.llm.base import LLM, ChatFailure, GenerationParams
from complexif.llm.prompts import PromptTemplate
from complexif.llm.step import LLMStep, Row, json_answer, run_step, template_prompt

log = logging.getLogger(__name__)

Strategy = Literal["none", "program", "teacher", "program_then_teacher"]


@dataclass
class Attempt:
    step: int
    method: Literal["initial", "program", "teacher"]
    constraint: str | None
    constraint_index: int | None
    response: str
    verdicts: list[bool]
    accepted: bool
    model: str | None = None
    error: str | None = None  # a teacher call that failed for good (also in the failure ledger)
    finish_reason: str = "stop"  # "length": the text (or the one it was repaired from) was cut off


@dataclass
class Trajectory:
    """The correction history of one response. ``current`` is the last accepted answer."""

    id: str
    instruction_id: str
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]
    # How the prompt words each constraint (the teacher is shown the same words).
    descriptions: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    # (constraint index, method) -> attempts used; a pair at its budget is not tried again.
    tried: dict[tuple[int, str], int] = field(default_factory=dict)

    @property
    def current(self) -> Attempt:
        return next(a for a in reversed(self.attempts) if a.accepted)

    @property
    def verified(self) -> bool:
        return all(self.current.verdicts)

    def accepted_chain(self) -> list[Attempt]:
        return [a for a in self.attempts if a.accepted]

    def to_record(self) -> dict[str, Any]:
        final = self.current
        return {
            "id": self.id,
            "instruction_id": self.instruction_id,
            "prompt": self.prompt,
            "instruction_id_list": self.instruction_id_list,
            "kwargs": self.kwargs,
            "n_constraints": len(self.instruction_id_list),
            "status": "verified" if self.verified else "unresolved",
            "initial_pass": all(self.attempts[0].verdicts),
            "final_response": final.response,
            "final_verdicts": final.verdicts,
            "final_finish_reason": final.finish_reason,
            "n_fixes": sum(1 for a in self.attempts if a.accepted and a.method != "initial"),
            "trajectory": [asdict(a) for a in self.attempts],
        }


@dataclass(frozen=True)
class CorrectionSettings:
    """The ``correct`` params section as discrimination reads it (no defaults: params.yaml)."""

    strategy: Strategy
    max_rounds: int
    teacher_attempts_per_constraint: int
    teacher_params: GenerationParams


def _accept(old: list[bool], new: list[bool], target: int) -> bool:
    return new[target] and all(n or not o for o, n in zip(old, new, strict=True))


def _next_move(traj: Trajectory, settings: CorrectionSettings) -> tuple[int, str] | None:
    """The next (failing constraint, method) to try: exact program repairs before the teacher."""
    failing = [i for i, ok in enumerate(traj.current.verdicts) if not ok]
    if settings.strategy in ("program", "program_then_teacher"):
        for idx in failing:
            if (
                traj.instruction_id_list[idx] in REPAIRABLE_IDS
                and (idx, "program") not in traj.tried
            ):
                return idx, "program"
    if settings.strategy in ("teacher", "program_then_teacher"):
        for idx in failing:
            if traj.tried.get((idx, "teacher"), 0) < settings.teacher_attempts_per_constraint:
                return idx, "teacher"
    return None


def start_trajectory(
    record_id: str, instruction: dict[str, Any], response: str, finish_reason: str = "stop"
) -> Trajectory:
    traj = Trajectory(
        id=record_id,
        instruction_id=instruction["id"],
        prompt=instruction["prompt"],
        instruction_id_list=list(instruction["instruction_id_list"]),
        kwargs=[dict(k) for k in instruction["kwargs"]],
        descriptions=list(instruction["descriptions"]),
    )
    verdicts = check_all(traj.instruction_id_list, traj.kwargs, response, prompt=traj.prompt)
    traj.attempts.append(
        Attempt(
            0, "initial", None, None, response, verdicts, accepted=True, finish_reason=finish_reason
        )
    )
    return traj


def _record(
    traj: Trajectory,
    method: str,
    idx: int,
    response: str,
    model: str | None,
    finish_reason: str,
) -> bool:
    verdicts = check_all(traj.instruction_id_list, traj.kwargs, response, prompt=traj.prompt)
    ok = _accept(traj.current.verdicts, verdicts, idx)
    traj.attempts.append(
        Attempt(
            len(traj.attempts),
            method,  # type: ignore[arg-type]
            traj.instruction_id_list[idx],
            idx,
            response,
            verdicts,
            ok,
            model,
            finish_reason=finish_reason,
        )
    )
    return ok


@dataclass(frozen=True)
class Fix:
    """A teacher's revised answer.

    ``whole``: the text is complete even if the teacher's answer ran into the token limit (a
    JSON string the model closed); otherwise the text is the answer itself and is cut off with it.
    """

    text: str
    whole: bool


def _fix_fields(row: Row) -> dict[str, object]:
    return {k: row[k] for k in ("instruction", "response", "constraint")}


def text_fix_step(template: PromptTemplate) -> LLMStep[Fix]:
    """The teacher's whole answer is the fixed response."""
    return LLMStep(
        "fix",
        "teacher",
        template,
        prompt=template_prompt(template, _fix_fields),
        parse=lambda row, text: Fix(text, whole=False),
    )


def _revised_response(row: Row, value: Any) -> Fix:
    if not isinstance(value, dict) or not isinstance(value.get("response"), str):
        raise ValueError('expected an object {"response": "<the revised answer>"}')
    return Fix(value["response"].strip(), whole=True)


def json_fix_step(template: PromptTemplate, repair: PromptTemplate) -> LLMStep[Fix]:
    """The teacher answers ``{"response": ...}``: found wherever it put it, with one repair
    re-ask; what still does not parse is ledgered ``parse_failed`` and uses the attempt."""
    return LLMStep(
        "fix",
        "teacher",
        template,
        prompt=template_prompt(template, _fix_fields),
        parse=json_answer(_revised_response),
        repair=repair,
    )


def _fix_row(traj: Trajectory, idx: int, position: int) -> dict[str, Any]:
    return {
        # The request id names the response, the attempt and the constraint it fixes.
        "id": f"{traj.id}:{len(traj.attempts)}:{idx}",
        "instruction": traj.prompt,
        "response": traj.current.response,
        "constraint": traj.descriptions[idx],
        "position": position,
    }


def _record_failure(traj: Trajectory, idx: int, failure: ChatFailure, model: str) -> None:
    """A teacher call with no answer still uses its attempt; the trajectory keeps the reason."""
    traj.attempts.append(
        Attempt(
            len(traj.attempts),
            "teacher",
            traj.instruction_id_list[idx],
            idx,
            "",
            [],
            False,
            model,
            error=f"{failure.kind}: {failure.reason}",
        )
    )


def correct_all(
    trajectories: Sequence[Trajectory],
    settings: CorrectionSettings,
    step: LLMStep[Fix],
    teacher: Callable[[], LLM] | None = None,
    on_round: Callable[[int, dict[str, int]], None] | None = None,
) -> list[Trajectory]:
    """Run correction rounds over all trajectories; teacher calls are batched per round.

    ``step`` asks the teacher for one fix (:func:`text_fix_step` or :func:`json_fix_step`).
    ``teacher`` is a factory so the teacher model is loaded only if some constraint needs it.
    """
    teacher_llm: LLM | None = None
    for rnd in range(1, settings.max_rounds + 1):
        pending: list[tuple[Trajectory, int]] = []
        stats = {
            "program_accepted": 0,
            "program_rejected": 0,
            "teacher_requests": 0,
            "teacher_failed": 0,
        }
        for traj in trajectories:
            # Exact program repairs first, still one constraint at a time and each re-verified;
            # whatever is left takes one teacher call this round.
            while not traj.verified and (move := _next_move(traj, settings)) is not None:
                idx, method = move
                traj.tried[(idx, method)] = traj.tried.get((idx, method), 0) + 1
                if method == "teacher":
                    pending.append((traj, idx))
                    break
                cid = traj.instruction_id_list[idx]
                fixed = repair(cid, traj.kwargs[idx], traj.current.response, prompt=traj.prompt)
                ok = fixed is not None and _record(
                    traj, "program", idx, fixed, "program", traj.current.finish_reason
                )
                stats["program_accepted" if ok else "program_rejected"] += 1
        if pending:
            if teacher is None:
                raise ValueError("strategy needs a teacher model but none was configured")
            if teacher_llm is None:
                teacher_llm = teacher()
            rows = [_fix_row(t, i, n) for n, (t, i) in enumerate(pending)]
            stats["teacher_requests"] = len(rows)
            result = run_step(teacher_llm, step, rows, settings.teacher_params)
            answered = {out.row["position"]: out for out in result.outputs}
            failed = {f.request_id: f for f in result.failures}
            for row, (traj, idx) in zip(rows, pending, strict=True):
                out = answered.get(row["position"])
                if out is None:
                    _record_failure(traj, idx, failed[row["id"]], teacher_llm.name)
                    stats["teacher_failed"] += 1
                else:
                    finish = "stop" if out.value.whole else out.response.finish_reason
                    _record(traj, "teacher", idx, out.value.text, out.response.model, finish)
        stats["verified"] = sum(t.verified for t in trajectories)
        log.info("correction round %d: %s", rnd, stats)
        if on_round:
            on_round(rnd, stats)
        if not pending:
            break
    return trajectories


def summarize(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    n = len(trajectories)
    verified = sum(t.verified for t in trajectories)
    initial = sum(all(t.attempts[0].verdicts) for t in trajectories)
    by_method: dict[str, int] = {}
    for t in trajectories:
        for a in t.attempts[1:]:
            outcome = "failed" if a.error else "accepted" if a.accepted else "rejected"
            key = f"{a.method}_{outcome}"
            by_method[key] = by_method.get(key, 0) + 1
    n_c = sum(len(t.instruction_id_list) for t in trajectories)
    init_pass_c = sum(sum(t.attempts[0].verdicts) for t in trajectories)
    out: dict[str, float] = {
        "n_responses": n,
        "initial_all_pass": initial,
        "verified": verified,
        "unresolved": n - verified,
        "verified_rate": verified / n if n else 0.0,
        "initial_constraint_pass_rate": init_pass_c / n_c if n_c else 0.0,
    }
    out.update({k: float(v) for k, v in sorted(by_method.items())})
    return out
