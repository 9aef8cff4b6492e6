"""The ComplexIF pipeline as a Prefect flow: DVC decides what is stale, Prefect schedules it.

Each DVC stage becomes one Prefect task that runs ``dvc repro --single-item <stage>`` in the
project directory, streaming DVC's (and the stage's) output to the Prefect logger line by line.
DVC skips a stage whose dependencies, parameters and outputs are unchanged, so a second run of
the flow reports every stage as ``up-to-date``. Prefect never caches anything itself
(``NO_CACHE``): DVC is the single source of truth for what is stale.

The stage list is not written down here: it is read from ``dvc.yaml`` through DVC's own parser
(``foreach`` stages expand to ``evaluate@base``, ``evaluate@sft``, ...), in dependency order.
:data:`STAGE_TAGS` only adds Prefect tags by stage base name:

- ``llm-api``: stages that call the teacher/student LLMs (``respond``, ``correct`` and the
  Conifer stages ``conifer_instructions`` and ``conifer_answers``). They are
  retried ``llm_retries`` times, ``llm_retry_delay_seconds`` apart (transient API errors).
- ``gpu``: training (``train_sft``, ``train_dpo``) and evaluation generation (``evaluate@*``).
  Never retried: a failed training run is a bug or an OOM, not a blip.
- ``dvc``: every task.

Tags let you cap concurrency across all flow runs, e.g. ``prefect concurrency-limit create gpu 1``.

Experiments: with ``params_overrides`` (dotted ``params.yaml`` keys -> values, e.g.
``{"train.sft.max_steps": 20}``) or ``experiment_name``, the flow instead runs ONE
``dvc exp run [--name NAME] -S key=value ... [STAGES]`` task. A parameter change applies to the
whole pipeline, so DVC itself must reproduce everything downstream of it (and anything stale
upstream of the selected stages) in one consistent experiment; running stages one by one would
need the overrides applied to ``params.yaml`` in between. The per-stage statuses and timings are
recovered from DVC's output. As with ``dvc exp run`` by hand: the repository needs a commit, the
workspace is left with the experiment's params and results applied, and the experiment is saved
(``dvc exp show``). Override keys must exist in ``params.yaml`` (typos fail); prefix ``+`` to add
a new key.

Run locally (an ephemeral Prefect server is started if ``PREFECT_API_URL`` is unset)::

    python -m flows.pipeline --list
    python -m flows.pipeline --stages seeds compose --force
    python -m flows.pipeline --set train.sft.max_steps=20 --experiment-name short-sft

To trigger it from the Prefect UI, serve it: see :mod:`flows.serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import Task

from complexif.orchestration.dvc import (
    COMPLETED,
    FAILED,
    NOT_RUN,
    StageFailedError,
    StageTracker,
    exp_run_command,
    format_command,
    list_stages,
    repro_command,
    run_streaming,
    select_stages,
    stage_base_name,
    stage_env,
)
from complexif.tracking.pipeline import pipeline_run

FLOW_NAME = "complexif-pipeline"
ARTIFACT_KEY = "complexif-pipeline-summary"

DVC_TAG = "dvc"
GPU_TAG = "gpu"
LLM_API_TAG = "llm-api"

# Prefect tags by DVC stage *base* name (``evaluate`` covers ``evaluate@base/sft/dpo``).
# Stages not listed here get only the ``dvc`` tag.
STAGE_TAGS: dict[str, tuple[str, ...]] = {
    "respond": (LLM_API_TAG,),
    "correct": (LLM_API_TAG,),
    "conifer_instructions": (LLM_API_TAG,),
    "conifer_answers": (LLM_API_TAG,),
    "train_sft": (GPU_TAG,),
    "train_dpo": (GPU_TAG,),
    "evaluate": (GPU_TAG,),
}

DEFAULT_LLM_RETRIES = 2
DEFAULT_LLM_RETRY_DELAY_SECONDS = 60


def stage_tags(stage: str) -> set[str]:
    """Prefect tags of the task that runs ``stage``."""
    return {DVC_TAG, *STAGE_TAGS.get(stage_base_name(stage), ())}


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _line_logger(tracker: StageTracker):
    logger = get_run_logger()

    def on_line(line: str) -> None:
        tracker.feed(line)
        if line:
            logger.info("%s", line)

    return on_line


@task(cache_policy=NO_CACHE, persist_result=False)
def run_dvc_stage(stage: str, workdir: str, force: bool = False) -> dict[str, Any]:
    """``dvc repro --single-item <stage>`` in ``workdir``; raises :class:`StageFailedError`
    (message ends with the output's tail) when it fails."""
    command = repro_command(stage, force=force)
    get_run_logger().info("$ %s  (in %s)", format_command(command), workdir)
    tracker = StageTracker()
    result = run_streaming(command, cwd=workdir, on_line=_line_logger(tracker), env=stage_env())
    tracker.finish(failed=result.returncode != 0)
    if result.returncode != 0:
        raise StageFailedError(stage, command, result.returncode, result.tail)
    return {
        "status": tracker.statuses.get(stage, COMPLETED),
        "duration_s": round(result.duration_s, 2),
    }


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="dvc-exp-run")
def run_dvc_experiment(
    targets: list[str],
    workdir: str,
    params_overrides: dict[str, Any],
    experiment_name: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """One ``dvc exp run`` over ``targets`` (all stages when empty). Returns the experiment
    name(s) and the per-stage statuses and durations parsed from DVC's output."""
    command = exp_run_command(
        targets, params_overrides=params_overrides, experiment_name=experiment_name, force=force
    )
    get_run_logger().info("$ %s  (in %s)", format_command(command), workdir)
    tracker = StageTracker()
    result = run_streaming(command, cwd=workdir, on_line=_line_logger(tracker), env=stage_env())
    failed_stage = tracker.finish(failed=result.returncode != 0)
    stages = {
        name: {"status": status, "duration_s": round(tracker.durations.get(name, 0.0), 2)}
        for name, status in tracker.statuses.items()
    }
    if result.returncode != 0:
        raise StageFailedError(
            failed_stage or "dvc exp run", command, result.returncode, result.tail, stages
        )
    return {"experiments": tracker.experiments, "stages": stages}


def stage_task(
    stage: str,
    *,
    llm_retries: int = DEFAULT_LLM_RETRIES,
    llm_retry_delay_seconds: float = DEFAULT_LLM_RETRY_DELAY_SECONDS,
) -> Task:
    """The Prefect task that runs ``stage``, with its tags and retry policy."""
    tags = stage_tags(stage)
    retries = llm_retries if LLM_API_TAG in tags else 0
    return run_dvc_stage.with_options(
        name=f"dvc-repro-{stage}",
        task_run_name="{stage}",
        tags=tags,
        retries=retries,
        retry_delay_seconds=llm_retry_delay_seconds if retries else 0,
    )


def experiment_task(stages: Iterable[str]) -> Task:
    """The task for one ``dvc exp run``: it carries the tags of every stage it may run (so a
    ``gpu`` or ``llm-api`` concurrency limit also holds it back) and is never retried."""
    tags = set().union(*(stage_tags(s) for s in stages)) | {DVC_TAG}
    return run_dvc_experiment.with_options(tags=tags, retries=0)


# --------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------


@flow(name=FLOW_NAME, validate_parameters=True)
def complexif_pipeline(
    stages: list[str] | None = None,
    force: bool = False,
    params_overrides: dict[str, Any] | None = None,
    experiment_name: str | None = None,
    workdir: str = ".",
    llm_retries: int = DEFAULT_LLM_RETRIES,
    llm_retry_delay_seconds: int = DEFAULT_LLM_RETRY_DELAY_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Reproduce the ComplexIF DVC pipeline (stages whose inputs are unchanged are skipped).

    Args:
        stages: DVC stages to run, e.g. ["respond", "correct"]; a base name such as "evaluate"
            selects all its items (evaluate@base, evaluate@sft, evaluate@dpo). Each runs alone
            (dvc repro --single-item), in pipeline order, without its upstream stages. Leave
            empty to run the whole pipeline.
        force: Re-run the selected stages even if DVC finds them up to date (dvc repro
            --force); for an experiment, dvc exp run --force, which also replaces an existing
            experiment of the same name.
        params_overrides: Run a DVC experiment instead: params.yaml overrides as dotted keys,
            e.g. {"train.sft.max_steps": 20}, passed as dvc exp run -S key=value. The keys must
            exist in params.yaml (prefix "+" to add one).
        experiment_name: Name of the DVC experiment (dvc exp run --name). Setting it also runs
            an experiment, even without overrides.
        workdir: Root of the ComplexIF checkout (the DVC project) the stages run in.
        llm_retries: How many times an LLM-calling stage (respond, correct, conifer_*) is retried.
        llm_retry_delay_seconds: Seconds to wait before retrying an LLM-calling stage.

    Returns:
        Stage name -> {"status", "duration_s", "tags"}; status is one of ran, up-to-date,
        restored-from-run-cache, completed, failed, not-run.
    """
    if llm_retries < 0 or llm_retry_delay_seconds < 0:
        raise ValueError("llm_retries and llm_retry_delay_seconds must be >= 0")
    logger = get_run_logger()
    root = Path(workdir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"workdir {root} does not exist")
    available = list_stages(root)
    selected = select_stages(available, stages)
    if not selected:
        raise ValueError(f"no DVC pipeline stages found in {root}/dvc.yaml")
    logger.info("DVC project %s; stages: %s", root, ", ".join(selected))

    experiment = bool(params_overrides) or bool(experiment_name)
    run_name = f"pipeline {experiment_name or flow_run.name or ''}".strip()
    # One parent MLflow run per flow run: every stage run started meanwhile nests under it.
    with pipeline_run(
        root, name=run_name, tags={"prefect.flow_run_id": flow_run.id or ""}
    ) as parent:
        if experiment:
            summary, header, error = _run_experiment(
                selected,
                available,
                root,
                params_overrides or {},
                experiment_name,
                force,
                whole_pipeline=not stages,
            )
        else:
            summary, header, error = _run_stages(
                selected, root, force, llm_retries, llm_retry_delay_seconds
            )
        parent.log_metrics({f"duration_s.{s}": v["duration_s"] for s, v in summary.items()})
        parent.failed = error is not None

    create_markdown_artifact(
        markdown=summary_markdown(summary, header=header, error=error),
        key=ARTIFACT_KEY,
        description="Per-stage outcome of the ComplexIF DVC pipeline run",
    )
    if error is not None:
        raise error
    return summary


def _run_stages(
    selected: Sequence[str],
    root: Path,
    force: bool,
    llm_retries: int,
    llm_retry_delay_seconds: float,
) -> tuple[dict[str, dict[str, Any]], list[str], BaseException | None]:
    summary: dict[str, dict[str, Any]] = {
        s: {"status": NOT_RUN, "duration_s": 0.0, "tags": sorted(stage_tags(s))} for s in selected
    }
    header = [f"Mode: `dvc repro --single-item{' --force' if force else ''}`, one task per stage"]
    # Strictly one stage at a time: every DVC command takes the repository lock
    # (.dvc/tmp/lock) and a second one fails with "Unable to acquire lock", so the tasks are
    # called directly, never .submit()-ed to run concurrently. Pipeline order also matters:
    # each stage reads the outputs of the ones before it.
    for stage in selected:
        started = time.monotonic()
        try:
            result = stage_task(
                stage, llm_retries=llm_retries, llm_retry_delay_seconds=llm_retry_delay_seconds
            )(stage, str(root), force)
        except Exception as exc:
            summary[stage].update(status=FAILED, duration_s=round(time.monotonic() - started, 2))
            return summary, header, exc
        summary[stage].update(result)
    return summary, header, None


def _run_experiment(
    selected: Sequence[str],
    pipeline_order: Sequence[str],
    root: Path,
    params_overrides: dict[str, Any],
    experiment_name: str | None,
    force: bool,
    *,
    whole_pipeline: bool,
) -> tuple[dict[str, dict[str, Any]], list[str], BaseException | None]:
    targets = [] if whole_pipeline else list(selected)
    scope = f" (targets: {', '.join(targets)})" if targets else " (whole pipeline)"
    header = [f"Mode: one `dvc exp run`{scope}"]
    if params_overrides:
        header.append(f"Overrides: `{json.dumps(params_overrides, sort_keys=True)}`")
    error: BaseException | None = None
    try:
        result = experiment_task(selected)(
            targets, str(root), params_overrides, experiment_name, force
        )
        stage_results, experiments = result["stages"], result["experiments"]
        header.append(f"Experiment: `{', '.join(experiments) or experiment_name or '?'}`")
    except Exception as exc:
        stage_results, error = getattr(exc, "stage_results", {}), exc
    # The selection and whatever else DVC reported on (stale upstream stages), in pipeline order.
    reported = set(selected) | set(stage_results)
    ordered = [s for s in pipeline_order if s in reported]
    ordered += [s for s in stage_results if s not in ordered]
    summary = {
        s: {
            "status": NOT_RUN,
            "duration_s": 0.0,
            **stage_results.get(s, {}),
            "tags": sorted(stage_tags(s)),
        }
        for s in ordered
    }
    if isinstance(error, StageFailedError) and error.stage in summary:
        summary[error.stage]["status"] = FAILED
    return summary, header, error


def summary_markdown(
    summary: dict[str, dict[str, Any]],
    *,
    header: Sequence[str] = (),
    error: BaseException | None = None,
) -> str:
    """The run summary as a Markdown table (the flow's Prefect artifact)."""
    failed = [s for s, r in summary.items() if r["status"] == FAILED]
    title = f"failed at `{failed[0]}`" if failed else ("failed" if error else "succeeded")
    lines = [f"# ComplexIF pipeline {title}", ""]
    lines += [f"- {h}" for h in header]
    lines += ["", "| # | stage | tags | status | duration (s) |", "|---|---|---|---|---|"]
    for i, (stage, r) in enumerate(summary.items(), 1):
        tags = ", ".join(r.get("tags", []))
        lines.append(f"| {i} | `{stage}` | {tags} | {r['status']} | {r['duration_s']:.1f} |")
    if error is not None:
        lines += ["", "## Error", "", "```", str(error), "```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value) if value else ""
    return overrides


def _patient_ephemeral_server():
    """Without PREFECT_API_URL, Prefect starts a temporary server and gives it 20 s by default,
    which a busy 2-core machine can miss (its database migrations run first); allow 120 s
    unless the user chose a value."""
    from contextlib import nullcontext

    from prefect import settings

    timeout = settings.PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    if settings.PREFECT_API_URL.value() or timeout.name in os.environ:
        return nullcontext()
    return settings.temporary_settings(updates={timeout: max(timeout.value(), 120)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description="Run the ComplexIF DVC pipeline as a local Prefect flow run.",
    )
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help="stages to run (default: all)")
    parser.add_argument("--force", action="store_true", help="re-run even if up to date")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="params.yaml override (repeatable); runs `dvc exp run -S KEY=VALUE`",
    )
    parser.add_argument("--experiment-name", help="DVC experiment name (runs `dvc exp run`)")
    parser.add_argument("--workdir", default=".", help="DVC project root (default: .)")
    parser.add_argument("--llm-retries", type=int, default=DEFAULT_LLM_RETRIES)
    parser.add_argument(
        "--llm-retry-delay-seconds", type=int, default=DEFAULT_LLM_RETRY_DELAY_SECONDS
    )
    parser.add_argument(
        "--list", action="store_true", help="print the stages and their tags, run nothing"
    )
    args = parser.parse_args(argv)

    if args.list:
        for stage in list_stages(args.workdir):
            print(f"{stage:<24} {', '.join(sorted(stage_tags(stage)))}")
        return 0
    try:
        with _patient_ephemeral_server():
            summary = complexif_pipeline(
                stages=args.stages,
                force=args.force,
                params_overrides=_parse_set(args.overrides) or None,
                experiment_name=args.experiment_name,
                workdir=args.workdir,
                llm_retries=args.llm_retries,
                llm_retry_delay_seconds=args.llm_retry_delay_seconds,
            )
    except Exception as exc:  # already logged by Prefect; keep the exit status meaningful
        print(f"pipeline failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
