"""Turn the pipeline's SFT/DPO records into the dataset formats TRL reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset


def sft_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """Conversational prompt-completion rows: the loss falls on the last assistant turn only.

    Earlier turns (an easy-to-hard multi-turn sample, say) stay in the prompt as context.
    """
    rows = []
    for rec in records:
        messages = rec["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError(
                f"SFT record {rec.get('id')!r}: the last message must be the assistant's"
            )
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return Dataset.from_list(rows)


def dpo_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """Conversational preference rows (``prompt`` messages, one-message ``chosen``/``rejected``)."""
    rows = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in records
    ]
    return Dataset.from_list(rows)
