"""What the training stages write to git-tracked and DVC-hashed files is the same on every run of
the same training: no speed figures in metrics/train_*.json or models/*/train_metrics.json (they
go to MLflow), no transformers release in models/sft and models/dpo."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from complexif.llm.stored_model import save_merged
from complexif.training.common import TrainResult
from complexif.training.report import log_training
from tests.llm.test_model_source import as_transformers, files

MODEL_FIGURES = {
    "total_flos": 15208158744576.0,
    "train_loss": 1.0534168283144634,
    "mean_token_accuracy": 0.7258677780628204,
    "num_tokens": 21856.0,
    "epoch": 2.0,
    "n_examples": 43.0,
}


class RecordingRun:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))


def _result(runtime: float) -> TrainResult:
    # What Trainer.train() reports: its speed figures beside the model's.
    speed = {
        "train_runtime": runtime,
        "train_samples_per_second": 86.0 / runtime,
        "train_steps_per_second": 12.0 / runtime,
    }
    history = [{"step": 1.0, "loss": 1.5, "learning_rate": 1e-4, "epoch": 1.0}]
    return TrainResult(metrics={**speed, **MODEL_FIGURES}, history=history)


def test_metrics_file_is_identical_across_runs_of_different_speed(tmp_path: Path) -> None:
    written = []
    runs = []
    for i, runtime in enumerate([193.4878, 268.4857]):
        run = RecordingRun()
        metrics, curve = tmp_path / f"m{i}.json", tmp_path / f"c{i}.csv"
        detail = tmp_path / f"sft{i}" / "train_metrics.json"
        log_training(run, _result(runtime), str(metrics), str(curve), str(detail))
        written.append((metrics.read_bytes(), curve.read_bytes(), detail.read_bytes()))
        runs.append(run)
    assert written[0] == written[1]
    # The DVC metrics file: the headline only; every figure of the model beside it.
    assert json.loads(written[0][0]) == {"train_loss": 1.0534}
    assert json.loads(written[0][2]) == MODEL_FIGURES
    # The speed figures are still recorded, in MLflow.
    assert runs[0].metrics["final.train_runtime"] == 193.4878
    assert runs[1].metrics["final.train_runtime"] == 268.4857
    # The loss curve DVC plots is kept with the run too.
    assert runs[0].artifacts == [str(tmp_path / "c0.csv")]
    assert {"final.train_samples_per_second", "final.train_steps_per_second"} <= set(
        runs[0].metrics
    )
    assert runs[0].metrics["final.train_loss"] == MODEL_FIGURES["train_loss"]


def test_trained_model_is_saved_with_the_same_bytes_under_any_transformers_release(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SimpleNamespace(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    outputs = []
    for i, version in enumerate(["5.3.1", "5.99.0"]):
        with monkeypatch.context() as m:
            as_transformers(m, version)
            save_merged(trainer.model, tokenizer, tmp_path / f"sft{i}", torch.float32)
        outputs.append(files(tmp_path / f"sft{i}"))
    assert outputs[0].keys() == outputs[1].keys()
    assert [n for n in outputs[0] if outputs[0][n] != outputs[1][n]] == []
