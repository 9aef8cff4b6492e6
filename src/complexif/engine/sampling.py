"""Choosing the next token of each row: greedy, or temperature + top-p from a per-row generator.

Each sampled sequence draws from its own ``torch.Generator`` seeded by its request's seed, so its
answer does not depend on which other requests shared its batch, nor on when it was admitted.
"""

from __future__ import annotations

import torch


def top_p_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """One token from ``logits`` [vocab]: transformers' own temperature and nucleus (top-p)
    warpers, then a draw from the row's generator."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, logits.float()[None])
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    probs = torch.softmax(scores, dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def next_tokens(
    logits: torch.Tensor,
    temperatures: list[float],
    top_ps: list[float],
    generators: list[torch.Generator | None],
) -> list[int]:
    """The next token for every row of ``logits`` [rows, vocab]; greedy where temperature is 0."""
    chosen = logits.argmax(dim=-1).tolist()
    for row, temperature in enumerate(temperatures):
        if temperature > 0.0:
            generator = generators[row]
            assert generator is not None, "a sampled row needs its generator"
            chosen[row] = top_p_sample(logits[row], temperature, top_ps[row], generator)
    return chosen


def make_generator(seed: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator
