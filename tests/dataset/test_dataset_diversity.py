"""Pairwise TF-IDF cosine similarity of instructions, on hand sets whose answer is known."""

from __future__ import annotations

import json

import pytest

from complexif.dataset.diversity import HISTOGRAM_BINS, pairwise_similarity, sample_items


def test_identical_and_disjoint_instructions():
    curated = ["bake a lemon cake", "bake a lemon cake", "describe ocean waves at night"]
    d = pairwise_similarity(curated, [], max_items=10, seed=0)
    c = d.curated
    assert (c.method, c.n_total, c.n, c.n_pairs) == ("tfidf", 3, 3, 3)
    # Pairs (0,1) identical -> 1.0; (0,2) and (1,2) share no word -> 0.0.
    assert c.mean == pytest.approx(1 / 3)
    assert c.median == pytest.approx(0.0)
    assert len(c.counts) == HISTOGRAM_BINS and len(c.edges) == HISTOGRAM_BINS + 1
    assert c.counts[0] == 2 and c.counts[-1] == 1 and sum(c.counts) == 3
    assert (c.edges[0], c.edges[-1]) == (0.0, 1.0)


def test_partial_overlap_lies_strictly_between():
    d = pairwise_similarity(
        ["write a poem about rain", "write a story about snow"], [], max_items=10, seed=0
    )
    assert 0.0 < d.curated.mean < 1.0


def test_fewer_than_two_items_have_no_pairs():
    d = pairwise_similarity(["only one"], [], max_items=10, seed=0)
    for sim, n in ((d.curated, 1), (d.reference, 0)):
        assert (sim.n, sim.n_pairs) == (n, 0)
        assert (sim.mean, sim.median, sim.p90) == (None, None, None)
        assert sum(sim.counts) == 0
    json.dumps(d.to_dict(), allow_nan=False)


def test_pairs_are_i_below_j_and_sets_are_separate():
    curated = [f"topic{i} alpha beta" for i in range(7)]
    reference = [f"seed{i} gamma" for i in range(4)]
    d = pairwise_similarity(curated, reference, max_items=100, seed=0)
    assert d.curated.n_pairs == 7 * 6 // 2 == sum(d.curated.counts)
    assert d.reference.n_pairs == 4 * 3 // 2 == sum(d.reference.counts)
    # Curated items share "alpha beta", reference items "gamma": neither set is all-distinct.
    assert d.curated.mean > 0 and d.reference.mean > 0


def test_sampling_is_seeded_and_respects_max_items():
    items = [f"item number {i}" for i in range(50)]
    first = sample_items(items, 10, seed=3)
    assert len(first) == 10 and len(set(first)) == 10
    assert first == sample_items(items, 10, seed=3)
    assert first != sample_items(items, 10, seed=4)
    # The sample keeps the items' order.
    assert first == sorted(first, key=items.index)
    assert sample_items(items[:5], 10, seed=3) == items[:5]

    d = pairwise_similarity(items, items[:3], max_items=10, seed=3)
    assert (d.curated.n_total, d.curated.n, d.curated.n_pairs) == (50, 10, 45)
    assert (d.reference.n_total, d.reference.n, d.reference.n_pairs) == (3, 3, 3)
    assert d == pairwise_similarity(items, items[:3], max_items=10, seed=3)


def test_max_items_below_two_is_an_error():
    with pytest.raises(ValueError, match="max_items"):
        pairwise_similarity(["a b", "c d"], [], max_items=1, seed=0)


def test_texts_without_words_give_zero_similarity():
    d = pairwise_similarity(["", "  "], ["", "!"], max_items=10, seed=0)
    assert (d.curated.n_pairs, d.curated.mean) == (1, 0.0)
    assert d.reference.mean == 0.0
