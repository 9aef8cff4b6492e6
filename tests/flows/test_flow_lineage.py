"""Lineage in MLflow, end to end on a toy DVC project whose stages run through
``complexif.runtime.run_stage`` (tests/flows/toy_tracked_stage.py): two experiments, one run by
the Prefect flow and one by ``dvc exp run``, are each found by name (the lineage tag, and
``complexif runs compare --experiment``); a third repeats the first's params, so DVC restores every
stage from its run cache and the flow records them; after a plain ``dvc repro`` that restores
stages, ``complexif runs record-restored`` does. Every stage's input datasets carry the hashes
``dvc.lock`` records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from complexif.cli import main as cli_main
from complexif.tracking.run import (
    TAG_DVC_BASELINE_REV,
    TAG_DVC_EXP_REV,
    TAG_DVC_EXPERIMENT,
    TAG_DVC_OUTS,
    TAG_DVC_STAGE,
    TAG_PREFECT_FLOW_RUN,
    TAG_RESTORED,
)
from tests.conftest import REPO_ROOT
from tests.flows.toy_tracked_stage import toy_metrics

TOY_STAGE = Path(__file__).with_name("toy_tracked_stage.py")
MODELS = ["base", "sft", "dpo"]
STAGES = ["data", *(f"evaluate@{m}" for m in MODELS)]
HEADLINE = "ifeval.prompt_level_strict_acc"


def _cmd(stage: str) -> str:
    return f'"{sys.executable}" "{TOY_STAGE}" {stage}'


def toy_pipeline() -> dict[str, Any]:
    """data (params n; reads the git-tracked seed.txt) -> evaluate@base/sft/dpo (read the data
    and the git-tracked directory bench/; write responses and a metrics directory)."""
    return {
        "data": {
            "cmd": _cmd("data"),
            "deps": ["seed.txt"],
            "params": ["n"],
            "outs": ["data/sft.jsonl"],
        },
        "evaluate": {
            "foreach": MODELS,
            "do": {
                "cmd": _cmd("evaluate@${item}"),
                "deps": ["data/sft.jsonl", "bench"],
                "params": ["n"],
                "outs": ["data/eval/${item}"],
                "metrics": [{"metrics/evaluate/${item}": {"cache": False}}],
            },
        },
    }


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """One MLflow store outside the project for the flow, the stages and the CLI; the stages
    import this checkout's code and validate the repository's params.yaml."""
    for name in (
        "COMPLEXIF_MLFLOW",
        "COMPLEXIF_EXPERIMENT",
        "COMPLEXIF_PARENT_RUN_ID",
        "COMPLEXIF_DVC_EXPERIMENT",
        "COMPLEXIF_DVC_BASELINE_REV",
        "COMPLEXIF_PREFECT_FLOW_RUN",
        "DVC_EXP_NAME",
        "DVC_EXP_BASELINE_REV",
        "MLFLOW_RUN_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("COMPLEXIF_ARTIFACT_ROOT", str(tmp_path / "store" / "artifacts"))
    monkeypatch.setenv("COMPLEXIF_PARAMS", str(REPO_ROOT / "params.yaml"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]))
    return MlflowClient(tracking_uri=uri)


@pytest.fixture
def toy_repo(make_repo) -> Path:
    repo = make_repo(toy_pipeline(), {"n": 1})
    (repo / "seed.txt").write_text("seed\n", encoding="utf-8")
    (repo / "bench").mkdir()
    (repo / "bench" / "a.jsonl").write_text('{"q": 1}\n', encoding="utf-8")
    (repo / "bench" / "b.jsonl").write_text('{"q": 2}\n', encoding="utf-8")
    for args in (["add", "-A"], ["commit", "-q", "-m", "toy data"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def _exp_rev(repo: Path, name: str) -> str:
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    (rev,) = [line.split()[0] for line in refs if line.endswith(f"/{name}")]
    return rev


def _runs(client: MlflowClient, filter_string: str) -> dict[str, Any]:
    """Runs by name (one per name expected)."""
    experiment = client.get_experiment_by_name("complexif")
    runs = client.search_runs([experiment.experiment_id], filter_string=filter_string)
    named = {r.info.run_name: r for r in runs}
    assert len(named) == len(runs), [r.info.run_name for r in runs]
    return named


def _of_experiment(client: MlflowClient, name: str) -> dict[str, Any]:
    return _runs(client, f"tags.`{TAG_DVC_EXPERIMENT}` = '{name}'")


def _lock(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def _md5(entries: list[dict[str, Any]], path: str) -> str:
    (md5,) = [e["md5"] for e in entries if e["path"] == path]
    return md5


def _inputs(run: Any) -> dict[str, tuple[str, dict[str, str]]]:
    """The run's input datasets: name -> (digest, input tags)."""
    return {
        d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags})
        for d in run.inputs.dataset_inputs
    }


def _compare_json(capsys, experiment: str) -> dict[str, Any]:
    capsys.readouterr()
    assert cli_main(["runs", "compare", "--experiment", experiment, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_inputs_match_lock(run: Any, lock: dict[str, Any], stage: str) -> None:
    """The stage run's data inputs are exactly its non-code deps, each with the md5 the lock
    records for that dep (and, for a file an upstream stage made, for that stage's output)."""
    inputs = _inputs(run)
    deps = {d["path"]: d["md5"] for d in lock[stage]["deps"]}
    assert set(inputs) == set(deps)
    for path, (digest, tags) in inputs.items():
        assert digest == deps[path] == tags["dvc.md5"], path
        assert tags["dvc.path"] == path and tags["mlflow.data.context"] == "input"
    if stage.startswith("evaluate@"):
        assert inputs["data/sft.jsonl"][0] == _md5(lock["data"]["outs"], "data/sft.jsonl")
        assert inputs["data/sft.jsonl"][1]["dvc.producer"] == "data"
        assert inputs["bench"][0].endswith(".dir") and "dvc.producer" not in inputs["bench"][1]


@pytest.mark.usefixtures("prefect_server")
def test_experiments_are_found_by_name_and_restored_stages_are_recorded(
    toy_repo: Path, store: MlflowClient, dvc, capsys, monkeypatch
):
    from flows.pipeline import complexif_pipeline

    repo = toy_repo
    baseline = _head(repo)
    monkeypatch.chdir(repo)

    # Experiment A: the Prefect flow, stage by stage.
    state = complexif_pipeline(
        workdir=str(repo), params_overrides={"n": 2}, experiment_name="exp-a", return_state=True
    )
    summary = state.result()
    assert {s: r["status"] for s, r in summary.items()} == dict.fromkeys(STAGES, "ran")
    flow_run_id = str(state.state_details.flow_run_id)
    lock_a = _lock(repo)

    runs_a = _of_experiment(store, "exp-a")
    assert set(runs_a) == {"pipeline exp-a", *STAGES}
    parent = runs_a.pop("pipeline exp-a")
    rev_a = _exp_rev(repo, "exp-a")
    for run in [parent, *runs_a.values()]:
        tags = run.data.tags
        assert tags[TAG_DVC_BASELINE_REV] == baseline
        assert tags[TAG_DVC_EXP_REV] == rev_a  # tagged once `dvc exp save` made the commit
        assert tags[TAG_PREFECT_FLOW_RUN] == flow_run_id
        assert run.info.status == "FINISHED"
    for stage, run in runs_a.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags[TAG_DVC_STAGE] == stage
        assert TAG_RESTORED not in run.data.tags
        assert_inputs_match_lock(run, lock_a, stage)

    # Experiment B: DVC's own `dvc exp run` (it names the experiment in DVC_EXP_NAME).
    dvc(repo, "exp", "run", "-S", "n=3", "--name", "exp-b")
    runs_b = _of_experiment(store, "exp-b")
    assert set(runs_b) == set(STAGES)  # no flow, so no pipeline run
    for run in runs_b.values():
        assert run.data.tags[TAG_DVC_BASELINE_REV] == baseline
        assert TAG_PREFECT_FLOW_RUN not in run.data.tags
        assert "mlflow.parentRunId" not in run.data.tags

    # Each experiment's evaluation runs, by name, side by side.
    for name, n in (("exp-a", 2), ("exp-b", 3)):
        shown = _compare_json(capsys, name)
        runs = _of_experiment(store, name)
        assert shown["runs"] == {m: runs[f"evaluate@{m}"].info.run_id for m in MODELS}
        for metric in ("ifeval.prompt_level_strict_acc", "followbench.hsr.avg"):
            want = {m: float(_flat(toy_metrics(n, m))[metric]) for m in MODELS}
            assert shown["metrics"][metric] == pytest.approx(want), (name, metric)
    capsys.readouterr()
    assert cli_main(["runs", "compare", "--experiment", "exp-b"]) == 0
    table = capsys.readouterr().out
    assert "| metric " in table and "| base   | sft    | dpo    |" in table
    assert "| ifeval.prompt_level_strict_acc | 0.3000 | 0.4000 | 0.5000 |" in table

    # Experiment C repeats A's params: DVC restores every stage from its run cache and runs
    # no command; the flow records each restored stage from dvc.lock and its metrics files.
    summary = complexif_pipeline(
        workdir=str(repo), params_overrides={"n": 2}, experiment_name="exp-c", allow_dirty=True
    )
    assert {s: r["status"] for s, r in summary.items()} == dict.fromkeys(
        STAGES, "restored-from-run-cache"
    )
    lock_c = _lock(repo)
    runs_c = _of_experiment(store, "exp-c")
    parent_c = runs_c.pop("pipeline exp-c")
    assert set(runs_c) == set(STAGES)
    for stage, run in runs_c.items():
        tags = run.data.tags
        assert tags[TAG_RESTORED] == "true" and run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent_c.info.run_id
        assert tags[TAG_DVC_EXP_REV] == _exp_rev(repo, "exp-c")
        assert json.loads(tags[TAG_DVC_OUTS]) == {
            o["path"]: o["md5"] for o in lock_c[stage]["outs"]
        }
        # The restored outputs are A's, hash for hash.
        assert lock_c[stage]["outs"] == lock_a[stage]["outs"]
    assert runs_c["evaluate@sft"].data.metrics == runs_a["evaluate@sft"].data.metrics
    assert _compare_json(capsys, "exp-c")["metrics"] == _compare_json(capsys, "exp-a")["metrics"]


def _flat(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_plain_dvc_repro_restored_stages_are_recorded_from_its_log(
    toy_repo: Path, store: MlflowClient, dvc, capsys, monkeypatch
):
    repo = toy_repo
    monkeypatch.chdir(repo)
    dvc(repo, "repro")
    lock = _lock(repo)
    ran = _runs(store, "attributes.status = 'FINISHED'")
    assert set(ran) == set(STAGES)
    for stage in STAGES:
        assert_inputs_match_lock(ran[stage], lock, stage)
        assert TAG_DVC_EXPERIMENT not in ran[stage].data.tags  # not an experiment

    # Remove the outputs of data and evaluate@sft: DVC restores both from its run cache.
    for path in ("data/sft.jsonl", "data/eval/sft", "metrics/evaluate/sft"):
        subprocess.run(["rm", "-r", path], cwd=repo, check=True)
    log = repo / "repro.log"
    log.write_text(dvc(repo, "repro"), encoding="utf-8")
    assert "Stage 'evaluate@sft' is cached - skipping run" in log.read_text(encoding="utf-8")

    capsys.readouterr()
    assert cli_main(["runs", "record-restored", str(log), "--experiment", "by-hand"]) == 0
    printed = capsys.readouterr().out
    assert "data: restored from the run cache" in printed
    restored = _runs(store, f"tags.`{TAG_RESTORED}` = 'true'")
    assert set(restored) == {"data", "evaluate@sft"}
    for stage, run in restored.items():
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags[TAG_DVC_EXPERIMENT] == "by-hand" and tags[TAG_DVC_BASELINE_REV] == _head(repo)
        assert json.loads(tags[TAG_DVC_OUTS]) == {o["path"]: o["md5"] for o in lock[stage]["outs"]}
        assert run.data.params["n"] == "1"
    assert restored["evaluate@sft"].data.metrics == pytest.approx(
        {k: float(v) for k, v in _flat(toy_metrics(1, "sft")).items()}
    )
    assert restored["data"].data.metrics == {}
    shown = _compare_json(capsys, "by-hand")
    assert list(shown["runs"]) == ["sft"]
    assert shown["metrics"][HEADLINE] == {"sft": pytest.approx(0.2)}
