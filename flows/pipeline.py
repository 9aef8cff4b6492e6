"""The ComplexIF pipeline as a Prefect flow: DVC decides what is stale, Prefect schedules it.

Each DVC stage becomes one Prefect task that runs ``dvc repro --single-item <stage>``, streaming
DVC's (and the stage's) output to the Prefect logger line by line. DVC skips a stage whose
dependencies, parameters and outputs are unchanged, so a second run of the flow reports every
stage as ``up-to-date``. Prefect never caches anything itself (``NO_CACHE``): DVC is the single
source of truth for what is stale. With ``orchestration.push`` (params.yaml) and a default DVC
remote, every stage that ran pushes its outputs there.
A stage DVC restores from its run cache runs no command and so logs nothing itself: the task
records it in MLflow (:mod:`complexif.tracking.restored`).

The stage list is not written down here: it is read from ``dvc.yaml`` through DVC's own parser
(``foreach`` stages expand to ``evaluate@base``, ``evaluate@sft``, ...), in dependency order.
:data:`STAGE_TAGS` only adds Prefect tags by stage base name:

- ``llm-api``: stages that call the teacher/student LLMs (``respond``, ``correct`` and the
  Conifer stages ``conifer_instructions`` and ``conifer_answers``) and ``publish`` (the judge
  scores every published row). They are
  retried ``llm_retries`` times, ``llm_retry_delay_seconds`` apart (transient API errors).
- ``gpu``: training (``train_sft``, ``train_dpo``) and evaluation generation (``evaluate@*``).
  Never retried: a failed training run is a bug or an OOM, not a blip.
- ``dvc``: every task.

Tags cap concurrency across all flow runs (``python -m flows.setup`` creates the limits).

Three modes:

- Here (default): the stages run in ``workdir``, one task each.
- Experiment (``params_overrides`` or ``experiment_name``): the workspace must be clean (unless
  ``allow_dirty``); the overrides are written to ``params.yaml`` as ``dvc exp run -S`` would, the
  selected stages and everything upstream of them run one task each, and the result is saved
  with ``dvc exp save`` (``dvc exp show`` lists it). The workspace is left with the
  experiment's params and results applied, as after ``dvc exp run``. The experiment's name is
  fixed before the first stage (a DVC-style random one when none is given) and handed to the
  stages, so each MLflow run carries it; once saved, the experiment's commit is tagged on the
  pipeline run and every stage run (:mod:`complexif.tracking.run`, lineage tags).
- Dispatch (``dispatch``): each stage runs as a flow run of the ``complexif-stage`` deployment
  of its work pool (:mod:`flows.stage`: ``gpu`` stages on the GPU pool, the rest on the CPU
  pool), on a worker's own clone at the commit the previous stage left on
  ``orchestration.branch``; data moves only through the DVC remote. See :mod:`flows.stage`.

Run locally (an ephemeral Prefect server is started if ``PREFECT_API_URL`` is unset)::

    python -m flows.pipeline --list
    python -m flows.pipeline --stages seeds compose --force
    python -m flows.pipeline --set train.sft.max_steps=20 --experiment-name short-sft

To trigger it from the Prefect UI: deploy it to the work pools (``python -m flows.setup``, see
``prefect.yaml``) or serve it from this checkout (:mod:`flows.serve`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import Task

from complexif.config import OrchestrationConfig, load_orchestration
from complexif.orchestration.dvc import (
    FAILED,
    NOT_RUN,
    StageFailedError,
    format_command,
    list_stages,
    repro_command,
    run_streaming,
    select_stages,
    stage_base_name,
    stage_env,
    stage_graph,
)
from complexif.orchestration.experiment import (
    apply_overrides,
    experiment_rev,
    random_name,
    save_command,
    saved_name,
    upstream_closure,
)
from complexif.orchestration.git import clone, head, remote_url, require_clean
from complexif.orchestration.stage_run import reproduce
from complexif.tracking.pipeline import pipeline_run
from complexif.tracking.restored import restored_recorder
from complexif.tracking.run import Lineage

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
    "publish": (LLM_API_TAG,),
    "train_sft": (GPU_TAG,),
    "train_dpo": (GPU_TAG,),
    "evaluate": (GPU_TAG,),
}

DEFAULT_LLM_RETRIES = 2
DEFAULT_LLM_RETRY_DELAY_SECONDS = 60


def stage_tags(stage: str) -> set[str]:
    """Prefect tags of the task that runs ``stage``."""
    return {DVC_TAG, *STAGE_TAGS.get(stage_base_name(stage), ())}


def stage_pool(stage: str) -> str:
    """``gpu`` for the stages that need an accelerator, ``cpu`` for the rest (API-bound and
    CPU work): the deployment of :mod:`flows.stage` a dispatched stage goes to."""
    return "gpu" if GPU_TAG in stage_tags(stage) else "cpu"


def orchestration_config(root: Path) -> OrchestrationConfig | None:
    """The ``orchestration`` section of the project's params.yaml (None if it has none)."""
    params = root / "params.yaml"
    return load_orchestration(params) if params.is_file() else None


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _logger_sink() -> Callable[[str], None]:
    logger = get_run_logger()

    def on_line(line: str) -> None:
        if line:
            logger.info("%s", line)

    return on_line


@task(cache_policy=NO_CACHE, persist_result=False)
def run_dvc_stage(
    stage: str, workdir: str, force: bool = False, push: bool = False
) -> dict[str, Any]:
    """``dvc repro --single-item <stage>`` in ``workdir`` (then ``dvc push <stage>`` with
    ``push``); raises :class:`StageFailedError` (message ends with the output's tail) when it
    fails."""
    get_run_logger().info(
        "$ %s  (in %s)", format_command(repro_command(stage, force=force)), workdir
    )
    env = stage_env()
    outcome = reproduce(
        workdir,
        stage,
        force=force,
        push=push,
        on_line=_logger_sink(),
        env=env,
        # DVC never starts a stage it restores from the run cache: record it in MLflow here.
        on_outcome=restored_recorder(workdir, env),
    )
    return {
        "status": outcome.status,
        "duration_s": round(outcome.duration_s, 2),
        "pushed": outcome.pushed,
    }


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="dvc-exp-save")
def save_experiment(workdir: str, name: str | None, force: bool) -> str | None:
    """``dvc exp save``: the workspace as a named experiment; returns its name."""
    command = save_command(name, force=force)
    get_run_logger().info("$ %s  (in %s)", format_command(command), workdir)
    lines: list[str] = []
    sink = _logger_sink()

    def on_line(line: str) -> None:
        lines.append(line)
        sink(line)

    result = run_streaming(command, cwd=workdir, on_line=on_line, env=stage_env())
    if result.returncode != 0:
        raise StageFailedError("dvc exp save", command, result.returncode, result.tail)
    return saved_name(lines) or name


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
    allow_dirty: bool = False,
    dispatch: bool = False,
    branch: str | None = None,
    llm_retries: int = DEFAULT_LLM_RETRIES,
    llm_retry_delay_seconds: int = DEFAULT_LLM_RETRY_DELAY_SECONDS,
) -> dict[str, dict[str, Any]]:
    """Reproduce the ComplexIF DVC pipeline (stages whose inputs are unchanged are skipped).

    Args:
        stages: DVC stages to run, e.g. ["respond", "correct"]; a base name such as "evaluate"
            selects all its items (evaluate@base, evaluate@sft, evaluate@dpo). Each runs alone
            (dvc repro --single-item), in pipeline order, without its upstream stages (an
            experiment also brings its upstream stages up to date). Leave empty to run the
            whole pipeline.
        force: Re-run the selected stages even if DVC finds them up to date (dvc repro
            --force); for an experiment, also replace an experiment of the same name.
        params_overrides: Run a DVC experiment: params.yaml overrides as dotted keys, e.g.
            {"train.sft.max_steps": 20}, applied as dvc exp run -S key=value would. The keys
            must exist in params.yaml (prefix "+" to add one).
        experiment_name: Name of the DVC experiment (dvc exp save --name). Setting it also runs
            an experiment, even without overrides.
        workdir: Root of the ComplexIF checkout (the DVC project) the stages run in; when
            dispatching, the checkout whose git remote the workers clone.
        allow_dirty: Run an experiment although the workspace has uncommitted changes (they
            become part of the experiment).
        dispatch: Send each stage to its work pool (GPU stages to the GPU pool, the rest to the
            CPU pool) instead of running it here; workers exchange data through the DVC remote
            and commit each stage's dvc.lock to the branch.
        branch: Git branch a dispatched run starts from and commits to (default:
            orchestration.branch in params.yaml).
        llm_retries: How many times an LLM-calling stage (respond, correct, conifer_*) is retried.
        llm_retry_delay_seconds: Seconds to wait before retrying an LLM-calling stage.

    Returns:
        Stage name -> {"status", "duration_s", "tags"}; status is one of ran, up-to-date,
        restored-from-run-cache, completed, failed, not-run.
    """
    if llm_retries < 0 or llm_retry_delay_seconds < 0:
        raise ValueError("llm_retries and llm_retry_delay_seconds must be >= 0")
    experiment = bool(params_overrides) or bool(experiment_name)
    if experiment and dispatch:
        raise ValueError(
            "an experiment runs in one workspace (it edits params.yaml there): run it without "
            "dispatch, or commit the params change to a branch and dispatch that branch"
        )
    logger = get_run_logger()
    root = Path(workdir).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"workdir {root} does not exist")
    config = orchestration_config(root)
    if experiment and not allow_dirty:
        require_clean(root, "the workspace")

    lineage = Lineage(prefect_flow_run=str(flow_run.id) if flow_run.id else None)
    if experiment:
        # The name is fixed before any stage runs (DVC would pick it only at `dvc exp save`),
        # so every stage's MLflow run can be found by it.
        baseline = head(root)
        lineage = Lineage(
            experiment_name or random_name(root, baseline), baseline, lineage.prefect_flow_run
        )
    run_name = f"pipeline {lineage.experiment or flow_run.name or ''}".strip()
    parent_tags = {
        "complexif.mode": "dispatch" if dispatch else "experiment" if experiment else "local"
    }
    if experiment:
        parent_tags["complexif.overrides"] = json.dumps(params_overrides or {}, sort_keys=True)
    # One parent MLflow run per flow run: every stage run started meanwhile nests under it and
    # carries the same lineage tags.
    with pipeline_run(root, name=run_name, tags=parent_tags, lineage=lineage) as parent:
        if dispatch:
            if config is None:
                raise ValueError(f"{root}/params.yaml has no orchestration section to dispatch by")
            summary, header, error = _dispatch_stages(
                stages,
                root,
                force,
                config,
                branch or config.branch,
                llm_retries,
                llm_retry_delay_seconds,
                parent.run_id,
            )
        else:
            order, deps = stage_graph(root)
            selected = select_stages(order, stages)
            if not selected:
                raise ValueError(f"no DVC pipeline stages found in {root}/dvc.yaml")
            header: list[str] = []
            if experiment:
                apply_overrides(root, params_overrides or {})
                if stages:
                    selected = upstream_closure(order, deps, selected)
                header.append(
                    f"Experiment: overrides `{json.dumps(params_overrides or {}, sort_keys=True)}`"
                )
                config = orchestration_config(root)  # the overrides may change it too
            logger.info("DVC project %s; stages: %s", root, ", ".join(selected))
            push = config is not None and config.push
            summary, mode, error = _run_stages(
                selected, root, force, push, llm_retries, llm_retry_delay_seconds
            )
            header.insert(0, mode)
            if experiment and error is None:
                try:
                    name = save_experiment(str(root), lineage.experiment, force)
                    header.append(f"Saved as experiment `{name}` (dvc exp show)")
                except Exception as exc:
                    error = exc
                else:
                    _tag_experiment_revision(parent, root, lineage.baseline_rev, name)
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


def _tag_experiment_revision(parent: Any, root: Path, baseline: str | None, name: str) -> None:
    """Tag the pipeline's MLflow run and its stage runs with the commit ``dvc exp save`` made.
    The experiment is saved already: a tracking failure here is a warning, not the flow's."""
    logger = get_run_logger()
    rev = experiment_rev(root, baseline, name) if baseline and name else None
    if rev is None:
        logger.warning(
            "experiment %s on %s: no commit found, runs not tagged with it", name, baseline
        )
        return
    try:
        tagged = parent.tag_experiment_revision(rev)
    except Exception:
        logger.warning(
            "could not tag the MLflow runs with experiment commit %s", rev, exc_info=True
        )
        return
    logger.info("experiment %s is commit %s; tagged %d MLflow run(s)", name, rev, len(tagged))


def _run_stages(
    selected: Sequence[str],
    root: Path,
    force: bool,
    push: bool,
    llm_retries: int,
    llm_retry_delay_seconds: float,
) -> tuple[dict[str, dict[str, Any]], str, BaseException | None]:
    summary: dict[str, dict[str, Any]] = {
        s: {"status": NOT_RUN, "duration_s": 0.0, "tags": sorted(stage_tags(s))} for s in selected
    }
    mode = f"Mode: `dvc repro --single-item{' --force' if force else ''}`, one task per stage"
    if push:
        mode += "; outputs pushed to the DVC remote"
    # Strictly one stage at a time: every DVC command takes the repository lock
    # (.dvc/tmp/lock) and a second one fails with "Unable to acquire lock", so the tasks are
    # called directly, never .submit()-ed to run concurrently. Pipeline order also matters:
    # each stage reads the outputs of the ones before it.
    for stage in selected:
        started = time.monotonic()
        try:
            result = stage_task(
                stage, llm_retries=llm_retries, llm_retry_delay_seconds=llm_retry_delay_seconds
            )(stage, str(root), force, push)
        except Exception as exc:
            summary[stage].update(status=FAILED, duration_s=round(time.monotonic() - started, 2))
            return summary, mode, exc
        summary[stage].update(result)
    return summary, mode, None


def _dispatch_stages(
    stages: Sequence[str] | None,
    root: Path,
    force: bool,
    config: OrchestrationConfig,
    branch: str,
    llm_retries: int,
    llm_retry_delay_seconds: float,
    parent_run_id: str | None,
) -> tuple[dict[str, dict[str, Any]], list[str], BaseException | None]:
    from flows.stage import dispatch_task

    url = remote_url(root, config.git_remote)
    # The stage list at the branch head, read from a throwaway clone: the workdir may be a
    # worker's checkout that a stage is using right now.
    with tempfile.TemporaryDirectory(prefix="complexif-dispatch-") as tmp:
        commit = clone(url, branch, Path(tmp) / "repo")
        selected = select_stages(list_stages(Path(tmp) / "repo"), stages)
    if not selected:
        raise ValueError(f"no DVC pipeline stages found in {url}@{branch}")
    get_run_logger().info(
        "dispatching %s from %s@%s (%s)", ", ".join(selected), url, branch, commit
    )
    header = [f"Mode: dispatched to the work pools, from `{branch}` at `{commit[:12]}`"]
    summary: dict[str, dict[str, Any]] = {
        s: {
            "status": NOT_RUN,
            "duration_s": 0.0,
            "tags": sorted(stage_tags(s)),
            "pool": stage_pool(s),
        }
        for s in selected
    }
    # A parent run only means something to the stages if they log to the same store.
    shared_store = os.environ.get("MLFLOW_TRACKING_URI") if parent_run_id else None
    for stage in selected:
        started = time.monotonic()
        retries = llm_retries if LLM_API_TAG in stage_tags(stage) else 0
        try:
            outcome = dispatch_task(stage_pool(stage), retries, llm_retry_delay_seconds)(
                stage,
                commit=commit,
                branch=branch,
                git_remote=config.git_remote,
                force=force,
                mlflow_parent_run_id=parent_run_id if shared_store else None,
                mlflow_tracking_uri=shared_store,
                pool=stage_pool(stage),
            )
        except Exception as exc:
            summary[stage].update(status=FAILED, duration_s=round(time.monotonic() - started, 2))
            return summary, header, exc
        summary[stage].update(
            status=outcome["status"], duration_s=outcome["duration_s"], commit=outcome["commit"]
        )
        commit = outcome["commit"]
    header.append(f"Results committed to `{branch}`: `{commit[:12]}`")
    return summary, header, None


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
        help="params.yaml override (repeatable), as `dvc exp run -S KEY=VALUE`: runs an experiment",
    )
    parser.add_argument(
        "--experiment-name", help="DVC experiment name (`dvc exp save --name`): runs an experiment"
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run an experiment although the workspace has uncommitted changes",
    )
    parser.add_argument(
        "--dispatch",
        action="store_true",
        help="send each stage to its Prefect work pool (needs PREFECT_API_URL and workers)",
    )
    parser.add_argument("--branch", help="git branch to dispatch (default: orchestration.branch)")
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
                allow_dirty=args.allow_dirty,
                dispatch=args.dispatch,
                branch=args.branch,
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
