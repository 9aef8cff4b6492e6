"""The pipeline across machines, for real but small: a Prefect server, the deployments of
``prefect.yaml`` set up by ``python -m flows.setup``, two process workers (one per pool) each in
its own clone, a bare git origin and a local DVC remote. Stages are trivial commands named like
ComplexIF's, so the run takes a minute; ``tests/test_pipeline_e2e.py`` does the same on the real
pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")

ORCHESTRATION = {
    "branch": "main",
    "git_remote": "origin",
    "push": True,
    "concurrency_limits": {"gpu": 1, "llm-api": 2},
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _stages(py_cmd) -> dict:
    return {
        "seeds": {"cmd": py_cmd("open('seeds.txt', 'w').write('seed;')"), "outs": ["seeds.txt"]},
        "respond": {
            "cmd": py_cmd("open('responses.txt', 'w').write(open('seeds.txt').read() * 2)"),
            "deps": ["seeds.txt"],
            "outs": ["responses.txt"],
        },
        "train_sft": {
            "cmd": py_cmd("open('model.txt', 'w').write(open('responses.txt').read() + '!')"),
            "deps": ["responses.txt"],
            "outs": ["model.txt", {"train_metrics.json": {"cache": False}}],
        },
    }


def _api_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_WORKER_QUERY_SECONDS="2",
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    env["COMPLEXIF_MLFLOW"] = "0"
    return env


@pytest.fixture
def distributed(tmp_path, make_repo, py_cmd, dvc) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(project, origin, cpu clone, gpu clone), with the deployments set up and a worker running
    in each clone."""
    stages = _stages(py_cmd)
    stages["train_sft"]["cmd"] = py_cmd(
        "open('model.txt', 'w').write(open('responses.txt').read() + '!'); "
        "open('train_metrics.json', 'w').write('{}')"
    )
    project = make_repo(stages, {"orchestration": ORCHESTRATION})
    shutil.copytree(
        REPO_ROOT / "flows", project / "flows", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(REPO_ROOT / "prefect.yaml", project / "prefect.yaml")
    dvc(project, "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote"))
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "flows, prefect.yaml, dvc remote")
    origin = tmp_path / "origin.git"
    _git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    env = _api_env()
    setup = subprocess.run(
        [sys.executable, "-m", "flows.setup", "--project", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert "complexif-cpu, complexif-gpu" in setup.stdout
    workers = []
    clones = []
    for kind in ("cpu", "gpu"):
        clone = tmp_path / kind
        _git(tmp_path, "clone", "-q", str(origin), str(clone))
        clones.append(clone)
        log = open(tmp_path / f"worker-{kind}.log", "w")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "flows.worker", kind, "--name", f"test-{kind}"],
                cwd=clone,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        yield project, origin, clones[0], clones[1]
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _trigger(**parameters) -> object:
    from prefect.deployments import run_deployment

    return run_deployment(
        "complexif-pipeline/complexif", parameters=parameters, timeout=900, as_subflow=False
    )


def _flow_runs_by_stage(parent_id) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["cpu", "gpu"]))
        )
        deployments = {d.id: d.name for d in client.read_deployments()}
    return {
        (run.parameters["stage"], run.parameters["commit"]): (run, deployments[run.deployment_id])
        for run in runs
    }


def _wait_for_workers(timeout: float = 120.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            pools = {
                name: client.read_workers_for_work_pool(name)
                for name in ("complexif-cpu", "complexif-gpu")
            }
            if all(pools.values()):
                return
            time.sleep(1)
    raise AssertionError(f"workers did not come up: {pools}")


def test_dispatched_run_sends_each_stage_to_its_pool_and_a_second_run_does_nothing(distributed):
    project, origin, cpu, gpu = distributed
    _wait_for_workers()
    start = _git(origin, "rev-parse", "main")

    first = _trigger()
    assert first.state.is_completed(), first.state
    final = _git(origin, "rev-parse", "main")
    assert final != start
    # The lock of every stage is on the branch, and so is the git-tracked metrics file.
    lock = yaml.safe_load(_git(origin, "show", "main:dvc.lock"))
    assert set(lock["stages"]) == {"seeds", "respond", "train_sft"}
    assert _git(origin, "show", "main:train_metrics.json") == "{}"

    runs = _flow_runs_by_stage(first.id)
    pools = {stage: deployment for (stage, _), (run, deployment) in runs.items()}
    assert pools == {"seeds": "cpu", "respond": "cpu", "train_sft": "gpu"}
    assert all(run.state.is_completed() for run, _ in runs.values())
    # Each clone holds the data of its own stages (and what they read), nothing else.
    assert (gpu / "model.txt").read_text() == "seed;seed;!"
    assert not (gpu / "seeds.txt").exists()
    assert not (cpu / "model.txt").exists()

    second = _trigger()
    assert second.state.is_completed(), second.state
    assert _git(origin, "rev-parse", "main") == final  # nothing committed
    again = {
        stage: run
        for (stage, commit), (run, _) in _flow_runs_by_stage(second.id).items()
        if commit == final
    }
    assert set(again) == {"seeds", "respond", "train_sft"}
    from flows.stage import read_outcome

    assert {s: read_outcome(r.id)["status"] for s, r in again.items()} == dict.fromkeys(
        again, "up-to-date"
    )
    assert not (gpu / "seeds.txt").exists()
