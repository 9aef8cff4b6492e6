"""Remove seeds that overlap evaluation-benchmark prompts (IFEval, FollowBench, extras).

Training on a paraphrase of a test prompt inflates the very scores the project reports, so every
seed is checked against every benchmark prompt before generation. A seed is removed when, on
normalised text (see :func:`~complexif.curation.loaders.normalize_text`):

* ``benchmark_in_seed`` / ``seed_in_benchmark``: one contains the other word for word (only for the
  contained side having at least ``min_contain_words`` words: three-word strings like "write a
  poem" are phrasing, not contamination);
* ``ngram_overlap``: it shares at least ``min_matches`` word n-grams (default one 8-gram, the usual
  decontamination rule) with the benchmark index;
* ``ngram_ratio``: at least ``overlap_ratio`` of its own n-grams occur in a single benchmark prompt.
  With the defaults this is implied by ``ngram_overlap``; it matters when ``min_matches`` is raised to
  tolerate one shared boilerplate phrase, because a short seed that is mostly a benchmark prompt
  still has too few n-grams to reach ``min_matches``.

The benchmark n-grams are indexed once (:class:`BenchmarkIndex`); checking a seed costs one dict
lookup per n-gram of the seed, so 100k seeds take seconds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from complexif.curation.loaders import SeedRecord, iter_json_array, normalize_text
from complexif.io import DataError, iter_jsonl, require_fields

SEED_IN_BENCHMARK = "seed_in_benchmark"
BENCHMARK_IN_SEED = "benchmark_in_seed"
NGRAM_OVERLAP = "ngram_overlap"
NGRAM_RATIO = "ngram_ratio"


@dataclass(frozen=True)
class BenchmarkPrompt:
    benchmark: str
    id: str
    text: str


@dataclass(frozen=True)
class Contamination:
    """Why a seed was removed: the benchmark prompt it overlaps and the evidence."""

    seed: SeedRecord
    benchmark: str
    benchmark_id: str
    matched_ngram: str
    reason: str
    # Share of the seed's n-grams found in that one benchmark prompt (1.0 for containment).
    overlap: float


class DecontaminationResult(NamedTuple):
    """``clean, removed = decontaminate(...)``."""

    clean: list[SeedRecord]
    removed: list[Contamination]

    def removed_by_benchmark(self) -> dict[str, int]:
        return dict(sorted(Counter(c.benchmark for c in self.removed).items()))


def _ngrams(words: Sequence[str], n: int) -> list[str]:
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _contains(outer_norm: str, inner_norm: str) -> bool:
    # Pad with spaces so containment is on word boundaries ("art" is not inside "party").
    return f" {inner_norm} " in f" {outer_norm} "


class BenchmarkIndex:
    """Word n-gram index over benchmark prompts, built once and queried per seed."""

    def __init__(self, prompts: Sequence[BenchmarkPrompt], n: int, min_contain_words: int = 5):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if min_contain_words < 1:
            raise ValueError(f"min_contain_words must be >= 1, got {min_contain_words}")
        self.prompts = list(prompts)
        self.n = n
        self.min_contain_words = min_contain_words
        self._norm = [normalize_text(p.text) for p in self.prompts]
        # n-gram -> prompt indices containing it (each index once, ascending).
        self.postings: dict[str, list[int]] = defaultdict(list)
        self._gram_counts: list[int] = []
        # min_contain_words-gram -> prompts, to find the prompts a short seed might sit inside
        # without scanning all of them.
        self._contain_postings: dict[str, list[int]] = defaultdict(list)
        # Prompts shorter than n words have no n-grams; they are matched by containment, grouped
        # by word count so a seed is probed once per distinct length.
        self._short: dict[int, dict[str, int]] = defaultdict(dict)
        for idx, norm in enumerate(self._norm):
            words = norm.split()
            grams = set(_ngrams(words, n))
            self._gram_counts.append(len(grams))
            for g in grams:
                self.postings[g].append(idx)
            if min_contain_words < n:
                for g in set(_ngrams(words, min_contain_words)):
                    self._contain_postings[g].append(idx)
            if min_contain_words <= len(words) < n:
                self._short[len(words)].setdefault(norm, idx)
        self.postings = dict(self.postings)
        self._contain_postings = dict(self._contain_postings)

    def __len__(self) -> int:
        return len(self.prompts)

    def _hit(
        self, seed: SeedRecord, idx: int, matched: str, reason: str, overlap: float
    ) -> Contamination:
        p = self.prompts[idx]
        return Contamination(seed, p.benchmark, p.id, matched, reason, overlap)

    def match(
        self, seed: SeedRecord, min_matches: int = 1, overlap_ratio: float | None = 0.5
    ) -> Contamination | None:
        """Return why ``seed`` is contaminated, or None when it is clean."""
        norm = normalize_text(seed.text)
        words = norm.split()
        n = self.n

        # 1. Short seed inside a benchmark prompt (seeds of >= n words are covered by the n-grams).
        if self.min_contain_words <= len(words) < n:
            head = " ".join(words[: self.min_contain_words])
            for idx in self._contain_postings.get(head, ()):
                if _contains(self._norm[idx], norm):
                    return self._hit(seed, idx, norm, SEED_IN_BENCHMARK, 1.0)

        # 2. Short benchmark prompt inside the seed.
        for length, texts in self._short.items():
            if length <= len(words):
                for g in _ngrams(words, length):
                    if g in texts:
                        return self._hit(seed, texts[g], g, BENCHMARK_IN_SEED, 1.0)

        if len(words) < n:
            return None
        grams = list(dict.fromkeys(_ngrams(words, n)))  # unique, in seed order
        hits = [g for g in grams if g in self.postings]
        if not hits:
            return None
        per_prompt: Counter[int] = Counter()
        for g in hits:
            per_prompt.update(self.postings[g])
        # The most-overlapping prompt is the most useful one to report.
        best_idx, best_count = min(per_prompt.items(), key=lambda kv: (-kv[1], kv[0]))
        overlap = best_count / len(grams)
        first = next(g for g in hits if best_idx in self.postings[g])

        # 3. Containment either way for long texts: all n-grams of one side are shared, so only the
        # prompts whose counts say so need the (exact) substring check.
        for idx, count in sorted(per_prompt.items()):
            if count == len(grams) and _contains(self._norm[idx], norm):
                return self._hit(seed, idx, first, SEED_IN_BENCHMARK, 1.0)
            if count == self._gram_counts[idx] and _contains(norm, self._norm[idx]):
                return self._hit(seed, idx, first, BENCHMARK_IN_SEED, overlap)

        if len(hits) >= min_matches:
            return self._hit(seed, best_idx, first, NGRAM_OVERLAP, overlap)
        if overlap_ratio is not None and overlap >= overlap_ratio:
            return self._hit(seed, best_idx, first, NGRAM_RATIO, overlap)
        return None


def decontaminate(
    seeds: Iterable[SeedRecord],
    benchmark_prompts: Sequence[BenchmarkPrompt] | BenchmarkIndex,
    n: int,
    min_matches: int = 1,
    overlap_ratio: float | None = 0.5,
    min_contain_words: int = 5,
) -> DecontaminationResult:
    """Split ``seeds`` into clean ones and removed ones (with the benchmark prompt they overlap).

    ``n`` is the n-gram length (``seeds.decontam_ngram``). Pass a prebuilt
    :class:`BenchmarkIndex` to reuse it across calls: it must have been built with the same
    ``n``; ``min_contain_words`` is then taken from the index.
    """
    if min_matches < 1:
        raise ValueError(f"min_matches must be >= 1, got {min_matches}")
    if overlap_ratio is not None and not 0.0 < overlap_ratio <= 1.0:
        raise ValueError(f"overlap_ratio must be in (0, 1], got {overlap_ratio}")
    if isinstance(benchmark_prompts, BenchmarkIndex) and benchmark_prompts.n != n:
        raise ValueError(f"the index was built for {benchmark_prompts.n}-grams, not n={n}")
    index = (
        benchmark_prompts
        if isinstance(benchmark_prompts, BenchmarkIndex)
        else BenchmarkIndex(benchmark_prompts, n=n, min_contain_words=min_contain_words)
    )
    clean: list[SeedRecord] = []
    removed: list[Contamination] = []
    for seed in seeds:
        hit = index.match(seed, min_matches=min_matches, overlap_ratio=overlap_ratio)
        if hit is None:
            clean.append(seed)
        else:
            removed.append(hit)
    return DecontaminationResult(clean, removed)


# --------------------------------------------------------------------------------------------------
# benchmark loading


def load_ifeval_prompts(path: str | Path) -> list[BenchmarkPrompt]:
    """IFEval's ``input_data.jsonl``: one ``{key, prompt, ...}`` per line."""
    path = Path(path)
    out: list[BenchmarkPrompt] = []
    for lineno, rec in iter_jsonl(path):
        require_fields(path, lineno, rec, {"prompt": str})
        out.append(BenchmarkPrompt("ifeval", str(rec.get("key", lineno)), rec["prompt"]))
    return out


def load_followbench_prompts(directory: str | Path) -> list[BenchmarkPrompt]:
    """Every ``*_constraints.json`` in FollowBench's data directory (all levels, incl. level 0).

    Ids are ``<category>:<example_id>:L<level>``: example ids restart in each category file.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*_constraints.json"))
    if not files:
        raise DataError(f"{directory}: no FollowBench *_constraints.json files found")
    out: list[BenchmarkPrompt] = []
    for path in files:
        # The file name, not the record's ``category`` field, names the split: in
        # mixed_constraints.json that field lists several constraint types.
        category = path.name.removesuffix("_constraints.json")
        text = path.read_text(encoding="utf-8")
        for lineno, rec in iter_json_array(path, text):
            if not isinstance(rec, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            require_fields(path, lineno, rec, {"instruction": str})
            if not rec["instruction"].strip():
                # Some level-0 records (COGNAC, E2E, CoNLL sources) have no instruction text; an
                # empty prompt cannot overlap anything, so it is left out of the index.
                continue
            pid = f"{category}:{rec.get('example_id', lineno)}:L{rec.get('level', '?')}"
            out.append(BenchmarkPrompt("followbench", pid, rec["instruction"]))
    return out


def load_extra_prompts(path: str | Path) -> list[BenchmarkPrompt]:
    """A JSONL of prompts (``prompt``, ``instruction`` or ``text``; optional ``input``, ``id``).

    The benchmark name is the file stem, e.g. ``infobench.jsonl`` -> ``infobench``.
    """
    path = Path(path)
    out: list[BenchmarkPrompt] = []
    for lineno, rec in iter_jsonl(path):
        key = next((k for k in ("prompt", "instruction", "text") if k in rec), None)
        if key is None:
            raise DataError(
                f"{path}:{lineno}: missing field 'prompt' (also tried 'instruction', 'text')"
            )
        require_fields(path, lineno, rec, {key: str})
        text = rec[key]
        extra = rec.get("input")
        if isinstance(extra, str) and extra.strip():
            text = f"{text}\n\n{extra}"
        pid = rec.get("id", rec.get("key", lineno))
        out.append(BenchmarkPrompt(path.stem, str(pid), text))
    return out


def load_benchmark_prompts(
    ifeval_path: Path | str | None,
    followbench_dir: Path | str | None,
    extra_paths: Iterable[Path | str] = (),
) -> list[BenchmarkPrompt]:
    """All benchmark prompts to decontaminate against; pass None to leave a benchmark out."""
    prompts: list[BenchmarkPrompt] = []
    if ifeval_path is not None:
        prompts.extend(load_ifeval_prompts(ifeval_path))
    if followbench_dir is not None:
        prompts.extend(load_followbench_prompts(followbench_dir))
    for extra in extra_paths:
        prompts.extend(load_extra_prompts(extra))
    return prompts


def contamination_to_dict(c: Contamination) -> dict[str, object]:
    """JSON-ready form for the stage's removed-seeds artifact."""
    return {
        "seed_id": c.seed.id,
        "seed_source": c.seed.source,
        "benchmark": c.benchmark,
        "benchmark_id": c.benchmark_id,
        "reason": c.reason,
        "matched_ngram": c.matched_ngram,
        "overlap": round(c.overlap, 4),
        "text": c.seed.text,
    }
