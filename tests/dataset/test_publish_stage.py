"""The publish stage on a hand-made project: a scripted judge behind a loopback server scores
every row (some replies never parse), and the test checks each exported folder as a user meets
it: loaded with `datasets`, the rows and scores, the card's revisions and counts, the figures,
the numbers behind them, the metrics, the ledger and what MLflow was given."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from complexif.config import Params
from complexif.io import read_jsonl, write_json, write_jsonl
from complexif.llm.base import ChatRequest
from complexif.llm.server import serve_in_thread
from complexif.tracking.inputs import file_md5
from stages import publish as stage
from tests.conftest import REPO_ROOT, repo_params, updated
from tests.llm.servers import ScriptedResponder, build_app


def _chat(*turns: str) -> list[dict[str, str]]:
    return [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]


FCS = [
    {
        "id": f"sft-{i}",
        "prompt": p,
        "messages": _chat(p, a),
        "instruction_id_list": ids,
        "kwargs": kw,
        "n_constraints": len(ids),
        "source": "fcs",
    }
    for i, (p, a, ids, kw) in enumerate(
        [
            (
                "Write about tea.\nUse no commas.\nAdd a title.",
                "<<Tea>> Tea is calm and warm.",
                ["punctuation:no_comma", "detectable_format:title"],
                [{}, {}],
            ),
            (
                "Describe rain.\nMention wet.",
                "Rain is wet and cold today.",
                ["keywords:existence"],
                [{"keywords": ["wet"]}],
            ),
            (
                "JUNK Explain tides.\nUse no commas.\nEnd with Bye.",
                "Tides follow the moon. Bye",
                ["punctuation:no_comma", "startend:end_checker", "keywords:existence"],
                [{}, {"end_phrase": "Bye"}, {"keywords": ["moon"]}],
            ),
        ]
    )
]
CONIFER = [
    {
        "id": "csft-0",
        "messages": _chat(
            "Plan a trip.", "Go north.", "Plan a trip in 3 steps.", "1. Pack 2. Go 3. Rest"
        ),
        "source": "conifer",
        "kind": "single",
        "query_id": "cq-0",
        "levels": [1, 2],
        "instruction_ids": ["cin-0", "cin-1"],
        "n_constraints": 2,
    }
]
DPO = [
    {
        "id": f"dpo-{i}",
        "prompt": [{"role": "user", "content": p}],
        "chosen": [{"role": "assistant", "content": c}],
        "rejected": [{"role": "assistant", "content": r}],
        "instruction_id_list": ["punctuation:no_comma"],
        "kwargs": [{}],
        "n_constraints": 1,
        "source": "fcs",
    }
    for i, (p, c, r) in enumerate(
        [
            ("Write about tea.\nUse no commas.", "Tea is warm.", "Tea, hot, is warm."),
            ("Describe rain.\nUse no commas.", "Rain is wet.", "Rain, cold, is wet."),
        ]
    )
]
GENERAL = [{"id": "gen-0", "messages": _chat("What is two plus two?", "Four.")}]
SEEDS = [
    {"id": f"seed-{i}", "text": t, "source": "test", "category": "writing"}
    for i, t in enumerate(["Write about tea.", "Describe rain.", "Explain tides.", "Plan a trip."])
]
# The FCS chain's files: 4 seeds -> 3 instructions -> 6 answers -> 2 verified trajectories.
INSTRUCTIONS = [{"id": f"ins-{i}"} for i in range(3)]
RESPONSES = [{"id": f"res-{i}"} for i in range(6)]
CORRECTIONS = [
    {"id": f"res-{i}", "status": "verified" if i < 2 else "unresolved"} for i in range(6)
]
CONIFER_FUNNEL = {
    "stage": "conifer_data",
    "steps": [{"step": "targets", "n_in": 3, "n_out": 1, "dropped": {"cut_off": 2}}],
}


def judge(request: ChatRequest) -> str:
    """Complexity 3 (4 for multi-constraint FCS prompts), quality 5 for chosen answers and 2
    for rejected ones (they have commas); anything about the JUNK prompt never parses."""
    text = request.messages[-1]["content"]
    if "JUNK" in str(request.messages):  # the first ask and the repair re-ask alike
        return "I would say it is quite hard."
    if "<response>" in text:
        # The last fence: the template's first line names the fences too.
        response = text.rsplit("<response>", 1)[1].split("</response>")[0]
        return "Score: 2" if "," in response else "Score: 5"
    return "Score: 4" if text.count("\nUse") or "\nMention" in text else "Score: 3"


def _params(root: Path, base_url: str) -> Params:
    data = root / "data"
    api = {"base_url": base_url, "timeout_s": 30.0, "max_retries": 1, "backoff_base_s": 0.05}
    return updated(
        repo_params(),
        paths={
            "models_dir": str(root / "models"),
            "seeds": str(data / "seeds.jsonl"),
            "instructions": str(data / "instructions.jsonl"),
            "responses": str(data / "responses.jsonl"),
            "corrections": str(data / "corrections.jsonl"),
            "sft": str(data / "sft.jsonl"),
            "dpo": str(data / "dpo.jsonl"),
            "conifer_sft": str(data / "conifer" / "sft.jsonl"),
            "conifer_dpo": str(data / "conifer" / "dpo.jsonl"),
            "ledger_dir": str(data / "ledger"),
            "reports_dir": str(root / "reports"),
            "metrics_dir": str(root / "metrics"),
            "publish_dir": "data/publish",
            "prompts_dir": str(REPO_ROOT / "prompts"),
        },
        llm={
            "cache": {"enabled": True, "path": str(root / "cache" / "llm.sqlite")},
            "env_file": str(root / ".env"),
            "progress": False,
        },
        evaluate={"judge": {"backend": "openai", "model": "scripted", "api": api}},
        # The re-ask presets/full.yaml turns on (the embedded default ledgers at once).
        publish={"scores": {"repair_template": "score_repair.txt"}},
        train={"sft": {"general_data": {"path": str(data / "general_chat.jsonl")}}},
    )


class RecordingRun:
    run_id = None

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[tuple[str, str | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_model_dir) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("publish")
    data = root / "data"
    write_jsonl(data / "sft.jsonl", FCS + CONIFER)
    write_jsonl(data / "dpo.jsonl", DPO)
    write_jsonl(data / "conifer" / "sft.jsonl", CONIFER)
    write_jsonl(data / "conifer" / "dpo.jsonl", [])
    for name, rows in [
        ("seeds", SEEDS),
        ("instructions", INSTRUCTIONS),
        ("responses", RESPONSES),
        ("corrections", CORRECTIONS),
        ("general_chat", GENERAL),
    ]:
        write_jsonl(data / f"{name}.jsonl", rows)
    write_json(root / "reports" / "funnel" / "conifer_data.json", CONIFER_FUNNEL)
    (root / "models").mkdir()
    (root / "models" / "base").symlink_to(tiny_model_dir)
    responder = ScriptedResponder(judge)
    with serve_in_thread(build_app(responder, "scripted")) as url:
        params = _params(root, url)
        run = RecordingRun()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(root)  # publish_dir is relative, as in params.yaml
            stage.main(params, run)
            asked = len(responder.requests)
            stage.main(params, RecordingRun())  # again, as a rerun would
    return {
        "root": root,
        "params": params,
        "run": run,
        "asked": asked,
        "asked_again": len(responder.requests) - asked,
    }


def _load(folder: Path):
    import datasets

    return datasets.load_dataset(str(folder), split="train", cache_dir=str(folder.parent / ".hf"))


def test_each_set_loads_with_datasets_with_the_rows_of_its_jsonl(published):
    root = published["root"]
    for name, source in [
        ("sft", "sft.jsonl"),
        ("dpo", "dpo.jsonl"),
        ("conifer_sft", "conifer/sft.jsonl"),
    ]:
        ds = _load(root / "data" / "publish" / name)
        assert ds.num_rows == len(read_jsonl(root / "data" / source)), name
        assert [r["id"] for r in ds] == [r["id"] for r in read_jsonl(root / "data" / source)]
    # The empty set is not exported; the index says so.
    assert not (root / "data" / "publish" / "conifer_dpo").exists()
    index = (root / "data" / "publish" / "README.md").read_text()
    assert "| conifer_dpo | 0 | empty in this run: not exported |" in index
    assert "| sft | 4 | [sft/README.md](sft/README.md) |" in index


def test_the_judge_scores_are_columns_and_unparseable_ones_are_null_and_ledgered(published):
    root = published["root"]
    sft = {r["id"]: r for r in _load(root / "data" / "publish" / "sft")}
    assert [sft[f"sft-{i}"]["judge_complexity"] for i in range(3)] == [4, 4, None]
    assert [sft[f"sft-{i}"]["judge_quality"] for i in range(3)] == [5, 5, None]
    assert sft["csft-0"]["judge_complexity"] == 3  # its last user turn: no "Use" line
    dpo = {r["id"]: r for r in _load(root / "data" / "publish" / "dpo")}
    assert [dpo[f"dpo-{i}"]["judge_quality"] for i in range(2)] == [5, 5]
    assert [dpo[f"dpo-{i}"]["judge_quality_rejected"] for i in range(2)] == [2, 2]
    ledger = read_jsonl(root / "data" / "ledger" / "publish.jsonl")
    assert {(e["request_id"], e["kind"]) for e in ledger} == {
        ("sft-2/complexity", "parse_failed"),
        ("sft-2/quality", "parse_failed"),
    }
    # Only sft's copy: the same question is asked once per set (its own request id).
    analysis = json.loads((root / "data" / "publish" / "sft" / "analysis.json").read_text())
    assert analysis["scores"]["complexity"]["counts"] == {
        "1": 0,
        "2": 0,
        "3": 1,
        "4": 2,
        "5": 0,
        "6": 0,
    }
    assert analysis["scores"]["complexity"]["dropped"] == {"parse_failed": 1}
    assert analysis["reference_scores"]["quality"]["counts"]["5"] == 1


def test_the_numbers_behind_the_figures(published):
    root = published["root"]
    sft = json.loads((root / "data" / "publish" / "sft" / "analysis.json").read_text())
    a = sft["analysis"]
    assert a["rows"] == 4 and a["sources"] == {"fcs": 3, "conifer": 1}
    assert a["turns"]["counts"] == {"1": 3, "2": 1}
    assert a["constraints"]["counts"] == {"1": 1, "2": 2, "3": 1}
    assert a["constraint_types"]["punctuation:no_comma"] == 2
    assert a["levels_max"] == {"2": 1}
    assert sft["diversity"]["curated"]["n_pairs"] == 6
    assert sft["diversity"]["reference"]["n_pairs"] == 6  # the 4 seeds
    assert sft["diversity"]["curated"]["method"] == "tfidf"
    for name in ("lengths", "turns", "constraints", "levels", "diversity", "scores"):
        png = root / "data" / "publish" / "sft" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_card_names_revisions_counts_and_licenses(published):
    root, params = published["root"], published["params"]
    card = (root / "data" / "publish" / "sft" / "README.md").read_text()
    md5 = file_md5(root / "data" / "sft.jsonl")
    assert f"(DVC md5 `{md5}`)" in card
    # No git here, no DVC project: said, not invented.
    assert "git commit: `unknown (not a git checkout)`" in card
    assert "| (none recorded) | | |" in card
    assert "**4** supervised fine-tuning rows" in card and "3 from fcs, 1 from conifer" in card
    # The FCS chain counted from its files; Conifer's from its funnel.
    assert "| seeds | 4 | 4 | - |" in card
    assert "| correct (verified) | 6 | 2 | unresolved: 4 |" in card
    # targets: all would make a row of an unresolved trajectory too: counted against all six.
    assert "| build_data: SFT rows | 6 | 3 | not_a_target: 3 |" in card
    assert "| targets | 3 | 1 | cut_off: 2 |" in card
    for source, text in params.publish.input_licenses.items():
        assert f"| {source} | {text} |" in card
    assert "| judge (complexity and quality scores) | openai | scripted |" in card
    assert "![judge complexity and quality scores](figures/scores.png)" in card
    dpo_card = (root / "data" / "publish" / "dpo" / "README.md").read_text()
    assert "**2** preference pairs" in dpo_card


def test_the_metrics_hold_each_sets_headline_and_mlflow_gets_everything(published):
    root, run = published["root"], published["run"]
    sft = json.loads((root / "metrics" / "publish" / "sft.json").read_text())
    assert sft["rows"] == 4
    assert sft["complexity"] == pytest.approx((4 + 4 + 3) / 3, abs=1e-4)
    assert sft["quality"] == 5.0
    assert 0 <= sft["similarity"] <= 1
    assert json.loads((root / "metrics" / "publish" / "conifer_dpo.json").read_text()) == {
        "rows": 0
    }
    assert run.metrics["sft.analysis.rows"] == 4
    assert run.metrics["dpo.scores.quality_rejected.mean"] == 2.0
    logged = {(Path(p).as_posix(), a) for p, a in run.artifacts}
    assert ("data/publish/sft/README.md", "publish/sft") in logged
    assert ("data/publish/sft/figures", "publish/sft/figures") in logged


def test_a_rerun_asks_the_judge_nothing_new(published):
    # sft: 4 rows x 2 kinds and one repair re-ask for each of sft-2's junk replies; dpo: 2 x 3
    # kinds; the reference: 1 x 2. conifer_sft's row is sft's csft-0: the same questions,
    # answered from the response cache.
    assert published["asked"] == (8 + 2) + 6 + 2
    # Same inputs, same templates, same server: every answer comes from the response cache.
    assert published["asked_again"] == 0
    index = (published["root"] / "data" / "publish" / "README.md").read_text()
    assert re.search(r"\| sft \| 4 \|", index)


def test_with_scores_off_no_judge_is_asked_and_the_ledger_is_written_empty(published, tmp_path):
    # The ledger is one of the stage's DVC outputs: DVC fails a stage that leaves one out.
    root = published["root"]
    for part in ("data", "reports"):
        shutil.copytree(root / part, tmp_path / part, ignore=shutil.ignore_patterns("publish"))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").symlink_to((root / "models" / "base").resolve())
    ledger = tmp_path / "data" / "ledger" / "publish.jsonl"
    ledger.unlink()
    # A judge URL nothing listens on: a request would fail the stage.
    params = updated(
        _params(tmp_path, "http://127.0.0.1:9/v1"), publish={"scores": {"enabled": False}}
    )
    run = RecordingRun()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        stage.main(params, run)
    assert ledger.read_text() == ""
    ds = _load(tmp_path / "data" / "publish" / "sft")
    assert ds.num_rows == 4
    assert not [c for c in ds.column_names if c.startswith("judge_")]
