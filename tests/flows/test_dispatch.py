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
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from complexif.orchestration.git import git as _git
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")

ORCHESTRATION = {
    "branch": "main",
    "git_remote": "origin",
    "push": True,
    "concurrency_limits": {"gpu": 1, "llm-api": 2},
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


def _setup(project: Path, env: dict[str, str]) -> None:
    """``python -m flows.setup`` for ``project``: pools, limits, ``prefect deploy --all``."""
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


@contextmanager
def _workers(clones: dict[str, Path], envs: dict[str, dict[str, str]], logs: Path):
    """A ``python -m flows.worker KIND`` process in each clone, stopped on exit."""
    procs = []
    try:
        for kind, clone in clones.items():
            log = open(logs / f"worker-{kind}.log", "w")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flows.worker", kind, "--name", f"{logs.name}-{kind}"],
                    cwd=clone,
                    env=envs[kind],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        _wait_for_workers([f"{logs.name}-{kind}" for kind in clones])
        yield
    finally:
        # A Prefect worker takes SIGTERM as "finish the flow runs in hand", and it has none
        # here; the second SIGTERM is its own "stop now", which saves half a minute a worker.
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + 5
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def distributed(tmp_path, make_repo, toy_stages, dvc) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(project, origin, cpu clone, gpu clone), with the deployments set up and a worker running
    in each clone."""
    project = make_repo(toy_stages, {"respond": {"n": 2}, "orchestration": ORCHESTRATION})
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
    _setup(project, env)
    clones = {kind: tmp_path / kind for kind in ("cpu", "gpu")}
    for clone in clones.values():
        _git(tmp_path, "clone", "-q", str(origin), str(clone))
    with _workers(clones, {kind: env for kind in clones}, tmp_path):
        yield project, origin, clones["cpu"], clones["gpu"]


def _trigger(timeout: float = 900, **parameters) -> object:
    from prefect.deployments import run_deployment

    return run_deployment(
        "complexif-pipeline/complexif", parameters=parameters, timeout=timeout, as_subflow=False
    )


def _stage_flow_runs(origin: Path) -> dict[tuple[str, str], tuple[object, str]]:
    """(stage, commit) -> (flow run, deployment name) for every stage flow run started at a
    commit of ``origin`` (so runs of other tests on the same server are left out)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    commits = set(_git(origin, "rev-list", "--all").split())
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["cpu", "gpu"]))
        )
        deployments = {d.id: d.name for d in client.read_deployments()}
    return {
        (run.parameters["stage"], run.parameters["commit"]): (run, deployments[run.deployment_id])
        for run in runs
        if run.parameters["commit"] in commits
    }


def _wait_for_workers(names: list[str], timeout: float = 180.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            seen = {
                worker.name
                for pool in ("complexif-cpu", "complexif-gpu")
                for worker in client.read_workers_for_work_pool(pool)
            }
            if set(names) <= seen:
                return
            time.sleep(1)
    raise AssertionError(f"workers {names} did not come up (seen: {sorted(seen)})")


def test_dispatched_run_sends_each_stage_to_its_pool_and_a_second_run_does_nothing(distributed):
    project, origin, cpu, gpu = distributed
    start = _git(origin, "rev-parse", "main")

    first = _trigger()
    assert first.state.is_completed(), first.state
    final = _git(origin, "rev-parse", "main")
    assert final != start
    # The lock of every stage is on the branch, and so is the git-tracked gate file.
    lock = yaml.safe_load(_git(origin, "show", "main:dvc.lock"))
    assert set(lock["stages"]) == {"seeds", "respond", "train_sft"}
    assert _git(origin, "show", "main:gate.json") == "{}"

    runs = _stage_flow_runs(origin)
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
        for (stage, commit), (run, _) in _stage_flow_runs(origin).items()
        if commit == final
    }
    assert set(again) == {"seeds", "respond", "train_sft"}
    from flows.stage import read_outcome

    assert {s: read_outcome(r.id)["status"] for s, r in again.items()} == dict.fromkeys(
        again, "up-to-date"
    )
    assert not (gpu / "seeds.txt").exists()


def _lock_outs(lock_text: str) -> dict[str, dict[str, str]]:
    """stage -> output path -> md5, from a dvc.lock."""
    lock = yaml.safe_load(lock_text)
    return {
        stage: {out["path"]: out.get("md5", "") for out in entry.get("outs", [])}
        for stage, entry in lock["stages"].items()
    }


def _has(clone: Path, *paths: str) -> dict[str, bool]:
    return {p: (clone / p).exists() for p in paths}


@pytest.mark.slow
@pytest.mark.acceptance  # `make test-acceptance`: about 17 minutes, more than CI can spare
def test_tiny_pipeline_across_two_workers_matches_the_single_machine_run(tiny_repo, tmp_path):
    """The acceptance run: the real pipeline on the tiny preset, dispatched stage by stage to a
    CPU worker and a GPU worker in separate clones that share only git, the DVC remote and the
    Prefect server. The workers start with the single-machine run's LLM response cache (as
    machines sharing a cache directory would), so the test pays for training, evaluation and
    the moves, not for generating the same answers again."""
    from tests.tiny_pipeline import project_env

    reference, _ = tiny_repo
    origin = tmp_path / "origin.git"
    _git(tmp_path, "clone", "-q", "--bare", str(reference), str(origin))
    # The project as committed before any run (the reference repo may have moved on since).
    root_commit = _git(origin, "rev-list", "--max-parents=0", "main")
    _git(origin, "update-ref", "refs/heads/main", root_commit)
    start = root_commit

    site = tmp_path / "site"  # clones side by side share the default remote beside them
    site.mkdir()
    clones = {kind: site / kind for kind in ("admin", "cpu", "gpu")}
    envs: dict[str, dict[str, str]] = {}
    for kind, clone in clones.items():
        _git(site, "clone", "-q", str(origin), str(clone))
        env = project_env(clone)
        env.update(_api_env())
        env.pop("COMPLEXIF_MLFLOW", None)
        env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), str(clone)])
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{clone / 'mlflow.db'}"
        envs[kind] = env
        cache = clone / ".cache/complexif"
        cache.mkdir(parents=True)
        shutil.copy2(reference / ".cache/complexif/llm.sqlite", cache / "llm.sqlite")
    _setup(clones["admin"], envs["admin"])

    workers = {kind: clones[kind] for kind in ("cpu", "gpu")}
    with _workers(workers, envs, tmp_path):
        first = _trigger(timeout=2400)
        assert first.state.is_completed(), first.state
        final = _git(origin, "rev-parse", "main")
        assert final != start

        # Every stage ran, each on its pool.
        from flows.pipeline import stage_pool

        runs = _stage_flow_runs(origin)
        pools = {stage: deployment for (stage, _), (_, deployment) in runs.items()}
        expected = _lock_outs((reference / "first_repro.lock").read_text())
        assert set(pools) == set(expected)
        assert all(pools[stage] == stage_pool(stage) for stage in pools)
        assert pools["train_sft"] == pools["evaluate@dpo"] == "gpu"
        assert pools["respond"] == pools["build_data"] == "cpu"

        # The outputs are the single-machine run's, byte for byte.
        got = _lock_outs(_git(origin, "show", "main:dvc.lock"))
        differing = {
            stage: sorted(p for p in outs if got[stage].get(p) != outs[p])
            for stage, outs in expected.items()
            if got.get(stage) != outs
        }
        assert not differing, differing

        # Each clone received only what its stages read or wrote.
        assert _has(clones["gpu"], "data/responses.jsonl", "data/corrections.jsonl") == {
            "data/responses.jsonl": False,
            "data/corrections.jsonl": False,
        }
        assert (clones["gpu"] / "models/dpo").is_dir() and (
            clones["gpu"] / "data/sft.jsonl"
        ).exists()
        assert not (clones["cpu"] / "models/sft").exists()
        assert not (clones["cpu"] / "models/dpo").exists()
        assert not any((clones["admin"] / p).exists() for p in ("models/base", "data/seeds.jsonl"))

        # A second trigger finds everything up to date: nothing run, pulled or committed.
        second = _trigger(timeout=1200)
        assert second.state.is_completed(), second.state
        assert _git(origin, "rev-parse", "main") == final
        from flows.stage import read_outcome

        again = {
            s: run for (s, commit), (run, _) in _stage_flow_runs(origin).items() if commit == final
        }
        assert set(again) == set(expected)
        outcomes = {s: read_outcome(run.id) for s, run in again.items()}
        assert {s: o["status"] for s, o in outcomes.items()} == dict.fromkeys(again, "up-to-date")
        assert all(o["pulled"] == [] for o in outcomes.values())
