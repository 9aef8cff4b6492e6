"""Mix general chat data into the SFT set, spread evenly through it.

Both papers mix general instruction data (ShareGPT) into training so the model keeps its general
ability while it learns to follow constraints. With a curriculum the curated records are in
easy-to-hard order; general rows are interleaved at even intervals so every stage of the
curriculum sees some.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from complexif.io import DataError, iter_jsonl
from complexif.quality.derived import messages_ok


def load_general(path: str | Path) -> list[dict[str, Any]]:
    """Conversations from ``path``: each line ``{"messages": [...]}`` ending in an assistant turn."""
    rows = []
    for line_no, row in iter_jsonl(path):
        messages = row.get("messages")
        if not messages_ok(messages):
            raise DataError(
                f"{path}:{line_no}: field 'messages' must be a list of {{role, content}} turns "
                "ending in an assistant turn"
            )
        rows.append({"id": row.get("id", f"general-{line_no}"), "messages": messages})
    if not rows:
        raise DataError(f"{path}: no conversations")
    return rows


def mix_general(
    records: Sequence[dict[str, Any]],
    general: Sequence[dict[str, Any]],
    ratio: float,
    seed: int,
) -> list[dict[str, Any]]:
    """``records`` with ``round(ratio * len(records))`` general rows (at most all of them)
    inserted at even intervals; the general rows are a seeded random sample."""
    want = min(len(general), round(ratio * len(records)))
    if want <= 0:
        return list(records)
    picked = random.Random(seed).sample(list(general), want)
    out: list[dict[str, Any]] = []
    step = (len(records) + 1) / (want + 1)
    positions = {round(step * (i + 1)) for i in range(want)}
    g = iter(picked)
    for i, rec in enumerate(records):
        if i in positions:
            out.append(next(g))
        out.append(rec)
    out.extend(g)  # positions that rounded onto the same slot, or past the end
    return out
