"""Supervised fine-tuning with TRL's SFTTrainer and a LoRA adapter, merged on save."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.config import SFTTrainConfig
from complexif.training.common import (
    load_policy,
    loss_history,
    merge_and_save,
    peft_config,
    trainer_kwargs,
)
from complexif.training.data import sft_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    metrics: dict[str, float]
    history: list[dict[str, float]]


def train_sft(
    records: Sequence[dict[str, Any]],
    base_dir: str | Path,
    out_dir: str | Path,
    cfg: SFTTrainConfig,
    device: str = "auto",
    curriculum: bool = True,
    report_to: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune ``base_dir`` on ``records`` and write the merged model to ``out_dir``.

    With ``curriculum`` the records are consumed in the given (easy-to-hard) order instead of
    being shuffled.
    """
    from trl import SFTConfig, SFTTrainer

    if not records:
        raise ValueError("no SFT records to train on")
    model, tokenizer = load_policy(base_dir, device, cfg.precision)
    dataset = sft_dataset(records)
    with tempfile.TemporaryDirectory(prefix="sft-") as work:
        kwargs = trainer_kwargs(cfg, device, Path(work), list(report_to))
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
            peft_config=peft_config(cfg.lora),
        )
        if cfg.padding_free:
            trainer.train_dataset = truncate_tokenized(trainer.train_dataset, cfg.max_length)
        out = trainer.train()
        merge_and_save(trainer, tokenizer, out_dir)
    history = loss_history(trainer)
    metrics = {k: float(v) for k, v in out.metrics.items() if isinstance(v, int | float)}
    metrics["n_examples"] = float(len(dataset))
    return TrainResult(metrics=metrics, history=history)


def truncate_tokenized(dataset, max_length: int):
    """TRL's own truncation of a tokenized SFT dataset (keep the first ``max_length`` tokens,
    drop examples left with no completion token), for the padding-free path where TRL skips it."""

    def cut(example: dict[str, Any]) -> dict[str, Any]:
        return {k: example[k][:max_length] for k in ("input_ids", "labels") if k in example}

    dataset = dataset.map(cut)
    if "labels" in dataset.column_names:
        dataset = dataset.filter(lambda ex: any(label != -100 for label in ex["labels"]))
    return dataset
