"""The metrics files of a default run, written by the real writers from hand-made verdicts scored
by the real metric functions: 3 models x (IFEval, FollowBench, InFoBench), the two training
files and the publish stage's one per curated set. InFoBench is not in the default ``evaluate.benchmarks``; it stands for the next benchmark a
run may add, so the DVC tables are checked with room for it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from complexif.config import PathsConfig
from complexif.constraints.registry import INSTRUCTION_DICT
from complexif.dataset.index import write_headlines
from complexif.evaluation.followbench.data import CATEGORIES
from complexif.evaluation.followbench.data import Item as FBItem
from complexif.evaluation.followbench.metrics import Verdict, followbench_metrics
from complexif.evaluation.headline import write_headline
from complexif.evaluation.ifeval import OutputExample, compute_metrics
from complexif.evaluation.infobench.data import Item as IBItem
from complexif.evaluation.infobench.metrics import drfr_metrics
from complexif.io import write_json
from complexif.training.common import TrainResult
from complexif.training.report import TRAIN_METRICS, log_training

MODELS = ("base", "sft", "dpo")
BENCHMARKS = ("ifeval", "followbench", "infobench")


def ifeval_metrics(rng: random.Random, n: int = 100) -> dict[str, Any]:
    types = sorted(INSTRUCTION_DICT)
    outputs = []
    for key in range(n):
        ids = rng.sample(types, rng.randint(1, 3))
        ok = [rng.random() < 0.3 for _ in ids]
        outputs.append(OutputExample(key, f"p{key}", ids, [{}] * len(ids), "r", all(ok), ok))
    return compute_metrics(outputs, outputs)


def followbench_metrics_of(rng: random.Random, groups: int = 5) -> dict[str, Any]:
    verdicts = []
    for category in CATEGORIES:
        for example in range(groups):
            for level in range(1, 6):
                item = FBItem(category, example, level, "src", "i", "", "")
                if category in ("content", "situation", "example"):
                    verdicts.append(Verdict.rule(item, rng.random() < 0.4))
                else:
                    satisfied = tuple(rng.random() < 0.6 for _ in range(level))
                    verdicts.append(Verdict(item, "judge", satisfied))
    metrics = followbench_metrics(verdicts)
    metrics["counts"]["not_judged"] = 0
    metrics["judge"] = {"backend": "transformers", "model": "base", "prompt_version": "e15f"}
    return metrics


def infobench_metrics(rng: random.Random, n: int = 50) -> dict[str, Any]:
    items = [
        IBItem(f"i{k}", "x", "", "c", ("Easy_set", "Hard_set")[k % 2], ("q",) * rng.randint(2, 6))
        for k in range(n)
    ]
    answers = {i.id: [rng.random() < 0.7 for _ in i.questions] for i in items}
    return drfr_metrics(items, answers)


def train_metrics(rng: random.Random, dpo: bool) -> dict[str, float]:
    common = {
        "train_runtime": 193.4878,
        "train_samples_per_second": 0.444,
        "total_flos": 13606347734784.0,
        "train_loss": rng.uniform(0.5, 1.5),
        "epoch": 2.0,
    }
    if dpo:
        return {**common, "n_pairs": 40.0}
    return {
        **common,
        "entropy": 1.1917818188667297,
        "mean_token_accuracy": 0.7592052519321442,
        "num_tokens": 19554.0,
        "n_examples": 41.0,
    }


class _NoRun:
    """The training stages' run object where nothing is tracked: writing the files is the point."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        pass


def write_default_run(root: Path, paths: PathsConfig, seed: int = 0) -> dict[str, dict]:
    """Every metrics file of a default run under ``root`` (the evaluate stage's headline files
    and full metrics, the training stages' files); returns the full metrics by model and
    benchmark."""
    rng = random.Random(seed)
    makers = {
        "ifeval": ifeval_metrics,
        "followbench": followbench_metrics_of,
        "infobench": infobench_metrics,
    }
    full: dict[str, dict] = {}
    for model in MODELS:
        full[model] = {}
        for benchmark in BENCHMARKS:
            metrics = makers[benchmark](rng)
            write_json(root / paths.eval_detail(model, benchmark), metrics)
            write_headline(root / paths.eval_metrics(model, benchmark), benchmark, metrics)
            full[model][benchmark] = metrics
    for name in ("sft", "dpo"):
        log_training(
            _NoRun(),
            TrainResult(
                metrics=train_metrics(rng, name == "dpo"),
                history=[{"step": float(s), "loss": 2.0 / s} for s in range(1, 4)],
            ),
            str(root / paths.metrics_dir / f"train_{name}.json"),
            str(root / paths.reports_dir / f"train_{name}_loss.csv"),
            str(root / paths.model_dir(name) / TRAIN_METRICS),
        )
    # The publish stage's headline per curated set (the default run's conifer_dpo is empty).
    write_headlines(
        root / paths.metrics_dir / "publish",
        {
            name: {"rows": rows, "similarity": 0.0893, "complexity": 3.25, "quality": 4.1667}
            for name, rows in (("sft", 37), ("dpo", 40), ("conifer_sft", 9))
        }
        | {"conifer_dpo": {"rows": 0}},
    )
    return full
