"""Choosing the next token of each row: greedy, or temperature + top-p from a per-row generator.

Each sampled sequence draws from its own ``torch.Generator`` seeded by its request's seed, so its
answer does not depend on which other requests shared its batch, nor on when it was admitted.

The warping is done for all sampled rows at once (one batched sort per step instead of one per
row: with 96 sampled rows that was a third of the step time); only the uniform draw is per row,
from the row's generator, and the token is found by inverse-CDF over the row's nucleus.
"""

from __future__ import annotations

import torch

# Tokens sorted first when looking for a row's nucleus; more only if they do not hold it.
_HEAD = 64


def _nucleus(probs: torch.Tensor, top_ps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's tokens in descending probability (``order``) and their probabilities with
    everything outside the nucleus zeroed. Only the top ``_HEAD`` tokens are sorted when they
    hold the nucleus (almost always); rows where they do not get a full sort."""
    k = min(_HEAD, probs.shape[-1])
    sorted_p, order = probs.topk(k, dim=-1)
    short = sorted_p.sum(dim=-1) < top_ps
    if short.any():
        full_p, full_order = probs[short].sort(dim=-1, descending=True)
        sorted_p = torch.zeros(probs.shape, dtype=probs.dtype, device=probs.device)
        sorted_p[:, :k] = probs.topk(k, dim=-1).values
        order_all = torch.zeros(probs.shape, dtype=torch.long, device=probs.device)
        order_all[:, :k] = order
        sorted_p[short], order_all[short] = full_p, full_order
        order = order_all
    mass_before = sorted_p.cumsum(dim=-1) - sorted_p
    return sorted_p * (mass_before < top_ps[:, None]), order  # the top token is always kept


def sample_rows(
    logits: torch.Tensor,
    temperatures: torch.Tensor,
    top_ps: torch.Tensor,
    generators: list[torch.Generator],
) -> torch.Tensor:
    """One token per row of ``logits`` [rows, vocab]: softmax at the row's temperature, keep the
    smallest set of most likely tokens whose mass reaches the row's ``top_p`` (the nucleus, as
    transformers' ``TopPLogitsWarper`` keeps it), draw from it with the row's generator."""
    probs = torch.softmax(logits.float() / temperatures[:, None], dim=-1)
    kept, order = _nucleus(probs, top_ps)
    cdf = kept.cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(cdf.device)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)
    pos = pos.clamp(max=cdf.shape[-1] - 1)
    return order.gather(-1, pos).squeeze(-1)


def next_tokens(
    logits: torch.Tensor,
    temperatures: list[float],
    top_ps: list[float],
    generators: list[torch.Generator | None],
) -> list[int]:
    """The next token for every row of ``logits`` [rows, vocab]; greedy where temperature is 0."""
    chosen = logits.argmax(dim=-1)
    rows = [i for i, t in enumerate(temperatures) if t > 0.0]
    if rows:
        gens = [generators[i] for i in rows]
        assert all(g is not None for g in gens), "a sampled row needs its generator"
        picked = sample_rows(
            logits[rows],
            torch.tensor([temperatures[i] for i in rows], device=logits.device),
            torch.tensor([top_ps[i] for i in rows], device=logits.device),
            gens,  # type: ignore[arg-type]
        )
        chosen[rows] = picked.to(chosen.device)
    return chosen.tolist()


def make_generator(seed: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator
