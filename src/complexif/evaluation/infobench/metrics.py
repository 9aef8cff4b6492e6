"""DRFR, the Decomposed Requirements Following Ratio: YES answers over judged questions.

A question is *judged* when the judge gave a usable YES or NO. The ratio is reported over all
items and over the Easy_set and Hard_set items; it is ``None`` where nothing was judged.
Questions without a verdict are never counted as YES or NO; the counts say why they have none:

- ``unparseable``: the judge's answer was unusable even after the repair re-ask;
- ``failed``: the judge's request failed (``request_failed``, ``budget_exhausted``);
- ``unasked``: the chat had stopped before the question, or the item was not judged at all
  (absent from ``answers``).

To tell these apart pass the judge's ``stops`` (:attr:`JudgeResult.stops`). Without them each
item's first ``None`` is taken as where its chat stopped on an unparseable answer, and the rest
as unasked (a verdict after a ``None`` is then an error: the chat stops at the first ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from complexif.evaluation.infobench.data import SUBSETS, Item
from complexif.evaluation.infobench.judge import Stop

COUNTS = ("questions", "judged", "yes", "unparseable", "failed", "unasked")


def _ratio(yes: int, judged: int) -> float | None:
    return yes / judged if judged else None


def _item_counts(item: Item, answers: Sequence[bool | None], stop: Stop | None) -> dict[str, int]:
    if len(answers) != len(item.questions):
        raise ValueError(
            f"item {item.id}: {len(answers)} answers for {len(item.questions)} questions"
        )
    if stop is None and None in answers:
        stop = Stop(answers.index(None) + 1, "parse_failed", "")
    counts = dict.fromkeys(COUNTS, 0)
    counts["questions"] = len(answers)
    for k, answer in enumerate(answers, start=1):
        if stop is not None and k > stop.question:
            if answer is not None:
                raise ValueError(
                    f"item {item.id}: question {k} has a verdict after its chat stopped"
                )
            counts["unasked"] += 1
        elif stop is not None and k == stop.question:
            if answer is not None:
                raise ValueError(
                    f"item {item.id}: question {k} has a verdict where its chat stopped"
                )
            counts["unparseable" if stop.kind == "parse_failed" else "failed"] += 1
        elif answer is None:
            raise ValueError(f"item {item.id}: question {k} has no verdict but its chat went on")
        else:
            counts["judged"] += 1
            counts["yes"] += answer is True
    return counts


def drfr_metrics(
    items: Sequence[Item],
    answers: Mapping[str, Sequence[bool | None]],
    stops: Mapping[str, Stop] | None = None,
) -> dict[str, Any]:
    """``{"drfr", "drfr_easy", "drfr_hard", "counts", "by_subset"}``; fractions in 0..1.

    ``counts`` has ``items``, ``items_judged`` (items with at least one verdict) and the
    question counts (``questions``, ``judged``, ``yes``, ``unparseable``, ``failed``,
    ``unasked``); ``by_subset`` has the question counts of each subset.
    """
    known = {item.id for item in items}
    extra = sorted(set(answers) - known)
    if extra:
        raise ValueError(f"answers for items not evaluated: {', '.join(extra[:5])}")
    stray = sorted(set(stops or {}) - set(answers))
    if stray:
        raise ValueError(f"stops for items without answers: {', '.join(stray[:5])}")
    by_subset = {s: dict.fromkeys(COUNTS, 0) for s in SUBSETS}
    items_judged = 0
    for item in items:
        if item.id in answers:
            stop = stops.get(item.id) if stops is not None else None
            counts = _item_counts(item, answers[item.id], stop)
        else:
            counts = {**dict.fromkeys(COUNTS, 0), "questions": len(item.questions)}
            counts["unasked"] = len(item.questions)
        items_judged += counts["judged"] > 0
        for name, n in counts.items():
            by_subset[item.subset][name] += n
    total = {name: sum(c[name] for c in by_subset.values()) for name in COUNTS}
    easy, hard = by_subset["Easy_set"], by_subset["Hard_set"]
    return {
        "drfr": _ratio(total["yes"], total["judged"]),
        "drfr_easy": _ratio(easy["yes"], easy["judged"]),
        "drfr_hard": _ratio(hard["yes"], hard["judged"]),
        "counts": {"items": len(items), "items_judged": items_judged, **total},
        "by_subset": by_subset,
    }
