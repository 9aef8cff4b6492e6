"""The tracking server as the workers use it: a real ``mlflow server`` (sqlite + artifact
store), a stage logging to it over HTTP from another directory, and the artifact landing in
the server's store rather than on the logging machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from complexif.tracking.server import server_command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    command = server_command(
        backend_store_uri=f"sqlite:///{store / 'mlflow.db'}",
        artifacts_destination=(store / "artifacts").as_uri(),
        host="127.0.0.1",
        port=port,
        allowed_hosts=[],
    )
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=store)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield url, store
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_stage_on_another_machine_logs_runs_and_artifacts_to_the_server(server, tmp_path):
    url, store = server
    worker = tmp_path / "worker"
    worker.mkdir()
    (worker / "report.txt").write_text("from the worker")
    code = (
        "from complexif.tracking import stage_run\n"
        "with stage_run('train_sft', {'lr': 0.1}) as run:\n"
        "    run.log_metrics({'loss': 0.5}, step=1)\n"
        "    run.log_artifact('report.txt')\n"
        "    print('RUN_ID', run.run_id)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COMPLEXIF_"))}
    env.update(MLFLOW_TRACKING_URI=url, COMPLEXIF_EXPERIMENT="remote")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=worker, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # MLflow prints links of its own to stdout too.
    run_id = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("RUN_ID"))

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["loss"] == 0.5
    # Uploaded through the server into its store; nothing stored beside the worker.
    stored = [p for p in (store / "artifacts").rglob("report.txt")]
    assert len(stored) == 1 and stored[0].read_text() == "from the worker"
    assert not (worker / "mlartifacts").exists() and not (worker / "mlflow.db").exists()
