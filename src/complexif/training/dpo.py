"""DPO with an added SFT (NLL) loss on ``chosen``, the From-Complex-to-Simple objective.

TRL combines loss types: ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, w]`` is the DPO
sigmoid loss plus ``w`` times the negative log-likelihood of the chosen answer. The reference model
is the starting policy itself: with a LoRA adapter TRL computes reference log-probs with the adapter
disabled, so no second copy of the model is held in memory; a full fine-tune keeps a frozen copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from complexif.config import DPOTrainConfig
from complexif.training.common import (
    TrainResult,
    fit,
    load_policy,
    peft_config,
    trainer_kwargs,
    work_dir,
)
from complexif.training.data import dpo_dataset

log = logging.getLogger(__name__)


def train_dpo(
    records: Sequence[dict[str, Any]],
    start_dir: str | Path,
    out_dir: str | Path,
    cfg: DPOTrainConfig,
    *,
    device: str,
    report_to: Sequence[str] = (),
) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    if not records:
        raise ValueError("no DPO pairs to train on")
    model, tokenizer = load_policy(start_dir, device, cfg.precision)
    dataset = dpo_dataset(records)
    loss_type = ["sigmoid", "sft"] if cfg.sft_loss_weight > 0 else ["sigmoid"]
    loss_weights = [1.0, cfg.sft_loss_weight] if cfg.sft_loss_weight > 0 else [1.0]
    with work_dir("dpo", cfg, records, start_dir) as work:
        args = DPOConfig(
            **trainer_kwargs(cfg, device, work, list(report_to)),
            beta=cfg.beta,
            loss_type=loss_type,
            loss_weights=loss_weights,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
        )
        return fit(trainer, work, tokenizer, out_dir, len(dataset), "n_pairs", start_dir, cfg)
