"""One view of a curated row, whatever made it: the instruction, the answer, the conversation's
shape and its constraints, as the analysis and the judge's scores need them.

SFT rows carry ``messages`` (FCS: one user and one assistant turn; Conifer: the easy-to-hard
levels as one conversation); DPO rows carry ``prompt`` (a list of messages), ``chosen`` and
``rejected`` (one assistant message each). The instruction is the conversation's last user turn
(Conifer's hardest level) and the response the answer to it, so a multi-turn row is scored on
what it finally teaches. General chat rows (``{"id", "messages"}``) read the same way, which
lets them stand in as the ShareGPT-style reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.io import DataError, iter_jsonl


@dataclass(frozen=True)
class Sample:
    """A curated row as the analysis sees it.

    ``turns`` counts user turns. ``constraint_types`` are the verifiable constraint ids of an
    FCS row (empty for Conifer, whose constraints are free text); ``n_constraints`` is what the
    row states (None when it states nothing); ``levels`` are a Conifer row's difficulty levels.
    ``rejected`` is a DPO pair's losing answer (None for SFT rows).
    """

    id: str
    source: str
    instruction: str
    response: str
    turns: int
    n_constraints: int | None = None
    constraint_types: tuple[str, ...] = ()
    levels: tuple[int, ...] = ()
    rejected: str | None = None


def _messages(where: str, value: Any, field: str) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("content"), str) for m in value
    ):
        raise DataError(f"{where}: field {field!r} must be a list of {{role, content}} messages")
    return value


def _last(where: str, messages: Sequence[Mapping[str, Any]], role: str, field: str) -> str:
    for m in reversed(messages):
        if m.get("role") == role:
            return m["content"]
    raise DataError(f"{where}: field {field!r} has no {role} message")


def to_sample(where: str, rec: Mapping[str, Any]) -> Sample:
    """The sample of one SFT, DPO or chat row; ``where`` ("file:line") names it in errors."""
    if not isinstance(rec.get("id"), str):
        raise DataError(f"{where}: missing field 'id'")
    rejected = None
    if "chosen" in rec:
        for name in ("prompt", "rejected"):
            if name not in rec:
                raise DataError(f"{where}: missing field {name!r} (a DPO row)")
        prompt = _messages(where, rec["prompt"], "prompt")
        chosen = _messages(where, rec["chosen"], "chosen")
        conversation = [*prompt, *chosen]
        response = _last(where, chosen, "assistant", "chosen")
        rejected = _last(
            where, _messages(where, rec["rejected"], "rejected"), "assistant", "rejected"
        )
    elif "messages" in rec:
        conversation = _messages(where, rec["messages"], "messages")
        response = _last(where, conversation, "assistant", "messages")
    else:
        raise DataError(f"{where}: missing field 'messages' (SFT) or 'chosen' (DPO)")
    n = rec.get("n_constraints")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
        raise DataError(f"{where}: field 'n_constraints' must be int, got {type(n).__name__}")
    types = rec.get("instruction_id_list") or ()
    levels = rec.get("levels") or ()
    return Sample(
        id=rec["id"],
        source=str(rec.get("source") or ""),
        instruction=_last(where, conversation, "user", "messages"),
        response=response,
        turns=sum(1 for m in conversation if m.get("role") == "user"),
        n_constraints=n,
        constraint_types=tuple(str(t) for t in types),
        levels=tuple(int(level) for level in levels),
        rejected=rejected,
    )


def to_samples(where: str, records: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Samples of in-memory rows; errors name ``where`` and the row's index."""
    return [to_sample(f"{where}[{i}]", rec) for i, rec in enumerate(records)]


def read_samples(path: str | Path) -> list[Sample]:
    """Samples of a JSONL file; errors name the file and line."""
    return [to_sample(f"{path}:{lineno}", rec) for lineno, rec in iter_jsonl(path)]
