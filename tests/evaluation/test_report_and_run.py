import csv
import json

import pytest

from complexif.evaluation.ifeval_run import evaluate_ifeval
from complexif.evaluation.report import load_metrics, markdown_table, write_report
from complexif.llm.transformers_backend import TransformersLLM
from tests.conftest import REPO_ROOT, repo_params, updated


def _metrics(strict: float) -> dict:
    return {
        "prompt_level_strict_acc": strict,
        "prompt_level_loose_acc": strict + 0.1,
        "inst_level_strict_acc": strict + 0.05,
        "inst_level_loose_acc": strict + 0.15,
        "num_prompts": 10,
        "per_instruction": {
            "punctuation:no_comma": {"strict": strict, "loose": strict, "count": 3},
            "detectable_format:title": {"strict": 1.0, "loose": 1.0, "count": 2},
        },
    }


def _paths(tmp_path):
    return updated(
        repo_params().paths, eval_dir=str(tmp_path / "eval"), metrics_dir=str(tmp_path / "metrics")
    )


def test_report_table_csv_and_plot(tmp_path):
    paths = _paths(tmp_path)
    for name, s in (("base", 0.2), ("sft", 0.3), ("dpo", 0.35)):
        # The report reads the full metrics beside the answers, not the DVC headline file.
        paths.eval_detail(name, "ifeval").parent.mkdir(parents=True, exist_ok=True)
        paths.eval_detail(name, "ifeval").write_text(json.dumps(_metrics(s)))
    results = load_metrics(paths, ["base", "sft", "dpo"], ["ifeval"])
    metrics = results["ifeval"]
    table = markdown_table(metrics)
    assert "| base | 10 | 20.0 | 30.0 | 25.0 | 35.0 |" in table
    assert "| sft | 10 | 30.0 (+10.0) | 40.0 (+10.0) | 35.0 (+10.0) | 45.0 (+10.0) |" in table
    paths = write_report(results, ["base", "sft", "dpo"], tmp_path / "reports")
    assert not any(name.startswith("followbench") for name in paths)  # not evaluated
    summary = paths["summary"].read_text()
    assert "| sft | 30.0 | 40.0 | 35.0 | 45.0 |" in summary
    # The per-type table shows each model's change from base, with how many instructions.
    text = paths["ifeval_table"].read_text()
    assert "| punctuation:no_comma | 3 | 20.0 | 30.0 (+10.0) | 35.0 (+15.0) |" in text
    assert "| detectable_format:title | 2 | 100.0 | 100.0 (+0.0) | 100.0 (+0.0) |" in text
    rows = list(csv.DictReader(paths["ifeval_csv"].open()))
    assert rows[1] == {
        "instruction_type": "punctuation:no_comma",
        "base": "20.0",
        "sft": "30.0",
        "dpo": "35.0",
    }
    assert paths["ifeval_plot"].read_bytes()[:4] == b"\x89PNG"


def test_missing_metrics_name_the_model_and_stage(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="followbench metrics for model 'sft'.*evaluate@sft"
    ):
        load_metrics(_paths(tmp_path), ["sft"], ["followbench"])


def test_evaluate_ifeval_generates_scores_and_writes_everything(tiny_model_dir, tmp_path):
    paths = updated(
        repo_params().paths,
        eval_dir=str(tmp_path / "eval"),
        metrics_dir=str(tmp_path / "metrics"),
        ifeval_input=str(REPO_ROOT / "data/benchmarks/ifeval/input_data.jsonl"),
    )
    cfg = updated(
        repo_params().evaluate,
        ifeval={"subset": 3},
        generation={"max_new_tokens": 4, "batch_size": 3},
    )
    gen = cfg.generation
    llm = TransformersLLM(
        tiny_model_dir, 3, "cpu", name="tiny", engine=gen.engine, precision=gen.precision
    )
    out = tmp_path / "eval/base/ifeval"
    metrics = evaluate_ifeval(llm, paths.ifeval_input, cfg, out)
    assert metrics["num_prompts"] == 3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["prompt_level_strict_acc"] == metrics["prompt_level_strict_acc"]
    responses = [json.loads(x) for x in (out / "responses.jsonl").open()]
    assert len(responses) == 3 and all(r["completion_tokens"] <= 4 for r in responses)
    strict = [json.loads(x) for x in (out / "eval_results_strict.jsonl").open()]
    assert {r["prompt"] for r in strict} == {r["prompt"] for r in responses}
