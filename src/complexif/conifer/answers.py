"""Conifer's answers: the teacher answers every leveled instruction, with process feedback.

One record per instruction whose answer the teacher finished (an answer cut off by the token
limit is never a target: it is dropped as ``cut_off``; a request that failed is in the ledger)::

    {"id": "can-<hash>", "instruction_id": "cin-...", "query_id": "cq-...", "seed_id": ...,
     "query": ..., "level": 3, "instruction": ..., "constraints": {...}, "format_numerical": [...],
     "answer": "<the teacher's answer>", "model": "<teacher>", "finish_reason": "stop",
     "internal_feedback": "<answer, marker line, explanation>" | null,
     "external_feedback": {"weak_answer", "weak_model", "follows", "critique"} | null,
     "prompt_versions": {"<step>": "<template version>", ...}}

``internal_feedback`` is set for instructions with format or numerical constraints whose
feedback the teacher finished; ``external_feedback`` for each query's hardest answered level
once the teacher's verdict parsed. The stage's funnel says, step by step, what was dropped and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.conifer.common import conifer_template, step_params
from complexif.conifer.feedback import (
    Clients,
    external_feedback,
    instruction_answer_step,
    internal_feedback,
    split_cut_off,
)
from complexif.curation.funnel import Funnel
from complexif.ids import content_id
from complexif.io import DataError, iter_jsonl, require_fields
from complexif.llm.prompts import PromptTemplate
from complexif.llm.step import LLMStep, run_step

log = logging.getLogger(__name__)

INSTRUCTION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "query_id": str,
    "level": int,
    "instruction": str,
    "constraints": dict,
    "format_numerical": list,
}


def read_instructions(path: str | Path) -> list[dict[str, Any]]:
    """The leveled instructions (``paths.conifer_instructions``); a malformed row is a one-line
    DataError naming the file, line and field."""
    rows: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    levels: dict[tuple[str, int], int] = {}
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, INSTRUCTION_FIELDS)
        where = f"{path}:{lineno}"
        level = rec["level"]
        if isinstance(level, bool) or level < 1:
            raise DataError(f"{where}: field 'level' must be a whole number >= 1, got {level!r}")
        if not rec["instruction"].strip():
            raise DataError(f"{where}: field 'instruction' is empty")
        if not all(isinstance(c, str) and c.strip() for c in rec["format_numerical"]):
            raise DataError(
                f"{where}: field 'format_numerical' must be a list of non-empty strings"
            )
        if not isinstance(rec.get("prompt_versions", {}), dict):
            raise DataError(f"{where}: field 'prompt_versions' must be an object")
        if rec["id"] in ids:
            raise DataError(f"{where}: field 'id' {rec['id']!r} repeats line {ids[rec['id']]}")
        key = (rec["query_id"], level)
        if key in levels:
            raise DataError(
                f"{where}: field 'level' {level} of query {rec['query_id']!r} repeats line "
                f"{levels[key]}"
            )
        ids[rec["id"]] = levels[key] = lineno
        rows.append(rec)
    return rows


def answer_step(template: PromptTemplate) -> LLMStep[str]:
    return instruction_answer_step("answer", "teacher", template)


def answer_all(
    session: Clients,
    instructions: Sequence[Mapping[str, Any]],
    params: Params,
    funnel: Funnel,
) -> list[dict[str, Any]]:
    """The teacher's answer to every instruction, with internal and external feedback where
    enabled; each step adds its counts to ``funnel``."""
    cfg = params.conifer
    teacher = session.client("teacher", cfg.teacher)
    template = conifer_template(params, cfg.answer.template)
    step = answer_step(template)
    result = run_step(teacher, step, instructions, step_params(cfg.teacher, cfg.answer))
    done, cut = split_cut_off(result.outputs)
    funnel.add_result(result, cut_off=len(cut))
    if cut:
        log.info(
            "answer: %d answers cut off at max_new_tokens=%d", len(cut), cfg.answer.max_new_tokens
        )
    answered = [
        {
            **o.row,
            "answer": o.value,
            "model": o.response.model,
            "finish_reason": o.response.finish_reason,
        }
        for o in done
    ]
    internal = internal_feedback(teacher, answered, params, funnel)
    external = external_feedback(session, answered, params, funnel)
    records = []
    for row in answered:
        versions = {**row.get("prompt_versions", {}), "answer": template.version}
        iid = row["id"]
        if iid in internal.values:
            versions.update(internal.versions)
        if iid in external.values:
            versions.update(external.versions)
        records.append(
            {
                "id": content_id(iid, row["answer"], prefix="can-"),
                "instruction_id": iid,
                "query_id": row["query_id"],
                "seed_id": row.get("seed_id"),
                "query": row.get("query"),
                "level": row["level"],
                "instruction": row["instruction"],
                "constraints": row["constraints"],
                "format_numerical": row["format_numerical"],
                "answer": row["answer"],
                "model": row["model"],
                "finish_reason": row["finish_reason"],
                "internal_feedback": internal.values.get(iid),
                "external_feedback": external.values.get(iid),
                "prompt_versions": versions,
            }
        )
    return records
