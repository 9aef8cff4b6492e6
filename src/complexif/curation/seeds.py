"""Filter, deduplicate and sample seed instructions.

``filter_seeds`` applies, in order: whitespace stripping, empty/length bounds, an English heuristic,
exact dedup on normalised text and near-dup dedup by word n-gram Jaccard similarity. The first
occurrence of a duplicate always wins, so the result depends only on the input order. Every dropped
seed is returned with its reason; :class:`SeedReport` turns those into counts for the stage log.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from complexif.curation.loaders import LoadResult, SeedRecord, normalize_text

log = logging.getLogger(__name__)

_LETTER_RE = re.compile(r"[^\W\d_]")  # any Unicode letter
_ASCII_LETTER_RE = re.compile(r"[A-Za-z]")

# Drop reasons, in the order the checks run.
EMPTY = "empty"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
NON_ENGLISH = "non_english"
EXACT_DUP = "exact_duplicate"
# Different text under an id already kept: source-given ids (ShareGPT, custom JSONL) can collide
# across files, and downstream stages join and resume by id.
DUP_ID = "duplicate_id"
NEAR_DUP = "near_duplicate"
DROP_REASONS: tuple[str, ...] = (
    EMPTY,
    TOO_SHORT,
    TOO_LONG,
    NON_ENGLISH,
    EXACT_DUP,
    DUP_ID,
    NEAR_DUP,
)


@dataclass(frozen=True)
class DroppedSeed:
    record: SeedRecord
    reason: str
    detail: str = ""
    # For duplicates: the id of the kept seed this one duplicates.
    duplicate_of: str | None = None


@dataclass
class SeedReport:
    """Counts for the stage log: how many seeds came in, were skipped, dropped and kept."""

    input_count: int = 0
    kept_count: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    decontaminated: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_filter(cls, result: FilterResult, load: LoadResult | None = None) -> SeedReport:
        dropped = Counter(d.reason for d in result.dropped)
        return cls(
            input_count=len(result.kept) + len(result.dropped),
            kept_count=len(result.kept),
            skipped=load.skip_counts() if load is not None else {},
            dropped={r: dropped[r] for r in DROP_REASONS if dropped[r]},
        )

    def add_decontamination(self, removed_benchmarks: Iterable[str]) -> None:
        """Count seeds removed by decontamination, per benchmark, and lower ``kept_count``."""
        for bench in removed_benchmarks:
            self.decontaminated[bench] = self.decontaminated.get(bench, 0) + 1
            self.kept_count -= 1

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in d.items()) or "none"

        return (
            f"seeds: {self.input_count} in, {self.kept_count} kept; skipped on load: "
            f"{fmt(self.skipped)}; dropped: {fmt(self.dropped)}; "
            f"decontaminated: {fmt(self.decontaminated)}"
        )

    def log(self, logger: logging.Logger = log) -> None:
        logger.info("%s", self.summary())


class FilterResult(NamedTuple):
    """``kept, dropped = filter_seeds(...)``; ``.report`` gives the counts."""

    kept: list[SeedRecord]
    dropped: list[DroppedSeed]

    @property
    def report(self) -> SeedReport:
        return SeedReport.from_filter(self)


def ascii_letter_ratio(text: str) -> float:
    """Share of letters that are ASCII; 0.0 when the text has no letters at all.

    A cheap English heuristic that needs no language model: Cyrillic, CJK, Arabic etc. score near 0,
    English with a few accented names stays near 1.
    """
    if text.isascii():
        # Fast path for the common case: every letter is ASCII, so the ratio is 1 or 0.
        return 1.0 if _ASCII_LETTER_RE.search(text) else 0.0
    letters = len(_LETTER_RE.findall(text))
    if not letters:
        return 0.0
    return len(_ASCII_LETTER_RE.findall(text)) / letters


def word_shingles(normalized: str, n: int = 3) -> frozenset[str]:
    """Word n-grams of already-normalised text; a text shorter than ``n`` words is one shingle."""
    words = normalized.split()
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _prefix_len(size: int, threshold: float) -> int:
    # Prefix-filtering bound (Chaudhuri et al. 2006; Bayardo et al. 2007): if J(x, y) >= t then
    # |x & y| >= ceil(t*|x|), so under any fixed global token order the first
    # |x| - ceil(t*|x|) + 1 tokens of x and of y must share a token. The epsilon keeps 0.8*5 from
    # rounding up to 5.
    return size - math.ceil(threshold * size - 1e-9) + 1


def near_duplicate_pairs(
    texts: Sequence[str], threshold: float = 0.8, n: int = 3
) -> dict[int, tuple[int, float]]:
    """Map index -> (index of the earlier kept text it duplicates, Jaccard) for near-duplicates.

    Texts are scanned in order; each is compared only with earlier texts that were kept, so a chain
    a~b~c with a !~ c keeps a and c. Candidates come from an inverted index over the *prefix* of each
    shingle set, with shingles ordered rarest first: common shingles ("write a short") sort to the
    end and fall outside the prefix, so they are never indexed, posting lists stay short and the
    cost is close to linear in practice (100k instruction-like seeds: seconds, not hours). Every
    candidate is verified with the exact Jaccard, so the result is exact, not approximate. The worst
    case (many very short texts whose few shingles are all common) is still quadratic.
    """
    return _near_duplicates([normalize_text(t) for t in texts], threshold, n)


def _near_duplicates(
    normalized: Sequence[str], threshold: float, n: int
) -> dict[int, tuple[int, float]]:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    shingles = [word_shingles(t, n) for t in normalized]
    df: Counter[str] = Counter()
    for s in shingles:
        df.update(s)
    index: dict[str, list[int]] = defaultdict(list)
    dups: dict[int, tuple[int, float]] = {}
    for i, s in enumerate(shingles):
        if not s:
            continue
        ordered = sorted(s, key=lambda g: (df[g], g))
        prefix = ordered[: _prefix_len(len(ordered), threshold)]
        seen: set[int] = set()
        best: tuple[int, float] | None = None
        for g in prefix:
            for j in index.get(g, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = shingles[j]
                # Length filter: J <= min/max, so a much shorter/longer set can't reach the bar.
                if min(len(s), len(other)) < threshold * max(len(s), len(other)) - 1e-9:
                    continue
                sim = jaccard(s, other)
                if sim >= threshold and (best is None or j < best[0]):
                    best = (j, sim)
        if best is not None:
            dups[i] = best
            continue
        for g in prefix:
            index[g].append(i)
    return dups


def filter_seeds(
    records: Iterable[SeedRecord],
    *,
    min_words: int,
    max_words: int,
    near_dup_threshold: float | None,
    min_ascii_ratio: float = 0.9,
    ngram: int = 3,
) -> FilterResult:
    """Return ``(kept, dropped)``; kept seeds have their text stripped of surrounding whitespace.

    ``near_dup_threshold=None`` disables near-dup dedup (exact dedup always runs).
    """
    if min_words < 0 or max_words < min_words:
        raise ValueError(f"bad word bounds: min_words={min_words}, max_words={max_words}")
    stage1: list[SeedRecord] = []
    stage1_norm: list[str] = []
    dropped: list[DroppedSeed] = []
    first_by_norm: dict[str, str] = {}
    seen_ids: set[str] = set()
    for rec in records:
        text = rec.text.strip()
        if text != rec.text:
            rec = dataclasses.replace(rec, text=text)
        words = len(text.split())
        if not text:
            dropped.append(DroppedSeed(rec, EMPTY))
        elif words < min_words:
            dropped.append(DroppedSeed(rec, TOO_SHORT, f"{words} words < {min_words}"))
        elif words > max_words:
            dropped.append(DroppedSeed(rec, TOO_LONG, f"{words} words > {max_words}"))
        elif (ratio := ascii_letter_ratio(text)) < min_ascii_ratio:
            dropped.append(
                DroppedSeed(rec, NON_ENGLISH, f"ASCII letter ratio {ratio:.2f} < {min_ascii_ratio}")
            )
        else:
            norm = normalize_text(text)
            if norm in first_by_norm:
                dropped.append(DroppedSeed(rec, EXACT_DUP, duplicate_of=first_by_norm[norm]))
            elif rec.id in seen_ids:
                dropped.append(DroppedSeed(rec, DUP_ID, "id already used", rec.id))
            else:
                first_by_norm[norm] = rec.id
                seen_ids.add(rec.id)
                stage1.append(rec)
                stage1_norm.append(norm)
    if near_dup_threshold is None:
        return FilterResult(stage1, dropped)
    dups = _near_duplicates(stage1_norm, near_dup_threshold, ngram)
    kept: list[SeedRecord] = []
    for i, rec in enumerate(stage1):
        if i in dups:
            j, sim = dups[i]
            dropped.append(
                DroppedSeed(rec, NEAR_DUP, f"{ngram}-gram Jaccard {sim:.2f}", stage1[j].id)
            )
        else:
            kept.append(rec)
    return FilterResult(kept, dropped)


def _allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over strata proportionally (largest remainder), at least one each if n allows."""
    total = sum(sizes.values())
    keys = sorted(sizes)
    if n <= 0 or total <= 0:
        return {k: 0 for k in keys}
    quotas = {k: n * sizes[k] / total for k in keys}
    alloc = {k: math.floor(q) for k, q in quotas.items()}
    rest = n - sum(alloc.values())
    # Ties broken by stratum name so the allocation never depends on dict order.
    for k in sorted(keys, key=lambda k: (-(quotas[k] - alloc[k]), k))[:rest]:
        alloc[k] += 1
    if n >= len(keys):
        # A stratified sample that misses a whole category defeats the purpose, so when there is
        # room each empty stratum takes one slot from the stratum furthest above its quota.
        for k in sorted((k for k in keys if alloc[k] == 0), key=lambda k: (-sizes[k], k)):
            donor = max(
                (d for d in keys if alloc[d] > 1),
                key=lambda d: (alloc[d] - quotas[d], alloc[d], d),
            )
            alloc[donor] -= 1
            alloc[k] = 1
    return alloc


def sample_seeds(
    records: Sequence[SeedRecord],
    n: int,
    seed: int,
    stratify_by: str | None = "category",
) -> list[SeedRecord]:
    """Deterministically sample ``n`` seeds, proportionally stratified by a SeedRecord attribute.

    The same ``(set of records, n, seed)`` gives the same sample whatever the input order: each
    stratum is sorted by id before shuffling. Records without the attribute form the stratum
    ``"<none>"``. The sample is returned in input order. ``n >= len(records)`` returns everything.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if stratify_by is not None and stratify_by not in {
        f.name for f in dataclasses.fields(SeedRecord)
    }:
        raise ValueError(f"cannot stratify by {stratify_by!r}: not a SeedRecord field")
    if n >= len(records):
        return list(records)
    strata: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        key = getattr(rec, stratify_by) if stratify_by else None
        strata["<none>" if key is None else str(key)].append(i)
    alloc = _allocate({k: len(v) for k, v in strata.items()}, n)
    chosen: list[int] = []
    for key in sorted(strata):
        idx = sorted(strata[key], key=lambda i: (records[i].id, records[i].text, records[i].source))
        # One RNG per stratum, seeded from (seed, stratum), so adding a category elsewhere does not
        # reshuffle this one.
        rng = random.Random(f"{seed}:{key}")
        rng.shuffle(idx)
        chosen.extend(idx[: alloc[key]])
    return [records[i] for i in sorted(chosen)]
