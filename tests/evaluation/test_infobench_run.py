"""InFoBench through the params (the evaluate stage's path) and through ``complexif infobench
score``, with a scripted judge: DRFR counts only usable verdicts, and the CLI keeps its ledger
beside its results."""

import json

import pytest

from complexif.cli import main
from complexif.evaluation.infobench.data import load_infobench
from complexif.evaluation.infobench.run import infobench_items, score_infobench
from tests.conftest import REPO_ROOT, repo_params, updated
from tests.conifer.conftest import ScriptedBackend, ScriptedSession

SAMPLE = REPO_ROOT / "tests/fixtures/infobench/infobench_sample.jsonl"


def _params(tmp_path):
    return updated(
        repo_params(),
        paths={"prompts_dir": str(REPO_ROOT / "prompts"), "ledger_dir": str(tmp_path / "ledger")},
        evaluate={"infobench": {"source": str(SAMPLE), "subset": None}},
    )


def _verdict(request) -> str:
    # Every first question gets YES, every second NO, the third no usable answer, the rest YES.
    k = int(request.id.rsplit("/q", 1)[1])
    return {1: "YES, it is.", 2: "No.", 3: "I am not sure."}.get(k, "YES")


def test_drfr_counts_only_usable_verdicts(tmp_path):
    params = _params(tmp_path)
    items = infobench_items(params)
    assert len(items) == 8
    answers = {item.id: f"answer {item.id}" for item in items}
    session = ScriptedSession(judge=ScriptedBackend("judge-model", _verdict))
    metrics = score_infobench(
        params, items, answers, lambda: session.client("judge", params.evaluate.judge), tmp_path
    )
    counts = metrics["counts"]
    n_questions = sum(len(i.questions) for i in items)
    with_3 = [i for i in items if len(i.questions) >= 3]
    assert counts["questions"] == n_questions
    # The chat stops at question 3 (re-asked once, then ledgered): the rest is never asked.
    assert counts["unparseable"] == len(with_3)
    assert counts["unasked"] == sum(len(i.questions) - 3 for i in with_3)
    assert counts["judged"] == sum(min(len(i.questions), 2) for i in items)
    assert counts["yes"] == len(items)  # question 1 of every item
    assert metrics["drfr"] == pytest.approx(counts["yes"] / counts["judged"])
    assert metrics["judge"]["prompt"] == "eval/infobench_judge.txt"
    rows = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").open()]
    stopped = next(r for r in rows if r["id"] == with_3[0].id)
    assert stopped["verdicts"][:3] == [True, False, None] and stopped["stopped_at"] == 3


def test_cli_scores_an_answers_file_with_the_params_judge(tmp_path, monkeypatch, capsys):
    import complexif.llm.session as session_module

    backend = ScriptedBackend("judge-model", lambda request: "YES")
    monkeypatch.setattr(session_module, "make_backend", lambda role, params: backend)
    params_file = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    text = text.replace("source: data/benchmarks/infobench/infobench.jsonl", f"source: {SAMPLE}")
    text = text.replace("path: .cache/complexif/llm.sqlite", f"path: {tmp_path}/cache.sqlite")
    text = text.replace("prompts_dir: prompts", f"prompts_dir: {REPO_ROOT / 'prompts'}")
    params_file.write_text(text)
    answers = tmp_path / "answers.jsonl"
    items = load_infobench(SAMPLE, split="train")
    answers.write_text("".join(json.dumps({"id": i.id, "output": "text"}) + "\n" for i in items))
    out = tmp_path / "out"
    argv = ["infobench", "score", "--answers", str(answers), "--output-dir", str(out)]
    assert main([*argv, "--params", str(params_file)]) == 0
    printed = capsys.readouterr().out
    assert "DRFR       100.0" in printed and "0 unparseable" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["drfr"] == 1.0 and metrics["counts"]["judged"] == sum(
        len(i.questions) for i in items
    )
    assert (out / "infobench_score.jsonl").exists()  # the (empty) ledger, beside the results
    # An answers file missing an item is refused before any judge call.
    answers.write_text(json.dumps({"id": items[0].id, "response": "x"}) + "\n")
    n_calls = len(backend.requests)
    assert main([*argv, "--params", str(params_file)]) == 2
    assert "no answer for 7 of 8 InFoBench items" in capsys.readouterr().err
    assert len(backend.requests) == n_calls
