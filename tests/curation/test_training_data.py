"""Sampling + verification -> SFT targets and DPO pairs, on a small fixture of sampled answers."""

from __future__ import annotations

from dataclasses import replace

from complexif.curation.correct import correction_settings
from complexif.curation.discrimination import correct_all, start_trajectory, text_fix_step
from complexif.curation.respond import respond_all
from complexif.curation.training_data import build_dpo, build_sft
from complexif.ids import content_id
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.cache import request_key
from complexif.llm.factory import generation_params
from complexif.llm.prompts import PromptTemplate
from tests.conftest import repo_params, updated
from tests.llm.servers import ScriptedBackend, llm_client

FIX = text_fix_step(PromptTemplate("fix.txt", "$instruction $response $constraint"))
IDS = ["change_case:english_lowercase", "keywords:existence"]
KWARGS = [{}, {"keywords": ["moon"]}]
INSTRUCTION = {
    "id": "ins-moon",
    "prompt": "Describe the moon.\n\nWrite in lowercase.\nMention the moon.",
    "instruction_id_list": IDS,
    "kwargs": KWARGS,
    "descriptions": ["Write in lowercase.", "Mention the moon."],
}


def _settings(strategy):
    return correction_settings(updated(repo_params().correct, strategy=strategy, max_rounds=8))


def _sft(corrections, max_targets_per_prompt=1, targets="verified"):
    b = repo_params().build_data
    return build_sft(corrections, b.curriculum, b.seed, targets, max_targets_per_prompt)


def _dpo(corrections, max_pairs_per_prompt):
    b = repo_params().build_data
    return build_dpo(corrections, max_pairs_per_prompt, b.curriculum, b.seed)


# Four sampled answers of one instruction: (answer, finish reason).
SAMPLES = [
    ("The Moon rises over the hills.", "stop"),  # fails lowercase: a program fixes it
    ("the moon is bright tonight.", "stop"),  # passes as sampled
    ("Stars shine above.", "stop"),  # no keyword: no program can add one
    ("the moon and the", "length"),  # passes, but cut off by the token limit
]


def _corrections():
    trajs = [
        start_trajectory(f"res-{i}", INSTRUCTION, text, finish)
        for i, (text, finish) in enumerate(SAMPLES)
    ]
    correct_all(trajs, _settings("program"), FIX)
    return [t.to_record() for t in trajs]


def test_passing_samples_are_targets_and_failing_ones_rejected():
    corrections = _corrections()
    assert [c["status"] for c in corrections] == ["verified", "verified", "unresolved", "verified"]

    (sft,) = _sft(corrections)
    assert sft["messages"][-1]["content"] == "the moon is bright tonight."  # passed as sampled
    assert sft["finish_reason"] == "stop"
    two = _sft(corrections, max_targets_per_prompt=4)
    # The repaired answer is a target too; the cut-off one never is.
    assert {r["messages"][-1]["content"] for r in two} == {
        "the moon is bright tonight.",
        "the moon rises over the hills.",
    }

    dpo = _dpo(corrections, max_pairs_per_prompt=5)
    assert {p["chosen"][0]["content"] for p in dpo} == {"the moon is bright tonight."}
    # Every sample's failing original answer first (sample order), then the failing answers
    # the corrections passed through ("Stars..." lowercased still lacks the keyword).
    assert [p["rejected"][0]["content"] for p in dpo] == [
        "The Moon rises over the hills.",
        "Stars shine above.",
        "stars shine above.",
    ]
    assert [p["rejected_failed"] for p in dpo] == [
        ["change_case:english_lowercase"],
        ["change_case:english_lowercase", "keywords:existence"],
        ["keywords:existence"],
    ]
    assert all(p["chosen_finish_reason"] == "stop" for p in dpo)


def test_the_original_answer_survives_the_pair_cap():
    # Only the repaired sample is verified: its own original answer must be the one pair kept.
    corrections = [c for c in _corrections() if c["id"] in ("res-0", "res-2")]
    (pair,) = _dpo(corrections, max_pairs_per_prompt=1)
    assert pair["chosen"][0]["content"] == "the moon rises over the hills."
    assert pair["rejected"][0]["content"] == "The Moon rises over the hills."
    assert pair["rejected_step"] == 0


def test_generation_baseline_trains_on_answers_as_written():
    trajs = [
        start_trajectory(f"res-{i}", INSTRUCTION, text, finish)
        for i, (text, finish) in enumerate(SAMPLES)
    ]
    correct_all(trajs, _settings("none"), FIX)
    corrections = [t.to_record() for t in trajs]
    assert [len(c["trajectory"]) for c in corrections] == [1, 1, 1, 1]  # verified, not fixed
    texts = [
        r["messages"][-1]["content"]
        for r in _sft(corrections, targets="all", max_targets_per_prompt=4)
    ]
    assert sorted(texts) == sorted(t for t, finish in SAMPLES if finish == "stop")


class SeededStudent:
    """Answers depend on the sampling seed, so each sample is a different answer."""

    name = "student"

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def generate(self, requests, progress=True):
        out = []
        for r in requests:
            assert r.params.n == 1
            self.seeds.append(r.params.seed)
            out.append(ChatResponse(r.id, f"answer {r.params.seed}", self.name, "stop", 3, 2))
        return out


def test_respond_samples_n_answers_each_its_own_row_and_seed():
    student = SeededStudent()
    gen = updated(repo_params().respond.student.generation, n=3, temperature=0.8, seed=10)
    rows, failures = respond_all(student, [INSTRUCTION, {**INSTRUCTION, "id": "ins-2"}], gen)
    assert not failures
    assert sorted(student.seeds) == [10, 10, 11, 11, 12, 12]
    assert sorted((r["instruction_id"], r["sample"]) for r in rows) == [
        ("ins-2", 0),
        ("ins-2", 1),
        ("ins-2", 2),
        ("ins-moon", 0),
        ("ins-moon", 1),
        ("ins-moon", 2),
    ]
    assert len({r["id"] for r in rows}) == 6
    assert {r["response"] for r in rows if r["sample"] == 1} == {"answer 11"}


def test_respond_asks_what_it_asked_before_the_step_runner_so_cached_answers_still_hit(tmp_path):
    # Before the step runner, respond asked one bare user turn per (instruction, sample), id
    # "<instruction id>#<i>" and seed seed+i, no prompt version. An answer cached under that
    # request must still be served, and each record keep the id it had.
    gen = updated(repo_params().respond.student.generation, n=2, temperature=0.8, seed=10)
    backend = ScriptedBackend(lambda r: f"fresh {r.id}")
    client = llm_client(backend, tmp_path, role="student")
    params = replace(generation_params(gen), n=1, seed=11)
    earlier = ChatRequest(
        "ins-moon#1", ({"role": "user", "content": INSTRUCTION["prompt"]},), params
    )
    assert client.cache is not None
    client.cache.put(
        request_key(client.model_id, earlier),
        ChatResponse("ins-moon#1", "cached answer", "scripted", "stop", 3, 2),
    )
    rows, failures = respond_all(client, [INSTRUCTION], gen)
    assert not failures
    assert backend.requests == [replace(earlier, id="ins-moon#0", params=replace(params, seed=10))]
    assert rows == [
        {
            "id": content_id(rid, "scripted", gen.model_dump(), text, prefix="res-"),
            "instruction_id": "ins-moon",
            "sample": sample,
            "response": text,
            "model": "scripted",
            "finish_reason": "stop",
            "completion_tokens": tokens,
            "generation": gen.model_dump(),
        }
        for rid, sample, text, tokens in [
            ("ins-moon#0", 0, "fresh ins-moon#0", 1),
            ("ins-moon#1", 1, "cached answer", 2),
        ]
    ]
