"""The project's own seed set (data/seed_tasks.jsonl): size, ids, balance, and benchmark-clean."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from complexif.curation.decontaminate import decontaminate, load_benchmark_prompts
from complexif.curation.loaders import SeedRecord, load_seeds
from complexif.curation.seeds import filter_seeds
from complexif.io import read_jsonl
from tests.conftest import repo_params

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "data" / "seed_tasks.jsonl"
SEEDS_MD = ROOT / "data" / "SEEDS.md"
CATEGORIES = {
    "writing",
    "explaining",
    "advice",
    "planning",
    "rewriting",
    "summarising",
    "classification",
    "coding",
    "math_reasoning",
    "brainstorming",
    "comparison",
    "dialogue_roleplay",
    "recipes_howto",
    "product_reviews",
    "definitions",
}


@pytest.fixture(scope="module")
def records() -> list[SeedRecord]:
    res = load_seeds(SEEDS, "jsonl")
    assert res.skipped == []
    return res.records


def test_size_ids_and_schema(records: list[SeedRecord]) -> None:
    assert len(records) >= 300
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"seed-\d{4}", i) for i in ids)
    for raw in read_jsonl(SEEDS):
        assert set(raw) == {"id", "category", "instruction"}


def test_every_category_present_and_roughly_balanced(records: list[SeedRecord]) -> None:
    counts = Counter(r.category for r in records)
    assert set(counts) == CATEGORIES
    assert min(counts.values()) >= 20
    assert max(counts.values()) <= 2 * min(counts.values())


def test_seeds_md_counts_match_the_file(records: list[SeedRecord]) -> None:
    # SEEDS.md documents the per-category counts; keep it honest when seeds are added.
    doc = SEEDS_MD.read_text(encoding="utf-8")
    for cat, n in Counter(r.category for r in records).items():
        assert re.search(rf"\|\s*`{cat}`\s*\|\s*{n}\s*\|", doc), f"SEEDS.md count for {cat}"
    assert re.search(rf"\*\*{len(records)}\*\*", doc)


def test_no_seed_is_filtered_or_duplicated(records: list[SeedRecord]) -> None:
    kept, dropped = filter_seeds(records, min_words=3, max_words=400, near_dup_threshold=0.6)
    assert [(d.record.id, d.reason, d.duplicate_of) for d in dropped] == []


def test_summarising_tasks_carry_a_60_to_150_word_passage(records: list[SeedRecord]) -> None:
    for r in records:
        if r.category == "summarising":
            m = re.search(r'"(.+)"\s*$', r.text, re.S)
            assert m, r.id
            assert 60 <= len(m.group(1).split()) <= 150, r.id


def test_shipped_seeds_are_clean_against_ifeval_and_followbench(records: list[SeedRecord]) -> None:
    ifeval = next(
        (
            p
            for p in (
                ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl",
                Path("/work/shared/benchmarks/ifeval/input_data.jsonl"),
            )
            if p.exists()
        ),
        None,
    )
    if ifeval is None:
        pytest.skip("IFEval input_data.jsonl not available")
    prompts = load_benchmark_prompts(ifeval, ROOT / "data" / "benchmarks" / "followbench")
    clean, removed = decontaminate(records, prompts, n=repo_params().seeds.decontam_ngram)
    assert [(c.seed.id, c.benchmark, c.benchmark_id, c.matched_ngram) for c in removed] == []
    assert len(clean) == len(records)


def test_shipped_general_chat_is_clean_against_the_benchmarks() -> None:
    """data/general_chat.jsonl is mixed into SFT: neither its questions nor its answers may
    overlap a benchmark prompt."""
    rows = read_jsonl(ROOT / "data" / "general_chat.jsonl")
    texts = [
        SeedRecord(id=f"{r['id']}:{m['role']}", text=m["content"], source="jsonl:general_chat")
        for r in rows
        for m in r["messages"]
    ]
    prompts = load_benchmark_prompts(
        ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl",
        ROOT / "data" / "benchmarks" / "followbench",
    )
    clean, removed = decontaminate(texts, prompts, n=repo_params().seeds.decontam_ngram)
    assert [(c.seed.id, c.benchmark_id, c.matched_ngram) for c in removed] == []
