"""Batched nucleus sampling: the right distribution, and each row's draw is its own."""

from __future__ import annotations

import math
from collections import Counter

import torch

from complexif.engine.sampling import make_generator, next_tokens, sample_rows

PROBS = [0.5, 0.3, 0.1, 0.06, 0.04]


def _logits(rows: int) -> torch.Tensor:
    return torch.log(torch.tensor([PROBS] * rows))


def test_draws_follow_the_renormalised_nucleus():
    gen = make_generator(0)
    counts = Counter(
        int(sample_rows(_logits(1), torch.tensor([1.0]), torch.tensor([0.85]), [gen])[0])
        for _ in range(6000)
    )
    # 0.5 + 0.3 = 0.8 < 0.85, so token 2 is in the nucleus; 0.9 >= 0.85, so 3 and 4 are not.
    assert set(counts) == {0, 1, 2}
    for token, p in zip((0, 1, 2), (0.5, 0.3, 0.1), strict=True):
        expected = p / 0.9
        assert math.isclose(counts[token] / 6000, expected, abs_tol=0.03), (token, counts)


def test_temperature_sharpens_and_top_p_one_keeps_everything():
    gen = make_generator(1)
    hot = Counter(
        int(sample_rows(_logits(1), torch.tensor([1.0]), torch.tensor([1.0]), [gen])[0])
        for _ in range(3000)
    )
    assert set(hot) == {0, 1, 2, 3, 4}
    cold = Counter(
        int(sample_rows(_logits(1), torch.tensor([0.05]), torch.tensor([1.0]), [gen])[0])
        for _ in range(300)
    )
    assert cold[0] == 300


def test_a_rows_draw_does_not_depend_on_its_batch():
    alone = [next_tokens(_logits(1), [0.9], [0.95], [make_generator(7)])[0] for _ in range(1)]
    gens = [make_generator(3), make_generator(7), None]
    crowd = next_tokens(_logits(3), [0.7, 0.9, 0.0], [0.9, 0.95, 1.0], gens)
    assert crowd[1] == alone[0]
    assert crowd[2] == 0  # greedy row
    # Same seeds, same sequence of draws.
    g1, g2 = make_generator(5), make_generator(5)
    a = [next_tokens(_logits(1), [1.0], [1.0], [g1])[0] for _ in range(50)]
    b = [next_tokens(_logits(1), [1.0], [1.0], [g2])[0] for _ in range(50)]
    assert a == b and len(set(a)) > 1


def test_a_flat_distribution_draws_beyond_the_first_sorted_tokens():
    # 200 equally likely tokens, top_p 0.9: the nucleus is 180 tokens, far more than the head
    # sorted first, so the full sort must take over; the last 20 are never drawn.
    logits = torch.zeros(2, 200)
    logits[0, 0] = 10.0  # row 0 is peaked (p = 0.99): its nucleus is one token
    gens = [make_generator(0), make_generator(1)]
    seen: set[int] = set()
    for _ in range(3000):
        tokens = sample_rows(logits, torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.9]), gens)
        assert int(tokens[0]) == 0
        seen.add(int(tokens[1]))
    assert 150 < len(seen) <= 180
