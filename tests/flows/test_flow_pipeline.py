"""Real runs of the ``complexif-pipeline`` flow under a temporary Prefect server (started once per
session, ~20-30 s), against tiny git+DVC repositories built in ``tmp_path`` (stages named like
ComplexIF's, trivial commands); plus the task tags and the UI parameter form."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from complexif.orchestration.dvc import StageFailedError
from flows.pipeline import (
    ARTIFACT_KEY,
    complexif_pipeline,
    stage_pool,
    stage_tags,
    stage_task,
)
from flows.stage import artifact_data


def _stages(py_cmd, respond_code: str | None = None) -> dict[str, Any]:
    """seeds -> respond (llm-api, params respond.n) -> train_sft (gpu, params train.sft.*)."""
    respond_code = respond_code or (
        "open('responses.txt', 'w').write(open('seeds.txt').read() * ${respond.n})"
    )
    return {
        "seeds": {"cmd": py_cmd("open('seeds.txt', 'w').write('seed;')"), "outs": ["seeds.txt"]},
        "respond": {
            "cmd": py_cmd(respond_code),
            "deps": ["seeds.txt"],
            "params": ["respond.n"],
            "outs": ["responses.txt"],
        },
        "train_sft": {
            "cmd": py_cmd(
                "open('model.txt', 'w').write(open('responses.txt').read() "
                "+ ' steps=${train.sft.max_steps}')"
            ),
            "deps": ["responses.txt"],
            "params": ["train.sft.max_steps"],
            "outs": ["model.txt"],
        },
    }


PARAMS = {"respond": {"n": 2}, "train": {"sft": {"max_steps": 5, "note": "base"}}}
STAGES = ["seeds", "respond", "train_sft"]


def _task_runs(flow_run_id: UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {run.name: run for run in runs}


def _summary_artifact(flow_run_id: UUID) -> str:
    data = artifact_data(flow_run_id, ARTIFACT_KEY)
    assert data is not None
    return data


def test_task_tags_and_retries():
    assert stage_tags("respond") == {"dvc", "llm-api"}
    assert stage_tags("correct") == {"dvc", "llm-api"}
    assert stage_tags("conifer_instructions") == stage_tags("conifer_answers") == {"dvc", "llm-api"}
    for stage in ["train_sft", "train_dpo", "evaluate@base", "evaluate@sft", "evaluate@dpo"]:
        assert stage_tags(stage) == {"dvc", "gpu"}
    for stage in ["prepare_model", "seeds", "compose", "build_data", "report"]:
        assert stage_tags(stage) == {"dvc"}

    respond = stage_task("respond", llm_retries=3, llm_retry_delay_seconds=7)
    assert respond.tags == {"dvc", "llm-api"}
    assert respond.retries == 3 and respond.retry_delay_seconds == 7
    train = stage_task("train_sft", llm_retries=3, llm_retry_delay_seconds=7)
    assert train.tags == {"dvc", "gpu"}
    assert train.retries == 0
    assert stage_task("evaluate@dpo").tags == {"dvc", "gpu"}
    assert stage_task("seeds").tags == {"dvc"}
    assert [stage_pool(s) for s in ("respond", "train_sft", "evaluate@dpo", "report")] == [
        "cpu",
        "gpu",
        "gpu",
        "cpu",
    ]


def test_parameter_form_has_descriptions():
    """The Prefect UI builds the run form from this schema (signature + docstring Args)."""
    schema = complexif_pipeline.parameters.model_dump_for_openapi()
    props = schema["properties"]
    assert list(props)[:8] == [
        "stages",
        "force",
        "params_overrides",
        "experiment_name",
        "workdir",
        "allow_dirty",
        "dispatch",
        "branch",
    ]
    assert all(p.get("description") for p in props.values()), props
    assert props["force"]["default"] is False and props["force"]["type"] == "boolean"
    assert props["workdir"]["default"] == "."
    assert "required" not in schema


@pytest.mark.usefixtures("prefect_server")
def test_runs_stages_then_skips_them(make_repo, py_cmd):
    repo = make_repo(_stages(py_cmd), PARAMS)

    state = complexif_pipeline(workdir=str(repo), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    assert list(summary) == STAGES
    assert {s: r["status"] for s, r in summary.items()} == dict.fromkeys(STAGES, "ran")
    assert all(r["duration_s"] > 0 for r in summary.values())
    assert (repo / "model.txt").read_text() == "seed;seed; steps=5"

    # The task runs recorded by the server carry the stage tags.
    runs = _task_runs(state.state_details.flow_run_id)
    assert {name: set(run.tags) for name, run in runs.items()} == {
        "seeds": {"dvc"},
        "respond": {"dvc", "llm-api"},
        "train_sft": {"dvc", "gpu"},
    }
    markdown = _summary_artifact(state.state_details.flow_run_id)
    assert "succeeded" in markdown and "| 3 | `train_sft` | dvc, gpu | ran |" in markdown

    # Nothing changed: DVC skips every stage.
    summary = complexif_pipeline(workdir=str(repo))
    assert {s: r["status"] for s, r in summary.items()} == dict.fromkeys(STAGES, "up-to-date")


@pytest.mark.usefixtures("prefect_server")
def test_failing_stage_raises_with_output_tail_and_llm_stage_is_retried(make_repo, py_cmd):
    failing = (
        "import sys; open('attempts.txt', 'a').write('x'); "
        "print('teacher API said: quota-exceeded-4711', file=sys.stderr); sys.exit(3)"
    )
    repo = make_repo(_stages(py_cmd, respond_code=failing), PARAMS)

    state = complexif_pipeline(
        workdir=str(repo), llm_retries=1, llm_retry_delay_seconds=0, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(StageFailedError) as excinfo:
        state.result()
    message = str(excinfo.value)
    assert "DVC stage 'respond' failed" in message
    assert "quota-exceeded-4711" in message  # the tail of the stage's output
    assert "dvc repro --single-item respond" in message

    # respond (llm-api) ran twice: the first try and one retry; train_sft never started.
    assert (repo / "attempts.txt").read_text() == "xx"
    assert not (repo / "model.txt").exists()
    runs = _task_runs(state.state_details.flow_run_id)
    assert set(runs) == {"seeds", "respond"}
    assert runs["respond"].run_count == 2

    markdown = _summary_artifact(state.state_details.flow_run_id)
    assert "failed at `respond`" in markdown
    assert "| 3 | `train_sft` | dvc, gpu | not-run |" in markdown
    assert "quota-exceeded-4711" in markdown


@pytest.mark.usefixtures("prefect_server")
def test_params_overrides_run_an_experiment_stage_by_stage(make_repo, py_cmd, dvc):
    repo = make_repo(_stages(py_cmd), PARAMS)

    state = complexif_pipeline(
        workdir=str(repo),
        stages=["train_sft"],  # an experiment also brings the stages upstream of it up to date
        params_overrides={
            "train.sft.max_steps": 20,
            "train": {"sft": {"note": 'it\'s "quoted", ok'}},
        },
        experiment_name="short-sft",
        return_state=True,
    )
    summary = state.result()
    assert list(summary) == STAGES
    assert {s: r["status"] for s, r in summary.items()} == dict.fromkeys(STAGES, "ran")
    # One task per stage, with its tags (and so its concurrency limits and retries).
    runs = _task_runs(state.state_details.flow_run_id)
    assert {name: set(run.tags) for name, run in runs.items() if name in STAGES} == {
        "seeds": {"dvc"},
        "respond": {"dvc", "llm-api"},
        "train_sft": {"dvc", "gpu"},
    }
    assert "dvc-exp-save" in runs
    # The experiment's params and results are applied to the workspace ...
    assert (repo / "model.txt").read_text() == "seed;seed; steps=20"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["train"]["sft"] == {"max_steps": 20, "note": 'it\'s "quoted", ok'}
    assert params["respond"] == {"n": 2}
    # ... and saved as a named DVC experiment, with its own params.
    assert "short-sft" in dvc(repo, "exp", "list", "--name-only")
    shown = dvc(repo, "exp", "show", "--csv")
    assert "short-sft" in shown and ",20," in shown
    markdown = _summary_artifact(state.state_details.flow_run_id)
    assert "Saved as experiment `short-sft`" in markdown


@pytest.mark.usefixtures("prefect_server")
def test_experiment_refuses_a_dirty_workspace_unless_allowed(make_repo, py_cmd, dvc):
    repo = make_repo(_stages(py_cmd), PARAMS)
    (repo / "notes.txt").write_text("uncommitted\n")  # an untracked file counts too
    with pytest.raises(Exception, match=r"uncommitted changes \(notes.txt\)"):
        complexif_pipeline(workdir=str(repo), params_overrides={"respond.n": 3})
    assert not (repo / "responses.txt").exists()
    assert yaml.safe_load((repo / "params.yaml").read_text()) == PARAMS

    summary = complexif_pipeline(
        workdir=str(repo), params_overrides={"respond.n": 3}, allow_dirty=True
    )
    assert summary["respond"]["status"] == "ran"
    assert (repo / "responses.txt").read_text() == "seed;" * 3
    assert dvc(repo, "exp", "list", "--name-only").strip()


@pytest.mark.usefixtures("prefect_server")
def test_unknown_override_key_fails_before_any_stage(make_repo, py_cmd):
    repo = make_repo(_stages(py_cmd), PARAMS)
    with pytest.raises(ValueError, match="train.sft.max_stpes"):
        complexif_pipeline(workdir=str(repo), params_overrides={"train.sft.max_stpes": 1})
    assert Path(repo / "params.yaml").read_text() == yaml.safe_dump(PARAMS, sort_keys=False)
    assert not (repo / "seeds.txt").exists()
