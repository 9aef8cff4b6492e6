"""FollowBench metrics: hard and soft satisfaction rates (HSR, SSR) and the consistent
satisfaction level (CSL), overall and per category. Fractions are in 0..1.

A rule-scored item has one verdict, so its hard and soft values are that verdict. A judged
item has one YES/NO per constraint of its level: hard = all YES, soft = the share of YES.
HSR (SSR) at level k is the mean hard (soft) value over the level-k items; "avg" is the mean of
the five levels, as the paper reports. CSL of a group is how many levels in a row, from level
1, hold their hard verdict; the reported CSL is its mean over groups.

Differences from the official scripts, to fail loudly: a judgement that could not be parsed
(``satisfied=None``) is left out of its level's rates and counted as unparseable, never scored
as a failure; a group whose chain reaches an unparseable or absent level before its first
failure has no determined CSL and is left out of it (and counted). Every value with nothing to
average is None, never 0; "avg" is None unless all five levels have a value, since a mean over
fewer levels would be skewed towards the easier or harder ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from complexif.evaluation.followbench.data import CATEGORIES, LEVELS, Item

Method = Literal["rule", "judge"]


@dataclass(frozen=True)
class Verdict:
    item: Item
    method: Method
    satisfied: tuple[bool, ...] | None  # None: the judgement could not be parsed

    def __post_init__(self) -> None:
        if self.method not in ("rule", "judge"):
            raise ValueError(
                f"{self.item.id}: method must be 'rule' or 'judge', got {self.method!r}"
            )
        if not LEVELS[0] <= self.item.level <= LEVELS[-1]:
            raise ValueError(f"{self.item.id}: only levels {LEVELS[0]}..{LEVELS[-1]} are scored")
        if self.satisfied is None:
            if self.method == "rule":
                raise ValueError(f"{self.item.id}: a rule verdict is always determined")
            return
        if not all(isinstance(v, bool) for v in self.satisfied):
            raise ValueError(
                f"{self.item.id}: satisfied must hold booleans, got {self.satisfied!r}"
            )
        expected = 1 if self.method == "rule" else self.item.level
        if len(self.satisfied) != expected:
            raise ValueError(
                f"{self.item.id}: a {self.method} verdict at level {self.item.level} has "
                f"{expected} value(s), got {len(self.satisfied)}"
            )

    @classmethod
    def rule(cls, item: Item, ok: bool) -> Verdict:
        return cls(item=item, method="rule", satisfied=(ok,))

    @property
    def hard(self) -> bool | None:
        return None if self.satisfied is None else all(self.satisfied)

    @property
    def soft(self) -> float | None:
        if self.satisfied is None:
            return None
        return sum(self.satisfied) / len(self.satisfied)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rates(
    verdicts: Sequence[Verdict], measure: Literal["hard", "soft"]
) -> dict[str, float | None]:
    per_level: dict[str, float | None] = {}
    for level in LEVELS:
        values = [
            float(getattr(v, measure))
            for v in verdicts
            if v.item.level == level and v.satisfied is not None
        ]
        per_level[f"level_{level}"] = _mean(values)
    levels = list(per_level.values())
    per_level["avg"] = None if None in levels else _mean(levels)  # type: ignore[arg-type]
    return per_level


def _chain_length(by_level: dict[int, Verdict]) -> int | None:
    """Consecutive levels from 1 whose hard verdict holds; None if undetermined."""
    length = 0
    for level in LEVELS:
        verdict = by_level.get(level)
        hard = None if verdict is None else verdict.hard
        if hard is None:
            return None
        if not hard:
            break
        length += 1
    return length


def _summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    groups: dict[tuple[str, int], dict[int, Verdict]] = {}
    for v in verdicts:
        groups.setdefault((v.item.category, v.item.example_id), {})[v.item.level] = v
    chains = [n for n in map(_chain_length, groups.values()) if n is not None]
    judged = [v for v in verdicts if v.method == "judge"]
    return {
        "hsr": _rates(verdicts, "hard"),
        "ssr": _rates(verdicts, "soft"),
        "csl": _mean(chains),
        "counts": {
            "items": len(verdicts),
            "rule_scored": len(verdicts) - len(judged),
            "judged": sum(v.satisfied is not None for v in judged),
            "unparseable": sum(v.satisfied is None for v in judged),
            "groups": len(groups),
            "csl_groups": len(chains),
        },
    }


def followbench_metrics(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """HSR, SSR and CSL over all verdicts and per category (categories present, in order)."""
    seen: set[str] = set()
    for v in verdicts:
        if v.item.id in seen:
            raise ValueError(f"{v.item.id}: more than one verdict")
        seen.add(v.item.id)
    overall = _summary(verdicts)
    present = {v.item.category for v in verdicts}
    order = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    overall["by_category"] = {
        category: _summary([v for v in verdicts if v.item.category == category])
        for category in order
    }
    return {key: overall[key] for key in ("hsr", "ssr", "csl", "by_category", "counts")}
