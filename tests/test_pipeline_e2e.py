"""The whole DVC pipeline, for real, on the tiny preset in a fresh git+DVC repo.

Checks the acceptance of the walking skeleton: `dvc repro` runs every stage and writes scores for
base/SFT/DPO, a second run does nothing, every stage logged an MLflow run, and a tampered data file
is stopped by the quality gate with a message naming the expectation and the offending row.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.tiny_pipeline import run as _run

pytestmark = pytest.mark.slow

STAGES = [
    "prepare_model",
    "seeds",
    "compose",
    "respond",
    "correct",
    "conifer_instructions",
    "conifer_answers",
    "conifer_data",
    "build_data",
    "publish",
    "train_sft",
    "train_dpo",
    "evaluate@base",
    "evaluate@sft",
    "evaluate@dpo",
    "report",
]


def test_repro_runs_every_stage_and_scores_base_sft_dpo(tiny_repo):
    repo, _ = tiny_repo
    log = (repo / "first_repro.log").read_text()
    for stage in STAGES:
        assert f"Running stage '{stage}'" in log
    for model in ("base", "sft", "dpo"):
        # The full metrics beside the answers; the DVC metrics file has the headline of them.
        m = json.loads((repo / f"data/eval/{model}/ifeval/metrics.json").read_text())
        headline = json.loads((repo / f"metrics/{model}/ifeval.json").read_text())
        assert headline == {
            "prompt_strict": round(m["prompt_level_strict_acc"], 4),
            "inst_strict": round(m["inst_level_strict_acc"], 4),
        }
        for key in (
            "prompt_level_strict_acc",
            "prompt_level_loose_acc",
            "inst_level_strict_acc",
            "inst_level_loose_acc",
        ):
            assert 0.0 <= m[key] <= 1.0
        assert m["num_prompts"] == 4
        assert m["prompt_level_loose_acc"] >= m["prompt_level_strict_acc"]
        # FollowBench (tiny: one format and one example instruction, levels 1-5 each): every
        # item rule-scored, judged or counted unparseable by the embedded judge.
        fb = json.loads((repo / f"data/eval/{model}/followbench/metrics.json").read_text())
        assert set(json.loads((repo / f"metrics/{model}/followbench.json").read_text())) <= {
            "hsr",
            "ssr",
            "csl",
        }
        counts = fb["counts"]
        assert counts["items"] == 10
        assert counts["rule_scored"] + counts["judged"] + counts["unparseable"] == 10
        assert counts["rule_scored"] >= 5  # the example category is all rule-scored
        assert fb["hsr"]["level_1"] is not None
    reports = repo / "reports/evaluation"
    table = (reports / "ifeval_table.md").read_text()
    assert all(f"| {m} |" in table for m in ("base", "sft", "dpo"))
    assert (reports / "ifeval_by_type.png").stat().st_size > 1000
    assert (reports / "followbench_by_level.png").stat().st_size > 1000
    summary = (reports / "summary.md").read_text()
    assert "FollowBench HSR" in summary and "(quoted)" in summary
    assert "Benchmarks (%)" in log  # the report stage printed the summary
    # Every Conifer step's counts, in the report and printed.
    funnel = (repo / "reports/curation_funnel.md").read_text()
    for step in (
        "reframe",
        "filter_context",
        "constraints",
        "recombine",
        "filter_conflict",
        "answer",
        "internal_feedback",
        "weak_answer",
        "judge",
    ):
        assert f"| {step} |" in funnel
    assert "Curation funnel:" in log


def test_curated_data_is_verified_and_lineage_is_kept(tiny_repo):
    from complexif.constraints.verify import check_all

    repo, _ = tiny_repo
    instructions = {
        json.loads(line)["id"]: json.loads(line)
        for line in (repo / "data/instructions.jsonl").open()
    }
    mixed = [json.loads(line) for line in (repo / "data/sft.jsonl").open()]
    # curation.method "both": FCS records and Conifer's multi-turn conversations, labelled.
    assert {r["source"] for r in mixed} == {"fcs", "conifer"}
    conifer = [r for r in mixed if r["source"] == "conifer"]
    assert all(r["messages"][-1]["role"] == "assistant" for r in conifer)
    sft = [r for r in mixed if r["source"] == "fcs"]
    dpo = [json.loads(line) for line in (repo / "data/dpo.jsonl").open()]
    dpo = [r for r in dpo if r["source"] == "fcs"]
    assert sft and dpo
    for rec in sft:
        ins = instructions[rec["instruction_id"]]
        assert all(
            check_all(
                ins["instruction_id_list"],
                ins["kwargs"],
                rec["messages"][-1]["content"],
                ins["prompt"],
            )
        )
    assert [r["n_constraints"] for r in sft] == sorted(r["n_constraints"] for r in sft)
    for pair in dpo:
        ins = instructions[pair["instruction_id"]]
        assert not all(
            check_all(
                ins["instruction_id_list"],
                ins["kwargs"],
                pair["rejected"][0]["content"],
                ins["prompt"],
            )
        )


def test_every_curated_set_loads_with_datasets_and_its_card_names_revisions_and_counts(
    tiny_repo,
):
    import datasets
    import yaml

    repo, env = tiny_repo
    lock = yaml.safe_load((repo / "first_repro.lock").read_text())
    locked = {o["path"]: o["md5"] for st in lock["stages"].values() for o in st.get("outs", [])}
    # The commit the first repro ran at: the project's first.
    head = _run(["git", "rev-list", "--max-parents=0", "HEAD"], repo, env).stdout.strip()
    index = (repo / "data/publish/README.md").read_text()
    for name, source in [
        ("sft", "data/sft.jsonl"),
        ("dpo", "data/dpo.jsonl"),
        ("conifer_sft", "data/conifer/sft.jsonl"),
        ("conifer_dpo", "data/conifer/dpo.jsonl"),
    ]:
        rows = sum(1 for line in (repo / source).open() if line.strip())
        headline = json.loads((repo / f"metrics/publish/{name}.json").read_text())
        assert headline["rows"] == rows, name
        folder = repo / "data/publish" / name
        if not rows:
            assert not folder.exists() and f"| {name} | 0 | empty" in index
            continue
        ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(repo / ".hf"))
        assert ds.num_rows == rows, name
        card = (folder / "README.md").read_text()
        # The revisions: the git commit the repro ran at, and DVC's md5 of the exported file
        # and of the stage's inputs, as dvc.lock records them.
        # (The tiny project's recipe is committed before the repro: no uncommitted changes.)
        assert f"git commit: `{head}`\n" in card
        assert f"`{source}` (DVC md5 `{locked[source]}`)" in card
        assert f"| `{source}` | {locked[source]} |" in card
        # The counts: the rows, and every curation step in and out.
        assert f"**{rows}** " in card
        assert "| correct (verified) |" in card and "| reframe |" in card
        for figure in ("lengths", "turns", "constraints", "levels", "diversity", "scores"):
            assert (folder / "figures" / f"{figure}.png").stat().st_size > 1000, figure
        analysis = json.loads((folder / "analysis.json").read_text())
        assert analysis["analysis"]["rows"] == rows
        assert f"]({name}/README.md)" in index
    # The report links the cards.
    funnel = (repo / "reports/curation_funnel.md").read_text()
    assert "](../data/publish/sft/README.md)" in funnel


def test_second_repro_does_nothing_and_says_so(tiny_repo):
    repo, env = tiny_repo
    proc = _run([sys.executable, "-m", "dvc", "repro"], repo, env)
    assert "Running stage" not in proc.stdout
    assert "Data and pipelines are up to date" in proc.stdout + proc.stderr


def test_a_fresh_clone_pulls_the_results_and_has_nothing_to_run(tiny_repo, tmp_path):
    """The README's clone -> dvc pull -> dvc repro: the lock and the small outputs come with
    git, the rest from the default DVC remote (a directory beside the checkout)."""
    repo, env = tiny_repo
    _run([sys.executable, "-m", "dvc", "push"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "results of the tiny run"], repo, env)
    clone = repo.parent / "fresh-clone"  # beside the repo: the same relative remote path
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert not (clone / "models/dpo").exists()
    _run([sys.executable, "-m", "dvc", "pull"], clone, env)
    assert (clone / "models/dpo").is_dir() and (clone / "data/sft.jsonl").is_file()
    proc = _run([sys.executable, "-m", "dvc", "repro"], clone, env)
    assert "Running stage" not in proc.stdout
    assert "Data and pipelines are up to date" in proc.stdout + proc.stderr


def test_metrics_and_plots_are_visible_to_dvc(tiny_repo):
    repo, env = tiny_repo
    shown = json.loads(
        _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo, env).stdout
    )
    files = next(iter(shown.values()))["data"]
    for benchmark in ("ifeval", "followbench"):
        expected = {f"metrics/{m}/{benchmark}.json" for m in ("base", "sft", "dpo")}
        assert expected <= set(files)
    plots = _run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo, env).stdout
    assert "train_sft_loss" in plots and "train_dpo_loss" in plots
    assert set(json.loads(plots)["data"]) == {
        "IFEval strict accuracy by instruction type (%)",
        "FollowBench hard satisfaction rate by level (%)",
        "FollowBench soft satisfaction rate by level (%)",
        "Training loss",
    }


def test_every_stage_logged_an_mlflow_run_with_training_curves(tiny_repo):
    from mlflow.tracking import MlflowClient

    repo, env = tiny_repo
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("complexif")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    names = {r.info.run_name for r in runs}
    assert set(STAGES) <= names
    sft_run = next(r for r in runs if r.info.run_name == "train_sft")
    assert len(client.get_metric_history(sft_run.info.run_id, "loss")) == 2
    eval_dpo = next(r for r in runs if r.info.run_name == "evaluate@dpo")
    assert "ifeval.prompt_level_strict_acc" in eval_dpo.data.metrics
    assert "followbench.counts.items" in eval_dpo.data.metrics


def test_a_tampered_verified_answer_is_stopped_by_the_gate(tiny_repo):
    repo, env = tiny_repo
    path = repo / "data/corrections.jsonl"
    original = path.read_text()
    records = [json.loads(line) for line in original.splitlines()]
    # A repaired answer that build_data used as an SFT target (an instruction with several
    # verified answers contributes only some of them).
    sft_rows = [json.loads(line) for line in (repo / "data/sft.jsonl").open()]
    used = {row.get("correction_id") for row in sft_rows}
    victim = next(
        r
        for r in records
        if r["status"] == "verified" and not r["initial_pass"] and r["id"] in used
    )
    # Claim the student's failing first answer is the verified final one.
    victim["final_response"] = victim["trajectory"][0]["response"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    try:
        sft_before = (repo / "data/sft.jsonl").read_text()
        # --single-item: otherwise DVC sees `correct`'s output modified and regenerates it first.
        proc = _run(
            [sys.executable, "-m", "dvc", "repro", "--single-item", "build_data"],
            repo,
            env,
            check=False,
        )
        assert proc.returncode != 0
        err = proc.stdout + proc.stderr
        assert "quality gate" in err
        assert "response_passes_all" in err
        assert "sft-" in err  # the offending row is named by id
        # DVC removes a stage's outs before running it; the gate ran before writing, so the file
        # is absent or untouched, never half-written or written with the bad row.
        sft_path = repo / "data/sft.jsonl"
        assert not sft_path.exists() or sft_path.read_text() == sft_before
    finally:
        path.write_text(original)


def test_the_registry_holds_scored_sft_and_dpo_and_serves_models_dpo(tiny_repo, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from complexif.config import load_params
    from complexif.llm.base import ChatRequest, GenerationParams
    from complexif.llm.transformers_backend import TransformersLLM
    from complexif.tracking.models import chat_settings

    repo, env = tiny_repo
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    for name in ("complexif-sft", "complexif-dpo"):
        versions = client.search_model_versions(f"name = '{name}'")
        assert versions, name
        best = client.get_model_version_by_alias(name, "best")
        assert 0.0 <= float(best.tags["ifeval.prompt_level_strict_acc"]) <= 1.0
        assert best.tags["complexif.registered_by"] == f"train_{name.split('-')[1]}"
    # The base was logged once, as the reference of both adapter stacks.
    assert len(client.search_model_versions("name = 'complexif-base'")) == 1

    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        loaded = mlflow.pyfunc.load_model("models:/complexif-dpo@best")
        prompts = ["List three fruits.", "Write one sentence about the sea, in lowercase."]
        answers = loaded.predict(prompts, params={"max_new_tokens": 24})
    finally:
        mlflow.set_tracking_uri(None)
    params = load_params(repo / "params.yaml")
    s = chat_settings(params)
    llm = TransformersLLM(
        repo / "models/dpo", s.batch_size, s.device, engine=s.engine, precision=s.precision
    )
    greedy = GenerationParams(max_new_tokens=24, temperature=0.0, top_p=1.0, seed=0, n=1)
    requests = [
        ChatRequest(id=str(i), messages=({"role": "user", "content": p},), params=greedy)
        for i, p in enumerate(prompts)
    ]
    assert answers == [r.text for r in llm.generate(requests, progress=False)]
    assert any(a.strip() for a in answers)
