"""Pieces shared by SFT and DPO: LoRA config, device flags, merge-and-save, loss history."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from complexif.config import LoraConfig, TrainCommon
from complexif.llm.model_source import atomic_dir
from complexif.llm.transformers_backend import resolve_device, resolve_precision

log = logging.getLogger(__name__)


def peft_config(lora: LoraConfig):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def trainer_kwargs(
    cfg: TrainCommon, device: str, output_dir: Path, report_to: list[str]
) -> dict[str, Any]:
    """TrainingArguments fields common to SFTConfig and DPOConfig."""
    device = resolve_device(device)
    on_gpu = device == "cuda"
    bf16 = train_precision(cfg.precision, device) == "bfloat16"
    return {
        "output_dir": str(output_dir),
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "warmup_steps": cfg.warmup_steps,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "logging_steps": cfg.logging_steps,
        "activation_checkpointing": cfg.activation_checkpointing,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "max_length": cfg.max_length,
        "save_strategy": "no",
        "report_to": report_to,
        "use_cpu": not on_gpu,
        # Mixed precision: fp32 master weights, bf16 autocast for the products (on a CPU with
        # AVX512-BF16/AMX as on a GPU, 3-5x faster matrix products than fp32).
        "bf16": bf16,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }


def train_precision(precision: str, device: str) -> str:
    """The precision a training run uses: ``precision`` resolved for ``device``."""
    device = resolve_device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "bfloat16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train precision bfloat16: this GPU has no bf16 support; use float32")
    return resolved


def load_policy(model_dir: str | Path, device: str, precision: str = "auto"):
    """The model to train and its tokenizer. On a GPU a bf16 run holds the frozen weights in
    bf16; on a CPU they stay fp32 under autocast (bf16 storage measured slower there)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    bf16 = train_precision(precision, device) == "bfloat16"
    dtype = torch.bfloat16 if bf16 and device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    return model, tokenizer


def merge_and_save(trainer, tokenizer, out_dir: str | Path) -> None:
    """Merge the LoRA adapter into the weights so later stages load a plain model directory."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = model.to(torch.float32) if model.dtype != torch.float32 else model
    # Trainers switch the KV cache off for training; the saved model is for generation.
    model.config.use_cache = True
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def loss_history(trainer) -> list[dict[str, float]]:
    """The logged training curve: one row per logging step (step, loss and any reward metrics)."""
    rows = []
    for entry in trainer.state.log_history:
        if "loss" in entry and "step" in entry:
            rows.append({k: float(v) for k, v in entry.items() if isinstance(v, int | float)})
    return rows
