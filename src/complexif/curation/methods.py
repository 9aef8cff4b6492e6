"""Which curated data trains: From Complex to Simple, Conifer, or both (``curation.method`` for
SFT, ``curation.dpo_method`` for DPO's pairs).

Each method's records are first cut to its share (``fcs_ratio``/``conifer_ratio``, a seeded
subset that keeps their order), then, for ``both``, the smaller set is spread evenly through the
larger one: FCS records come in easy-to-hard order and Conifer's are conversations already
ordered easy-to-hard within, so every part of the curriculum sees both kinds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from complexif.config import CurationConfig

Record = dict[str, Any]
Method = Literal["fcs", "conifer", "both"]


def keep_share(records: Sequence[Record], ratio: float, seed: int) -> list[Record]:
    """A seeded ``round(ratio * n)`` of ``records``, in their original order."""
    n = round(ratio * len(records))
    if n >= len(records):
        return list(records)
    picked = set(random.Random(seed).sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in picked]


def interleave(a: Sequence[Record], b: Sequence[Record]) -> list[Record]:
    """Both lists in their own order, the shorter spread at even intervals through the longer."""
    major, minor = (a, b) if len(a) >= len(b) else (b, a)
    if not minor:
        return list(major)
    out: list[Record] = []
    j = 0
    for i, rec in enumerate(major):
        # Slot j of the minor list goes after major position floor((j + 1) * len/ (m + 1)).
        while j < len(minor) and (j + 1) * len(major) <= i * (len(minor) + 1):
            out.append(minor[j])
            j += 1
        out.append(rec)
    out.extend(minor[j:])
    return out


def combine(
    fcs: Sequence[Record], conifer: Sequence[Record], cfg: CurationConfig, method: Method
) -> tuple[list[Record], dict[str, int]]:
    """The records ``method`` asks for (``cfg.method`` for SFT, ``cfg.dpo_method`` for DPO),
    each labelled with the method it came from (``source``), and how many came from each."""
    fcs_part, conifer_part = [], []
    if method != "conifer":
        fcs_part = [{**r, "source": "fcs"} for r in keep_share(fcs, cfg.fcs_ratio, cfg.seed)]
    if method != "fcs":
        conifer_part = [
            {**r, "source": "conifer"} for r in keep_share(conifer, cfg.conifer_ratio, cfg.seed)
        ]
    counts = {"fcs": len(fcs_part), "conifer": len(conifer_part)}
    return interleave(fcs_part, conifer_part), counts
