"""One experiment's evaluation runs side by side: headline metrics of ``evaluate@base``,
``evaluate@sft`` and ``evaluate@dpo`` (rows = metric, columns = model).

The runs are found by their lineage tag (:data:`~complexif.tracking.run.TAG_DVC_EXPERIMENT`),
or, without an experiment name, as the children of the latest pipeline run. Runs DVC restored
from its run cache count too (they are recorded with the same metric keys, see
:mod:`complexif.tracking.restored`). The same search in Python::

    mlflow.search_runs(
        experiment_names=["complexif"],
        filter_string="tags.`complexif.dvc_experiment` = 'NAME' "
        "and tags.dvc_stage LIKE 'evaluate@%' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from complexif.io import DataError
from complexif.tracking.run import (
    TAG_DVC_EXPERIMENT,
    TAG_DVC_STAGE,
    TAG_KIND,
    experiment_name,
    tracking_uri,
)

# The keys evaluate@<model> logs (stages/evaluate.py: one prefix per benchmark).
HEADLINE_METRICS = (
    "ifeval.prompt_level_strict_acc",
    "ifeval.prompt_level_loose_acc",
    "ifeval.inst_level_strict_acc",
    "ifeval.inst_level_loose_acc",
    "followbench.hsr.avg",
    "followbench.ssr.avg",
    "followbench.csl",
    "infobench.drfr",
)
MODEL_ORDER = ("base", "sft", "dpo")
EVAL_STAGE_PREFIX = "evaluate@"


def experiment_filter(experiment: str) -> str:
    """The MLflow search filter for the finished evaluation runs of DVC experiment
    ``experiment``."""
    if "'" in experiment:
        raise DataError(f"experiment name {experiment!r}: a quote cannot be searched for")
    return (
        f"tags.`{TAG_DVC_EXPERIMENT}` = '{experiment}' "
        f"and tags.{TAG_DVC_STAGE} LIKE '{EVAL_STAGE_PREFIX}%' "
        "and attributes.status = 'FINISHED'"
    )


def latest_filter() -> str:
    return f"tags.{TAG_DVC_STAGE} LIKE '{EVAL_STAGE_PREFIX}%' and attributes.status = 'FINISHED'"


def children_filter(parent_run_id: str) -> str:
    return (
        f"tags.mlflow.parentRunId = '{parent_run_id}' "
        f"and tags.{TAG_DVC_STAGE} LIKE '{EVAL_STAGE_PREFIX}%' "
        "and attributes.status = 'FINISHED'"
    )


@dataclass(frozen=True)
class Comparison:
    """``values[metric][model]``: None where the model's run lacks the metric."""

    source: str
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    values: Mapping[str, Mapping[str, float | None]]
    run_ids: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "runs": dict(self.run_ids),
            "metrics": {m: dict(self.values[m]) for m in self.metrics},
        }


def _model_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


def newest_per_stage(runs: Sequence[Any]) -> dict[str, Any]:
    """The newest run of each ``evaluate@<model>`` stage, by model (a stage re-run, or recorded
    again as restored, counts once: its latest run)."""
    chosen: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True):
        stage = run.data.tags.get(TAG_DVC_STAGE, "")
        if stage.startswith(EVAL_STAGE_PREFIX):
            chosen.setdefault(stage[len(EVAL_STAGE_PREFIX) :], run)
    return dict(sorted(chosen.items(), key=lambda item: _model_key(item[0])))


def build_comparison(
    source: str, runs_by_model: Mapping[str, Any], metrics: Sequence[str] = HEADLINE_METRICS
) -> Comparison:
    values = {
        metric: {model: run.data.metrics.get(metric) for model, run in runs_by_model.items()}
        for metric in metrics
    }
    return Comparison(
        source=source,
        models=tuple(runs_by_model),
        metrics=tuple(metrics),
        values=values,
        run_ids={model: run.info.run_id for model, run in runs_by_model.items()},
    )


def _search(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    return client.search_runs(
        experiment_ids,
        filter_string=filter_string,
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )


def _experiment_id(client: Any) -> str:
    name = experiment_name()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise DataError(f"no MLflow experiment {name!r} in {tracking_uri()}")
    return experiment.experiment_id


def compare(
    experiment: str | None = None,
    metrics: Sequence[str] = HEADLINE_METRICS,
    client: Any | None = None,
) -> Comparison:
    """The evaluation runs of DVC experiment ``experiment`` (by lineage tag) or, when None, of
    the latest pipeline run (its child runs; with no pipeline run, as after a plain `dvc
    repro`, the newest evaluate@<model> runs), compared on ``metrics``."""
    from mlflow import MlflowClient

    client = client or MlflowClient(tracking_uri=tracking_uri())
    ids = [_experiment_id(client)]
    if experiment is not None:
        runs = _search(client, ids, experiment_filter(experiment))
        source = f"DVC experiment {experiment}"
        if not runs:
            raise DataError(
                f"no finished evaluate@* runs tagged {TAG_DVC_EXPERIMENT}={experiment} in "
                f"{tracking_uri()}"
            )
    else:
        parents = client.search_runs(
            ids,
            filter_string=f"tags.`{TAG_KIND}` = 'pipeline'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            # A plain `dvc repro` makes no pipeline run: its latest evaluations stand alone.
            runs = _search(client, ids, latest_filter())
            source = f"the latest evaluate@* runs in {tracking_uri()}"
            if not runs:
                raise DataError(f"no finished evaluate@* runs in {tracking_uri()}")
            return build_comparison(source, newest_per_stage(runs), metrics)
        parent = parents[0]
        runs = _search(client, ids, children_filter(parent.info.run_id))
        source = f"pipeline run {parent.info.run_name} ({parent.info.run_id})"
        if not runs:
            raise DataError(
                f"the latest {source} has no finished evaluate@* runs (DVC found them up to "
                "date?); name an experiment with --experiment"
            )
    return build_comparison(source, newest_per_stage(runs), metrics)


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def format_table(comparison: Comparison) -> str:
    """A Markdown table: one row per metric, one column per model."""
    header = ["metric", *comparison.models]
    rows = [
        [metric, *(_cell(comparison.values[metric].get(m)) for m in comparison.models)]
        for metric in comparison.metrics
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [f"{comparison.source}", "", line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out += ["", "runs: " + ", ".join(f"{m}={r}" for m, r in comparison.run_ids.items())]
    return "\n".join(out) + "\n"


def format_json(comparison: Comparison) -> str:
    return json.dumps(comparison.as_dict(), indent=2, sort_keys=False) + "\n"
