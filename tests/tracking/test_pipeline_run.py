"""Stage runs started in child processes nest under the pipeline's parent run."""

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from complexif.tracking import ENV_PARENT_RUN_ID
from complexif.tracking.pipeline import pipeline_run
from complexif.tracking.run import TAG_PID

CHILD = "from complexif.tracking import stage_run\nwith stage_run('child_stage', {'a': 1}): pass\n"


def test_stage_runs_in_child_processes_nest_under_the_pipeline_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("COMPLEXIF_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("COMPLEXIF_MLFLOW", raising=False)
    with pipeline_run(tmp_path, name="pipeline test") as parent:
        assert os.environ[ENV_PARENT_RUN_ID] == parent.run_id
        # The stage process runs in the project root, like `dvc repro` starts it.
        subprocess.run(
            [sys.executable, "-c", CHILD], cwd=tmp_path, check=True, env=dict(os.environ)
        )
        parent.log_metrics({"duration_s": {"child_stage": 1.5}})
    assert ENV_PARENT_RUN_ID not in os.environ
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("complexif")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert runs["child_stage"].data.tags["mlflow.parentRunId"] == parent.run_id
    assert runs["pipeline test"].info.status == "FINISHED"
    assert runs["pipeline test"].data.metrics["duration_s.child_stage"] == 1.5


def test_a_failed_pipeline_marks_the_parent_failed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("COMPLEXIF_MLFLOW", raising=False)
    with pipeline_run(tmp_path, name="p") as parent:
        parent.failed = True
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(parent.run_id).info.status == "FAILED"


def test_disabled_tracking_yields_an_inert_run(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPLEXIF_MLFLOW", "0")
    with pipeline_run(tmp_path) as parent:
        assert parent.run_id is None
        parent.log_metrics({"x": 1.0})
    assert not (tmp_path / "mlflow.db").exists()


def test_an_interrupted_pipeline_is_marked_killed_and_names_its_process(tmp_path, monkeypatch):

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("COMPLEXIF_MLFLOW", raising=False)
    with pytest.raises(KeyboardInterrupt):
        with pipeline_run(tmp_path, name="p") as parent:
            raise KeyboardInterrupt
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(parent.run_id)
    assert run.info.status == "KILLED"
    # What the next stage start needs to mark it KILLED had the process been killed outright.
    assert run.data.tags[TAG_PID] == str(os.getpid())
