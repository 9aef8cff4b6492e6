"""The correct stage's logic: join responses to their instructions and run discrimination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from complexif.config import CorrectConfig, Params
from complexif.curation.discrimination import (
    CorrectionSettings,
    Fix,
    correct_all,
    json_fix_step,
    start_trajectory,
    summarize,
    text_fix_step,
)
from complexif.io import DataError, iter_jsonl, require_fields
from complexif.llm.base import LLM
from complexif.llm.factory import generation_params
from complexif.llm.prompts import load_template
from complexif.llm.session import LLMSession
from complexif.llm.step import LLMStep


def fix_step(params: Params) -> LLMStep[Fix]:
    """How the teacher is asked for a fix: plain text, or ``{"response": ...}`` with one repair
    re-ask, as ``correct.teacher_output`` says."""
    c = params.correct
    prompts = params.paths.prompts_dir
    if c.teacher_output == "json":
        return json_fix_step(
            load_template(prompts, c.json_prompt_template),
            load_template(prompts, params.llm.json_repair_template),
        )
    return text_fix_step(load_template(prompts, c.prompt_template))


def teacher_factory(params: Params, session: LLMSession) -> Callable[[], LLM]:
    """The teacher, built on first use (programs may fix everything and never need it)."""
    return lambda: session.client("teacher", params.correct.teacher)


# What discrimination reads from an instruction row: the teacher sees the prompt's own wording
# of each constraint (``descriptions``), so a row without it cannot be corrected faithfully.
INSTRUCTION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "prompt": str,
    "instruction_id_list": list,
    "kwargs": list,
    "descriptions": list,
}


def read_instructions(path: str) -> list[dict[str, Any]]:
    """Instruction rows, each checked for the fields correction needs (errors name file and line)."""
    rows = []
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, INSTRUCTION_FIELDS)
        rows.append(rec)
    return rows


def correction_settings(cfg: CorrectConfig) -> CorrectionSettings:
    return CorrectionSettings(
        strategy=cfg.strategy,
        max_rounds=cfg.max_rounds,
        teacher_attempts_per_constraint=cfg.teacher_attempts_per_constraint,
        teacher_params=generation_params(cfg.teacher.generation),
    )


def correct_responses(
    instructions: Sequence[dict[str, Any]],
    responses: Sequence[dict[str, Any]],
    cfg: CorrectConfig,
    step: LLMStep[Fix],
    teacher: Callable[[], LLM] | None = None,
    on_round: Callable[[int, dict[str, int]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    by_id = {r["id"]: r for r in instructions}
    trajectories = []
    for resp in responses:
        ins = by_id.get(resp["instruction_id"])
        if ins is None:
            raise DataError(
                f"response {resp['id']}: unknown instruction_id {resp['instruction_id']!r}"
            )
        trajectories.append(
            start_trajectory(resp["id"], ins, resp["response"], resp.get("finish_reason") or "stop")
        )
    correct_all(trajectories, correction_settings(cfg), step, teacher=teacher, on_round=on_round)
    version = step.template.version if step.template is not None else ""
    records = []
    for t in trajectories:
        rec = t.to_record()
        rec["prompt_template_version"] = version
        records.append(rec)
    return records, summarize(trajectories)
