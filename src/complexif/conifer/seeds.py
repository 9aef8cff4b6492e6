"""Conifer's seed filter: short, English, distinct first user turns, none from a benchmark.

The paper keeps ShareGPT first turns of at most 200 characters and at least 5 words, in English.
Seeds come either from the project's seed set (already deduplicated and decontaminated by the
``seeds`` stage) or from their own sources, which are decontaminated here the same way.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from complexif.config import ConiferSeedsConfig, Params, PathsConfig, SeedsConfig
from complexif.curation.decontaminate import decontaminate, load_benchmark_prompts
from complexif.curation.funnel import Funnel
from complexif.curation.loaders import SeedRecord, load_all_sources, normalize_text
from complexif.io import iter_jsonl, require_fields

SEED_FIELDS: dict[str, type | tuple[type, ...]] = {"id": str, "text": str}


@dataclass
class ConiferSeeds:
    kept: list[SeedRecord]
    n_in: int
    dropped: dict[str, int]


def language_of(text: str) -> str:
    """langdetect's guess, made deterministic (it samples by default); "unknown" if none."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return "unknown"


def read_seed_set(path: str) -> list[SeedRecord]:
    """The ``seeds`` stage's output (errors name the file, line and field)."""
    records = []
    for lineno, row in iter_jsonl(path):
        require_fields(path, lineno, row, SEED_FIELDS)
        records.append(SeedRecord(row["id"], row["text"], row.get("source") or "", None))
    return records


def load_sources(
    cfg: ConiferSeedsConfig, seeds_cfg: SeedsConfig, paths: PathsConfig
) -> tuple[list[SeedRecord], dict[str, int], int]:
    """Conifer's own sources, decontaminated as the seeds stage does.

    Returns the clean records, the records the loaders skipped (a conversation without a human
    turn, an empty prompt) counted by reason, and how many were removed as contaminated: the
    funnel accounts for every record read.
    """
    loaded = load_all_sources(cfg.sources or [])
    benchmarks = load_benchmark_prompts(paths.ifeval_input, paths.followbench_dir)
    clean, removed = decontaminate(loaded.records, benchmarks, n=seeds_cfg.decontam_ngram)
    skipped: Counter[str] = Counter()
    for reason, n in loaded.skip_counts().items():
        # Loader reasons are prose ("empty field 'text'"); funnel reasons become MLflow metric
        # names, which allow no quotes.
        skipped[_metric_safe(reason)] += n
    return clean, dict(skipped), len(removed)


def _metric_safe(reason: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", reason).strip("_").lower() or "skipped"


def filter_seeds(records: Sequence[SeedRecord], cfg: ConiferSeedsConfig) -> ConiferSeeds:
    """Length, word count, language and exact duplicates, then a seeded sample of ``cfg.n``."""
    dropped: Counter[str] = Counter()
    kept: list[SeedRecord] = []
    seen: set[str] = set()
    for rec in records:
        text = rec.text.strip()
        if len(text) > cfg.max_chars:
            dropped["too_long"] += 1
        elif len(text.split()) < cfg.min_words:
            dropped["too_few_words"] += 1
        elif language_of(text) != cfg.language:
            dropped["not_" + cfg.language] += 1
        elif (key := normalize_text(text)) in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            kept.append(rec)
    if cfg.n is not None and len(kept) > cfg.n:
        dropped["not_sampled"] += len(kept) - cfg.n
        kept = sorted(random.Random(cfg.seed).sample(kept, cfg.n), key=lambda r: r.id)
    return ConiferSeeds(kept, len(records), dict(dropped))


def select_seeds(params: Params, funnel: Funnel) -> list[SeedRecord]:
    """The seeds Conifer starts from, with the counts of the sources and the filter."""
    cfg = params.conifer.seeds
    if cfg.sources is None:
        records = read_seed_set(params.paths.seeds)
    else:
        records, skipped, n_removed = load_sources(cfg, params.seeds, params.paths)
        n_read = len(records) + n_removed + sum(skipped.values())
        funnel.add("seed_sources", n_read, len(records), {**skipped, "contaminated": n_removed})
    result = filter_seeds(records, cfg)
    funnel.add("seeds", result.n_in, len(result.kept), result.dropped)
    return result.kept
