"""The first half of Conifer: seeds -> reframed queries -> constraint lists -> leveled
instructions, with format/numerical variants, through two filters.

Every step is an :class:`~complexif.llm.step.LLMStep` (or a program) and adds its counts to the
stage's :class:`~complexif.curation.funnel.Funnel`, so the report can say where rows went.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.conifer import parsing
from complexif.conifer.common import conifer_template, step_params
from complexif.conifer.format_numerical import draw_requirements, load_requirements
from complexif.conifer.levels import plan_levels, render_constraints
from complexif.curation.decontaminate import BenchmarkIndex, load_benchmark_prompts
from complexif.curation.funnel import Funnel
from complexif.curation.loaders import SeedRecord, normalize_text
from complexif.ids import content_id
from complexif.llm.base import LLM
from complexif.llm.prompts import load_template
from complexif.llm.step import LLMStep, run_step, template_prompt

MIN_CATEGORIES = 2  # a list with one category cannot grow past level 1


@dataclass
class Steps:
    """The teacher's steps in this half, built from params (templates loaded once)."""

    reframe: LLMStep
    filter_context: LLMStep
    constraints: LLMStep
    recombine: LLMStep
    format_numerical: LLMStep
    filter_conflict: LLMStep


def build_steps(params: Params) -> Steps:
    c = params.conifer
    repair = conifer_template(params, c.repair_template)
    json_repair = load_template(params.paths.prompts_dir, params.llm.json_repair_template)

    def step(name: str, template_name: str, fields, parse, fix=repair) -> LLMStep:
        template = conifer_template(params, template_name)
        # The step in the request id: the ledger then says which step a failure was in (filter 1
        # and the constraint list both ask about the same query).
        return LLMStep(
            name,
            "teacher",
            template,
            template_prompt(template, fields),
            parse,
            repair=fix,
            key=lambda row: f"{row['id']}/{name}",
        )

    per_seed = c.reframe.per_seed
    return Steps(
        reframe=step(
            "reframe",
            c.reframe.template,
            lambda r: {"seed": r["text"], "n": per_seed},
            lambda r, text: parsing.numbered_items(text, per_seed),
        ),
        filter_context=step(
            "filter_context",
            c.filter_context.template,
            lambda r: {"query": r["query"]},
            parsing.yes_no,
        ),
        constraints=step(
            "constraints",
            c.constraints.template,
            lambda r: {"query": r["query"]},
            parsing.constraint_lists(MIN_CATEGORIES),
            fix=json_repair,
        ),
        recombine=step(
            "recombine",
            c.recombine.template,
            lambda r: {"query": r["query"], "constraints": render_constraints(r["constraints"])},
            parsing.rewritten,
        ),
        format_numerical=step(
            "format_numerical",
            c.format_numerical.template,
            lambda r: {
                "instruction": r["instruction"],
                "rules": "\n".join(f"- {x}" for x in r["format_numerical"]),
            },
            parsing.rewritten,
        ),
        filter_conflict=step(
            "filter_conflict",
            c.filter_conflict.template,
            lambda r: {"instruction": r["instruction"]},
            parsing.yes_no,
        ),
    )


class Contamination:
    """Generated text checked against the benchmarks, as seeds are (a teacher can reproduce a
    benchmark prompt it has seen)."""

    def __init__(self, params: Params) -> None:
        prompts = load_benchmark_prompts(params.paths.ifeval_input, params.paths.followbench_dir)
        self.index = BenchmarkIndex(prompts, n=params.seeds.decontam_ngram)

    def hit(self, text: str) -> bool:
        return self.index.match(SeedRecord("generated", text, "conifer")) is not None


def _versions(*steps: LLMStep) -> dict[str, str]:
    return {s.name: s.template.version for s in steps if s.template is not None}


def reframe_queries(
    teacher: LLM,
    steps: Steps,
    params: Params,
    seeds: Sequence[SeedRecord],
    funnel: Funnel,
    contamination: Contamination,
) -> list[dict[str, Any]]:
    """Seeds -> distinct, clean, self-contained queries (reframing, then filter 1)."""
    c = params.conifer
    rows = [{"id": s.id, "text": s.text} for s in seeds]
    result = run_step(teacher, steps.reframe, rows, step_params(c.teacher, c.reframe))
    funnel.add_result(result)
    proposed = [(o.row["id"], q) for o in result.outputs for q in o.value]
    queries, dropped, seen = [], Counter(), set()
    for seed_id, query in proposed:
        key = normalize_text(query)
        if key in seen:
            dropped["duplicate"] += 1
        elif contamination.hit(query):
            dropped["contaminated"] += 1
        else:
            seen.add(key)
            queries.append(
                {"id": content_id(seed_id, query, prefix="cq-"), "seed_id": seed_id, "query": query}
            )
    funnel.add("queries", len(proposed), len(queries), dropped)
    verdicts = run_step(
        teacher, steps.filter_context, queries, step_params(c.teacher, c.filter_context)
    )
    kept = [o.row for o in verdicts.outputs if o.value]
    funnel.add_result(verdicts, needs_context=len(verdicts.outputs) - len(kept))
    return [dict(q) for q in kept]


def constraint_lists(
    teacher: LLM, steps: Steps, params: Params, queries: list[dict[str, Any]], funnel: Funnel
) -> list[dict[str, Any]]:
    c = params.conifer
    result = run_step(teacher, steps.constraints, queries, step_params(c.teacher, c.constraints))
    funnel.add_result(result)
    versions = _versions(steps.reframe, steps.filter_context, steps.constraints)
    return [{**o.row, "constraints": o.value, "prompt_versions": versions} for o in result.outputs]


def leveled_instructions(
    teacher: LLM,
    steps: Steps,
    params: Params,
    queries: list[dict[str, Any]],
    funnel: Funnel,
    contamination: Contamination,
) -> list[dict[str, Any]]:
    """Queries with constraint lists -> leveled instructions and their format/numerical
    variants, all through filter 2."""
    c = params.conifer
    plans = []
    for q in queries:
        for lv in plan_levels(q["constraints"], c.levels, q["id"]):
            plans.append(
                {
                    "id": content_id(q["id"], lv.level, lv.constraints, prefix="cin-"),
                    "query_id": q["id"],
                    "seed_id": q["seed_id"],
                    "query": q["query"],
                    "level": lv.level,
                    "constraints": lv.constraints,
                    "format_numerical": [],
                }
            )
    wanted = len(queries) * c.levels.n
    funnel.add("levels", wanted, len(plans), {"too_few_categories": wanted - len(plans)})
    result = run_step(teacher, steps.recombine, plans, step_params(c.teacher, c.recombine))
    funnel.add_result(result)
    leveled = [{**o.row, "instruction": o.value} for o in result.outputs]

    lists = load_requirements(
        Path(params.paths.prompts_dir) / c.prompts_dir / c.format_numerical.constraints_file
    )
    asks = []
    for row in leveled:
        if reqs := draw_requirements(lists, c.format_numerical, row["id"]):
            asks.append(
                {**row, "id": content_id(row["id"], reqs, prefix="cfn-"), "format_numerical": reqs}
            )
    fn = run_step(teacher, steps.format_numerical, asks, step_params(c.teacher, c.format_numerical))
    funnel.add_result(fn)
    variants = [{**o.row, "instruction": o.value} for o in fn.outputs]

    candidates = leveled + variants
    clean = [r for r in candidates if not contamination.hit(r["instruction"])]
    funnel.add(
        "decontaminate", len(candidates), len(clean), {"contaminated": len(candidates) - len(clean)}
    )
    verdicts = run_step(
        teacher, steps.filter_conflict, clean, step_params(c.teacher, c.filter_conflict)
    )
    kept = [o.row for o in verdicts.outputs if o.value]
    funnel.add_result(verdicts, unanswerable_or_conflicting=len(verdicts.outputs) - len(kept))
    single = one_per_level(kept)
    funnel.add(
        "one_per_level", len(kept), len(single), {"superseded_by_variant": len(kept) - len(single)}
    )
    versions = _versions(*vars(steps).values())
    out = [{**r, "prompt_versions": versions} for r in single]
    return sorted(out, key=lambda r: (r["query_id"], r["level"], r["id"]))


def one_per_level(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One instruction per (query, level): its format/numerical variant where one passed filter
    2 (the same instruction with those constraints added), else the plain one. A query's levels
    become one easy-to-hard conversation, which has one turn per level."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["query_id"], row["level"])
        rank = (len(row["format_numerical"]), row["id"])
        held = best.get(key)
        if held is None or rank > (len(held["format_numerical"]), held["id"]):
            best[key] = row
    return list(best.values())


def build_instructions(
    teacher: LLM, params: Params, seeds: Sequence[SeedRecord], funnel: Funnel
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The whole first half: seeds -> (queries with constraint lists, leveled instructions)."""
    steps = build_steps(params)
    contamination = Contamination(params)
    queries = reframe_queries(teacher, steps, params, seeds, funnel, contamination)
    queries = constraint_lists(teacher, steps, params, queries, funnel)
    instructions = leveled_instructions(teacher, steps, params, queries, funnel, contamination)
    return queries, instructions
