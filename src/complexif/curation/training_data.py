"""Build SFT records and DPO pairs from correction trajectories (From Complex to Simple, last step).

SFT: the final, verified answer of every verified trajectory. DPO: that answer as ``chosen`` beside
each earlier answer of its accepted chain that failed some constraint, as ``rejected``. Only
verified trajectories contribute, so ``chosen`` always passes every constraint.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from complexif.ids import content_id

Curriculum = Literal["easy_to_hard", "shuffle", "none"]


def _order(
    records: list[dict[str, Any]], curriculum: Curriculum, seed: int
) -> list[dict[str, Any]]:
    if curriculum == "easy_to_hard":
        # Stable: within a difficulty level, records keep a deterministic order by id.
        return sorted(records, key=lambda r: (r["n_constraints"], r["id"]))
    if curriculum == "shuffle":
        rng = random.Random(seed)
        records = list(records)
        rng.shuffle(records)
    return records


def _lineage(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "instruction_id": c["instruction_id"],
        "correction_id": c["id"],
        "instruction_id_list": c["instruction_id_list"],
        "kwargs": c["kwargs"],
        "n_constraints": c["n_constraints"],
    }


def build_sft(
    corrections: Sequence[dict[str, Any]], curriculum: Curriculum = "easy_to_hard", seed: int = 0
) -> list[dict[str, Any]]:
    out = []
    for c in corrections:
        if c["status"] != "verified":
            continue
        out.append(
            {
                "id": content_id(c["id"], c["final_response"], prefix="sft-"),
                "prompt": c["prompt"],
                "messages": [
                    {"role": "user", "content": c["prompt"]},
                    {"role": "assistant", "content": c["final_response"]},
                ],
                "n_fixes": c["n_fixes"],
                **_lineage(c),
            }
        )
    return _order(out, curriculum, seed)


def build_dpo(
    corrections: Sequence[dict[str, Any]],
    max_pairs_per_prompt: int = 3,
    curriculum: Curriculum = "easy_to_hard",
    seed: int = 0,
) -> list[dict[str, Any]]:
    out = []
    for c in corrections:
        if c["status"] != "verified":
            continue
        chosen = c["final_response"]
        # Latest failing answers first: they differ from `chosen` in the fewest constraints,
        # which is the contrast the method wants the model to learn.
        failing = [a for a in c["trajectory"] if a["accepted"] and not all(a["verdicts"])]
        seen: set[str] = set()
        pairs = 0
        for attempt in reversed(failing):
            rejected = attempt["response"]
            if rejected == chosen or rejected in seen:
                continue
            seen.add(rejected)
            out.append(
                {
                    "id": content_id(c["id"], chosen, rejected, prefix="dpo-"),
                    "prompt": [{"role": "user", "content": c["prompt"]}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "rejected_step": attempt["step"],
                    "rejected_failed": [
                        cid
                        for cid, ok in zip(
                            c["instruction_id_list"], attempt["verdicts"], strict=True
                        )
                        if not ok
                    ],
                    **_lineage(c),
                }
            )
            pairs += 1
            if pairs >= max_pairs_per_prompt:
                break
    return _order(out, curriculum, seed)
