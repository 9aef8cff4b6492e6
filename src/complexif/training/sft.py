"""Supervised fine-tuning with TRL's SFTTrainer: LoRA (merged on save) or full fine-tuning."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from complexif.config import SFTTrainConfig
from complexif.training.common import (
    TrainResult,
    fit,
    load_policy,
    peft_config,
    trainer_kwargs,
    work_dir,
)
from complexif.training.data import sft_dataset
from complexif.training.mixing import load_general, mix_general

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "sft_trainer", "train_sft", "with_general_data"]


def with_general_data(records: Sequence[dict[str, Any]], cfg: SFTTrainConfig) -> list[dict]:
    """The curated records with ``cfg.general_data`` mixed in (unchanged when no path is set)."""
    g = cfg.general_data
    if g.ratio == 0:
        return list(records)
    mixed = mix_general(records, load_general(g.path), g.ratio, g.seed)
    log.info("SFT: %d curated + %d general rows", len(records), len(mixed) - len(records))
    return mixed


def train_sft(
    records: Sequence[dict[str, Any]],
    base_dir: str | Path,
    out_dir: str | Path,
    cfg: SFTTrainConfig,
    *,
    device: str,
    curriculum: bool,
    report_to: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune ``base_dir`` on ``records`` (plus any general data) and write the model to
    ``out_dir``. The loss falls on every assistant turn of each conversation.

    With ``curriculum`` the records are consumed in the given (easy-to-hard) order instead of
    being shuffled.
    """
    if not records:
        raise ValueError("no SFT records to train on")
    records = with_general_data(records, cfg)
    model, tokenizer = load_policy(base_dir, device, cfg.precision)
    dataset = sft_dataset(records, tokenizer, cfg.max_length)
    with work_dir("sft", cfg, records, base_dir) as work:
        trainer = sft_trainer(
            model,
            tokenizer,
            dataset,
            cfg,
            device=device,
            work=work,
            curriculum=curriculum,
            report_to=report_to,
        )
        return fit(trainer, work, tokenizer, out_dir, len(dataset), "n_examples", base_dir, cfg)


def sft_trainer(
    model,
    tokenizer,
    dataset,
    cfg: SFTTrainConfig,
    *,
    device: str,
    work: Path,
    curriculum: bool,
    report_to: Sequence[str] = (),
):
    """TRL's SFTTrainer on ``dataset`` (from :func:`sft_dataset`: tokenized, truncated, with its
    loss mask in ``assistant_masks``)."""
    from trl import SFTConfig, SFTTrainer

    kwargs = trainer_kwargs(cfg, device, work, list(report_to))
    # The rows come truncated to cfg.max_length already; TRL's max_length would only refuse
    # padding-free batches (it cannot truncate them itself).
    kwargs["max_length"] = None
    args = SFTConfig(
        **kwargs,
        # TRL labels a pre-tokenized row where its assistant_masks is 1; completion_only_loss
        # is about prompt-completion rows, which these are not.
        completion_only_loss=False,
        packing=False,
        padding_free=cfg.padding_free,
        train_sampling_strategy="sequential" if curriculum else "random",
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
    )
