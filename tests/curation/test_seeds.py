"""Seed filtering, exact/near-dup dedup, stratified sampling and the report."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from complexif.curation import seeds
from complexif.curation.loaders import LoadResult, SeedRecord, SkipReason, normalize_text
from complexif.curation.seeds import (
    EXACT_DUP,
    NEAR_DUP,
    NON_ENGLISH,
    TOO_LONG,
    TOO_SHORT,
    SeedReport,
    ascii_letter_ratio,
    jaccard,
    near_duplicate_pairs,
    sample_seeds,
    word_shingles,
)
from tests.conftest import repo_params


def filter_seeds(records, **changes):
    """The filter as the seeds stage runs it (params.yaml's seeds section), with ``changes``."""
    cfg = repo_params().seeds
    kwargs = {
        "min_words": cfg.min_words,
        "max_words": cfg.max_words,
        "near_dup_threshold": cfg.near_dup_threshold,
    }
    return seeds.filter_seeds(records, **{**kwargs, **changes})


def rec(i: int | str, text: str, category: str | None = None) -> SeedRecord:
    return SeedRecord(f"s{i}", text, "test", category)


BASE = (
    "Write a detailed travel guide for a weekend in Porto focusing on food markets and river walks"
)


def test_filter_reasons_and_order_of_checks() -> None:
    records = [
        rec(1, f"  {BASE}  "),
        rec(2, "Hi there"),  # 2 words
        rec(3, "word " * 50),
        rec(4, "Напишите короткий рассказ о море и маяке на берегу"),
        rec(5, BASE.upper() + "!!!"),  # exact dup after normalisation
        rec(6, BASE + " please"),  # near dup: one extra 3-gram, Jaccard 15/16
        rec(7, "Explain how a heat pump moves heat from cold outdoor air into a warm house"),
        rec(8, "   "),
    ]
    kept, dropped = filter_seeds(records, min_words=3, max_words=40)
    assert [r.id for r in kept] == ["s1", "s7"]
    assert kept[0].text == BASE  # surrounding whitespace stripped
    reasons = {d.record.id: d.reason for d in dropped}
    assert reasons == {
        "s2": TOO_SHORT,
        "s3": TOO_LONG,
        "s4": NON_ENGLISH,
        "s5": EXACT_DUP,
        "s6": NEAR_DUP,
        "s8": "empty",
    }
    by_id = {d.record.id: d for d in dropped}
    assert by_id["s5"].duplicate_of == "s1"
    assert by_id["s6"].duplicate_of == "s1"
    assert "Jaccard" in by_id["s6"].detail


def test_colliding_source_ids_are_dropped_not_kept_twice() -> None:
    a = SeedRecord("1", "Describe a lighthouse at night in vivid detail.", "sharegpt:a.json")
    b = SeedRecord("1", "Explain how tides are predicted for a harbour.", "sharegpt:b.json")
    kept, dropped = filter_seeds([a, b])
    assert kept == [a]
    assert [(d.record, d.reason, d.duplicate_of) for d in dropped] == [(b, "duplicate_id", "1")]
    assert a.to_dict() == {
        "id": "1",
        "text": a.text,
        "source": "sharegpt:a.json",
        "category": None,
    }


def test_near_dup_threshold_and_disabling() -> None:
    a = rec(1, "Plan a three day trip to Rome for a family with two young children in spring")
    b = rec(2, "Plan a three day trip to Rome for a family with two teenage children in spring")
    sim = jaccard(word_shingles(normalize_text(a.text)), word_shingles(normalize_text(b.text)))
    assert 0.5 < sim < 0.8
    assert repo_params().seeds.near_dup_threshold == 0.8
    assert len(filter_seeds([a, b]).kept) == 2  # 0.8: different enough
    kept, dropped = filter_seeds([a, b], near_dup_threshold=0.5)
    assert [r.id for r in kept] == ["s1"] and dropped[0].reason == NEAR_DUP
    assert len(filter_seeds([a, b], near_dup_threshold=None).kept) == 2


def test_ascii_ratio_heuristic() -> None:
    assert ascii_letter_ratio("Plain English text") == 1.0
    assert ascii_letter_ratio("Café in Zürich near the lake") > 0.9
    assert ascii_letter_ratio("日本語のテキストです") == 0.0
    assert ascii_letter_ratio("12345 !!!") == 0.0


def _brute_force(texts: list[str], threshold: float) -> dict[int, int]:
    sh = [word_shingles(normalize_text(t)) for t in texts]
    kept: list[int] = []
    dups: dict[int, int] = {}
    for i, s in enumerate(sh):
        match = next((j for j in kept if jaccard(s, sh[j]) >= threshold), None)
        if match is None:
            kept.append(i)
        else:
            dups[i] = match
    return dups


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_prefix_filtered_near_dup_equals_brute_force(threshold: float) -> None:
    # Small vocabulary + mutations produce many near-duplicates at every similarity level, so a
    # prefix-filtering bug (a missed candidate) would show up as a difference from brute force.
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)]
    bases = [[rng.choice(vocab) for _ in range(rng.randint(4, 18))] for _ in range(40)]
    texts = []
    for _ in range(400):
        words = list(rng.choice(bases))
        for _ in range(rng.randint(0, 3)):
            op = rng.random()
            pos = rng.randrange(len(words))
            if op < 0.4:
                words[pos] = rng.choice(vocab)
            elif op < 0.7:
                words.insert(pos, rng.choice(vocab))
            elif len(words) > 3:
                del words[pos]
        texts.append(" ".join(words))
    got = {i: j for i, (j, _) in near_duplicate_pairs(texts, threshold).items()}
    expected = _brute_force(texts, threshold)
    assert got.keys() == expected.keys()
    for i, j in got.items():  # the earliest kept match is reported, as brute force does
        assert j == expected[i]
    assert len(got) > 50  # the data really does contain near-duplicates


def test_near_dup_scales_to_many_seeds_sharing_common_phrases() -> None:
    rng = random.Random(0)
    topics = [f"topic{i}" for i in range(5000)]
    places = [f"place{i}" for i in range(300)]
    texts = [
        f"Write a short story about {rng.choice(topics)} set in {rng.choice(places)} "
        f"during the {rng.choice(['winter', 'summer', 'night', 'harvest'])} for a young reader"
        for _ in range(20000)
    ]
    dups = near_duplicate_pairs(texts, 0.8)
    # Same topic+place+season texts are exact repeats of each other and must all be caught.
    norm_first: dict[str, int] = {}
    for i, t in enumerate(texts):
        if t in norm_first:
            assert i in dups
        else:
            norm_first[t] = i


def test_sample_is_deterministic_stratified_and_order_independent() -> None:
    cats = {"a": 50, "b": 30, "c": 15, "d": 5}
    records = [rec(f"{c}{i}", f"Task {c} number {i}", c) for c, k in cats.items() for i in range(k)]
    s1 = sample_seeds(records, 20, seed=3)
    s2 = sample_seeds(records, 20, seed=3)
    assert s1 == s2 and len(s1) == 20
    assert Counter(r.category for r in s1) == {"a": 10, "b": 6, "c": 3, "d": 1}
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert {r.id for r in sample_seeds(shuffled, 20, seed=3)} == {r.id for r in s1}
    assert {r.id for r in sample_seeds(records, 20, seed=4)} != {r.id for r in s1}
    # returned in input order
    order = {r.id: i for i, r in enumerate(records)}
    assert [order[r.id] for r in s1] == sorted(order[r.id] for r in s1)


def test_sample_gives_every_stratum_one_when_room_and_handles_edges() -> None:
    records = [rec(i, f"big {i}", "big") for i in range(97)] + [
        rec(f"s{i}", f"small {i}", cat) for i, cat in enumerate(["x", "y", None])
    ]
    got = Counter(r.category for r in sample_seeds(records, 8, seed=0))
    assert got == {"big": 5, "x": 1, "y": 1, None: 1}
    assert sample_seeds(records, 1000, seed=0) == records
    assert sample_seeds(records, 0, seed=0) == []
    assert len(sample_seeds(records, 10, seed=0, stratify_by=None)) == 10
    assert len(sample_seeds(records, 2, seed=0)) == 2  # fewer slots than strata
    with pytest.raises(ValueError, match="not a SeedRecord field"):
        sample_seeds(records, 5, seed=0, stratify_by="colour")


def test_allocation_sums_to_n_for_many_shapes() -> None:
    rng = random.Random(11)
    for _ in range(50):
        sizes = [rng.randint(1, 40) for _ in range(rng.randint(1, 8))]
        records = [
            rec(f"{k}-{i}", f"t {k} {i}", f"c{k}")
            for k, size in enumerate(sizes)
            for i in range(size)
        ]
        n = rng.randint(0, len(records))
        out = sample_seeds(records, n, seed=rng.randint(0, 99))
        assert len(out) == n and len({r.id for r in out}) == n


def test_seed_report_counts() -> None:
    records = [rec(1, BASE), rec(2, BASE), rec(3, "too short"), rec(4, BASE + " today")]
    result = filter_seeds(records, min_words=3)
    load = LoadResult(records, [SkipReason("f.json", 4, "no human turn")] * 2)
    report = SeedReport.from_filter(result, load)
    assert report.input_count == 4 and report.kept_count == 1
    assert report.dropped == {"too_short": 1, "exact_duplicate": 1, "near_duplicate": 1}
    assert report.skipped == {"no human turn": 2}
    report.add_decontamination(["ifeval"])
    assert report.kept_count == 0 and report.decontaminated == {"ifeval": 1}
    assert "near_duplicate=1" in report.summary()
    assert result.report.dropped == report.dropped
    assert report.to_dict()["skipped"] == {"no human turn": 2}


def test_word_shingles_short_text_is_one_shingle() -> None:
    assert word_shingles("two words") == frozenset({"two words"})
    assert word_shingles("") == frozenset()
    assert len(word_shingles(" ".join(itertools.repeat("a", 10)))) == 1
