"""Both Conifer stages as DVC runs them (``python -m stages.X``), the teacher and the weak model
behind two loopback servers that answer from a script, on a tiny hand-made instructions file:
each output's shape, the funnel counts in the report and in MLflow, the ledger, and the
ablation switches of ``conifer_data``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from complexif.config import deep_merge
from complexif.conifer.feedback import EXPLANATION_MARKER
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.base import ChatRequest, ChatResponse
from tests.conftest import REPO_ROOT
from tests.conifer.conftest import INSTRUCTIONS, user_text
from tests.llm.servers import ScriptedResponder, serving

EXPLANATION = "\n".join(f"{i}. Sentence {i} is counted." for i in range(1, 60))


class FinishingResponder(ScriptedResponder):
    """A scripted answer may come as ``(text, finish_reason)``: "length" is a cut-off answer."""

    async def respond(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        reply = self.fn(request)
        text, finish = (reply, "stop") if isinstance(reply, str) else reply
        return ChatResponse(
            request.id, text, self.model, finish, self.prompt_tokens(request), len(text.split())
        )


def _teacher(request: ChatRequest) -> str | tuple[str, str]:
    text = user_text(request)
    if "Answer to check:" in text:
        if "lighthouse" in text:
            return '{"follows": false, "critique": "It has two sentences, not three."}'
        if "river" in text:
            return '{"follows": true, "critique": ""}'
        return "It reads well to me."  # never a verdict, not even after the repair re-ask
    if EXPLANATION_MARKER in text:
        if "haiku" in text:
            return "rain on the roof"  # no explanation: ledgered
        return f"Three sentences here. Two. Three.\n{EXPLANATION_MARKER}\n{EXPLANATION}"
    if "table" in text:
        return "| River | Length |\n| Nile |", "length"
    return f"Teacher: {text.splitlines()[0]}"


def _weak(request: ChatRequest) -> str:
    return f"Weak: {user_text(request).strip()}"


def _workspace(tmp_path: Path, teacher_url: str, weak_url: str) -> Path:
    ws = tmp_path / "ws"
    for folder in ("expectations", "prompts"):
        shutil.copytree(REPO_ROOT / folder, ws / folder)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    write_jsonl(ws / params["paths"]["conifer_instructions"], INSTRUCTIONS)

    def role(url: str, model: str) -> dict:
        api = {"base_url": url, "timeout_s": 30.0, "max_retries": 2, "backoff_base_s": 0.05}
        return {"backend": "openai", "model": model, "api": api}

    params = deep_merge(
        params,
        {
            "conifer": {
                "teacher": role(teacher_url, "teacher-model"),
                "weak": role(weak_url, "weak-model"),
            },
            "llm": {"progress": False},
        },
    )
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    return ws


def _stage(ws: Path, name: str, tracking: Path) -> None:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        COMPLEXIF_MLFLOW="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{tracking / 'mlflow.db'}",
        COMPLEXIF_ARTIFACT_ROOT=str(tracking / "artifacts"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{name}"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"stage {name} failed ({proc.returncode}):\n{proc.stderr[-5000:]}"


def _funnel(ws: Path, stage: str) -> dict[str, tuple[int, int, dict[str, int]]]:
    data = yaml.safe_load((ws / "reports" / "funnel" / f"{stage}.json").read_text())
    return {s["step"]: (s["n_in"], s["n_out"], s["dropped"]) for s in data["steps"]}


def _metrics(tracking: Path, stage: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracking / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.mlflow.runName = '{stage}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].data.metrics


def test_conifer_answers_and_data_against_scripted_servers(tmp_path):
    teacher = FinishingResponder(_teacher, model="teacher-model")
    weak = FinishingResponder(_weak, model="weak-model")
    tracking = tmp_path / "tracking"
    with serving(teacher, name="teacher-model") as t_url, serving(weak, name="weak-model") as w_url:
        ws = _workspace(tmp_path, t_url, w_url)
        _stage(ws, "conifer_answers", tracking)

    # --- conifer_answers ---------------------------------------------------------------------
    answers = read_jsonl(ws / "data/conifer/answers.jsonl")
    by_id = {a["instruction_id"]: a for a in answers}
    assert sorted(by_id) == ["cin-a1", "cin-a2", "cin-a3", "cin-b1", "cin-c1"]  # b2 cut off
    assert by_id["cin-a1"]["answer"] == "Teacher: Describe a lighthouse."
    internal = by_id["cin-a2"]["internal_feedback"]
    assert internal.endswith(EXPLANATION) and EXPLANATION_MARKER in internal  # whole
    assert by_id["cin-c1"]["internal_feedback"] is None
    assert by_id["cin-a3"]["external_feedback"] == {
        "weak_answer": "Weak: Describe a lighthouse in 3 sentences, in French.",
        "weak_model": "weak-model",
        "follows": False,
        "critique": "It has two sentences, not three.",
    }
    assert by_id["cin-b1"]["external_feedback"]["follows"] is True
    assert by_id["cin-c1"]["external_feedback"] is None
    # Over the wire: the internal feedback asked for its full length, the weak model was asked
    # each query's hardest answered level (the bare instruction), the judge was re-asked once.
    wanted = yaml.safe_load((ws / "params.yaml").read_text())["conifer"]
    internal_calls = [r for r in teacher.requests if EXPLANATION_MARKER in user_text(r)]
    assert len(internal_calls) == 3
    assert {r.params.max_new_tokens for r in internal_calls} == {
        wanted["internal_feedback"]["max_new_tokens"]
    }
    assert sorted(user_text(r).strip() for r in weak.requests) == sorted(
        INSTRUCTIONS[i]["instruction"] for i in (2, 3, 5)
    )
    judge_calls = [r for r in teacher.requests if "Answer to check:" in user_text(r)]
    assert len(judge_calls) == 4  # three verdicts asked, the unreadable one re-asked once
    ledger = read_jsonl(ws / "data/ledger/conifer_answers.jsonl")
    assert {(e["request_id"], e["kind"], e["attempts"]) for e in ledger} == {
        ("cin-c1/internal", "parse_failed", 1),
        ("cin-c1/judge", "parse_failed", 2),
    }
    assert _funnel(ws, "conifer_answers") == {
        "answer": (6, 5, {"cut_off": 1}),
        "internal_feedback": (3, 2, {"parse_failed": 1}),
        "weak_answer": (3, 3, {}),
        "judge": (3, 1, {"judged_follows": 1, "parse_failed": 1}),
    }
    metrics = _metrics(tracking, "conifer_answers")
    assert metrics["funnel.answer.dropped.cut_off"] == 1
    assert metrics["funnel.judge.dropped.judged_follows"] == 1
    assert metrics["funnel.judge.out"] == 1
    assert (ws / "reports/gates/conifer_answers.json").is_file()

    # --- conifer_data ------------------------------------------------------------------------
    _stage(ws, "conifer_data", tracking)
    sft = read_jsonl(ws / "data/conifer/sft.jsonl")
    dpo = read_jsonl(ws / "data/conifer/dpo.jsonl")
    kinds = sorted((s["kind"], s["query_id"], tuple(s["levels"])) for s in sft)
    assert kinds == [
        ("easy_to_hard", "cq-a", (1, 2, 3)),
        ("external", "cq-a", (3,)),
        ("internal", "cq-a", (2,)),
        ("internal", "cq-a", (3,)),
        ("single", "cq-b", (1,)),
        ("single", "cq-c", (1,)),
    ]
    packed = next(s for s in sft if s["kind"] == "easy_to_hard")
    assert [m["content"] for m in packed["messages"][::2]] == [
        INSTRUCTIONS[i]["instruction"] for i in (0, 1, 2)
    ]
    ext = next(s for s in sft if s["kind"] == "external")
    assert [(m["role"], m.get("weight", 1)) for m in ext["messages"]] == [
        ("user", 1),
        ("assistant", 0),
        ("user", 1),
        ("assistant", 1),
    ]
    assert ext["messages"][2]["content"].endswith(wanted["external_feedback"]["revise_suffix"])
    assert [(p["instruction_id"], p["chosen"][0]["content"]) for p in dpo] == [
        ("cin-a3", by_id["cin-a3"]["answer"])
    ]
    assert dpo[0]["rejected"][0]["content"] == by_id["cin-a3"]["external_feedback"]["weak_answer"]
    assert _funnel(ws, "conifer_data") == {
        "targets": (5, 5, {}),
        "easy_to_hard": (3, 3, {}),
        "internal": (3, 2, {"no_feedback": 1}),
        "external": (2, 1, {"judged_follows": 1}),
        "dpo": (1, 1, {}),
    }
    assert _metrics(tracking, "conifer_data")["funnel.dpo.out"] == 1

    # --- the ablations: no packing, no pairs (an empty pair file passes its gate) ------------
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["conifer"]["packing"] = "none"
    params["conifer"]["external_feedback"]["dpo_pairs"] = False
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    _stage(ws, "conifer_data", tracking)
    sft = read_jsonl(ws / "data/conifer/sft.jsonl")
    assert sorted(s["kind"] for s in sft) == ["external"] + ["internal"] * 2 + ["single"] * 5
    assert read_jsonl(ws / "data/conifer/dpo.jsonl") == []
    assert _funnel(ws, "conifer_data")["dpo"] == (1, 0, {"disabled": 1})
