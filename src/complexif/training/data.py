"""Turn the pipeline's SFT/DPO records into the dataset formats TRL reads."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from datasets import Dataset

log = logging.getLogger(__name__)


def sft_dataset(records: Sequence[dict[str, Any]], tokenizer, max_length: int) -> Dataset:
    """Tokenized rows (``input_ids``, ``assistant_masks``) with the loss on every assistant turn.

    TRL's ``SFTTrainer`` labels a pre-tokenized row's tokens where ``assistant_masks`` is 1. Each
    row keeps its first ``max_length`` tokens; a record left with no assistant token is dropped
    (TRL's own truncation, done here so the padded and padding-free paths share it).
    """
    rows, dropped = [], []
    for rec in records:
        ids, mask = assistant_token_mask(rec, tokenizer)
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            dropped.append(rec.get("id"))
            continue
        rows.append({"input_ids": ids, "assistant_masks": mask})
    if dropped:
        log.warning(
            "SFT: %d of %d records have no assistant token within max_length %d, dropped: %s",
            len(dropped),
            len(records),
            max_length,
            ", ".join(repr(i) for i in dropped[:5]) + (", ..." if len(dropped) > 5 else ""),
        )
    if not rows:
        raise ValueError(f"no SFT record has an assistant token within max_length {max_length}")
    return Dataset.from_list(rows)


def assistant_token_mask(record: dict[str, Any], tokenizer) -> tuple[list[int], list[int]]:
    """The record's conversation as the chat template tokenizes it, and a mask that is 1 on the
    tokens of every assistant turn (its content and end-of-turn scaffolding, as TRL's
    prompt-completion split gives the last turn) and 0 elsewhere.

    Each turn's tokens are located by rendering the conversation up to it: from the end of the
    turns before it plus the generation prompt, to the end of the turns up to it. That works with
    any chat template whose rendering of a conversation's first turns is a prefix of the whole
    rendering; a template that breaks it (one that drops earlier turns' reasoning, say) is an error
    rather than a silently misplaced mask.

    An assistant turn with ``"weight": 0`` (OpenAI's fine-tuning convention) is context, not a
    target: Conifer's external feedback shows a weak model's failing answer before the critique,
    and the model must not learn to write it. ``weight`` absent or None means trained.
    """
    rid = record.get("id")
    messages = record["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError(f"SFT record {rid!r}: the last message must be the assistant's")
    if messages[-1].get("weight") == 0:
        raise ValueError(f"SFT record {rid!r}: the last assistant turn has weight 0: no target")
    full = _chat_ids(tokenizer, messages, add_generation_prompt=False)
    mask = [0] * len(full)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight") == 0:
            continue
        if i == 0:
            raise ValueError(f"SFT record {rid!r}: messages[0]: an assistant turn answers nothing")
        start = _prefix_length(tokenizer, messages[:i], True, full, rid, i)
        end = _prefix_length(tokenizer, messages[: i + 1], False, full, rid, i)
        mask[start:end] = [1] * (end - start)
    return full, mask


def _chat_ids(tokenizer, messages: list[dict[str, Any]], add_generation_prompt: bool) -> list[int]:
    # As TRL tokenizes a conversation (trl.data_utils._tokenize), so the single-turn case gives
    # exactly the tokens and mask of TRL's prompt-completion path.
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(out["input_ids"])


def _prefix_length(
    tokenizer,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    full: list[int],
    rid: Any,
    turn: int,
) -> int:
    ids = _chat_ids(tokenizer, messages, add_generation_prompt)
    if full[: len(ids)] != ids:
        where = "before" if add_generation_prompt else "up to and including"
        raise ValueError(
            f"SFT record {rid!r}: messages[{turn}]: the chat template renders the turns {where} "
            "this assistant turn differently from the same turns in the whole conversation, so "
            "the turn's tokens cannot be located for the loss; use a chat template whose "
            "rendering of a conversation's first turns is a prefix of the whole rendering"
        )
    return len(ids)


def dpo_dataset(records: Sequence[dict[str, Any]]) -> Dataset:
    """Conversational preference rows (``prompt`` messages, one-message ``chosen``/``rejected``)."""
    rows = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in records
    ]
    return Dataset.from_list(rows)
