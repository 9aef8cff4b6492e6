"""Conifer's training data from the teacher's answers: packed levels, feedback samples, DPO pairs.

SFT records (``paths.conifer_sft``; every assistant turn is a target unless it has ``weight: 0``)::

    {"id": "csft-<hash>", "messages": [...], "source": "conifer",
     "kind": "easy_to_hard" | "single" | "internal" | "external", "query_id": ...,
     "levels": [...], "instruction_ids": [...], "n_constraints": <at the hardest level>}

- ``easy_to_hard`` (``conifer.packing``): a query's levels in increasing order as one
  conversation ``[u1, a1, u2, a2, ...]``, so the model meets each constraint set after the
  easier ones it extends; a query with a single answered level is a ``single`` sample, as is
  every level with packing ``none``.
- ``internal``: the instruction and the teacher's response followed by its explanation of how
  each format and numerical constraint is met, whole.
- ``external``: ``[instruction, weak answer, critique + revise_suffix, teacher answer]`` for each
  weak answer the teacher judged failing. The weak answer is context, never a target: its turn
  carries ``"weight": 0`` (the convention of OpenAI's fine-tuning format), so loss on every
  assistant turn must skip it.

DPO pairs (``paths.conifer_dpo``, the shape of the FCS pairs): the instruction, the teacher's
answer as ``chosen`` and the failing weak answer as ``rejected``.

An answer a gate would refuse as a target (a keyword list appended, a row of placeholders, a
JSON stub: :func:`complexif.quality.artifacts.find_artifacts`) is dropped here, with its reason
in the funnel, rather than stopping the stage at the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from complexif.config import ConiferConfig
from complexif.curation.funnel import Funnel
from complexif.ids import content_id
from complexif.io import DataError, iter_jsonl, require_fields
from complexif.quality.artifacts import find_artifacts

Row = Mapping[str, Any]
Message = dict[str, Any]

ANSWER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "instruction_id": str,
    "query_id": str,
    "level": int,
    "instruction": str,
    "constraints": dict,
    "format_numerical": list,
    "answer": str,
    "finish_reason": str,
    "internal_feedback": (str, type(None)),
    "external_feedback": (dict, type(None)),
}
EXTERNAL_FIELDS: dict[str, type] = {
    "weak_answer": str,
    "follows": bool,
    "critique": str,
}
# A DPO record's fields: what an empty pair file is gated with.
DPO_COLUMNS = (
    "id",
    "prompt",
    "chosen",
    "rejected",
    "chosen_finish_reason",
    "source",
    "instruction_id",
    "query_id",
    "level",
    "critique",
    "n_constraints",
)
KIND_ORDER = {"easy_to_hard": 0, "single": 1, "internal": 2, "external": 3}


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """The answers file (``paths.conifer_answers``); a malformed row is a one-line DataError
    naming the file, line and field."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, ANSWER_FIELDS)
        where = f"{path}:{lineno}"
        if isinstance(rec["level"], bool) or rec["level"] < 1:
            raise DataError(f"{where}: field 'level' must be a whole number >= 1")
        if not rec["answer"].strip():
            raise DataError(f"{where}: field 'answer' is empty")
        external = rec["external_feedback"]
        if external is not None:
            for name, typ in EXTERNAL_FIELDS.items():
                if not isinstance(external.get(name), typ):
                    raise DataError(
                        f"{where}: field 'external_feedback.{name}' must be {typ.__name__}"
                    )
        if rec["instruction_id"] in seen:
            raise DataError(
                f"{where}: field 'instruction_id' {rec['instruction_id']!r} repeats line "
                f"{seen[rec['instruction_id']]}"
            )
        seen[rec["instruction_id"]] = lineno
        rows.append(rec)
    return rows


def n_constraints(row: Row) -> int:
    """Subcategory constraints plus format and numerical ones: the level's difficulty."""
    return sum(len(v) for v in row["constraints"].values()) + len(row["format_numerical"])


def _clean(text: str, finish_reason: str | None = None) -> bool:
    return not find_artifacts(text, finish_reason)


def _sft(kind: str, rows: Sequence[Row], messages: list[Message]) -> dict[str, Any]:
    ids = [r["instruction_id"] for r in rows]
    return {
        "id": content_id(kind, ids, messages, prefix="csft-"),
        "messages": messages,
        "source": "conifer",
        "kind": kind,
        "query_id": rows[0]["query_id"],
        "levels": [r["level"] for r in rows],
        "instruction_ids": ids,
        "n_constraints": n_constraints(rows[-1]),
    }


def _turns(row: Row, answer: str) -> list[Message]:
    return [
        {"role": "user", "content": row["instruction"]},
        {"role": "assistant", "content": answer},
    ]


def level_samples(answers: Sequence[Row], packing: str, funnel: Funnel) -> list[dict[str, Any]]:
    """Every answered level, packed by query (``easy_to_hard``) or one sample each (``none``)."""
    if packing == "none":
        out = [_sft("single", [r], _turns(r, r["answer"])) for r in answers]
        funnel.add("single", len(answers), len(out))
        return out
    by_query: dict[str, list[Row]] = {}
    for r in answers:
        by_query.setdefault(r["query_id"], []).append(r)
    out = []
    for rows in by_query.values():
        rows = sorted(rows, key=lambda r: r["level"])
        messages = [m for r in rows for m in _turns(r, r["answer"])]
        out.append(_sft("easy_to_hard" if len(rows) > 1 else "single", rows, messages))
    # In: queries; out: one conversation each (a query's single level is a one-turn sample).
    funnel.add("easy_to_hard", len(by_query), len(out))
    return out


def internal_samples(answers: Sequence[Row], enabled: bool, funnel: Funnel) -> list[dict]:
    eligible = [r for r in answers if r["format_numerical"]]
    if not enabled:
        funnel.add("internal", len(eligible), 0, {"disabled": len(eligible)})
        return []
    out, dropped = [], {"no_feedback": 0, "artifact": 0}
    for r in eligible:
        text = r["internal_feedback"]
        if text is None or not text.strip():
            dropped["no_feedback"] += 1  # the answers stage's funnel says why
        elif not _clean(text):
            dropped["artifact"] += 1
        else:
            out.append(_sft("internal", [r], _turns(r, text)))
    funnel.add("internal", len(eligible), len(out), dropped)
    return out


def _dpo(row: Row, critique: str, weak: str) -> dict[str, Any]:
    return {
        "id": content_id(row["instruction_id"], row["answer"], weak, prefix="cdpo-"),
        "prompt": [{"role": "user", "content": row["instruction"]}],
        "chosen": [{"role": "assistant", "content": row["answer"]}],
        "rejected": [{"role": "assistant", "content": weak}],
        "chosen_finish_reason": row["finish_reason"],
        "source": "conifer",
        "instruction_id": row["instruction_id"],
        "query_id": row["query_id"],
        "level": row["level"],
        "critique": critique,
        "n_constraints": n_constraints(row),
    }


def external_samples(
    answers: Sequence[Row], cfg: ConiferConfig, funnel: Funnel
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """4-turn revision samples and DPO pairs from the weak answers the teacher judged failing."""
    ext = cfg.external_feedback
    judged = [r for r in answers if r["external_feedback"] is not None]
    failed = [r for r in judged if not r["external_feedback"]["follows"]]
    if not ext.enabled:
        funnel.add("external", len(judged), 0, {"disabled": len(judged)})
        funnel.add("dpo", len(failed), 0, {"disabled": len(failed)})
        return [], []
    samples, pairs = [], []
    dropped = {"judged_follows": len(judged) - len(failed), "answer_artifact": 0, "same_answer": 0}
    usable = []
    for r in failed:
        weak = r["external_feedback"]["weak_answer"]
        if not _clean(r["answer"], r["finish_reason"]):
            dropped["answer_artifact"] += 1
        elif weak.strip() == r["answer"].strip():
            # Judged failing yet the teacher's own answer: nothing to revise, nothing to prefer.
            dropped["same_answer"] += 1
        else:
            usable.append(r)
    for r in usable:
        fb = r["external_feedback"]
        messages = [
            {"role": "user", "content": r["instruction"]},
            {"role": "assistant", "content": fb["weak_answer"], "weight": 0},
            {"role": "user", "content": f"{fb['critique']}\n\n{ext.revise_suffix}"},
            {"role": "assistant", "content": r["answer"]},
        ]
        samples.append(_sft("external", [r], messages))
    funnel.add("external", len(judged), len(samples), dropped)
    if ext.dpo_pairs:
        pairs = [
            _dpo(r, r["external_feedback"]["critique"], r["external_feedback"]["weak_answer"])
            for r in usable
        ]
        lost = {k: v for k, v in dropped.items() if k != "judged_follows"}
        funnel.add("dpo", len(failed), len(pairs), lost)
    else:
        funnel.add("dpo", len(failed), 0, {"disabled": len(failed)})
    return samples, pairs


def build_conifer_data(
    answers: Sequence[Row], cfg: ConiferConfig, funnel: Funnel
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(SFT records, DPO pairs), each step's counts in ``funnel``."""
    targets = [r for r in answers if _clean(r["answer"], r["finish_reason"])]
    funnel.add("targets", len(answers), len(targets), {"artifact": len(answers) - len(targets)})
    sft = level_samples(targets, cfg.packing, funnel)
    sft += internal_samples(answers, cfg.internal_feedback.enabled, funnel)
    external, dpo = external_samples(answers, cfg, funnel)
    sft += external
    sft.sort(key=lambda s: (s["query_id"], KIND_ORDER[s["kind"]], s["levels"], s["id"]))
    dpo.sort(key=lambda p: (p["query_id"], p["level"], p["id"]))
    return sft, dpo
