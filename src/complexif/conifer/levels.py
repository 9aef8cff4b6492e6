"""Difficulty levels from a constraint list: which categories and constraints each level uses.

Level 1 takes ``first_categories`` categories and ``first_subcategories`` of their constraints;
each next level keeps everything before it and adds ``add_categories`` new categories and
``add_subcategories`` more constraints (a new category always brings at least one). A query
whose list runs out of categories gets fewer levels. The draw is seeded per query, so a level
plan never changes unless its query, its list or the settings do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from complexif.config import LevelsConfig

Constraints = dict[str, list[str]]


@dataclass(frozen=True)
class Level:
    level: int
    constraints: Constraints  # cumulative: everything this level asks for


def _take(rng: random.Random, lo_hi: list[int]) -> int:
    return rng.randint(lo_hi[0], lo_hi[1])


def plan_levels(constraints: Constraints, cfg: LevelsConfig, key: str) -> list[Level]:
    """Up to ``cfg.n`` nested levels for one query's ``constraints`` (``key`` seeds the draw)."""
    rng = random.Random(f"{cfg.seed}:{key}")
    # A repeated constraint would count as room left in its category that is not there.
    constraints = {c: list(dict.fromkeys(subs)) for c, subs in constraints.items() if subs}
    categories = list(constraints)
    rng.shuffle(categories)
    chosen: Constraints = {}
    levels: list[Level] = []
    for level in range(1, cfg.n + 1):
        first = level == 1
        n_cat = _take(rng, cfg.first_categories if first else cfg.add_categories)
        n_sub = _take(rng, cfg.first_subcategories if first else cfg.add_subcategories)
        new_cats = categories[len(chosen) : len(chosen) + n_cat]
        if not new_cats:
            break  # no category left to add: the query stops at the previous level
        for cat in new_cats:
            chosen[cat] = [rng.choice(constraints[cat])]
        # The rest of the level's constraints come from any chosen category with some left.
        for _ in range(max(0, n_sub - len(new_cats))):
            open_cats = [c for c in chosen if len(chosen[c]) < len(constraints[c])]
            if not open_cats:
                break
            cat = rng.choice(open_cats)
            left = [s for s in constraints[cat] if s not in chosen[cat]]
            chosen[cat].append(rng.choice(left))
        levels.append(Level(level, {c: list(s) for c, s in chosen.items()}))
    return levels


def render_constraints(constraints: Constraints) -> str:
    """The list as the recombination prompt shows it: one line per category."""
    return "\n".join(f"- {cat}: {'; '.join(subs)}" for cat, subs in constraints.items())
