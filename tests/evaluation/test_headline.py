"""The DVC metrics files hold each benchmark's headline figures; the full metrics stay beside the
answers (for the report) and go to MLflow under the names they always had."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from complexif.evaluation import benchmarks
from complexif.evaluation.headline import HEADLINES, headline
from complexif.tracking import flatten_metrics, numeric
from complexif.training.report import headline as train_headline
from stages import evaluate as stage
from tests.conftest import repo_params, updated

IFEVAL = {
    "prompt_level_strict_acc": 0.17,
    "inst_level_strict_acc": 0.2654320987654321,
    "prompt_level_loose_acc": 0.19,
    "inst_level_loose_acc": 0.2777777777777778,
    "num_prompts": 100,
    "num_instructions": 162,
    "per_instruction": {"punctuation:no_comma": {"strict": 0.5, "loose": 0.75, "count": 4}},
    "per_category": {"punctuation": {"strict": 0.5, "loose": 0.75, "count": 4}},
}
LEVELS = {f"level_{k}": 0.1 * k for k in range(1, 6)}
FOLLOWBENCH = {
    "hsr": {**LEVELS, "avg": 0.30000000000000004},
    "ssr": {**LEVELS, "avg": None},  # nothing scored
    "csl": 1.1666666666666667,
    "by_category": {"content": {"hsr": LEVELS, "ssr": LEVELS, "csl": 2.0}},
    "counts": {"items": 30, "rule_scored": 15, "judged": 0, "unparseable": 15},
    "judge": {"backend": "transformers", "model": "base"},
}


def test_headline_keeps_the_few_figures_rounded():
    assert headline("ifeval", IFEVAL) == {"prompt_strict": 0.17, "inst_strict": 0.2654}
    # A figure that could not be computed is left out (DVC shows '-'), not written as null.
    assert headline("followbench", FOLLOWBENCH) == {"hsr": 0.3, "csl": 1.1667}
    assert headline("infobench", {"drfr": 0.71234, "drfr_easy": 0.8, "counts": {}}) == {
        "drfr": 0.7123
    }
    assert train_headline({"train_loss": 0.9389938712120056, "epoch": 2.0}) == {"train_loss": 0.939}


def test_every_benchmark_the_stage_runs_has_a_headline():
    assert set(HEADLINES) == set(benchmarks.RUNNERS)


def test_a_missing_figure_or_benchmark_is_an_error_naming_it():
    with pytest.raises(KeyError, match=r"followbench metrics have no 'ssr\.avg'"):
        headline("followbench", {"hsr": {"avg": 0.1}, "ssr": {}, "csl": 1.0})
    with pytest.raises(KeyError, match="no headline metrics defined for benchmark 'mmlu'"):
        headline("mmlu", {})


class RecordingRun:
    # A run object without an MLflow store behind it: the registry step is skipped.
    enabled = False
    stage = "evaluate@sft"

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, Any] = {}
        self.artifacts: list[tuple[str, str | None]] = []

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.metrics.update(flatten_metrics(metrics))  # as the MLflow run does

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update(tags)


def _fake_runner(metrics: dict[str, Any]):
    def run(llm, params, out_dir, judge) -> dict[str, Any]:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    return run


@pytest.fixture
def stage_params(tmp_path, monkeypatch):
    monkeypatch.setattr(
        benchmarks,
        "RUNNERS",
        {"ifeval": _fake_runner(IFEVAL), "followbench": _fake_runner(FOLLOWBENCH)},
    )
    monkeypatch.setattr(stage, "make_local_llm", lambda *a, **k: None)
    monkeypatch.setattr(stage, "judge_session", lambda *a: contextlib.nullcontext(None))
    params = repo_params()
    paths = updated(
        params.paths, eval_dir=str(tmp_path / "eval"), metrics_dir=str(tmp_path / "metrics")
    )
    evaluate = updated(params.evaluate, benchmarks=["ifeval", "followbench"])
    return params.model_copy(update={"paths": paths, "evaluate": evaluate})


def test_evaluate_stage_writes_headlines_for_dvc_and_logs_everything_to_mlflow(stage_params):
    run = RecordingRun()
    stage.main(stage_params, run, "sft")
    paths = stage_params.paths
    assert json.loads(paths.eval_metrics("sft", "ifeval").read_text()) == {
        "prompt_strict": 0.17,
        "inst_strict": 0.2654,
    }
    assert json.loads(paths.eval_metrics("sft", "followbench").read_text()) == {
        "hsr": 0.3,
        "csl": 1.1667,
    }
    # MLflow: every figure, full precision, under the names it always had.
    expected = flatten_metrics(numeric({"ifeval": IFEVAL, "followbench": FOLLOWBENCH}))
    assert run.metrics == expected
    assert run.metrics["ifeval.prompt_level_strict_acc"] == 0.17
    assert run.metrics["ifeval.inst_level_strict_acc"] == 0.2654320987654321
    assert run.metrics["ifeval.per_instruction.punctuation:no_comma.strict"] == 0.5
    assert run.metrics["followbench.by_category.content.hsr.level_2"] == 0.2
    assert run.tags["followbench.judge.model"] == "base"
    # Evidence: the responses and verdicts behind the figures.
    assert run.artifacts == [(str(paths.eval_dir) + "/sft", "eval")]


def test_evaluate_stage_fails_when_a_runner_leaves_no_full_metrics(stage_params, monkeypatch):
    monkeypatch.setitem(benchmarks.RUNNERS, "ifeval", lambda *a: dict(IFEVAL))
    with pytest.raises(FileNotFoundError, match="ifeval/metrics.json: the ifeval runner wrote"):
        stage.main(stage_params, RecordingRun(), "base")
