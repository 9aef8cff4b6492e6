"""Stopping a stage: SIGTERM/SIGINT end it cleanly, SIGKILL is cleaned up by the next start.

Each stage here is a real ``run_stage`` in a child process, logging to a sqlite MLflow store,
whose body holds an atomic write open and then blocks the main thread in a join on a worker
thread (as a stage waiting on its LLM client's event loop does). The child says when it is
inside the write by creating a marker file; the verdicts never depend on how long anything took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from complexif.tracking import TAG_ERROR, stage_run  # noqa: E402
from complexif.tracking.run import (  # noqa: E402
    TAG_HOST,
    TAG_PID,
    TAG_PROCESS,
    process_tags,
    reap_dead_runs,
)
from tests.conftest import REPO_ROOT  # noqa: E402

# A stage-shaped program: params from the repo's params.yaml, one output written atomically,
# and a main thread blocked in a join until a signal arrives.
STAGE = """
import threading, time
from complexif.io import atomic_open, write_text
from complexif.runtime import run_stage

def body(params, run):
    with atomic_open("out/result.jsonl") as fh:
        fh.write('{"half": "a record"')
        fh.flush()
        write_text("ready", run.run_id or "")
        worker = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
        worker.start()
        worker.join()

run_stage("fake", body, ["seeds"])
"""


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def env(tmp_path: Path, tracking_db: str, request: pytest.FixtureRequest) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COMPLEXIF_"))}
    env.update(
        # This checkout's code, whatever is installed.
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        COMPLEXIF_PARAMS=str(REPO_ROOT / "params.yaml"),
        MLFLOW_TRACKING_URI=tracking_db,
        COMPLEXIF_EXPERIMENT=f"signals-{request.node.name}",
        COMPLEXIF_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
    )
    return env


def _default_stop_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Start the stage; return it and its MLflow run id once it is inside its atomic write."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STAGE],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started as a background job (`make test &`) passes on an
        # ignored SIGINT, which the stage rightly keeps ignoring (runtime.stop_signals).
        preexec_fn=_default_stop_signals,
    )
    ready = tmp_path / "ready"
    deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the stage did not start:\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return proc, ready.read_text()


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_stage_cleanly_and_marks_its_run_killed(
    tmp_path: Path, env: dict[str, str], tracking_db: str, signum: int
) -> None:
    proc, run_id = _start(tmp_path, env)
    assert list((tmp_path / "out").glob(".result.jsonl.*.tmp"))  # the write is in progress
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)

    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, stderr[-3000:]
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "out/result.jsonl").exists()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    (line,) = [ln for ln in stderr.splitlines() if f"stopped by {name}" in ln]
    assert line.startswith("[fake] stopped by") and "rerun resumes" in line
    run = MlflowClient(tracking_uri=tracking_db).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[TAG_ERROR] == f"StageStopped: stopped by {name}"


def test_a_stage_killed_with_sigkill_is_marked_killed_when_the_next_stage_starts(
    tmp_path: Path, env: dict[str, str], tracking_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, run_id = _start(tmp_path, env)
    proc.kill()
    proc.communicate(timeout=300)
    client = MlflowClient(tracking_uri=tracking_db)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody could end it

    for key in ("MLFLOW_TRACKING_URI", "COMPLEXIF_EXPERIMENT", "COMPLEXIF_ARTIFACT_ROOT"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("COMPLEXIF_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("COMPLEXIF_MLFLOW", raising=False)
    monkeypatch.chdir(tmp_path)
    with stage_run("next", {}) as nxt:
        pass

    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert f"process {proc.pid} ended without ending this run" in killed.data.tags[TAG_ERROR]
    assert "when stage next started" in killed.data.tags[TAG_ERROR]
    assert client.get_run(nxt.run_id).info.status == "FINISHED"


def _running_run(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> str:
    return client.create_run(experiment_id, tags=tags, run_name="owner-test").info.run_id


def test_only_runs_whose_process_is_provably_gone_are_reaped(tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("reap", artifact_location=(tmp_path / "a").as_uri())
    mine = process_tags()
    machine, pid, start = mine[TAG_PROCESS].rsplit("|", 2)
    assert pid == str(os.getpid())

    # A finished child's pid: free now (the child was waited for).
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = child.stdout.strip()
    runs = {
        "live": mine,
        "dead": {**mine, TAG_PID: dead_pid, TAG_PROCESS: f"{machine}|{dead_pid}|{start}"},
        "other container": {**mine, TAG_PROCESS: f"{machine}x|{dead_pid}|{start}"},
        "other host": {**mine, TAG_HOST: mine[TAG_HOST] + "-elsewhere"},
        "untagged": {},
    }
    if start != "-":  # /proc gives start times: a reused pid is told from the run's process
        runs["pid reused"] = {**mine, TAG_PROCESS: f"{machine}|{pid}|{int(start) - 1}"}
    ids = {name: _running_run(client, exp, tags) for name, tags in runs.items()}

    reaped = reap_dead_runs(client, exp, "the test")

    expected = {"dead", "pid reused"} & set(ids)
    assert sorted(reaped) == sorted(ids[name] for name in expected)
    for name, run_id in ids.items():
        status = client.get_run(run_id).info.status
        assert status == ("KILLED" if name in expected else "RUNNING"), name
