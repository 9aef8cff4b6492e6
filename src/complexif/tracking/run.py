"""One MLflow run per DVC stage, nested under the pipeline flow's run when there is one.

DVC owns reproducibility (what was computed from what); MLflow is the browsable record of each
stage's params, metrics, inputs and artifacts. The run is started with the fluent API on purpose:
an *active* run is what the Hugging Face / TRL MLflow callback logs training curves into, so
trainer metrics land in the stage's run without extra wiring. Our own logging goes through an
explicit ``MlflowClient`` and run id, so it cannot leak into some other active run.

Environment:
  MLFLOW_TRACKING_URI       tracking store (default ``sqlite:///<cwd>/mlflow.db``)
  COMPLEXIF_EXPERIMENT      experiment name (default ``complexif``)
  COMPLEXIF_ARTIFACT_ROOT   artifact location for a newly created experiment (default
                            ``<cwd>/mlartifacts``, or the tracking server's own store); a path
                            or a URI
  COMPLEXIF_PARENT_RUN_ID   run id of the orchestrating flow's run; stage runs nest under it
  COMPLEXIF_MLFLOW          ``0``/``false``/``off``/``no`` disables tracking (no-op run object)

Lineage (:class:`Lineage`): every run is tagged with the DVC experiment it belongs to and that
experiment's baseline commit, read from ``DVC_EXP_NAME``/``DVC_EXP_BASELINE_REV`` (set by ``dvc
exp run`` and its queue for every stage command) or, when the Prefect flow runs the experiment
stage by stage, ``COMPLEXIF_DVC_EXPERIMENT``/``COMPLEXIF_DVC_BASELINE_REV``; and with the Prefect
flow run that ran it (``COMPLEXIF_PREFECT_FLOW_RUN``).

A run ends FINISHED, FAILED (an exception, a non-zero exit) or KILLED (Ctrl-C, a stop signal).
A process killed outright (``kill -9``, out of memory, power loss) cannot end its run; every run
records which process owns it, and the next stage start on the same machine marks RUNNING runs
whose process is gone as KILLED (see :func:`reap_dead_runs`).

mlflow is imported lazily so disabled runs (and importing this module) stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import complexif
from complexif.io import uninterrupted

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "COMPLEXIF_EXPERIMENT"
ENV_ARTIFACT_ROOT = "COMPLEXIF_ARTIFACT_ROOT"
ENV_PARENT_RUN_ID = "COMPLEXIF_PARENT_RUN_ID"
ENV_ENABLED = "COMPLEXIF_MLFLOW"
# Set by our flows for the stage processes they start (see Lineage).
ENV_DVC_EXPERIMENT = "COMPLEXIF_DVC_EXPERIMENT"
ENV_DVC_BASELINE_REV = "COMPLEXIF_DVC_BASELINE_REV"
ENV_PREFECT_FLOW_RUN = "COMPLEXIF_PREFECT_FLOW_RUN"
# Set by DVC itself (dvc/env.py) for every stage command of `dvc exp run` and `dvc queue`.
DVC_EXP_NAME = "DVC_EXP_NAME"
DVC_EXP_BASELINE_REV = "DVC_EXP_BASELINE_REV"

DEFAULT_EXPERIMENT = "complexif"
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACT_ROOT = "mlartifacts"

TAG_GIT_COMMIT = "git_commit"
TAG_GIT_DIRTY = "git_dirty"
TAG_DVC_STAGE = "dvc_stage"
TAG_PARAMS_DIGEST = "params_digest"
TAG_VERSION = "complexif.version"
TAG_ERROR = "error"
# Which process owns a run: the host name, the pid, and where /proc has them (Linux) the boot,
# the pid namespace and the process's start time, so a reused pid or a pid seen from another
# container is never taken for the run's process.
TAG_HOST = "complexif.host"
TAG_PID = "complexif.pid"
TAG_PROCESS = "complexif.process"
# Lineage: which DVC experiment (name, baseline commit, and once saved its own commit) and which
# Prefect flow run a run belongs to. `complexif runs compare --experiment NAME` finds runs by these.
TAG_DVC_EXPERIMENT = "complexif.dvc_experiment"
TAG_DVC_BASELINE_REV = "complexif.dvc_baseline_rev"
TAG_DVC_EXP_REV = "complexif.dvc_exp_rev"
TAG_PREFECT_FLOW_RUN = "complexif.prefect_flow_run"
# A stage DVC restored from its run cache (its command never ran): the run is recorded afterwards
# from dvc.lock and the stage's metrics files (complexif.tracking.restored).
TAG_RESTORED = "complexif.restored"
# The stage's outputs as dvc.lock records them ({path: md5}), on restored runs.
TAG_DVC_OUTS = "complexif.dvc_outs"
# "pipeline" on the parent run of a flow run.
TAG_KIND = "complexif.kind"

# MLflow's own limits (mlflow.utils.validation); fallbacks in case a release moves them.
_PARAM_VALUE_LIMIT = 6000
_TAG_VALUE_LIMIT = 8000
_KEY_LIMIT = 250
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TRUNCATION_MARK = "...[truncated]"
_FALSE_VALUES = frozenset({"0", "false", "no", "off"})


class TrackingError(RuntimeError):
    """Tracking is misconfigured (e.g. the parent run does not exist in this tracking store)."""


def tracking_enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(ENV_ENABLED, "1").strip().lower() not in _FALSE_VALUES


def tracking_uri(base: str | os.PathLike[str] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` or an absolute sqlite URI for ``mlflow.db`` in ``base`` (default:
    the working directory, which for a stage is the project root).

    Made absolute at start so a stage that changes directory keeps logging to the same store.
    """
    uri = os.environ.get(ENV_TRACKING_URI, "").strip()
    return uri or f"sqlite:///{(Path(base or Path.cwd()) / DEFAULT_DB).resolve()}"


def artifact_root_uri(base: str | os.PathLike[str] | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: ``COMPLEXIF_ARTIFACT_ROOT``; else, for a
    tracking server, wherever the server stores them (None: it proxies uploads, so workers on
    other machines need no access to its disk); else ``mlartifacts`` beside the local store.
    Relative paths are taken from ``base`` (default: the working directory)."""
    root = os.environ.get(ENV_ARTIFACT_ROOT, "").strip()
    if not root and tracking_uri(base).startswith(("http://", "https://")):
        return None
    root = root or DEFAULT_ARTIFACT_ROOT
    if "://" in root or root.startswith("file:"):
        return root
    return (Path(base or Path.cwd()) / root).resolve().as_uri()


def experiment_name() -> str:
    """The MLflow experiment stage and pipeline runs go to (``COMPLEXIF_EXPERIMENT``)."""
    return os.environ.get(ENV_EXPERIMENT) or DEFAULT_EXPERIMENT


@dataclass(frozen=True)
class Lineage:
    """Where a run comes from: the DVC experiment (name and baseline commit) and the Prefect flow
    run. Empty fields are left out of the tags."""

    experiment: str | None = None
    baseline_rev: str | None = None
    prefect_flow_run: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Lineage:
        """DVC's own variables first (a stage ``dvc exp run`` started belongs to that experiment,
        whatever started ``dvc``), then the ones our flows set."""
        env = os.environ if env is None else env
        if env.get(DVC_EXP_NAME):
            experiment, baseline = env.get(DVC_EXP_NAME), env.get(DVC_EXP_BASELINE_REV)
        else:
            experiment, baseline = env.get(ENV_DVC_EXPERIMENT), env.get(ENV_DVC_BASELINE_REV)
        return cls(experiment or None, baseline or None, env.get(ENV_PREFECT_FLOW_RUN) or None)

    def env(self) -> dict[str, str]:
        """The variables that hand this lineage down to stage processes (see :meth:`from_env`)."""
        pairs = (
            (ENV_DVC_EXPERIMENT, self.experiment),
            (ENV_DVC_BASELINE_REV, self.baseline_rev),
            (ENV_PREFECT_FLOW_RUN, self.prefect_flow_run),
        )
        return {k: v for k, v in pairs if v}

    def tags(self) -> dict[str, str]:
        pairs = (
            (TAG_DVC_EXPERIMENT, self.experiment),
            (TAG_DVC_BASELINE_REV, self.baseline_rev),
            (TAG_PREFECT_FLOW_RUN, self.prefect_flow_run),
        )
        return {k: v for k, v in pairs if v}


def lineage_tags(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The lineage tags of a run started in this environment."""
    return Lineage.from_env(env).tags()


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of the params as canonical JSON: equal digests mean equal stage configuration."""
    payload = json.dumps(
        params, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _sanitize_key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / space and colon; anything else is rejected.
    cleaned = "".join(c if c.isalnum() or c in "_-./ :" else "_" for c in key)
    return cleaned[:_KEY_LIMIT]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def _param_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set)):
        items = sorted(value, key=str) if isinstance(value, set) else list(value)
        return json.dumps(items, default=str, ensure_ascii=False)
    return str(value)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys (``train.lr``); values become MLflow-sized strings."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name))
        else:
            flat[_sanitize_key(name)] = _truncate(_param_value(value), _PARAM_VALUE_LIMIT)
    return flat


def numeric(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of nested metrics (MLflow takes nothing else): None and text left out."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            inner = numeric(value)
            if inner:
                out[key] = inner
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts become dotted keys; values must be numbers (bools count as 0/1)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name))
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} is not numeric: {value!r}") from None
        if math.isnan(number):
            logger.debug("metric %s is NaN", name)
        flat[_sanitize_key(name)] = number
    return flat


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_tags(cwd: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag when inside a git work tree with commits; empty otherwise."""
    cwd = cwd or Path.cwd()
    commit = _git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    tags = {TAG_GIT_COMMIT: commit}
    if status is not None:
        tags[TAG_GIT_DIRTY] = str(bool(status)).lower()
    return tags


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, from /proc); None if it is gone or a
    zombie (dead, not yet waited for), or where /proc does not exist."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _machine() -> str:
    """This machine and pid namespace: pids can only be compared between equal ones."""
    boot = _read("/proc/sys/kernel/random/boot_id") or "-"
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = "-"
    return f"{socket.gethostname()}|{boot}|{pidns}"


def process_tags() -> dict[str, str]:
    """Tags naming the current process as a run's owner (read back by :func:`reap_dead_runs`)."""
    pid = os.getpid()
    return {
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(pid),
        TAG_PROCESS: f"{_machine()}|{pid}|{_start_time(pid) or '-'}",
    }


def _owner_gone(tags: Mapping[str, str], machine: str) -> bool:
    """True only when the run's process is provably gone; any doubt leaves the run alone."""
    owner = tags.get(TAG_PROCESS, "")
    head, _, rest = owner.rpartition("|")  # rest: the start time
    owner_machine, _, pid_text = head.rpartition("|")
    if owner_machine != machine or not pid_text.isdigit():
        return False  # another machine or container: its pids mean nothing here
    pid = int(pid_text)
    if rest != "-" and os.path.isdir("/proc"):
        # The start time tells a reused pid from the run's own process.
        return _start_time(pid) != rest
    # No start time to compare: a live pid may be a reuse, so only a free pid proves death
    # (a reused one leaves the dead run RUNNING, never a live one KILLED).
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def reap_dead_runs(client: MlflowClient, experiment_id: str, reaper: str) -> list[str]:
    """Mark KILLED every RUNNING run of the experiment whose process on this machine is gone
    (killed with SIGKILL, out of memory, the machine rebooted); returns their run ids.

    Runs from other machines or containers, and runs whose process cannot be proved gone, are
    left alone. Never fails the caller: a tracking error here is only logged.
    """
    from mlflow.entities import RunStatus

    machine = _machine()
    reaped: list[str] = []
    try:
        runs = client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
        for stale in runs:
            if not _owner_gone(stale.data.tags, machine):
                continue
            run_id = stale.info.run_id
            pid = stale.data.tags.get(TAG_PID, "?")
            client.set_tag(
                run_id,
                TAG_ERROR,
                f"process {pid} ended without ending this run (killed with SIGKILL, out of "
                f"memory, or a reboot); marked KILLED when {reaper} started",
            )
            client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))
            logger.warning(
                "MLflow run %s (%s) was left RUNNING by process %s, which is gone: marked KILLED",
                run_id,
                stale.info.run_name,
                pid,
            )
            reaped.append(run_id)
    except Exception:
        logger.warning("could not check for runs left RUNNING by killed stages", exc_info=True)
    return reaped


def _quiet_mlflow() -> None:
    """Silence MLflow's INFO chatter (DB migration notices, ...) unless the user asked for it."""
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _mlflow_limits() -> None:
    global _PARAM_VALUE_LIMIT, _TAG_VALUE_LIMIT, _KEY_LIMIT, _PARAMS_PER_BATCH, _METRICS_PER_BATCH
    try:
        from mlflow.utils import validation as v
    except ImportError:  # pragma: no cover - only if MLflow reorganises its modules
        return
    _PARAM_VALUE_LIMIT = getattr(v, "MAX_PARAM_VAL_LENGTH", _PARAM_VALUE_LIMIT)
    _TAG_VALUE_LIMIT = getattr(v, "MAX_TAG_VAL_LENGTH", _TAG_VALUE_LIMIT)
    _KEY_LIMIT = getattr(v, "MAX_ENTITY_KEY_LENGTH", _KEY_LIMIT)
    _PARAMS_PER_BATCH = getattr(v, "MAX_PARAMS_TAGS_PER_BATCH", _PARAMS_PER_BATCH)
    _METRICS_PER_BATCH = getattr(v, "MAX_METRICS_PER_BATCH", _METRICS_PER_BATCH)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class StageRun:
    """Handle for the current stage's run; every method is a no-op when tracking is disabled."""

    stage: str
    run_id: str | None = None
    experiment_id: str | None = None
    _client: MlflowClient | None = None

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (flattened) params; MLflow params are write-once, so re-logging a key must agree."""
        if self._client is None or not params:
            return
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for batch in _chunks(items, _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._client is None or not tags:
            return
        from mlflow.entities import RunTag

        items = [
            RunTag(_sanitize_key(str(k)), _truncate(str(v), _TAG_VALUE_LIMIT))
            for k, v in tags.items()
        ]
        for batch in _chunks(items, _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, tags=batch)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics (nested dicts flattened to dotted keys) at ``step`` (default 0)."""
        if self._client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in flatten_metrics(metrics).items()]
        for batch in _chunks(items, _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file or a whole directory into the run's artifacts."""
        if self._client is None:
            return
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"artifact {path} does not exist")

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a JSON (or YAML, by extension) document as an artifact."""
        if self._client is None:
            return
        self._client.log_dict(self.run_id, dict(dictionary), artifact_file)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> None:
        """Store a DataFrame as an MLflow table artifact (viewable in the UI's evaluation tab)."""
        if self._client is None:
            return
        self._client.log_table(self.run_id, data=df, artifact_file=artifact_file)

    def log_input_dataset(
        self,
        df: pd.DataFrame,
        name: str,
        source_path: str | os.PathLike[str] | None = None,
        context: str = "input",
        digest: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record ``df`` as an input of this run (digest, schema, row count, source path).

        ``digest`` replaces MLflow's own (a hash of the frame) with one that names the file,
        e.g. DVC's md5; ``tags`` go on the run's link to the dataset.
        """
        if self._client is None:
            return
        import mlflow.data

        source = str(Path(source_path).resolve()) if source_path is not None else None
        with warnings.catch_warnings():
            # Local paths match two equivalent source types (file:// and bare), which MLflow warns
            # about; schema inference warns about integer columns. Neither is actionable here.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(df, source=source, name=name)
            fields = dataset.to_dict()
        if digest:
            fields["digest"] = digest
        self._log_dataset(fields, context, tags)

    def log_input_file(
        self,
        path: str | os.PathLike[str],
        digest: str,
        name: str,
        context: str = "input",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Record a file or directory as an input of this run without reading it (a model
        directory, a large JSONL): its name, location and ``digest`` (e.g. DVC's md5)."""
        if self._client is None:
            return
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the two local source types, as above
            source = resolve_dataset_source(str(Path(path).resolve()))
        dataset = MetaDataset(source, name=name, digest=digest)
        self._log_dataset(dataset.to_dict(), context, tags)

    def _log_dataset(
        self, fields: Mapping[str, Any], context: str, tags: Mapping[str, str] | None
    ) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        # Built from the public to_dict() so we can log to our run id via the client.
        entity = Dataset(**fields)
        items = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
        items += [InputTag(key=str(k), value=str(v)) for k, v in (tags or {}).items()]
        self._client.log_inputs(self.run_id, datasets=[DatasetInput(dataset=entity, tags=items)])


def _get_or_create_experiment(
    client: MlflowClient, name: str, base: str | os.PathLike[str] | None = None
) -> str:
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_root_uri(base))
        except MlflowException:
            # Another stage process created it between our lookup and create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        logger.warning("MLflow experiment %r was deleted; restoring it", name)
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _resolve_parent(client: MlflowClient, active_run_id: str | None) -> str | None:
    parent = os.environ.get(ENV_PARENT_RUN_ID, "").strip() or None
    if parent is None:
        return None
    if active_run_id is not None and active_run_id != parent:
        # MLflow refuses a parent other than the active run; the in-process active run wins.
        logger.warning(
            "%s=%s but run %s is active; nesting under the active run",
            ENV_PARENT_RUN_ID,
            parent,
            active_run_id,
        )
        return None
    try:
        client.get_run(parent)
    except Exception as exc:
        raise TrackingError(
            f"{ENV_PARENT_RUN_ID}={parent} is not a run in tracking store {tracking_uri()} ({exc})"
        ) from exc
    return parent


@contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any], tags: Mapping[str, Any] | None = None
) -> Iterator[StageRun]:
    """Run the block inside an MLflow run named ``stage``; FAILED (and re-raised) on exception."""
    if not tracking_enabled():
        logger.debug("MLflow tracking disabled (%s); stage %s not tracked", ENV_ENABLED, stage)
        yield StageRun(stage=stage)
        return

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus

    # After the import: importing mlflow (re)configures its loggers from MLFLOW_LOGGING_LEVEL.
    _quiet_mlflow()

    _mlflow_limits()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = _get_or_create_experiment(client, experiment_name())

    active = mlflow.active_run()
    active_id = active.info.run_id if active is not None else None
    parent = _resolve_parent(client, active_id)
    reap_dead_runs(client, experiment_id, f"stage {stage}")

    run_tags = {
        TAG_DVC_STAGE: stage,
        TAG_PARAMS_DIGEST: params_digest(params),
        TAG_VERSION: complexif.__version__,
        **process_tags(),
        **git_tags(),
        **lineage_tags(),
        **{str(k): str(v) for k, v in (tags or {}).items()},
    }
    # MLFLOW_RUN_ID would make start_run *resume* that run instead of creating this stage's run
    # (and MLflow deletes the variable as a side effect); parenting goes via ENV_PARENT_RUN_ID.
    stray_run_id = os.environ.pop("MLFLOW_RUN_ID", None)
    if stray_run_id:
        logger.warning(
            "ignoring MLFLOW_RUN_ID=%s; use %s to nest stage runs", stray_run_id, ENV_PARENT_RUN_ID
        )
    status = RunStatus.to_string(RunStatus.FINISHED)
    handle = StageRun(stage=stage, experiment_id=experiment_id)
    try:
        # Held to the end of this block, a stop signal arrives with the run already in hand
        # (and is raised inside the try, which ends the run KILLED).
        with uninterrupted():
            try:
                run = mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=stage,
                    nested=active is not None,
                    parent_run_id=parent,
                    tags={k: _truncate(v, _TAG_VALUE_LIMIT) for k, v in run_tags.items()},
                    log_system_metrics=False,
                )
            finally:
                if stray_run_id:
                    os.environ["MLFLOW_RUN_ID"] = stray_run_id
            handle = StageRun(
                stage=stage, run_id=run.info.run_id, experiment_id=experiment_id, _client=client
            )
        handle.log_params(params)
        yield handle
    except SystemExit as exc:
        # sys.exit(0) inside a stage is a normal end; any other exit code is a failure.
        if exc.code not in (0, None):
            status = _record_failure(handle, exc, RunStatus.to_string(RunStatus.FAILED))
        raise
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = _record_failure(
            handle, exc, RunStatus.to_string(RunStatus.KILLED if interrupted else RunStatus.FAILED)
        )
        raise
    finally:
        if handle.run_id is not None:
            # Ending the run is a write or two: a stop signal must not leave it half done.
            with uninterrupted():
                _end_run(client, handle.run_id, active_id, status)


def _record_failure(handle: StageRun, exc: BaseException, status: str) -> str:
    try:
        handle.set_tags({TAG_ERROR: f"{type(exc).__name__}: {exc}"})
    except Exception:  # never mask the stage's own exception with a tracking one
        logger.warning("could not record the error on MLflow run %s", handle.run_id, exc_info=True)
    return status


def _end_run(
    client: MlflowClient, run_id: str | None, outer_run_id: str | None, status: str
) -> None:
    import mlflow

    # Close runs left open inside the block (e.g. by a trainer callback) so ours is on top, but
    # never the run that was active before we started (the flow's run when run in-process).
    while (active := mlflow.active_run()) is not None and active.info.run_id not in (
        run_id,
        outer_run_id,
    ):
        logger.debug("ending leftover nested MLflow run %s", active.info.run_id)
        mlflow.end_run(status=status)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)
    else:
        # Someone ended our run early; make sure its final status is still recorded.
        client.set_terminated(run_id, status=status)
