"""Turn seeds into verifiable complex instructions (From Complex to Simple, step 1)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from complexif.constraints.composer import compose, sample_k
from complexif.constraints.phrasing import Phrasebook
from complexif.constraints.registry import INSTRUCTION_IDS
from complexif.ids import content_id


def allowed_instruction_ids(exclude: Iterable[str]) -> list[str]:
    exclude = list(exclude)
    unknown = sorted(set(exclude) - set(INSTRUCTION_IDS))
    if unknown:
        raise ValueError(f"compose.exclude_ids: unknown instruction id(s) {unknown}")
    return [i for i in INSTRUCTION_IDS if i not in exclude]


def compose_instructions(
    seeds: Sequence[dict[str, Any]],
    phrasebook: Phrasebook,
    k_distribution: dict[int, float],
    per_seed: int,
    exclude_ids: Iterable[str],
    seed: int,
) -> list[dict[str, Any]]:
    """One record per (seed, variant): the seed, k constraints with arguments, and the full prompt.

    Each seed gets its own RNG derived from the global seed and the seed's id, so adding or
    removing one seed does not change the instructions composed for the others.
    """
    allowed = allowed_instruction_ids(exclude_ids)
    records = []
    for s in seeds:
        for variant in range(per_seed):
            rng = random.Random(content_id(seed, s["id"], variant))
            k = sample_k(k_distribution, rng)
            composed = compose(s["text"], k, rng, phrasebook, allowed_ids=allowed)
            records.append(
                {
                    "id": content_id(s["id"], composed.prompt, prefix="ins-"),
                    "seed_id": s["id"],
                    "seed_text": s["text"],
                    "variant": variant,
                    "prompt": composed.prompt,
                    "instruction_id_list": composed.instruction_id_list,
                    "kwargs": composed.kwargs,
                    "descriptions": composed.descriptions,
                    "n_constraints": len(composed.instruction_id_list),
                }
            )
    return records
