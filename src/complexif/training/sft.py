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

__all__ = ["TrainResult", "train_sft", "truncate_tokenized", "with_general_data"]


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
    ``out_dir``.

    With ``curriculum`` the records are consumed in the given (easy-to-hard) order instead of
    being shuffled.
    """
    from trl import SFTConfig, SFTTrainer

    if not records:
        raise ValueError("no SFT records to train on")
    records = with_general_data(records, cfg)
    model, tokenizer = load_policy(base_dir, device, cfg.precision)
    dataset = sft_dataset(records)
    with work_dir("sft", cfg, records, base_dir) as work:
        kwargs = trainer_kwargs(cfg, device, work, list(report_to))
        if cfg.padding_free:
            # TRL refuses max_length with padding-free batches unless the data comes truncated:
            # it is truncated below, after TRL has tokenized it, exactly as TRL would.
            kwargs["max_length"] = None
        args = SFTConfig(
            **kwargs,
            completion_only_loss=True,
            packing=False,
            padding_free=cfg.padding_free,
            train_sampling_strategy="sequential" if curriculum else "random",
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
        )
        if cfg.padding_free:
            trainer.train_dataset = truncate_tokenized(trainer.train_dataset, cfg.max_length)
        return fit(trainer, work, tokenizer, out_dir, len(dataset), "n_examples")


def truncate_tokenized(dataset, max_length: int):
    """TRL's own truncation of a tokenized SFT dataset (keep the first ``max_length`` tokens,
    drop examples left with no completion token), for the padding-free path where TRL skips it."""

    def cut(example: dict[str, Any]) -> dict[str, Any]:
        return {k: example[k][:max_length] for k in ("input_ids", "labels") if k in example}

    dataset = dataset.map(cut)
    if "labels" in dataset.column_names:
        dataset = dataset.filter(lambda ex: any(label != -100 for label in ex["labels"]))
    return dataset
