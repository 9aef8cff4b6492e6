"""Write a training run's metrics and loss curve where DVC and MLflow can show them."""

from __future__ import annotations

from typing import Any

from complexif.io import write_csv, write_json
from complexif.training.sft import TrainResult

CURVE_KEYS = ("step", "loss", "grad_norm", "learning_rate", "rewards/margins", "rewards/accuracies")


def log_training(run: Any, result: TrainResult, metrics_path: str, curve_path: str) -> None:
    write_json(metrics_path, result.metrics)
    curve = [{k: row[k] for k in CURVE_KEYS if k in row} for row in result.history]
    write_csv(curve_path, curve)
    run.log_metrics({f"final.{k}": v for k, v in result.metrics.items()})
