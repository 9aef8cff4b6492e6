"""Level plans: which categories and constraints each difficulty level of a query asks for.

Checked on many random constraint lists against the ranges in params (the shipped ones and
others): level 1 takes ``first_*``, each next level adds ``add_*`` more and keeps everything
before it, a query stops when its categories run out, and a plan depends only on its inputs.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from complexif.config import LevelsConfig
from complexif.conifer.levels import Level, plan_levels, render_constraints
from tests.conftest import REPO_ROOT, repo_params, updated

SHIPPED: LevelsConfig = repo_params().conifer.levels
WIDER: LevelsConfig = updated(
    SHIPPED,
    n=6,
    first_categories=[2, 3],
    first_subcategories=[3, 5],
    add_categories=[1, 3],
    add_subcategories=[3, 4],
    seed=7,
)


def random_lists(rng: random.Random, subs: tuple[int, int]) -> dict[str, list[str]]:
    n_cats = rng.randint(2, 12)
    return {
        f"Category {c}": [f"constraint {c}.{s}" for s in range(rng.randint(*subs))]
        for c in range(n_cats)
    }


def _n_subs(constraints: dict[str, list[str]]) -> int:
    return sum(len(v) for v in constraints.values())


def check_plan(plan: list[Level], lists: dict[str, list[str]], cfg: LevelsConfig) -> None:
    assert [lv.level for lv in plan] == list(range(1, len(plan) + 1))
    assert 1 <= len(plan) <= cfg.n
    prev: dict[str, list[str]] = {}
    for lv in plan:
        cats, subs = lv.constraints, _n_subs(lv.constraints)
        # Everything comes from the list, nothing twice, and every category brings some.
        for cat, chosen in cats.items():
            assert chosen and set(chosen) <= set(lists[cat]) and len(set(chosen)) == len(chosen)
        # Nested: this level asks for everything the previous one did.
        for cat, chosen in prev.items():
            assert chosen == cats[cat][: len(chosen)], (lv.level, cat)
        new_cats = len(cats) - len(prev)
        new_subs = subs - _n_subs(prev)
        cat_range = cfg.first_categories if lv.level == 1 else cfg.add_categories
        sub_range = cfg.first_subcategories if lv.level == 1 else cfg.add_subcategories
        left = len(lists) - len(prev)
        # A level takes its share of categories, or all that are left when fewer are.
        assert min(cat_range[0], left) <= new_cats <= cat_range[1], (lv.level, new_cats)
        assert sub_range[0] <= new_subs <= sub_range[1], (lv.level, new_subs, cats)
        prev = cats
    # It stops early only when no category is left to add.
    if len(plan) < cfg.n:
        assert set(plan[-1].constraints) == set(lists)


@pytest.mark.parametrize(
    ("cfg", "subs"),
    # Lists with enough constraints per category for every range to be reachable: the
    # constraint-list prompt asks for two to four per category.
    [(SHIPPED, (2, 4)), (WIDER, (4, 6))],
    ids=["shipped", "wider"],
)
def test_counts_per_level_follow_the_config_ranges(cfg: LevelsConfig, subs) -> None:
    rng = random.Random(0)
    lengths, new_cat_counts = set(), set()
    for i in range(400):
        lists = random_lists(rng, subs)
        plan = plan_levels(lists, cfg, key=f"q{i}")
        check_plan(plan, lists, cfg)
        lengths.add(len(plan))
        new_cat_counts |= {
            len(b.constraints) - len(a.constraints) for a, b in zip(plan, plan[1:], strict=False)
        }
    # The draw uses the whole ranges, and both full and short plans occurred.
    assert new_cat_counts >= set(range(cfg.add_categories[0], cfg.add_categories[1] + 1))
    assert cfg.n in lengths and min(lengths) < cfg.n


def test_the_shipped_ranges_are_the_papers() -> None:
    assert SHIPPED.n == 5
    assert SHIPPED.first_categories == [1, 2] and SHIPPED.first_subcategories == [2, 3]
    assert SHIPPED.add_categories == [1, 2] and SHIPPED.add_subcategories == [2, 3]


def test_thin_lists_still_nest_and_each_level_adds_a_category() -> None:
    # One constraint per category: a level cannot reach 2 new constraints from one new
    # category; it still adds at least one category and one constraint.
    rng = random.Random(1)
    for i in range(200):
        lists = {f"C{c}": [f"only {c}"] for c in range(rng.randint(2, 9))}
        plan = plan_levels(lists, SHIPPED, key=f"thin{i}")
        for a, b in zip([Level(0, {})] + plan, plan, strict=False):
            assert set(a.constraints) < set(b.constraints)
            assert _n_subs(b.constraints) > _n_subs(a.constraints)
        if len(plan) < SHIPPED.n:
            assert set(plan[-1].constraints) == set(lists)


def test_a_query_stops_when_its_categories_run_out() -> None:
    two = {"Tone": ["formal", "warm", "dry"], "Audience": ["kids", "experts"]}
    for i in range(50):
        plan = plan_levels(two, SHIPPED, key=f"two{i}")
        assert 1 <= len(plan) <= 2
        assert set(plan[-1].constraints) == set(two)
    one = {"Tone": ["formal", "warm", "dry"], "Empty": []}
    plan = plan_levels(one, SHIPPED, key="one")
    assert len(plan) == 1 and list(plan[0].constraints) == ["Tone"]
    assert plan_levels({}, SHIPPED, key="none") == []
    assert len(plan_levels(random_lists(random.Random(2), (3, 4)), updated(SHIPPED, n=1), "k")) == 1


def test_repeated_constraints_count_once() -> None:
    # Hardening: a repeat made a category look as if it had room left, and the draw then
    # picked from an empty list (IndexError).
    lists = {"Tone": ["formal", "formal", "formal"], "Audience": ["kids"], "Length": ["short"]}
    for i in range(50):
        for lv in plan_levels(lists, SHIPPED, key=f"dup{i}"):
            assert lv.constraints.get("Tone", ["formal"]) == ["formal"]


def test_a_plan_depends_only_on_list_settings_and_key() -> None:
    lists = random_lists(random.Random(3), (2, 4))
    plan = plan_levels(lists, SHIPPED, key="query-1")
    for i in range(20):  # other draws in between change nothing
        plan_levels(random_lists(random.Random(i), (2, 4)), SHIPPED, key=f"other{i}")
    assert plan_levels(dict(lists), SHIPPED, key="query-1") == plan
    keys = {
        json.dumps([lv.constraints for lv in plan_levels(lists, SHIPPED, f"k{i}")])
        for i in range(30)
    }
    seeds = {
        json.dumps([lv.constraints for lv in plan_levels(lists, updated(SHIPPED, seed=s), "k")])
        for s in range(30)
    }
    assert len(keys) > 1 and len(seeds) > 1


def test_a_plan_is_the_same_in_another_process() -> None:
    # DVC reruns a stage in a new process; a draw seeded by Python's salted str hash would
    # change the data on every run.
    lists = random_lists(random.Random(4), (2, 4))
    here = [[lv.level, lv.constraints] for lv in plan_levels(lists, SHIPPED, key="cq-abc")]
    code = (
        "import json, sys\n"
        "from complexif.conifer.levels import plan_levels\n"
        "from complexif.config import LevelsConfig\n"
        "cfg = LevelsConfig.model_validate(json.loads(sys.argv[1]))\n"
        "lists = json.loads(sys.argv[2])\n"
        "print(json.dumps([[lv.level, lv.constraints] for lv in plan_levels(lists, cfg, 'cq-abc')]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": f"{REPO_ROOT / 'src'}"}
    out = subprocess.run(
        [sys.executable, "-c", code, SHIPPED.model_dump_json(), json.dumps(lists)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == here


def test_constraints_render_one_line_per_category() -> None:
    text = render_constraints({"Tone": ["formal", "warm"], "Audience": ["kids"]})
    assert text == "- Tone: formal; warm\n- Audience: kids"


def test_one_instruction_per_query_and_level_the_variant_first():
    from complexif.conifer.instructions import one_per_level

    def row(query, level, rid, fn=()):
        return {"id": rid, "query_id": query, "level": level, "format_numerical": list(fn)}

    rows = [
        row("q1", 1, "cin-a"),
        row("q1", 2, "cin-b"),
        row("q1", 2, "cfn-b", ["Use 3 bullet points."]),
        row("q2", 2, "cfn-c", ["Use 3 bullet points.", "End with a question."]),
        row("q2", 2, "cin-c"),
    ]
    kept = {(r["query_id"], r["level"]): r["id"] for r in one_per_level(rows)}
    assert kept == {("q1", 1): "cin-a", ("q1", 2): "cfn-b", ("q2", 2): "cfn-c"}
    assert len(one_per_level(rows)) == 3
