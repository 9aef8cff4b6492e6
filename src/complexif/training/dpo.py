"""DPO with an added SFT (NLL) loss on ``chosen``, the From-Complex-to-Simple objective.

TRL combines loss types: ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, w]`` is the DPO
sigmoid loss plus ``w`` times the negative log-likelihood of the chosen answer. The reference model
is the starting policy itself: with a LoRA adapter TRL computes reference log-probs with the adapter
disabled, so no second copy of the model is held in memory.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from complexif.config import DPOTrainConfig
from complexif.training.common import (
    load_policy,
    loss_history,
    merge_and_save,
    peft_config,
    trainer_kwargs,
)
from complexif.training.data import dpo_dataset
from complexif.training.sft import TrainResult

log = logging.getLogger(__name__)


def train_dpo(
    records: Sequence[dict[str, Any]],
    sft_dir: str | Path,
    out_dir: str | Path,
    cfg: DPOTrainConfig,
    device: str = "auto",
    report_to: Sequence[str] = (),
) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    if not records:
        raise ValueError("no DPO pairs to train on")
    model, tokenizer = load_policy(sft_dir, device, cfg.precision)
    dataset = dpo_dataset(records)
    loss_type = ["sigmoid", "sft"] if cfg.sft_loss_weight > 0 else ["sigmoid"]
    loss_weights = [1.0, cfg.sft_loss_weight] if cfg.sft_loss_weight > 0 else [1.0]
    with tempfile.TemporaryDirectory(prefix="dpo-") as work:
        args = DPOConfig(
            **trainer_kwargs(cfg, device, Path(work), list(report_to)),
            beta=cfg.beta,
            loss_type=loss_type,
            loss_weights=loss_weights,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora),
        )
        out = trainer.train()
        merge_and_save(trainer, tokenizer, out_dir)
    metrics = {k: float(v) for k, v in out.metrics.items() if isinstance(v, int | float)}
    metrics["n_pairs"] = float(len(dataset))
    return TrainResult(metrics=metrics, history=loss_history(trainer))
