"""FollowBench metrics on a hand-made fixture whose HSR, SSR and CSL were worked out by hand,
with unparseable judgements and a partial group."""

from __future__ import annotations

import pytest

from complexif.evaluation.followbench.data import Item
from complexif.evaluation.followbench.metrics import Verdict, followbench_metrics

Y, N = True, False


def item(category: str, example_id: int, level: int) -> Item:
    return Item(category, example_id, level, "src", f"instruction {level}", "", category)


def judged(category: str, example_id: int, per_level: dict[int, tuple[bool, ...] | None]):
    return [
        Verdict(item(category, example_id, level), "judge", satisfied)
        for level, satisfied in per_level.items()
    ]


def ruled(category: str, example_id: int, per_level: dict[int, bool]):
    return [Verdict.rule(item(category, example_id, lv), ok) for lv, ok in per_level.items()]


# hard / soft per item, and each group's CSL, worked by hand:
#            level 1     level 2      level 3        level 4        level 5       CSL
# A content  Y  T 1      YY  T 1      YNY  F 2/3     YYYY  T 1      YYYYN  F .8   2
# B content  rule T      rule T       rule T         rule T         rule T        5
# C situ.    None        NY  F .5     YYY  T 1       YYYY  T 1      None          - (None first)
# D situ.    N  F 0      None         YYY  T 1       NYYY  F .75    YYYYY  T 1    0
# E situ.    rule T      rule F       (absent)       (absent)       (absent)      1
FIXTURE = [
    *judged("content", 1, {1: (Y,), 2: (Y, Y), 3: (Y, N, Y), 4: (Y,) * 4, 5: (Y,) * 4 + (N,)}),
    *ruled("content", 2, {1: Y, 2: Y, 3: Y, 4: Y, 5: Y}),
    *judged("situation", 3, {1: None, 2: (N, Y), 3: (Y,) * 3, 4: (Y,) * 4, 5: None}),
    *judged("situation", 4, {1: (N,), 2: None, 3: (Y,) * 3, 4: (N, Y, Y, Y), 5: (Y,) * 5}),
    *ruled("situation", 5, {1: Y, 2: N}),
]


def levels(*values: float | None, avg: float | None) -> dict[str, float | None]:
    return {**{f"level_{k}": v for k, v in enumerate(values, start=1)}, "avg": avg}


def test_overall_rates_csl_and_counts() -> None:
    m = followbench_metrics(FIXTURE)
    # level 1: A T, B T, D F, E T (C unparseable) -> 3/4; level 5: A F, B T, D T -> 2/3
    assert m["hsr"] == pytest.approx(levels(0.75, 0.5, 0.75, 0.75, 2 / 3, avg=41 / 60))
    # level 2 soft: (1 + 1 + .5 + 0) / 4; level 3: (2/3 + 1 + 1 + 1) / 4; level 4: 3.75 / 4
    ssr = levels(0.75, 0.625, 11 / 12, 0.9375, 2.8 / 3, avg=999 / 1200)
    assert m["ssr"] == pytest.approx(ssr)
    assert m["csl"] == pytest.approx((2 + 5 + 0 + 1) / 4)
    assert m["counts"] == {
        "items": 22,
        "rule_scored": 7,
        "judged": 12,
        "unparseable": 3,
        "groups": 5,
        "csl_groups": 4,
    }


def test_by_category() -> None:
    m = followbench_metrics(FIXTURE)
    assert list(m["by_category"]) == ["content", "situation"]
    content, situation = m["by_category"]["content"], m["by_category"]["situation"]
    assert content["hsr"] == pytest.approx(levels(1, 1, 0.5, 1, 0.5, avg=0.8))
    assert content["ssr"] == pytest.approx(levels(1, 1, 5 / 6, 1, 0.9, avg=71 / 75))
    assert content["csl"] == pytest.approx(3.5)
    assert situation["hsr"] == pytest.approx(levels(0.5, 0.0, 1, 0.5, 1, avg=0.6))
    assert situation["ssr"] == pytest.approx(levels(0.5, 0.25, 1, 0.875, 1, avg=0.725))
    assert situation["csl"] == pytest.approx(0.5)
    assert situation["counts"]["unparseable"] == 3 and situation["counts"]["csl_groups"] == 2


def test_nothing_to_average_is_none_not_zero() -> None:
    assert followbench_metrics([])["hsr"] == levels(None, None, None, None, None, avg=None)
    only_unparseable = followbench_metrics(judged("style", 1, {1: None}))
    assert only_unparseable["hsr"]["level_1"] is None and only_unparseable["csl"] is None
    assert only_unparseable["counts"]["unparseable"] == 1
    # four levels with values are not averaged as if they were five
    partial = followbench_metrics(ruled("style", 1, {1: Y, 2: N, 3: Y, 4: Y}))
    assert partial["hsr"]["level_4"] == 1.0 and partial["hsr"]["avg"] is None
    assert partial["csl"] == 1.0  # the chain stops at level 2, before the absent level 5


def test_csl_needs_a_determined_chain() -> None:
    all_pass = ruled("style", 1, {lv: Y for lv in range(1, 6)})
    assert followbench_metrics(all_pass)["csl"] == 5.0
    gap = ruled("style", 1, {1: Y, 3: N, 4: Y, 5: Y})  # level 2 missing before any failure
    assert followbench_metrics(gap)["counts"]["csl_groups"] == 0
    late_none = judged("style", 2, {1: (Y,), 2: (Y, N), 3: None, 4: (Y,) * 4, 5: (Y,) * 5})
    assert followbench_metrics(late_none)["csl"] == 1.0


def test_verdict_values_and_validation() -> None:
    v = Verdict(item("style", 1, 4), "judge", (Y, N, Y, Y))
    assert v.hard is False and v.soft == 0.75
    assert Verdict(item("style", 1, 2), "judge", None).hard is None
    assert Verdict.rule(item("style", 1, 3), True).soft == 1.0
    with pytest.raises(ValueError, match="style/1/3: a judge verdict at level 3 has 3"):
        Verdict(item("style", 1, 3), "judge", (Y, Y))
    with pytest.raises(ValueError, match="a rule verdict at level 3 has 1"):
        Verdict(item("style", 1, 3), "rule", (Y, Y, Y))
    with pytest.raises(ValueError, match="always determined"):
        Verdict(item("style", 1, 3), "rule", None)
    with pytest.raises(ValueError, match="booleans"):
        Verdict(item("style", 1, 1), "judge", (1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only levels 1..5"):
        Verdict(item("style", 1, 0), "rule", (Y,))
    with pytest.raises(ValueError, match="more than one verdict"):
        followbench_metrics(ruled("style", 1, {1: Y}) * 2)
