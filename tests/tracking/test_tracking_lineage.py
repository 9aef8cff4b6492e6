"""Lineage tags, restored-stage parsing and metrics, and the evaluation comparison, on a real
sqlite store (no DVC project: tests/flows/test_flow_lineage.py runs them end to end)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from complexif.cli import main as cli_main
from complexif.io import DataError
from complexif.tracking.compare import compare, format_table
from complexif.tracking.inputs import is_code, log_stage_inputs
from complexif.tracking.pipeline import pipeline_run
from complexif.tracking.restored import metrics_of, restored_stages
from complexif.tracking.run import (
    ENV_DVC_BASELINE_REV,
    ENV_DVC_EXPERIMENT,
    ENV_PARENT_RUN_ID,
    ENV_PREFECT_FLOW_RUN,
    TAG_DVC_BASELINE_REV,
    TAG_DVC_EXP_REV,
    TAG_DVC_EXPERIMENT,
    TAG_DVC_STAGE,
    TAG_PREFECT_FLOW_RUN,
    Lineage,
    stage_run,
)

_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_RUN_ID",
    "COMPLEXIF_EXPERIMENT",
    "COMPLEXIF_ARTIFACT_ROOT",
    "COMPLEXIF_PARENT_RUN_ID",
    "COMPLEXIF_MLFLOW",
    "COMPLEXIF_DVC_EXPERIMENT",
    "COMPLEXIF_DVC_BASELINE_REV",
    "COMPLEXIF_PREFECT_FLOW_RUN",
    "DVC_EXP_NAME",
    "DVC_EXP_BASELINE_REV",
    "DVC_STAGE",
)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_dvc_exp_run_variables_win_over_the_flows_and_empty_fields_are_left_out():
    ours = {ENV_DVC_EXPERIMENT: "ours", ENV_DVC_BASELINE_REV: "b1", ENV_PREFECT_FLOW_RUN: "f"}
    assert Lineage.from_env(ours) == Lineage("ours", "b1", "f")
    dvcs = {**ours, "DVC_EXP_NAME": "dvc-name", "DVC_EXP_BASELINE_REV": "b2"}
    assert Lineage.from_env(dvcs) == Lineage("dvc-name", "b2", "f")
    assert Lineage.from_env({}).tags() == {} and Lineage().env() == {}
    lineage = Lineage("e", None, "f")
    assert lineage.tags() == {TAG_DVC_EXPERIMENT: "e", TAG_PREFECT_FLOW_RUN: "f"}
    assert Lineage.from_env(lineage.env()) == lineage


def test_stage_and_pipeline_runs_carry_the_lineage_and_the_experiment_commit(
    client: MlflowClient, tmp_path: Path
):
    lineage = Lineage("exp-x", "base123", "flow-9")
    child = "from complexif.tracking import stage_run\nwith stage_run('seeds', {}): pass\n"
    with pipeline_run(tmp_path, name="pipeline exp-x", lineage=lineage) as parent:
        # Handed down to stage processes through the environment ...
        assert os.environ[ENV_DVC_EXPERIMENT] == "exp-x"
        subprocess.run([sys.executable, "-c", child], cwd=tmp_path, check=True, env=os.environ)
        tagged = parent.tag_experiment_revision("rev456")
    # ... and taken back after the block.
    for name in (ENV_DVC_EXPERIMENT, ENV_DVC_BASELINE_REV, ENV_PREFECT_FLOW_RUN, ENV_PARENT_RUN_ID):
        assert name not in os.environ
    exp_id = client.get_experiment_by_name("complexif").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp_id])}
    assert set(runs) == {"pipeline exp-x", "seeds"}
    assert sorted(tagged) == sorted(r.info.run_id for r in runs.values())
    for run in runs.values():
        tags = run.data.tags
        assert tags[TAG_DVC_EXPERIMENT] == "exp-x" and tags[TAG_DVC_BASELINE_REV] == "base123"
        assert tags[TAG_PREFECT_FLOW_RUN] == "flow-9" and tags[TAG_DVC_EXP_REV] == "rev456"


def test_a_stage_run_by_dvc_exp_run_is_tagged_with_its_experiment(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DVC_EXP_NAME", "lucky-dogs")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc")
    with stage_run("compose", {"k": 1}) as run:
        pass
    tags = client.get_run(run.run_id).data.tags
    assert (tags[TAG_DVC_EXPERIMENT], tags[TAG_DVC_BASELINE_REV]) == ("lucky-dogs", "abc")
    assert TAG_PREFECT_FLOW_RUN not in tags


def test_restored_stages_are_read_from_dvc_output():
    log = [
        "Running stage 'seeds':",
        "> python -m stages.seeds",
        "Stage 'compose' didn't change, skipping",
        "Stage 'respond' is cached - skipping run, checking out outputs",
        "Stage 'evaluate@sft' is cached - skipping run, checking out outputs  ",
        "Updating lock file 'dvc.lock'",
    ]
    assert restored_stages(log) == ["respond", "evaluate@sft"]
    assert restored_stages(["Running stage 'x':"]) == []


def test_metrics_of_a_directory_prefix_each_file_and_keep_only_numbers(tmp_path: Path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "ifeval.json").write_text('{"prompt_level_strict_acc": 0.5, "note": "x"}')
    (metrics / "followbench.json").write_text(
        '{"hsr": {"avg": 0.25, "level_1": null}, "csl": 2, "ok": true}'
    )
    (metrics / "readme.txt").write_text("not metrics")
    assert metrics_of(metrics) == {
        "ifeval.prompt_level_strict_acc": 0.5,
        "followbench.hsr.avg": 0.25,
        "followbench.csl": 2.0,
    }
    (tmp_path / "train.yaml").write_text("train_loss: 1.5\nsteps: 3\n")
    assert metrics_of(tmp_path / "train.yaml") == {"train_loss": 1.5, "steps": 3.0}
    assert metrics_of(tmp_path / "missing") == {}


def _eval_run(client: MlflowClient, exp_id: str, stage: str, metrics: dict, **tags: str) -> str:
    run = client.create_run(exp_id, run_name=stage, tags={TAG_DVC_STAGE: stage, **tags})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    time.sleep(0.01)  # distinct start times: the newest run of a stage wins
    return run.info.run_id


def test_compare_picks_each_models_newest_finished_run_of_the_experiment(client: MlflowClient):
    exp_id = client.create_experiment("complexif")
    acc = "ifeval.prompt_level_strict_acc"
    tag = {TAG_DVC_EXPERIMENT: "e1"}
    _eval_run(client, exp_id, "evaluate@sft", {acc: 0.1}, **tag)  # superseded
    sft = _eval_run(client, exp_id, "evaluate@sft", {acc: 0.4}, **tag)
    dpo = _eval_run(client, exp_id, "evaluate@dpo", {acc: 0.5, "followbench.csl": 1.0}, **tag)
    base = _eval_run(client, exp_id, "evaluate@base", {acc: 0.3}, **tag)
    _eval_run(client, exp_id, "evaluate@base", {acc: 0.9}, **{TAG_DVC_EXPERIMENT: "e2"})
    _eval_run(client, exp_id, "train_sft", {acc: 0.9}, **tag)  # not an evaluation
    failed = client.create_run(
        exp_id, run_name="evaluate@dpo", tags={TAG_DVC_STAGE: "evaluate@dpo", **tag}
    )
    client.set_terminated(failed.info.run_id, status="FAILED")  # never shown

    comparison = compare("e1", [acc, "followbench.csl"])
    assert comparison.models == ("base", "sft", "dpo")  # pipeline order, not search order
    assert comparison.run_ids == {"base": base, "sft": sft, "dpo": dpo}
    assert comparison.values[acc] == {"base": 0.3, "sft": 0.4, "dpo": 0.5}
    table = format_table(comparison)
    assert "| followbench.csl                | -      | -      | 1.0000 |" in table

    with pytest.raises(DataError, match="no finished evaluate@\\* runs tagged"):
        compare("nope")


def test_compare_after_a_plain_dvc_repro_takes_the_newest_evaluations(client: MlflowClient):
    exp_id = client.create_experiment("complexif")
    acc = "ifeval.prompt_level_strict_acc"
    with pytest.raises(DataError, match="no finished evaluate@"):
        compare()
    _eval_run(client, exp_id, "evaluate@dpo", {acc: 0.2})  # superseded
    dpo = _eval_run(client, exp_id, "evaluate@dpo", {acc: 0.6})
    base = _eval_run(client, exp_id, "evaluate@base", {acc: 0.1})
    _eval_run(client, exp_id, "train_dpo", {acc: 0.9})  # not an evaluation
    comparison = compare(None, [acc])
    assert comparison.run_ids == {"base": base, "dpo": dpo}
    assert comparison.values[acc] == {"base": 0.1, "dpo": 0.6}


def test_compare_without_experiment_uses_the_latest_pipeline_runs_children(
    client: MlflowClient, capsys
):
    exp_id = client.create_experiment("complexif")
    acc = "ifeval.prompt_level_strict_acc"
    for value in (0.2, 0.7):  # an older and a newer pipeline run
        parent = client.create_run(exp_id, run_name="pipeline", tags={"complexif.kind": "pipeline"})
        _eval_run(
            client,
            exp_id,
            "evaluate@sft",
            {acc: value},
            **{"mlflow.parentRunId": parent.info.run_id},
        )
    assert compare().values[acc] == {"sft": 0.7}

    # The CLI reports a missing experiment as one error line, exit status 2.
    assert cli_main(["runs", "compare", "--experiment", "nope"]) == 2
    assert "error: no finished evaluate@* runs" in capsys.readouterr().err


def test_record_restored_cli_reports_a_log_without_restored_stages(tmp_path: Path, capsys):
    log = tmp_path / "repro.log"
    log.write_text("Running stage 'seeds':\nStage 'compose' didn't change, skipping\n")
    assert cli_main(["runs", "record-restored", str(log)]) == 0
    assert "no stage was restored from the run cache" in capsys.readouterr().out
    assert cli_main(["runs", "record-restored", str(tmp_path / "none.log")]) == 2


def test_code_is_not_an_input_and_no_dvc_project_logs_nothing(client: MlflowClient):
    assert is_code("src/complexif/engine") and is_code("stages/seeds.py") and is_code("x/y.py")
    assert not is_code("data/sft.jsonl") and not is_code("models/base")
    with stage_run("seeds", {}) as run:
        assert log_stage_inputs(run, "seeds") == []  # tmp_path is no DVC project: no failure
    assert client.get_run(run.run_id).inputs.dataset_inputs == []


def test_input_datasets_take_the_digest_and_tags_they_are_given(
    client: MlflowClient, tmp_path: Path
):
    import pandas as pd

    data = tmp_path / "sft.jsonl"
    data.write_text('{"a": 1}\n')
    with stage_run("train_sft", {}) as run:
        run.log_input_dataset(
            pd.DataFrame({"a": [1]}),
            name="data/sft.jsonl",
            source_path=data,
            digest="0123456789abcdef0123456789abcdef",
            tags={"dvc.producer": "build_data"},
        )
        run.log_input_file(tmp_path, digest="f" * 32 + ".dir", name="models/base")
    inputs = {
        d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags})
        for d in client.get_run(run.run_id).inputs.dataset_inputs
    }
    assert inputs == {
        "data/sft.jsonl": (
            "0123456789abcdef0123456789abcdef",
            {"mlflow.data.context": "input", "dvc.producer": "build_data"},
        ),
        "models/base": ("f" * 32 + ".dir", {"mlflow.data.context": "input"}),
    }
