"""Build SFT records and DPO pairs from verified answers (From Complex to Simple, last step).

Answers are grouped by instruction: the student may have sampled several, each with its own
correction trajectory. SFT targets are finished answers that pass every constraint (the ones that
passed as sampled first, then those needing the fewest fixes); an answer cut off by the token
limit is never a target, not even after a repair. DPO pairs the best target, as ``chosen``, with
failing answers as ``rejected``: first the student's original answer (the most on-policy
contrast, always kept), then the other samples' failing originals, then the intermediate answers
of the correction chains, latest first.

With ``targets="all"`` (the Generation baseline) every finished answer is an SFT target as written;
DPO pairs are built the same way in both modes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from complexif.ids import content_id

Curriculum = Literal["easy_to_hard", "shuffle", "none"]
Targets = Literal["verified", "all"]


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


def _finished(c: dict[str, Any]) -> bool:
    return c.get("final_finish_reason", "stop") != "length"


def _by_instruction(corrections: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in corrections:
        groups.setdefault(c["instruction_id"], []).append(c)
    return groups


def _targets(group: list[dict[str, Any]], mode: Targets, k: int) -> list[dict[str, Any]]:
    """Up to ``k`` corrections with distinct final answers to train on, best first."""
    usable = [c for c in group if _finished(c) and (mode == "all" or c["status"] == "verified")]
    usable.sort(key=lambda c: (c["n_fixes"], not c["initial_pass"], c["id"]))
    out, seen = [], set()
    for c in usable:
        text = c["final_response"].strip()
        if text and text not in seen:
            seen.add(text)
            out.append(c)
        if len(out) == k:
            break
    return out


def build_sft(
    corrections: Sequence[dict[str, Any]],
    curriculum: Curriculum,
    seed: int,
    targets: Targets,
    max_targets_per_prompt: int,
) -> list[dict[str, Any]]:
    out = []
    for group in _by_instruction(corrections).values():
        for c in _targets(group, targets, max_targets_per_prompt):
            out.append(
                {
                    "id": content_id(c["id"], c["final_response"], prefix="sft-"),
                    "prompt": c["prompt"],
                    "messages": [
                        {"role": "user", "content": c["prompt"]},
                        {"role": "assistant", "content": c["final_response"]},
                    ],
                    "finish_reason": c.get("final_finish_reason", "stop"),
                    "n_fixes": c["n_fixes"],
                    **_lineage(c),
                }
            )
    return _order(out, curriculum, seed)


def _failing(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in c["trajectory"] if a["accepted"] and not all(a["verdicts"])]


def _rejected_candidates(chosen: dict[str, Any], group: list[dict[str, Any]]) -> list[dict]:
    """Failing answers for ``chosen``, in the order they are worth most as contrasts."""
    others = sorted((c for c in group if c is not chosen), key=lambda c: c["id"])
    originals = [f[0] for c in [chosen, *others] if (f := _failing(c)) and f[0]["step"] == 0]
    later = [a for c in [chosen, *others] for a in reversed(_failing(c)) if a["step"] > 0]
    return originals + later


def build_dpo(
    corrections: Sequence[dict[str, Any]],
    max_pairs_per_prompt: int,
    curriculum: Curriculum,
    seed: int,
) -> list[dict[str, Any]]:
    out = []
    for group in _by_instruction(corrections).values():
        best = _targets(group, "verified", 1)
        if not best:
            continue
        c = best[0]
        chosen = c["final_response"]
        seen: set[str] = set()
        for attempt in _rejected_candidates(c, group):
            rejected = attempt["response"]
            if rejected.strip() == chosen.strip() or rejected in seen or not rejected.strip():
                continue
            seen.add(rejected)
            out.append(
                {
                    "id": content_id(c["id"], chosen, rejected, prefix="dpo-"),
                    "prompt": [{"role": "user", "content": c["prompt"]}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "chosen_finish_reason": c.get("final_finish_reason", "stop"),
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
            if len(seen) >= max_pairs_per_prompt:
                break
    return _order(out, curriculum, seed)
