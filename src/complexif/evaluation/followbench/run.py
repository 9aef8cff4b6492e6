"""Score answers on FollowBench: rules where the benchmark has them, the judge for the rest.

``score_followbench`` is what both the evaluate stage (``run_followbench``) and ``complexif
followbench score`` call; the stage only adds generating the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.evaluation.answers import answer_length, generate_answers, write_answers
from complexif.evaluation.followbench.data import (
    Group,
    Item,
    evaluated_items,
    load_followbench,
    select_groups,
)
from complexif.evaluation.followbench.judge import PathWording, judge_rows, judge_step
from complexif.evaluation.followbench.metrics import Verdict, followbench_metrics
from complexif.evaluation.followbench.rules import is_rule_scored, rule_score
from complexif.evaluation.judging import JudgeClient, eval_template, judge_info
from complexif.io import DataError, iter_jsonl, require_fields, write_json, write_jsonl
from complexif.llm.base import LLM, BatchBackend, GenerationParams
from complexif.llm.factory import step_params
from complexif.llm.step import LLMStep, run_step

VERDICTS_FILE = "verdicts.jsonl"


@dataclass(frozen=True)
class Judge:
    """The judge role's client, its step and its generation settings."""

    llm: LLM | BatchBackend
    step: LLMStep[tuple[bool, ...]]
    params: GenerationParams


@dataclass(frozen=True)
class FollowBenchScore:
    verdicts: list[Verdict]
    metrics: dict[str, Any]


def answer_rows(groups: Sequence[Group]) -> list[dict[str, str]]:
    """What the evaluated model answers: every level 1-5 instruction, one user turn each."""
    return [{"id": item.id, "prompt": item.instruction} for item in evaluated_items(groups)]


def score_answers(
    groups: Sequence[Group], answers: Mapping[str, str], judge: Judge | None
) -> FollowBenchScore:
    """Verdicts for every level 1-5 item of ``groups``; ``answers`` maps item id -> answer.

    Without a judge, items no rule covers are left out and counted as ``not_judged``.
    """
    items = evaluated_items(groups)
    missing = [item.id for item in items if item.id not in answers]
    if missing:
        raise KeyError(f"no answer for {len(missing)} FollowBench item(s), first {missing[0]}")
    by_id = {group_key(g): g for g in groups}
    verdicts: dict[str, Verdict] = {}
    to_judge: list[tuple[Group, Item, str]] = []
    for item in items:
        answer = answers[item.id]
        if is_rule_scored(item):
            verdicts[item.id] = Verdict(item, "rule", (rule_score(item, answer),))
        else:
            to_judge.append((by_id[(item.category, item.example_id)], item, answer))
    if judge is not None and to_judge:
        rows = judge_rows(to_judge)
        result = run_step(judge.llm, judge.step, rows, judge.params)
        judged = {out.row["item_id"]: out.value for out in result.outputs}
        for _, item, _ in to_judge:
            verdicts[item.id] = Verdict(item, "judge", judged.get(item.id))
    ordered = [verdicts[item.id] for item in items if item.id in verdicts]
    metrics = followbench_metrics(ordered)
    metrics["counts"]["not_judged"] = 0 if judge is not None else len(to_judge)
    return FollowBenchScore(ordered, metrics)


def group_key(group: Group) -> tuple[str, int]:
    return (group.category, group.example_id)


def verdict_rows(score: FollowBenchScore, answers: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "id": v.item.id,
            "category": v.item.category,
            "example_id": v.item.example_id,
            "level": v.item.level,
            "method": v.method,
            "satisfied": None if v.satisfied is None else list(v.satisfied),
            "hard": v.hard,
            "soft": v.soft,
            "response": answers[v.item.id],
        }
        for v in score.verdicts
    ]


def write_results(score: FollowBenchScore, answers: Mapping[str, str], out_dir: str | Path) -> Path:
    """Every item's verdict beside its answer (``verdicts.jsonl``)."""
    path = Path(out_dir) / VERDICTS_FILE
    write_jsonl(path, verdict_rows(score, answers))
    return path


def load_answers(path: str | Path, groups: Sequence[Group]) -> dict[str, str]:
    """A model's answers (JSONL): ``response`` with the item's ``id`` (category/example/level)
    or its ``prompt`` (the instruction's exact text, as the benchmark's own scripts match)."""
    path = Path(path)
    by_prompt: dict[str, list[str]] = {}
    for item in evaluated_items(groups):
        by_prompt.setdefault(item.instruction, []).append(item.id)
    known = {item.id for item in evaluated_items(groups)}
    answers: dict[str, str] = {}
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, {"response": str})
        if "id" in rec:
            ids = [rec["id"]] if rec["id"] in known else []
        elif isinstance(rec.get("prompt"), str):
            ids = by_prompt.get(rec["prompt"], [])
        else:
            raise DataError(f"{path}:{lineno}: needs field 'id' or field 'prompt'")
        for item_id in ids:
            answers[item_id] = rec["response"]
    if not answers:
        raise DataError(f"{path}: no answer matches a FollowBench item (by 'id' or 'prompt')")
    return answers


def followbench_groups(params: Params, all_groups: bool = False) -> list[Group]:
    """The evaluated FollowBench groups: params' categories, sampled per category."""
    cfg = params.evaluate.followbench
    groups = load_followbench(params.paths.followbench_dir, tuple(cfg.categories))
    return groups if all_groups else select_groups(groups, cfg.groups_per_category, cfg.seed)


def score_followbench(
    params: Params,
    groups: Sequence[Group],
    answers: Mapping[str, str],
    judge: JudgeClient | None,
    out_dir: Path,
) -> dict[str, Any]:
    """Rule-score, judge (``judge`` None: rule-scored items only) and write verdicts and
    metrics to ``out_dir``; returns the metrics."""
    cfg = params.evaluate.followbench
    step_judge = None
    info: dict[str, str] = {}
    needs_judge = any(not is_rule_scored(item) for item in evaluated_items(groups))
    if judge is not None and cfg.judge is not None and needs_judge:
        template = eval_template(params, cfg.judge.template)
        wording = PathWording.load(Path(params.paths.prompts_dir) / params.evaluate.prompts_dir)
        step_judge = Judge(
            judge(),
            judge_step(template, wording, eval_template(params, params.evaluate.repair_template)),
            step_params(params.evaluate.judge, cfg.judge),
        )
        info = judge_info(params, template)
    score = score_answers(groups, answers, step_judge)
    metrics = dict(score.metrics)
    if info:
        metrics["judge"] = info
    write_results(score, answers, out_dir)
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def run_followbench(
    llm: LLM | BatchBackend, params: Params, out_dir: Path, judge: JudgeClient
) -> dict[str, Any]:
    groups = followbench_groups(params)
    cfg = params.evaluate.followbench
    generation = answer_length(params.evaluate.generation, cfg.max_new_tokens)
    rows = generate_answers(llm, answer_rows(groups), generation, "FollowBench")
    write_answers(rows, out_dir)
    answers = {row["id"]: row["response"] for row in rows}
    return score_followbench(params, groups, answers, judge, out_dir)
