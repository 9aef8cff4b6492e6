"""The correct stage's logic: join responses to their instructions and run discrimination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from complexif.config import CorrectConfig, Params
from complexif.curation.discrimination import (
    CorrectionSettings,
    correct_all,
    start_trajectory,
    summarize,
)
from complexif.io import DataError, iter_jsonl, require_fields
from complexif.llm.base import LLM, ChatFailure, ChatRequest, ChatResponse, ChatResult
from complexif.llm.client import LLMClient
from complexif.llm.factory import generation_params
from complexif.llm.prompts import PromptTemplate, load_template
from complexif.llm.session import LLMSession
from complexif.llm.structured import generate_json


def _revised_response(value: Any) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("response"), str):
        raise ValueError('expected an object {"response": "<the revised answer>"}')
    return value["response"].strip()


class JSONFixTeacher:
    """A teacher that answers ``{"response": ...}``, seen by discrimination as a plain LLM.

    Parsing is robust (fences, text around the JSON) with one repair re-ask; an answer that
    still cannot be parsed comes back as a ``parse_failed`` :class:`ChatFailure` (ledgered).
    """

    def __init__(self, client: LLMClient, repair_template: PromptTemplate) -> None:
        self.client = client
        self.repair_template = repair_template
        self.name = client.name

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[ChatResult]:
        values = generate_json(self.client, requests, self.repair_template, _revised_response)
        return [
            v if isinstance(v, ChatFailure) else ChatResponse(r.id, v, self.name, "stop", 0, 0)
            for r, v in zip(requests, values, strict=True)
        ]


def fix_template(params: Params) -> PromptTemplate:
    """The teacher's prompt: the plain-text or the JSON version, as ``teacher_output`` says."""
    c = params.correct
    name = c.json_prompt_template if c.teacher_output == "json" else c.prompt_template
    return load_template(params.paths.prompts_dir, name)


def teacher_factory(params: Params, session: LLMSession) -> Callable[[], LLM]:
    """The teacher, built on first use (programs may fix everything and never need it)."""

    def make() -> LLM:
        client = session.client("teacher", params.correct.teacher)
        if params.correct.teacher_output == "json":
            repair = load_template(params.paths.prompts_dir, params.llm.json_repair_template)
            return JSONFixTeacher(client, repair)
        return client

    return make


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
    template: PromptTemplate,
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
    correct_all(
        trajectories, correction_settings(cfg), template, teacher=teacher, on_round=on_round
    )
    records = []
    for t in trajectories:
        rec = t.to_record()
        rec["prompt_template_version"] = template.version
        records.append(rec)
    return records, summarize(trajectories)
