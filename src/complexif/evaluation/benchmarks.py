"""Evaluate one model on the benchmarks params choose: answers, verdicts and the full metrics
per benchmark under ``<eval_dir>/<model>/<benchmark>/``, the headline figures in
``<metrics_dir>/<model>/<benchmark>.json`` (the DVC metrics, :mod:`.headline`).

The judge (FollowBench items without a rule, InFoBench questions) is a role like student and
teacher: any backend, through the stage's LLM session (cache, ledger, usage). It is built only
when some item needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from complexif.config import Params
from complexif.evaluation.followbench.run import run_followbench
from complexif.evaluation.headline import write_headline
from complexif.evaluation.ifeval_run import evaluate_ifeval
from complexif.evaluation.infobench.run import run_infobench
from complexif.evaluation.judging import JudgeClient
from complexif.llm.base import LLM, BatchBackend

Runner = Callable[[LLM | BatchBackend, Params, Path, JudgeClient], dict[str, Any]]


def run_ifeval(
    llm: LLM | BatchBackend, params: Params, out_dir: Path, judge: JudgeClient
) -> dict[str, Any]:
    return evaluate_ifeval(llm, params.paths.ifeval_input, params.evaluate, out_dir)


RUNNERS: Mapping[str, Runner] = {
    "ifeval": run_ifeval,
    "followbench": run_followbench,
    "infobench": run_infobench,
}


def evaluate_model(
    llm: LLM | BatchBackend, params: Params, model: str, judge: JudgeClient
) -> dict[str, dict[str, Any]]:
    """Every benchmark in ``evaluate.benchmarks`` for ``model``; returns the full metrics by
    benchmark (what MLflow logs, under their own names)."""
    results: dict[str, dict[str, Any]] = {}
    paths = params.paths
    for benchmark in params.evaluate.benchmarks:
        metrics = RUNNERS[benchmark](llm, params, paths.eval_out(model, benchmark), judge)
        # The report reads the full metrics the runner wrote there: a runner that stops
        # writing them fails here, in its own stage, rather than later in the report.
        if not paths.eval_detail(model, benchmark).is_file():
            raise FileNotFoundError(
                f"{paths.eval_detail(model, benchmark)}: the {benchmark} runner wrote no metrics"
            )
        write_headline(paths.eval_metrics(model, benchmark), benchmark, metrics)
        results[benchmark] = metrics
    return results
