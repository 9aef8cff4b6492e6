"""A parent MLflow run for one execution of the whole pipeline (a Prefect flow run, say).

Stages run as separate processes (``dvc repro`` starts them), so the parent is handed down through
the environment: ``COMPLEXIF_PARENT_RUN_ID`` is set while the block runs and every
:func:`complexif.tracking.stage_run` started meanwhile nests under it. The MLflow UI then shows one
pipeline run with a child run per stage.

The run's :class:`~complexif.tracking.run.Lineage` (DVC experiment, baseline commit, Prefect flow
run) is handed down the same way, so parent and children carry the same lineage tags; once the
experiment is saved, :meth:`PipelineRun.tag_experiment_revision` adds its commit to all of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from complexif.tracking.run import (
    ENV_PARENT_RUN_ID,
    TAG_DVC_EXP_REV,
    TAG_KIND,
    Lineage,
    _get_or_create_experiment,
    experiment_name,
    flatten_metrics,
    git_tags,
    process_tags,
    tracking_enabled,
    tracking_uri,
)

log = logging.getLogger(__name__)


@contextmanager
def pipeline_run(
    project_root: str | os.PathLike[str],
    name: str = "pipeline",
    tags: Mapping[str, Any] | None = None,
    lineage: Lineage | None = None,
) -> Iterator[PipelineRun]:
    """Open a parent run in the project's tracking store (the one its stages log to); while the
    block runs, the stage processes it starts nest under it and inherit ``lineage``."""
    if not tracking_enabled():
        yield PipelineRun(None, None)
        return
    from mlflow import MlflowClient

    lineage = lineage or Lineage()
    root = Path(project_root).resolve()
    # The stages run with the project root as their working directory: resolve the store and
    # artifact location from there, so parent and children share them.
    client = MlflowClient(tracking_uri=tracking_uri(root))
    experiment_id = _get_or_create_experiment(client, experiment_name(), root)
    run_tags = {
        TAG_KIND: "pipeline",
        **process_tags(),
        **git_tags(root),
        **lineage.tags(),
        **(tags or {}),
    }
    run = client.create_run(
        experiment_id, run_name=name, tags={k: str(v) for k, v in run_tags.items()}
    )
    handle = PipelineRun(run.info.run_id, client)
    handed_down = {ENV_PARENT_RUN_ID: run.info.run_id, **lineage.env()}
    previous = {key: os.environ.get(key) for key in handed_down}
    os.environ.update(handed_down)
    status = "FINISHED"
    try:
        yield handle
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        raise
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
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

    def child_run_ids(self) -> list[str]:
        """The runs nested under this one (stage runs, restored-stage records)."""
        if self._client is None:
            return []
        experiment_id = self._client.get_run(self.run_id).info.experiment_id
        runs = self._client.search_runs(
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            max_results=10000,
        )
        return [r.info.run_id for r in runs]

    def tag_experiment_revision(self, rev: str) -> list[str]:
        """Tag this run and its children with the commit ``dvc exp save`` made (only known once
        every stage is done); returns the ids tagged."""
        if self._client is None:
            return []
        run_ids = [self.run_id, *self.child_run_ids()]
        for run_id in run_ids:
            self._client.set_tag(run_id, TAG_DVC_EXP_REV, rev)
        return run_ids
