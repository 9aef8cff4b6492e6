"""``prefect.yaml``, ``flows.setup`` and ``flows.worker``: the declared deployments load the
flows the pipeline dispatches to, the pull step lands each worker in its own clone, the set-up
is idempotent, and a worker refuses a clone it could not run stages in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from complexif.orchestration.deployments import (
    CHECKOUT_ENV,
    DeploymentConfigError,
    deploy_env,
    load_deployments,
    pool_of,
    work_pools,
    worker_command,
)
from flows import setup, worker
from flows.pipeline import FLOW_NAME, complexif_pipeline
from flows.stage import POOL_DEPLOYMENTS, STAGE_FLOW_NAME, complexif_stage, deployment_name
from tests.conftest import REPO_ROOT


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_prefect_yaml_declares_what_the_pipeline_dispatches_to():
    from prefect.flows import load_flow_from_entrypoint

    deployments = {d.name: d for d in load_deployments(REPO_ROOT)}
    assert set(deployments) == {"complexif", *POOL_DEPLOYMENTS.values()}
    flows = {
        name: load_flow_from_entrypoint(str(REPO_ROOT / d.entrypoint))
        for name, d in deployments.items()
    }
    assert flows["complexif"].name == FLOW_NAME == complexif_pipeline.name
    for kind, name in POOL_DEPLOYMENTS.items():
        assert flows[name].name == STAGE_FLOW_NAME == complexif_stage.name
        assert deployment_name(kind) == f"{STAGE_FLOW_NAME}/{name}"
    assert pool_of(REPO_ROOT, "flows/stage.py", "gpu") == "complexif-gpu"
    assert pool_of(REPO_ROOT, "flows/stage.py", "cpu") == "complexif-cpu"
    assert work_pools(REPO_ROOT) == ["complexif-cpu", "complexif-gpu"]

    raw = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    pipeline = next(d for d in raw["deployments"] if d["name"] == "complexif")
    assert pipeline["parameters"] == {"dispatch": True}
    # The schedule exists but is off until someone switches it on.
    assert [s["active"] for s in pipeline["schedules"]] == [False]
    scheduled = pipeline["schedules"][0]["parameters"]["stages"]
    assert "train_sft" not in scheduled and "respond" in scheduled
    with pytest.raises(DeploymentConfigError, match="no deployment 'tpu'"):
        pool_of(REPO_ROOT, "flows/stage.py", "tpu")


@pytest.mark.usefixtures("prefect_server")  # the step resolves variables through the API
def test_pull_step_moves_each_worker_into_its_own_clone(tmp_path, monkeypatch):
    """Deploy-time templating keeps the placeholder; the run-time step fills in the worker's."""
    from prefect.deployments.steps.core import run_step
    from prefect.utilities.templating import apply_values

    raw = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    monkeypatch.setenv(CHECKOUT_ENV, "/where/setup/ran")
    assert CHECKOUT_ENV not in deploy_env()  # `prefect deploy` runs without the deployer's own
    monkeypatch.delenv(CHECKOUT_ENV)
    deployed = apply_values(raw["pull"], dict(os.environ), remove_notset=False)  # as it does
    assert deployed == raw["pull"]

    clone = tmp_path / "gpu-clone"
    clone.mkdir()
    monkeypatch.setenv(CHECKOUT_ENV, str(clone))
    monkeypatch.chdir(tmp_path)
    import asyncio

    output = asyncio.run(run_step(deployed[0]))
    assert Path(output["directory"]).resolve() == clone.resolve()
    assert Path.cwd().resolve() == clone.resolve()


def test_worker_command():
    command = worker_command("complexif-gpu", name="gpu-1", limit=2)
    assert command[1:] == [
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        "complexif-gpu",
        "--type",
        "process",
        "--name",
        "gpu-1",
        "--limit",
        "2",
    ]


def test_worker_refuses_a_clone_it_could_not_run_stages_in(make_repo, tmp_path, dvc):
    params = {
        "orchestration": {
            "branch": "main",
            "git_remote": "origin",
            "push": True,
            "concurrency_limits": {"gpu": 1},
        }
    }
    project = make_repo({}, params)
    problems = worker.check_checkout(project)
    assert any("no git remote 'origin'" in p for p in problems)
    assert any("no default DVC remote" in p for p in problems)

    dvc(project, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "remote")
    origin = tmp_path / "origin.git"
    _git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert worker.check_checkout(clone) == []

    (clone / "params.yaml").write_text(yaml.safe_dump({"orchestration": None}))
    problems = worker.check_checkout(clone)
    assert len(problems) == 1 and "orchestration" in problems[0]


@pytest.mark.usefixtures("prefect_server")
def test_setup_creates_pools_and_limits_once(capsys):
    from prefect.client.orchestration import get_client

    assert setup.main(["--no-deploy"]) == 0
    first = capsys.readouterr().out
    assert "complexif-cpu, complexif-gpu (complexif-cpu, complexif-gpu created)" in first
    assert "gpu=1" in first and "llm-api=4" in first
    assert setup.main(["--no-deploy"]) == 0  # idempotent
    assert "(none created)" in capsys.readouterr().out
    with get_client(sync_client=True) as client:
        limits = {
            c.tag: c.concurrency_limit for c in client.read_concurrency_limits(limit=50, offset=0)
        }
        pools = {p.name: p.type for p in client.read_work_pools()}
    assert limits["gpu"] == 1 and limits["llm-api"] == 4
    assert pools["complexif-cpu"] == pools["complexif-gpu"] == "process"
