"""DRFR arithmetic on hand-made verdicts."""

from __future__ import annotations

import pytest

from complexif.evaluation.infobench.data import Item, load_infobench
from complexif.evaluation.infobench.judge import Stop
from complexif.evaluation.infobench.metrics import drfr_metrics


def item(item_id: str, subset: str, n: int) -> Item:
    return Item(item_id, "Do it.", "", "Test", subset, tuple(f"Q{i}?" for i in range(n)))


ITEMS = [
    item("e1", "Easy_set", 3),
    item("e2", "Easy_set", 2),
    item("h1", "Hard_set", 4),
    item("h2", "Hard_set", 3),
]


def test_drfr_on_known_answers():
    answers = {
        "e1": (True, True, False),  # 2 of 3
        "e2": (True, True),  # 2 of 2
        "h1": (True, False, None, None),  # 1 of 2, then an unparseable answer and one unasked
        "h2": (False, False, True),  # 1 of 3
    }
    stops = {"h1": Stop(3, "parse_failed", "neither YES nor NO")}
    metrics = drfr_metrics(ITEMS, answers, stops)
    assert metrics["drfr"] == pytest.approx(6 / 10)
    assert metrics["drfr_easy"] == pytest.approx(4 / 5)
    assert metrics["drfr_hard"] == pytest.approx(2 / 5)
    assert metrics["counts"] == {
        "items": 4,
        "items_judged": 4,
        "questions": 12,
        "judged": 10,
        "yes": 6,
        "unparseable": 1,
        "failed": 0,
        "unasked": 1,
    }
    assert metrics["by_subset"]["Hard_set"] == {
        "questions": 7,
        "judged": 5,
        "yes": 2,
        "unparseable": 1,
        "failed": 0,
        "unasked": 1,
    }
    # Without the stops the first None is read as where the chat stopped, unparseable.
    assert drfr_metrics(ITEMS, answers) == metrics


def test_stop_kinds_and_items_never_judged():
    answers = {
        "e1": (None, None, None),
        "h1": (True, True, True, None),
        "h2": (True, None, None),
    }
    stops = {
        "e1": Stop(1, "budget_exhausted", "budget spent"),
        "h1": Stop(4, "request_failed", "HTTP 500"),
        "h2": Stop(2, "parse_failed", "both"),
    }
    metrics = drfr_metrics(ITEMS, answers, stops)
    counts = metrics["counts"]
    assert counts["judged"] == 4 and counts["yes"] == 4
    assert counts["failed"] == 2  # e1's first question and h1's last
    assert counts["unparseable"] == 1
    assert counts["unasked"] == 2 + 2 + 1  # after e1's stop, e2 (never judged), after h2's stop
    assert counts["items_judged"] == 2
    assert metrics["drfr"] == 1.0
    assert metrics["drfr_easy"] is None  # no easy question has a verdict
    assert metrics["drfr_hard"] == 1.0


def test_nothing_judged_is_none_not_zero():
    metrics = drfr_metrics(ITEMS, {})
    assert (metrics["drfr"], metrics["drfr_easy"], metrics["drfr_hard"]) == (None, None, None)
    assert metrics["counts"]["unasked"] == 12
    assert metrics["counts"]["judged"] == 0


def test_all_no_is_zero():
    answers = {i.id: (False,) * len(i.questions) for i in ITEMS}
    metrics = drfr_metrics(ITEMS, answers)
    assert (metrics["drfr"], metrics["drfr_easy"], metrics["drfr_hard"]) == (0.0, 0.0, 0.0)


def test_fixture_items_all_yes(sample_path):
    items = load_infobench(sample_path, split="train")
    answers = {i.id: (True,) * len(i.questions) for i in items}
    metrics = drfr_metrics(items, answers)
    assert metrics["drfr"] == 1.0
    assert metrics["counts"]["questions"] == sum(len(i.questions) for i in items) == 31


@pytest.mark.parametrize(
    "answers, stops, message",
    [
        ({"e1": (True, True)}, None, "item e1: 2 answers for 3 questions"),
        (
            {"e1": (True, None, True)},
            None,
            "item e1: question 3 has a verdict after its chat stopped",
        ),
        (
            {"e1": (True, None, True)},
            {"e1": Stop(3, "parse_failed", "")},
            "item e1: question 2 has no verdict but its chat went on",
        ),
        (
            {"e1": (True, True, True)},
            {"e1": Stop(2, "parse_failed", "")},
            "item e1: question 2 has a verdict where its chat stopped",
        ),
        ({"zz": (True,)}, None, "answers for items not evaluated: zz"),
        ({}, {"e1": Stop(1, "parse_failed", "")}, "stops for items without answers: e1"),
    ],
)
def test_inconsistent_answers_are_errors(answers, stops, message):
    with pytest.raises(ValueError, match=message):
        drfr_metrics(ITEMS, answers, stops)
