"""What a curated set looks like, in the numbers the Conifer and FCS papers show for theirs:
instruction and response lengths in tokens, turns per conversation, constraints per
instruction and their types, and Conifer's difficulty levels.

Everything here is pure (samples in, frozen dataclasses out) so the figures, the dataset card
and the DVC metrics all read the same numbers. Tokens are counted by the caller's function
(the stage passes the trained model's tokenizer), so lengths mean what the model sees.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from complexif.dataset.records import Sample
from complexif.io import DataError

# A sample without a source (general chat rows) is still counted, under this name.
UNKNOWN_SOURCE = "unknown"


@dataclass(frozen=True)
class Distribution:
    """Summary of integer values (token counts, turns, constraints).

    ``counts`` maps each value to how many rows have it, in increasing order of value: the
    figures draw histograms and bars from it, and it keeps every value without a list as long
    as the dataset. Percentiles interpolate linearly between the nearest values (numpy's
    default). With no values, ``n`` is 0 and every statistic is None (null in JSON, never NaN).
    """

    n: int
    mean: float | None
    median: float | None
    p10: float | None
    p90: float | None
    min: int | None
    max: int | None
    counts: dict[int, int]

    @classmethod
    def of(cls, values: Iterable[int]) -> Distribution:
        import numpy as np

        values = list(values)
        if not values:
            return cls(0, None, None, None, None, None, None, {})
        arr = np.asarray(values, dtype=float)
        p10, median, p90 = (float(v) for v in np.percentile(arr, [10, 50, 90]))
        return cls(
            n=len(values),
            mean=float(arr.mean()),
            median=median,
            p10=p10,
            p90=p90,
            min=int(min(values)),
            max=int(max(values)),
            counts=dict(sorted(Counter(values).items())),
        )

    def to_dict(self) -> dict[str, Any]:
        # JSON object keys are strings; the values' order (increasing) survives the round trip.
        return {
            "n": self.n,
            "mean": self.mean,
            "median": self.median,
            "p10": self.p10,
            "p90": self.p90,
            "min": self.min,
            "max": self.max,
            "counts": {str(k): v for k, v in self.counts.items()},
        }


@dataclass(frozen=True)
class DatasetAnalysis:
    """The shape of one curated set.

    ``rejected_tokens`` covers only DPO rows (n=0 for SFT sets). ``constraints`` covers the rows
    that state ``n_constraints``; ``constraints_unstated`` counts the others (general chat, or
    rows written before the field existed). ``constraint_types`` counts every verifiable
    constraint id over all rows (an FCS row with three constraints adds three), and
    ``constraint_groups`` the same ids by IFEval group, the part before ``:``
    (``keywords:existence`` -> ``keywords``); both run from most to least frequent.
    ``levels_max`` counts rows by the hardest Conifer level they reach (a row with levels
    [1, 2, 3] counts once, under 3); ``levels_all`` counts every level of every row (that row
    counts under 1, 2 and 3); rows without levels are in neither.
    """

    rows: int
    sources: dict[str, int]
    instruction_tokens: Distribution
    response_tokens: Distribution
    rejected_tokens: Distribution
    turns: Distribution
    constraints: Distribution
    constraints_unstated: int
    constraint_types: dict[str, int]
    constraint_groups: dict[str, int]
    levels_max: dict[int, int]
    levels_all: dict[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "sources": dict(self.sources),
            "instruction_tokens": self.instruction_tokens.to_dict(),
            "response_tokens": self.response_tokens.to_dict(),
            "rejected_tokens": self.rejected_tokens.to_dict(),
            "turns": self.turns.to_dict(),
            "constraints": self.constraints.to_dict(),
            "constraints_unstated": self.constraints_unstated,
            "constraint_types": dict(self.constraint_types),
            "constraint_groups": dict(self.constraint_groups),
            "levels_max": {str(k): v for k, v in self.levels_max.items()},
            "levels_all": {str(k): v for k, v in self.levels_all.items()},
        }


def token_lengths(texts: Iterable[str], count_tokens: Callable[[str], int]) -> list[int]:
    """Each text's length in tokens, as ``count_tokens`` counts them."""
    out = []
    for i, text in enumerate(texts):
        n = count_tokens(text)
        # A tokenizer wired wrongly (returning the encoding, or a float) must not pass silently.
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DataError(f"text {i}: count_tokens returned {n!r}, not a non-negative int")
        out.append(n)
    return out


def _by_frequency(counter: Mapping[str, int]) -> dict[str, int]:
    # Most frequent first, ties by name, so the order (and the figure) is stable across runs.
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def group_of(constraint_id: str) -> str:
    """The IFEval group of a constraint id: ``detectable_format:title`` -> ``detectable_format``."""
    return constraint_id.split(":", 1)[0]


def analyse(samples: Sequence[Sample], count_tokens: Callable[[str], int]) -> DatasetAnalysis:
    """The analysis of a curated set (see :class:`DatasetAnalysis` for what each part counts)."""
    types = Counter(t for s in samples for t in s.constraint_types)
    groups: Counter[str] = Counter()
    for t, c in types.items():
        groups[group_of(t)] += c
    stated = [s.n_constraints for s in samples if s.n_constraints is not None]
    return DatasetAnalysis(
        rows=len(samples),
        sources=_by_frequency(Counter(s.source or UNKNOWN_SOURCE for s in samples)),
        instruction_tokens=Distribution.of(
            token_lengths((s.instruction for s in samples), count_tokens)
        ),
        response_tokens=Distribution.of(token_lengths((s.response for s in samples), count_tokens)),
        rejected_tokens=Distribution.of(
            token_lengths((s.rejected for s in samples if s.rejected is not None), count_tokens)
        ),
        turns=Distribution.of(s.turns for s in samples),
        constraints=Distribution.of(stated),
        constraints_unstated=len(samples) - len(stated),
        constraint_types=_by_frequency(types),
        constraint_groups=_by_frequency(groups),
        levels_max=dict(sorted(Counter(max(s.levels) for s in samples if s.levels).items())),
        levels_all=dict(sorted(Counter(lv for s in samples for lv in s.levels).items())),
    )
