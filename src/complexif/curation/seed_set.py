"""The seeds stage's logic: load every source, filter, dedup, decontaminate, sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from complexif.config import PathsConfig, SeedsConfig
from complexif.curation.decontaminate import (
    Contamination,
    contamination_to_dict,
    decontaminate,
    load_benchmark_prompts,
)
from complexif.curation.loaders import SeedRecord, load_all_sources
from complexif.curation.seeds import SeedReport, filter_seeds, sample_seeds


@dataclass
class SeedSet:
    records: list[SeedRecord]
    report: SeedReport
    removed: list[Contamination]

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]

    def removed_rows(self) -> list[dict[str, Any]]:
        return [contamination_to_dict(c) for c in self.removed]


def build_seed_set(cfg: SeedsConfig, paths: PathsConfig) -> SeedSet:
    loaded = load_all_sources(cfg.sources)
    filtered = filter_seeds(
        loaded.records,
        min_words=cfg.min_words,
        max_words=cfg.max_words,
        near_dup_threshold=cfg.near_dup_threshold,
    )
    report = SeedReport.from_filter(filtered, loaded)
    benchmarks = load_benchmark_prompts(paths.ifeval_input, paths.followbench_dir)
    clean, removed = decontaminate(filtered.kept, benchmarks, n=cfg.decontam_ngram)
    report.add_decontamination(c.benchmark for c in removed)
    kept = (
        sample_seeds(clean, cfg.n, seed=cfg.seed)
        if cfg.n is not None and cfg.n < len(clean)
        else clean
    )
    return SeedSet(records=sorted(kept, key=lambda r: r.id), report=report, removed=removed)
