"""Pieces shared by SFT and DPO: LoRA or full fine-tuning, device flags, resumable checkpoints,
saving (an adapter stack or whole weights), loss history.

Every function here runs in each process of a multi-process run (``train.distributed``); the
trainer splits each batch between them, and only the main process writes the model. The
collective steps (the trainer's own, the barriers in :func:`fit`, the weight gather in
:func:`save_trained`) are reached by every process, so none waits on one that will not come.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from complexif.config import LoraConfig, TrainCommon
from complexif.ids import content_id
from complexif.llm.stored_model import load_causal_lm, save_merged, save_stack
from complexif.llm.transformers_backend import (
    model_fingerprint,
    resolve_device,
    resolve_precision,
)
from complexif.runtime import is_main_process, world_size

log = logging.getLogger(__name__)


def peft_config(cfg: TrainCommon):
    """The LoRA adapter to train, or None for a full fine-tune."""
    from peft import LoraConfig as PeftLoraConfig

    if cfg.finetune == "full":
        return None
    lora: LoraConfig = cfg.lora
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
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "num_train_epochs": cfg.epochs,
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
        "save_strategy": "steps" if cfg.checkpoint_steps else "no",
        "save_steps": cfg.checkpoint_steps or 500,
        "save_total_limit": 1,
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


def load_policy(model_dir: str | Path, device: str, precision: str):
    """The model to train and its tokenizer. On a GPU a bf16 run holds the frozen weights in
    bf16; on a CPU they stay fp32 under autocast (bf16 storage measured slower there)."""
    from transformers import AutoTokenizer

    device = resolve_device(device)
    bf16 = train_precision(precision, device) == "bfloat16"
    dtype = torch.bfloat16 if bf16 and device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return load_causal_lm(model_dir, dtype), tokenizer


CHECKPOINT_ROOT = Path(".cache/complexif/checkpoints")


@dataclass
class TrainResult:
    metrics: dict[str, float]
    history: list[dict[str, float]]


@contextmanager
def work_dir(
    stage: str, cfg: TrainCommon, records: Sequence[dict[str, Any]], model_dir: str | Path
) -> Iterator[Path]:
    """The trainer's output directory.

    With ``checkpoint_steps`` it is kept under :data:`CHECKPOINT_ROOT` (outside DVC's outputs,
    which DVC deletes before a stage runs), named by a hash of the stage, params, data, starting
    weights and number of processes, so only an interrupted run of exactly this training resumes
    from it; the main process removes it once the model is saved (:func:`fit` ends on a barrier,
    so no process is still writing to it). Without checkpoints it is a temporary directory, one
    per process.
    """
    if not cfg.checkpoint_steps:
        with tempfile.TemporaryDirectory(prefix=f"{stage}-") as tmp:
            yield Path(tmp)
        return
    # A checkpoint holds one RNG state per process and a data position in global batches: it
    # resumes only a run of as many processes. One process keeps the key it had before.
    processes = [world_size()] if world_size() > 1 else []
    key = content_id(
        stage,
        cfg.model_dump(),
        [r.get("id") for r in records],
        model_fingerprint(model_dir),
        *processes,
    )
    path = CHECKPOINT_ROOT / f"{stage}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    if is_main_process():
        shutil.rmtree(path, ignore_errors=True)


def drop_partial_checkpoints(work: Path) -> None:
    """Remove checkpoints cut off while being saved (a stop signal, a kill, a full disk).

    The trainer writes a checkpoint in place and its ``trainer_state.json`` last; resuming from
    one without a readable state would restart the step count on half-saved weights, or fail.
    """
    for ckpt in sorted(work.glob("checkpoint-*")):
        try:
            json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
            continue
        except (OSError, ValueError):
            pass
        log.warning("removing %s: it was cut off while being saved", ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)


def fit(
    trainer,
    work: Path,
    tokenizer,
    out_dir: str | Path,
    n_rows: int,
    unit: str,
    start_dir: str | Path,
    cfg: TrainCommon,
) -> TrainResult:
    """Train (resuming from the last whole checkpoint in ``work`` if any) and save as ``cfg.save``
    says.

    In a multi-process run every process calls this; the main one alone clears cut-off
    checkpoints (the others wait, so all agree on whether to resume) and writes ``out_dir``.
    """
    if trainer.is_world_process_zero():
        drop_partial_checkpoints(work)
    trainer.accelerator.wait_for_everyone()
    resume = any(work.glob("checkpoint-*"))
    if resume:
        log.info("resuming from the last checkpoint in %s", work)
    out = trainer.train(resume_from_checkpoint=True if resume else None)
    save_trained(trainer, tokenizer, out_dir, start_dir, work, cfg)
    metrics = {k: float(v) for k, v in out.metrics.items() if isinstance(v, int | float)}
    metrics[unit] = float(n_rows)
    return TrainResult(metrics=metrics, history=loss_history(trainer))


def save_trained(
    trainer, tokenizer, out_dir: str | Path, start_dir: str | Path, scratch: Path, cfg: TrainCommon
) -> None:
    """Write the trained model to ``out_dir`` (see :func:`save_output`), from the main process.

    Under FSDP or DeepSpeed a process may hold only a shard of the weights: the trainer's own
    save gathers them (every process takes part) into ``scratch``, and the main process rebuilds
    the model from the starting weights and that save. Otherwise (one process, DDP) the main
    process's copy is whole. Ends on a barrier: when it returns, the model is on disk and no
    process still writes to ``scratch``.
    """
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        gathered = scratch / "gathered"
        trainer.save_model(str(gathered))
        if trainer.is_world_process_zero():
            model = reload_saved(gathered, start_dir)
            save_output(model, tokenizer, out_dir, start_dir, cfg.save, cfg.merged_dtype)
    elif trainer.is_world_process_zero():
        save_output(trainer.model, tokenizer, out_dir, start_dir, cfg.save, cfg.merged_dtype)
    trainer.accelerator.wait_for_everyone()


def reload_saved(saved: Path, start_dir: str | Path):
    """The model a trainer's ``save_model`` wrote to ``saved``, in fp32 on the CPU: a LoRA adapter
    (over the starting weights) or a whole fine-tuned model."""
    from transformers import AutoModelForCausalLM

    if (saved / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(load_causal_lm(start_dir, torch.float32), str(saved))
    return AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32)


def save_output(
    model, tokenizer, out_dir: str | Path, start_dir: str | Path, save: str, merged_dtype: str
) -> None:
    """A LoRA model with ``save: adapter`` is stored as an adapter stack over the base model
    (:mod:`complexif.llm.stored_model`); anything else (``save: merged``, a full fine-tune) as
    whole weights in ``merged_dtype``."""
    if save == "adapter" and hasattr(model, "merge_and_unload"):
        save_stack(model, tokenizer, out_dir, start_dir)
    else:
        save_merged(model, tokenizer, out_dir, getattr(torch, merged_dtype))


def loss_history(trainer) -> list[dict[str, float]]:
    """The logged training curve: one row per logging step (step, loss and any reward metrics)."""
    rows = []
    for entry in trainer.state.log_history:
        if "loss" in entry and "step" in entry:
            rows.append({k: float(v) for k, v in entry.items() if isinstance(v, int | float)})
    return rows
