"""Choosing the next token of each row: greedy, or temperature + top-p from a per-row generator.

Each sampled sequence draws from its own ``torch.Generator`` seeded by its request's seed, so its
answer does not depend on which other requests shared its batch, nor on when it was admitted.
"""

from __future__ import annotations

import torch


def top_p_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """One token from ``logits`` [vocab] at ``temperature``, keeping the smallest set of tokens
    whose probability reaches ``top_p`` (nucleus sampling, as transformers' TopPLogitsWarper)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # A token stays if the mass before it is below top_p: the first always stays.
        drop = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_probs.cpu(), 1, generator=generator)
        return int(order[choice.to(order.device)])
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


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
