"""Score answers on InFoBench: the judge answers every decomposed question in one chat per
item; DRFR is the share of YES overall and on the easy and hard subsets.

``score_infobench`` is what both the evaluate stage (``run_infobench``) and ``complexif infobench
score`` call; the stage only adds generating the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.evaluation.answers import answer_length, generate_answers, write_answers
from complexif.evaluation.infobench.data import Item, load_infobench, select_items
from complexif.evaluation.infobench.judge import judge_infobench
from complexif.evaluation.infobench.metrics import drfr_metrics
from complexif.evaluation.judging import JudgeClient, eval_template, judge_info
from complexif.io import DataError, iter_jsonl, require_fields, write_json, write_jsonl
from complexif.llm.base import LLM, BatchBackend
from complexif.llm.factory import step_params

VERDICTS_FILE = "verdicts.jsonl"


def infobench_items(params: Params, all_items: bool = False) -> list[Item]:
    """The evaluated items: evaluate.infobench.source, subset (easy/hard mix kept)."""
    cfg = params.evaluate.infobench
    items = load_infobench(cfg.source, cfg.split)
    return items if all_items else select_items(items, cfg.subset, cfg.seed)


def score_infobench(
    params: Params,
    items: Sequence[Item],
    answers: Mapping[str, str],
    judge: JudgeClient,
    out_dir: Path,
) -> dict[str, Any]:
    """Judge every item's answer, write verdicts and metrics to ``out_dir``; return metrics."""
    missing = [item.id for item in items if item.id not in answers]
    if missing:
        raise KeyError(f"no answer for {len(missing)} InFoBench item(s), first {missing[0]}")
    cfg = params.evaluate.infobench
    template = eval_template(params, cfg.judge.template)
    rows = [
        {"id": i.id, "input": i.input, "output": answers[i.id], "questions": list(i.questions)}
        for i in items
    ]
    result = judge_infobench(
        judge(),
        rows,
        template,
        eval_template(params, params.evaluate.repair_template),
        step_params(params.evaluate.judge, cfg.judge),
    )
    metrics = drfr_metrics(items, result.answers, result.stops)
    metrics["judge"] = judge_info(params, template)
    verdicts = []
    for item in items:
        stop = result.stops.get(item.id)
        verdicts.append(
            {
                "id": item.id,
                "subset": item.subset,
                "category": item.category,
                "questions": list(item.questions),
                "verdicts": list(result.answers[item.id]),
                "stopped_at": None if stop is None else stop.question,
                "stop_reason": None if stop is None else f"{stop.kind}: {stop.reason}",
                "response": answers[item.id],
            }
        )
    write_jsonl(Path(out_dir) / VERDICTS_FILE, verdicts)
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def run_infobench(
    llm: LLM | BatchBackend, params: Params, out_dir: Path, judge: JudgeClient
) -> dict[str, Any]:
    items = infobench_items(params)
    prompts = [{"id": item.id, "prompt": item.prompt} for item in items]
    generation = answer_length(params.evaluate.generation, params.evaluate.infobench.max_new_tokens)
    rows = generate_answers(llm, prompts, generation, "InFoBench")
    write_answers(rows, out_dir)
    answers = {row["id"]: row["response"] for row in rows}
    return score_infobench(params, items, answers, judge, out_dir)


def load_answers(path: str | Path, items: Sequence[Item]) -> dict[str, str]:
    """A model's answers (JSONL): ``response`` (or InFoBench's own ``output``) with the item's
    ``id``."""
    path = Path(path)
    known = {item.id for item in items}
    answers: dict[str, str] = {}
    for lineno, rec in iter_jsonl(path):
        field = "response" if "response" in rec else "output"
        require_fields(path, lineno, rec, {"id": str, field: str})
        if rec["id"] in known:
            answers[rec["id"]] = rec[field]
    if not answers:
        raise DataError(f"{path}: no answer matches an InFoBench item (by 'id')")
    return answers
