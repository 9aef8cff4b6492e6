"""Write a training run's metrics and loss curve where DVC and MLflow can show them (from the
main process of a multi-process run only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from complexif.io import write_csv, write_json
from complexif.runtime import is_main_process
from complexif.training.sft import TrainResult

HEADLINE_KEYS = ("train_loss",)
# Every figure of the model, beside it (models/<name>/): an output DVC caches with the model.
TRAIN_METRICS = "train_metrics.json"
DIGITS = 4
CURVE_KEYS = ("step", "loss", "grad_norm", "learning_rate", "rewards/margins", "rewards/accuracies")
# The Trainer's speed figures (train_runtime, train_samples_per_second, ...) and memory deltas
# measure the machine, not the model: they go to MLflow only, so the git-tracked metrics file
# comes out byte-identical from every run of the same training.
_MACHINE_SUFFIXES = ("_runtime", "_per_second")
_MACHINE_INFIXES = ("_mem_",)


def is_machine_metric(name: str) -> bool:
    return name.endswith(_MACHINE_SUFFIXES) or any(part in name for part in _MACHINE_INFIXES)


def tracked_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` without the figures that change from run to run of the same training."""
    return {k: v for k, v in metrics.items() if not is_machine_metric(k)}


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """What DVC tracks as the training's metric: the trainer's ``train_loss`` (its mean over
    the run; the curve is the plot), rounded like the benchmarks' headline figures. ``dvc
    metrics show`` puts every key of every metrics file in a column of one table, so the rest
    (epochs, tokens, entropy, ...) goes to the full file beside the model."""
    return {k: round(float(metrics[k]), DIGITS) for k in HEADLINE_KEYS if k in metrics}


def log_training(
    run: Any, result: TrainResult, metrics_path: str, curve_path: str, detail_path: str
) -> None:
    """``metrics_path``: the headline (DVC metrics); ``detail_path``: every figure of the
    model (``tracked_metrics``); ``curve_path``: the loss curve (DVC plots); MLflow gets all
    of them and the machine's speed figures too."""
    if not is_main_process():
        return  # the trainer averages the loss over processes: the main one has the run's figures
    write_json(metrics_path, headline(result.metrics))
    write_json(detail_path, tracked_metrics(result.metrics))
    curve = [{k: row[k] for k in CURVE_KEYS if k in row} for row in result.history]
    write_csv(curve_path, curve)
    run.log_metrics({f"final.{k}": v for k, v in result.metrics.items()})
    # The curve DVC plots, kept with the run (the trainer's own MLflow callback logs the steps).
    run.log_artifact(curve_path)
