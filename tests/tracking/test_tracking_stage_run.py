"""stage_run against a real sqlite tracking store, read back with MlflowClient.

One sqlite database is shared by the module (its first-use migration takes seconds); each test gets
its own experiment, whose artifact root is inside that test's tmp_path (also the cwd).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

import complexif  # noqa: E402
from complexif.tracking import (  # noqa: E402
    TrackingError,
    flatten_metrics,
    flatten_params,
    git_tags,
    params_digest,
    stage_run,
)

_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_RUN_ID",
    "COMPLEXIF_EXPERIMENT",
    "COMPLEXIF_ARTIFACT_ROOT",
    "COMPLEXIF_PARENT_RUN_ID",
    "COMPLEXIF_MLFLOW",
)


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    # A test that fails mid-run must not leave an active run for the next one.
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def tracked(
    clean_env: Path, tracking_db: str, monkeypatch: pytest.MonkeyPatch, request
) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_db)
    monkeypatch.setenv("COMPLEXIF_EXPERIMENT", f"test-{request.node.name}")
    monkeypatch.setenv("COMPLEXIF_ARTIFACT_ROOT", str(clean_env / "artifacts"))
    return MlflowClient(tracking_uri=tracking_db)


PARAMS = {
    "train": {"lr": 1e-4, "epochs": 2, "lora": {"r": 16, "targets": ["q_proj", "v_proj"]}},
    "seed": 7,
    "notes": "x" * 7000,
    "bad key!": "kept",
}


def test_params_metrics_tags_artifacts_and_dataset_are_logged(
    tracked: MlflowClient, tmp_path: Path
) -> None:
    (tmp_path / "report.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.txt").write_text("a", encoding="utf-8")
    df = pd.DataFrame(
        {
            "id": ["a", "b"],
            "instruction_id_list": [["punctuation:no_comma"], ["keywords:existence"]],
            "kwargs": [[{}], [{"keywords": ["apple"]}]],
        }
    )
    data_file = tmp_path / "dpo.jsonl"
    data_file.write_text("", encoding="utf-8")

    with stage_run("train_sft", PARAMS, tags={"model": "tiny"}) as run:
        assert run.enabled and run.run_id
        assert mlflow.active_run().info.run_id == run.run_id  # trainer callbacks log into it
        run.log_metrics({"loss": 1.5, "eval": {"acc": 0.5, "ok": True}}, step=1)
        run.log_metrics({"loss": 0.5}, step=2)
        run.log_artifact(tmp_path / "report.txt")
        run.log_artifact(tmp_path / "plots", artifact_path="plots")
        run.log_dict({"k": [1, 2]}, "info/summary.json")
        run.log_table(pd.DataFrame({"x": [1, 2]}), "tables/t.json")
        run.log_input_dataset(df, name="dpo", source_path=data_file, context="training")

    got = tracked.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "train_sft"
    assert got.info.experiment_id == run.experiment_id
    assert mlflow.active_run() is None

    params = got.data.params
    assert params["train.lr"] == "0.0001"
    assert params["train.lora.r"] == "16"
    assert params["train.lora.targets"] == '["q_proj", "v_proj"]'
    assert params["seed"] == "7"
    assert params["bad key_"] == "kept"
    assert len(params["notes"]) == 6000 and params["notes"].endswith("...[truncated]")

    tags = got.data.tags
    assert tags["dvc_stage"] == "train_sft"
    assert tags["complexif.version"] == complexif.__version__
    expected_digest = hashlib.sha256(
        json.dumps(PARAMS, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    assert tags["params_digest"] == expected_digest == params_digest(PARAMS)
    assert tags["model"] == "tiny"
    assert "mlflow.parentRunId" not in tags
    assert "git_commit" not in tags  # tmp_path is not a git work tree; no failure either

    assert [(m.step, m.value) for m in tracked.get_metric_history(run.run_id, "loss")] == [
        (1, 1.5),
        (2, 0.5),
    ]
    assert got.data.metrics["eval.acc"] == 0.5
    assert got.data.metrics["eval.ok"] == 1.0

    def artifact_paths(path: str | None = None) -> set[str]:
        out: set[str] = set()
        for info in tracked.list_artifacts(run.run_id, path):
            out |= artifact_paths(info.path) if info.is_dir else {info.path}
        return out

    assert artifact_paths() == {"report.txt", "plots/a.txt", "info/summary.json", "tables/t.json"}
    # Artifacts land under the configured root, as a file URI.
    assert got.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())
    assert (tmp_path / "artifacts").is_dir()

    (dataset_input,) = got.inputs.dataset_inputs
    assert dataset_input.dataset.name == "dpo"
    assert json.loads(dataset_input.dataset.source)["uri"] == str(data_file)
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 2
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"


def test_params_beyond_one_batch_are_all_logged(tracked: MlflowClient) -> None:
    params = {f"p{i:04d}": i for i in range(750)}
    with stage_run("many", params) as run:
        pass
    logged = tracked.get_run(run.run_id).data.params
    assert len(logged) == 750 and logged["p0749"] == "749"


def test_nested_under_parent_from_env(
    tracked: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Prefect flow runs in another process: it only hands over the parent's id.
    with stage_run("flow", {}) as parent:
        pass
    monkeypatch.setenv("COMPLEXIF_PARENT_RUN_ID", parent.run_id)
    with stage_run("seeds", {"n": 1}) as child:
        pass
    assert tracked.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_nested_under_in_process_active_run(
    tracked: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stage_run("flow", {}) as parent:
        monkeypatch.setenv("COMPLEXIF_PARENT_RUN_ID", parent.run_id)
        with stage_run("seeds", {}) as child:
            pass
        # Ending the child leaves the parent active.
        assert mlflow.active_run().info.run_id == parent.run_id
    assert tracked.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert tracked.get_run(parent.run_id).info.status == "FINISHED"


def test_unknown_parent_fails_fast(tracked: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLEXIF_PARENT_RUN_ID", "0" * 32)
    with pytest.raises(TrackingError, match="COMPLEXIF_PARENT_RUN_ID=0{32} is not a run"):
        with stage_run("seeds", {}):
            pytest.fail("the block must not run")


def test_failing_block_marks_run_failed_and_propagates(tracked: MlflowClient) -> None:
    with pytest.raises(ValueError, match="boom"):
        with stage_run("compose", {"a": 1}) as run:
            run.log_metrics({"partial": 1})
            raise ValueError("boom")
    got = tracked.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.tags["error"] == "ValueError: boom"
    assert got.data.metrics["partial"] == 1.0
    assert mlflow.active_run() is None


def test_interrupt_marks_run_killed(tracked: MlflowClient) -> None:
    with pytest.raises(KeyboardInterrupt):
        with stage_run("respond", {}) as run:
            raise KeyboardInterrupt
    assert tracked.get_run(run.run_id).info.status == "KILLED"


@pytest.mark.parametrize(("code", "status"), [(0, "FINISHED"), (None, "FINISHED"), (1, "FAILED")])
def test_sys_exit_status(tracked: MlflowClient, code: int | None, status: str) -> None:
    with pytest.raises(SystemExit):
        with stage_run("report", {}) as run:
            raise SystemExit(code)
    assert tracked.get_run(run.run_id).info.status == status


def test_leftover_nested_run_is_closed(tracked: MlflowClient) -> None:
    with stage_run("train_dpo", {}) as run:
        # As a trainer callback might: start a nested run and never end it.
        leftover = mlflow.start_run(nested=True, run_name="callback")
    assert mlflow.active_run() is None
    assert tracked.get_run(leftover.info.run_id).info.status == "FINISHED"
    assert tracked.get_run(run.run_id).info.status == "FINISHED"


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_disabled_mode_does_nothing(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    db = clean_env / "should-not-exist.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.setenv("COMPLEXIF_MLFLOW", value)
    (clean_env / "f.txt").write_text("x", encoding="utf-8")
    with stage_run("seeds", {"a": 1}) as run:
        assert not run.enabled and run.run_id is None
        assert mlflow.active_run() is None
        run.log_metrics({"m": 1.0})
        run.log_artifact(clean_env / "f.txt")
        run.log_dict({"a": 1}, "a.json")
        run.log_table(pd.DataFrame({"x": [1]}), "t.json")
        run.log_input_dataset(pd.DataFrame({"x": [1]}), name="d")
    assert not db.exists()
    assert sorted(p.name for p in clean_env.iterdir()) == ["f.txt"]


def test_defaults_sqlite_in_cwd_and_mlartifacts(
    clean_env: Path, capfd: pytest.CaptureFixture
) -> None:
    (clean_env / "f.txt").write_text("x", encoding="utf-8")
    # As `import mlflow` leaves it: INFO, which narrates the new database's migration.
    logging.getLogger("mlflow").setLevel(logging.INFO)
    with stage_run("seeds", {}) as run:
        run.log_artifact(clean_env / "f.txt")
    captured = capfd.readouterr()
    assert "mlflow" not in captured.err + captured.out, "stage_run must be quiet"
    assert (clean_env / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{clean_env / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("complexif")
    assert experiment.artifact_location == (clean_env / "mlartifacts").as_uri()
    assert client.get_run(run.run_id).info.experiment_id == experiment.experiment_id
    assert list((clean_env / "mlartifacts").rglob("f.txt"))


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_tag_inside_a_repository(tracked: MlflowClient, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = [
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert git_tags(repo) == {"git_commit": head.stdout.strip(), "git_dirty": "false"}
    assert git_tags(tmp_path) == {}


def test_flatten_helpers() -> None:
    assert flatten_params({"a": {"b": {"c": 1}}, "e": {}, "n": None}) == {
        "a.b.c": "1",
        "e": "{}",
        "n": "None",
    }
    assert flatten_metrics({"a": {"b": 2}, "c": True}) == {"a.b": 2.0, "c": 1.0}
    with pytest.raises(TypeError, match="metric 'a.b' is not numeric"):
        flatten_metrics({"a": {"b": "high"}})
