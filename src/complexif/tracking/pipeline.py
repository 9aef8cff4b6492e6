"""A parent MLflow run for one execution of the whole pipeline (a Prefect flow run, say).

Stages run as separate processes (``dvc repro`` starts them), so the parent is handed down through
the environment: ``COMPLEXIF_PARENT_RUN_ID`` is set while the block runs and every
:func:`complexif.tracking.stage_run` started meanwhile nests under it. The MLflow UI then shows one
pipeline run with a child run per stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from complexif.tracking.run import (
    DEFAULT_EXPERIMENT,
    ENV_EXPERIMENT,
    ENV_PARENT_RUN_ID,
    _get_or_create_experiment,
    flatten_metrics,
    git_tags,
    process_tags,
    tracking_enabled,
    tracking_uri,
)

log = logging.getLogger(__name__)


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def pipeline_run(
    project_root: str | os.PathLike[str],
    name: str = "pipeline",
    tags: Mapping[str, Any] | None = None,
) -> Iterator[PipelineRun]:
    """Open a parent run in the project's tracking store (the one its stages log to)."""
    if not tracking_enabled():
        yield PipelineRun(None, None)
        return
    from mlflow import MlflowClient

    root = Path(project_root).resolve()
    # The stages run with the project root as their working directory: resolve the store and
    # artifact location from there, so parent and children share them.
    with _cwd(root):
        uri = tracking_uri()
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _get_or_create_experiment(
            client, os.environ.get(ENV_EXPERIMENT) or DEFAULT_EXPERIMENT
        )
        run_tags = {
            "complexif.kind": "pipeline",
            **process_tags(),
            **git_tags(root),
            **(tags or {}),
        }
    run = client.create_run(
        experiment_id, run_name=name, tags={k: str(v) for k, v in run_tags.items()}
    )
    handle = PipelineRun(run.info.run_id, client)
    previous = os.environ.get(ENV_PARENT_RUN_ID)
    os.environ[ENV_PARENT_RUN_ID] = run.info.run_id
    status = "FINISHED"
    try:
        yield handle
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        raise
    finally:
        if previous is None:
            os.environ.pop(ENV_PARENT_RUN_ID, None)
        else:
            os.environ[ENV_PARENT_RUN_ID] = previous
        client.set_terminated(run.info.run_id, status="FAILED" if handle.failed else status)


class PipelineRun:
    def __init__(self, run_id: str | None, client: Any) -> None:
        self.run_id = run_id
        self._client = client
        # Set when the pipeline failed without an exception leaving the block.
        self.failed = False

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        if self._client is None:
            return
        for key, value in flatten_metrics(metrics).items():
            self._client.log_metric(self.run_id, key, value)
