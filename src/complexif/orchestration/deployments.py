"""The Prefect side of running the pipeline on many machines: the work pools and deployments
declared in ``prefect.yaml``, and the one-time set-up of a Prefect server for them (pools,
tag concurrency limits, deployments).

``prefect.yaml`` is the single place pools and deployments are named; this module reads it
rather than repeating the names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = "prefect.yaml"
CHECKOUT_ENV = "COMPLEXIF_CHECKOUT"


class DeploymentConfigError(ValueError):
    """``prefect.yaml`` lacks what the pipeline needs from it."""


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str
    work_pool: str

    @property
    def flow_file(self) -> str:
        return self.entrypoint.split(":", 1)[0]


def load_deployments(project: str | os.PathLike[str]) -> list[Deployment]:
    """The deployments of ``prefect.yaml`` in ``project``."""
    path = Path(project) / PREFECT_YAML
    if not path.is_file():
        raise DeploymentConfigError(f"{path}: not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: list[Deployment] = []
    for i, item in enumerate(data.get("deployments") or []):
        try:
            found.append(
                Deployment(
                    name=str(item["name"]),
                    entrypoint=str(item["entrypoint"]),
                    work_pool=str(item["work_pool"]["name"]),
                )
            )
        except (KeyError, TypeError) as exc:
            raise DeploymentConfigError(
                f"{path}: deployments[{i}] needs name, entrypoint and work_pool.name ({exc})"
            ) from None
    if not found:
        raise DeploymentConfigError(f"{path}: no deployments")
    return found


def pool_of(project: str | os.PathLike[str], flow_file: str, deployment: str) -> str:
    """The work pool of ``deployment`` of the flow in ``flow_file`` (e.g. ``flows/stage.py``,
    ``gpu``)."""
    for item in load_deployments(project):
        if item.flow_file == flow_file and item.name == deployment:
            return item.work_pool
    raise DeploymentConfigError(
        f"{Path(project) / PREFECT_YAML}: no deployment {deployment!r} of {flow_file}"
    )


def work_pools(project: str | os.PathLike[str]) -> list[str]:
    """Every work pool a deployment of ``prefect.yaml`` runs on, in file order."""
    return list(dict.fromkeys(d.work_pool for d in load_deployments(project)))


def ensure_work_pools(client: Any, names: list[str]) -> list[str]:
    """Create the missing ones as process pools; the names created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created: list[str] = []
    for name in names:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=ProcessWorker.type,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            created.append(name)
    return created


def ensure_concurrency_limits(client: Any, limits: Mapping[str, int]) -> dict[str, int]:
    """Set each tag's concurrency limit (created, or changed to this value)."""
    for tag, limit in limits.items():
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
    return dict(limits)


def deploy_command() -> list[str]:
    """``prefect deploy --all`` without prompts, run from the project root."""
    return [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]


def deploy_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``prefect deploy``: without ``COMPLEXIF_CHECKOUT``, so the pull
    step's ``{{ $COMPLEXIF_CHECKOUT }}`` stays a placeholder that each worker fills in with
    its own clone at run time (a value here would pin every worker to this directory)."""
    env = dict(os.environ if base is None else base)
    env.pop(CHECKOUT_ENV, None)
    return env


def worker_command(pool: str, *, name: str | None = None, limit: int | None = None) -> list[str]:
    """``prefect worker start`` for a process worker on ``pool``."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
    command += ["--type", "process"]
    if name:
        command += ["--name", name]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command
