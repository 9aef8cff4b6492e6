"""``complexif runs ...``: the MLflow record of pipeline runs.

- ``complexif runs compare [--experiment NAME]``: headline metrics of one experiment's
  ``evaluate@<model>`` runs side by side (:mod:`complexif.tracking.compare`).
- ``complexif runs record-restored LOG``: record the stages a saved ``dvc repro`` output reports
  as restored from DVC's run cache (:mod:`complexif.tracking.restored`)::

      dvc repro 2>&1 | tee repro.log
      complexif runs record-restored repro.log
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

from complexif.io import DataError

EXIT_OK = 0


def _compare(args: argparse.Namespace) -> int:
    from complexif.tracking.compare import HEADLINE_METRICS, compare, format_json, format_table

    comparison = compare(args.experiment, args.metric or HEADLINE_METRICS)
    print((format_json if args.json else format_table)(comparison), end="")
    return EXIT_OK


def _head(root: Path) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _record_restored(args: argparse.Namespace) -> int:
    from complexif.tracking.restored import record_restored, restored_stages
    from complexif.tracking.run import ENV_ENABLED, Lineage

    try:
        text = args.log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DataError(
            f"{args.log}: no such file (save the output: dvc repro 2>&1 | tee LOG)"
        ) from None
    stages = restored_stages(text.splitlines())
    lineage = None
    if args.experiment:
        # `dvc exp run` leaves HEAD on the experiment's baseline.
        lineage = Lineage(experiment=args.experiment, baseline_rev=_head(args.root))
    if not stages:
        print(f"{args.log}: no stage was restored from the run cache")
        return EXIT_OK
    run_ids = record_restored(args.root, stages, lineage=lineage)
    if not run_ids:
        print(f"MLflow tracking is off ({ENV_ENABLED}): {', '.join(stages)} not recorded")
    for stage, run_id in zip(stages, run_ids, strict=False):
        print(f"{stage}: restored from the run cache, recorded as MLflow run {run_id}")
    return EXIT_OK


def register_runs(groups: Any) -> None:
    group = groups.add_parser("runs", help="compare and complete the MLflow record of runs")
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="command", metavar="<command>")

    cmp = commands.add_parser(
        "compare",
        help="headline metrics of evaluate@base/sft/dpo side by side",
        description="Find the evaluate@<model> runs of one DVC experiment (by its lineage tag) "
        "or, without --experiment, of the latest pipeline run, and print their headline "
        "metrics: one row per metric, one column per model. The tracking store and MLflow "
        "experiment are the stages' (MLFLOW_TRACKING_URI, COMPLEXIF_EXPERIMENT).",
    )
    cmp.add_argument("--experiment", help="DVC experiment name (dvc exp show lists them)")
    cmp.add_argument(
        "--metric",
        action="append",
        metavar="KEY",
        help="a metric key to show (repeatable; default: the headline IFEval, FollowBench and "
        "InFoBench metrics)",
    )
    cmp.add_argument("--json", action="store_true", help="machine-readable output")
    cmp.set_defaults(handler=_compare)

    rec = commands.add_parser(
        "record-restored",
        help="record the stages a saved `dvc repro` output restored from the run cache",
        description="DVC never starts a stage it restores from its run cache, so the stage "
        "logs no MLflow run. Given the saved output of `dvc repro` or `dvc exp run` (dvc repro "
        "2>&1 | tee repro.log), make a FINISHED run for each restored stage from dvc.lock and "
        "its metrics files, tagged complexif.restored=true. Run it in the project root, before "
        "another repro changes dvc.lock.",
    )
    rec.add_argument("log", type=Path, help="the saved output of dvc repro / dvc exp run")
    rec.add_argument(
        "--experiment",
        help="the DVC experiment the output belongs to (tags the runs with it and HEAD as its "
        "baseline); default: none, or the lineage variables of the environment",
    )
    rec.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    rec.set_defaults(handler=_record_restored)
