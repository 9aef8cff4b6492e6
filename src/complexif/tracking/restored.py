"""MLflow runs for stages DVC restored from its run cache.

When a stage's dependencies, params and command match a run DVC has seen before, ``dvc repro``
prints ``Stage 'x' is cached - skipping run, checking out outputs`` and never starts the command,
so the stage opens no MLflow run: an experiment whose stages all came from the run cache would
leave no trace. :func:`record_restored` writes that trace afterwards: a FINISHED run named like
the stage, tagged ``complexif.restored=true``, with the lineage tags, the stage's outputs and
their md5 from ``dvc.lock`` (tag ``complexif.dvc_outs``, JSON), the params ``dvc.lock`` records
for it, and the numbers of its DVC metrics files as metrics. A metrics file's keys are logged as
they are (nested keys dotted); a metrics *directory*'s files get their name as prefix
(``metrics/evaluate/sft/ifeval.json`` -> ``ifeval.prompt_level_strict_acc``), which is how
``evaluate@*`` logs them when it runs.

The pipeline flow records the restored stages it sees; after a plain ``dvc repro``, run
``complexif runs record-restored LOG`` on its saved output.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import complexif
from complexif.io import DataError
from complexif.tracking.run import (
    ENV_PARENT_RUN_ID,
    TAG_DVC_OUTS,
    TAG_DVC_STAGE,
    TAG_RESTORED,
    TAG_VERSION,
    Lineage,
    _chunks,
    _get_or_create_experiment,
    _truncate,
    experiment_name,
    flatten_params,
    git_tags,
    tracking_enabled,
    tracking_uri,
)

log = logging.getLogger(__name__)

_TAG_VALUE_LIMIT = 8000
_BATCH = 100


def restored_stages(lines: Iterable[str]) -> list[str]:
    """The stages a ``dvc repro`` (or ``dvc exp run``) output reports as restored from the run
    cache, in the order it reports them."""
    from complexif.orchestration.dvc import RESTORED, StageTracker

    tracker = StageTracker()
    for line in lines:
        tracker.feed(line)
    return [stage for stage, status in tracker.statuses.items() if status == RESTORED]


def _numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics document as dotted keys (text, None and bools left out, as the
    stages leave them out when they log)."""
    out: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, int | float) and not isinstance(data, bool):
        out[prefix.rstrip(".")] = float(data)
    return out


def _load(path: Path) -> Any:
    import yaml

    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def metrics_of(path: Path) -> dict[str, float]:
    """The numbers of a DVC metrics output (a JSON/YAML file, or a directory of them)."""
    if path.is_file():
        return _numbers(_load(path))
    metrics: dict[str, float] = {}
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix in (".json", ".yaml", ".yml"):
                prefix = ".".join(file.relative_to(path).with_suffix("").parts)
                metrics.update(_numbers(_load(file), f"{prefix}."))
    return metrics


def _lock_entry(root: Path, stage: str) -> dict[str, Any]:
    import yaml

    lock = root / "dvc.lock"
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) if lock.is_file() else {}
    entry = ((data or {}).get("stages") or {}).get(stage)
    if entry is None:
        raise DataError(f"{lock}: no entry for stage {stage!r} (was it reproduced here?)")
    return entry


def _metric_paths(root: Path, stage: str) -> list[Path]:
    from dvc.repo import Repo

    with Repo(os.fspath(root)) as repo:
        (found,) = repo.stage.collect(stage)
        return [Path(out.fs_path) for out in found.outs if out.metric]


def _params(entry: Mapping[str, Any]) -> dict[str, str]:
    """The params dvc.lock records, as the live run logs them (``params.yaml`` keys as they
    are; keys of another params file prefixed with its name)."""
    flat: dict[str, str] = {}
    for file, values in (entry.get("params") or {}).items():
        prefix = "" if file == "params.yaml" else f"{file}:"
        flat.update({f"{prefix}{k}": v for k, v in flatten_params(values or {}).items()})
    return flat


def record_restored(
    root: str | os.PathLike[str],
    stages: Iterable[str],
    env: Mapping[str, str] | None = None,
    lineage: Lineage | None = None,
) -> list[str]:
    """A FINISHED run for each of ``stages`` (restored from the run cache) in the project's
    tracking store; returns their run ids.

    ``env`` gives the parent run (``COMPLEXIF_PARENT_RUN_ID``), the lineage and whether tracking
    is on (default: this process's environment); ``lineage``, when given, replaces the one
    ``env`` holds. The store and MLflow experiment are the ones the stages log to.
    """
    env = os.environ if env is None else env
    stages = list(stages)
    if not stages or not tracking_enabled(env):
        return []
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunStatus

    root = Path(root).resolve()
    lineage = lineage or Lineage.from_env(env)
    parent = env.get(ENV_PARENT_RUN_ID, "").strip() or None
    client = MlflowClient(tracking_uri=tracking_uri(root))
    experiment_id = _get_or_create_experiment(client, experiment_name(), root)
    run_ids: list[str] = []
    for stage in stages:
        entry = _lock_entry(root, stage)
        outs = {out["path"]: out.get("md5") for out in entry.get("outs") or []}
        tags = {
            TAG_DVC_STAGE: stage,
            TAG_RESTORED: "true",
            TAG_VERSION: complexif.__version__,
            TAG_DVC_OUTS: json.dumps(outs, sort_keys=True),
            **git_tags(root),
            **lineage.tags(),
        }
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(
            experiment_id,
            run_name=stage,
            tags={k: _truncate(str(v), _TAG_VALUE_LIMIT) for k, v in tags.items()},
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            metrics: dict[str, float] = {}
            for path in _metric_paths(root, stage):
                metrics.update(metrics_of(path))
            items = [Metric(k, v, now, 0) for k, v in metrics.items()]
            for batch in _chunks(items, 1000):
                client.log_batch(run_id, metrics=batch)
            params = [Param(k, v) for k, v in _params(entry).items()]
            for batch in _chunks(params, _BATCH):
                client.log_batch(run_id, params=batch)
        except BaseException:
            client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED))
        log.info("recorded %s (restored from the DVC run cache) as MLflow run %s", stage, run_id)
        run_ids.append(run_id)
    return run_ids


def restored_recorder(
    root: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> Callable[[Any], None]:
    """An ``on_outcome`` hook for :func:`complexif.orchestration.stage_run.reproduce`: records
    the stage when DVC restored it from the run cache. A tracking failure is only a warning: the
    stage's result stands without its record."""
    from complexif.orchestration.dvc import RESTORED

    def record(outcome: Any) -> None:
        if outcome.status != RESTORED:
            return
        try:
            record_restored(root, [outcome.stage], env)
        except Exception:
            log.warning(
                "could not record restored stage %s in MLflow", outcome.stage, exc_info=True
            )

    return record
