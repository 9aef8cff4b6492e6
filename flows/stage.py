"""One DVC stage on a worker: the ``complexif-stage`` flow, deployed once per work pool.

``prefect.yaml`` declares it twice, ``complexif-stage/cpu`` on the CPU pool (API-bound and CPU
stages) and ``complexif-stage/gpu`` on the GPU pool (training and evaluation); the pipeline flow
(:mod:`flows.pipeline`, ``dispatch``) sends each stage to one of them and waits. A run:

1. works in the worker's own clone of the repository (``COMPLEXIF_CHECKOUT``, set by
   ``python -m flows.worker``; the deployment's pull step moves there), refusing it if it has
   uncommitted changes;
2. checks out the commit it was given (the previous stage's result on the branch);
3. if the stage is up to date there, stops: nothing downloaded, nothing run;
4. otherwise pulls from the DVC remote the upstream outputs the stage reads, runs it, pushes its
   outputs, and commits ``dvc.lock`` and its git-tracked outputs (gates, metrics) onto the
   branch, which the next stage starts from.

Stages in one clone run one at a time (a lock in ``.git``); the ``gpu``/``llm-api`` tags of the
task hold the concurrency limits. The outcome is a table artifact the pipeline flow reads back,
so the machines need no shared result storage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.tasks import Task

from complexif.orchestration.deployments import CHECKOUT_ENV
from complexif.orchestration.dvc import stage_env
from complexif.orchestration.stage_run import reproduce_at_commit
from complexif.tracking.restored import restored_recorder
from complexif.tracking.run import ENV_PARENT_RUN_ID, ENV_PREFECT_FLOW_RUN, ENV_TRACKING_URI
from flows.pipeline import stage_tags

STAGE_FLOW_NAME = "complexif-stage"
# Deployment name per pool kind, as declared in prefect.yaml.
POOL_DEPLOYMENTS = {"cpu": "cpu", "gpu": "gpu"}
OUTCOME_KEY = "complexif-stage-outcome"


class StageDispatchError(RuntimeError):
    """A dispatched stage's flow run did not complete."""


def deployment_name(pool: str) -> str:
    return f"{STAGE_FLOW_NAME}/{POOL_DEPLOYMENTS[pool]}"


def _checkout() -> Path:
    configured = os.environ.get(CHECKOUT_ENV)
    return Path(configured or ".").resolve()


@task(cache_policy=NO_CACHE, persist_result=False)
def run_stage_at_commit(
    stage: str,
    commit: str,
    branch: str,
    git_remote: str,
    force: bool,
    env: dict[str, str],
) -> dict[str, Any]:
    logger = get_run_logger()
    root = _checkout()
    outcome = reproduce_at_commit(
        root,
        stage,
        commit=commit,
        branch=branch,
        remote=git_remote,
        force=force,
        on_line=lambda line: logger.info("%s", line) if line else None,
        env=env,
        # DVC never starts a stage it restores from the run cache: record it in MLflow here.
        on_outcome=restored_recorder(root, env),
    )
    return outcome.as_dict()


@flow(name=STAGE_FLOW_NAME, validate_parameters=True)
def complexif_stage(
    stage: str,
    commit: str,
    branch: str,
    git_remote: str,
    force: bool = False,
    mlflow_parent_run_id: str | None = None,
    mlflow_tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Run one DVC stage in this worker's clone at a given commit, moving its data through the
    DVC remote and committing its dvc.lock to the branch.

    Args:
        stage: The DVC stage, e.g. "train_sft" or "evaluate@dpo".
        commit: The commit to run it at (its upstream stages' results are recorded there).
        branch: The branch the commit is on; the stage's results are committed onto it.
        git_remote: The git remote of the worker's clone to fetch from and push to.
        force: Run the stage even if it is up to date.
        mlflow_parent_run_id: The pipeline's MLflow run, to nest this stage's run under.
        mlflow_tracking_uri: The store that run lives in; the parent is used only when this
            worker logs to the same store.
    """
    env = stage_env()
    # The stage's MLflow run names the flow run that ran it (this one, on the worker).
    if flow_run.id:
        env[ENV_PREFECT_FLOW_RUN] = str(flow_run.id)
    if mlflow_parent_run_id and env.get(ENV_TRACKING_URI) == mlflow_tracking_uri:
        env[ENV_PARENT_RUN_ID] = mlflow_parent_run_id
    else:
        env.pop(ENV_PARENT_RUN_ID, None)
    tags = stage_tags(stage)
    outcome = run_stage_at_commit.with_options(
        name=f"dvc-repro-{stage}", task_run_name=stage, tags=tags
    )(stage, commit, branch, git_remote, force, env)
    outcome["tags"] = sorted(tags)
    create_table_artifact(
        table=[outcome],
        key=OUTCOME_KEY,
        description=f"What the worker did for DVC stage {stage}",
    )
    return outcome


# --------------------------------------------------------------------------------------------
# The pipeline flow's side: send a stage to its pool and read the outcome back
# --------------------------------------------------------------------------------------------


def artifact_data(flow_run_id: UUID, key: str) -> str | None:
    """The data of the artifact ``key`` a flow run created (None if it made none): how a flow
    on one machine reads what a flow on another left, through the Prefect API alone."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    return artifacts[0].data if artifacts else None


def read_outcome(flow_run_id: UUID) -> dict[str, Any]:
    """The outcome table a stage flow run left."""
    data = artifact_data(flow_run_id, OUTCOME_KEY)
    if data is None:
        raise StageDispatchError(f"stage flow run {flow_run_id} left no outcome")
    return (json.loads(data) if isinstance(data, str) else data)[0]


@task(cache_policy=NO_CACHE, persist_result=False)
def dispatch_stage(
    stage: str,
    *,
    commit: str,
    branch: str,
    git_remote: str,
    force: bool,
    mlflow_parent_run_id: str | None,
    mlflow_tracking_uri: str | None,
    pool: str,
) -> dict[str, Any]:
    """Run ``stage`` as a flow run of its pool's deployment and wait for it."""
    from prefect.deployments import run_deployment

    name = deployment_name(pool)
    get_run_logger().info("%s -> %s at %s", stage, name, commit[:12])
    run = run_deployment(
        name,
        parameters={
            "stage": stage,
            "commit": commit,
            "branch": branch,
            "git_remote": git_remote,
            "force": force,
            "mlflow_parent_run_id": mlflow_parent_run_id,
            "mlflow_tracking_uri": mlflow_tracking_uri,
        },
        flow_run_name=f"{stage} @ {commit[:8]}",
        timeout=None,
        tags=[f"pool:{pool}"],
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        message = (run.state.message if run.state else "") or ""
        raise StageDispatchError(
            f"stage {stage!r} on {name} ended {state} (flow run {run.name}, {run.id}): {message}"
        )
    return read_outcome(run.id)


def dispatch_task(pool: str, retries: int, retry_delay_seconds: float) -> Task:
    """The pipeline flow's task that sends one stage to ``pool`` (retried for LLM stages)."""
    return dispatch_stage.with_options(
        name=f"dispatch-{pool}",
        task_run_name="{stage}",
        tags={"dispatch", f"pool:{pool}"},
        retries=retries,
        retry_delay_seconds=retry_delay_seconds if retries else 0,
    )
