"""The correction loop: one failed constraint at a time, every fix re-verified, trajectory kept."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from complexif.curation.correct import correction_settings
from complexif.curation.discrimination import (
    correct_all,
    json_fix_step,
    start_trajectory,
    summarize,
    text_fix_step,
)
from complexif.curation.training_data import build_dpo, build_sft
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.prompts import PromptTemplate
from tests.conftest import repo_params, updated
from tests.llm.servers import ScriptedBackend, llm_client

FIX = text_fix_step(
    PromptTemplate("fix.txt", "Instruction: $instruction\nAnswer: $response\nFix: $constraint")
)


def _settings(strategy, **changes):
    cfg = updated(repo_params().correct, strategy=strategy, max_rounds=8, **changes)
    return correction_settings(cfg)


class ScriptedTeacher:
    """A teacher whose answers are fixed in advance; records what it was asked."""

    name = "scripted"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []

    def generate(self, requests, progress=True):
        self.requests.extend(requests)
        return [ChatResponse(r.id, self.answers.pop(0), self.name, "stop", 1, 1) for r in requests]


def _instruction(ids, kwargs, prompt="Describe a cat.", ins_id="ins-1"):
    return {
        "id": ins_id,
        "prompt": prompt,
        "instruction_id_list": ids,
        "kwargs": kwargs,
        "descriptions": [f"Follow {iid} {kw}." for iid, kw in zip(ids, kwargs, strict=True)],
    }


def test_program_repairs_fix_failures_one_at_a_time_and_each_fix_is_verified():
    ins = _instruction(["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    traj = start_trajectory("r1", ins, "Cats are Soft, Warm, and Curious.")
    assert traj.attempts[0].verdicts == [False, False]

    def no_teacher():
        raise AssertionError("the teacher must not be loaded when programs fix everything")

    correct_all([traj], _settings("program"), FIX, teacher=no_teacher)
    assert traj.verified
    steps = traj.accepted_chain()
    assert [a.method for a in steps] == ["initial", "program", "program"]
    assert [a.constraint for a in steps[1:]] == [
        "punctuation:no_comma",
        "change_case:english_lowercase",
    ]
    assert steps[1].verdicts == [True, False]  # first fix verified on its own
    assert traj.current.response == "cats are soft warm and curious."


def test_a_teacher_fix_that_breaks_a_passing_constraint_is_rejected():
    ins = _instruction(
        ["change_case:english_lowercase", "keywords:existence"], [{}, {"keywords": ["whiskers"]}]
    )
    traj = start_trajectory("r1", ins, "cats are soft.")
    assert traj.attempts[0].verdicts == [True, False]
    # The teacher adds the keyword but also capitalises: target passes, a passing one now fails.
    teacher = ScriptedTeacher(["Cats have WHISKERS."])
    settings = _settings("teacher", teacher_attempts_per_constraint=1)
    correct_all([traj], settings, FIX, teacher=lambda: teacher)
    assert not traj.verified
    assert traj.attempts[-1].method == "teacher" and traj.attempts[-1].accepted is False
    assert traj.current.response == "cats are soft."
    # The request is the one discrimination sent before the step runner, so its cache key
    # (messages, params, template version) and its ledger id are unchanged.
    content = (
        "Instruction: Describe a cat.\nAnswer: cats are soft.\nFix: Follow keywords:existence "
    )
    assert teacher.requests == [
        ChatRequest(
            "r1:1:1",
            ({"role": "user", "content": content + "{'keywords': ['whiskers']}."},),
            settings.teacher_params,
            prompt_version=FIX.template.version,
        )
    ]


def test_teacher_requests_are_batched_per_round_and_accepted_when_they_verify():
    ins_a = _instruction(["keywords:existence"], [{"keywords": ["moon"]}])
    ins_b = _instruction(["keywords:existence"], [{"keywords": ["sun"]}])
    ins_b["id"] = "ins-2"
    trajs = [start_trajectory("a", ins_a, "night sky"), start_trajectory("b", ins_b, "day sky")]
    teacher = ScriptedTeacher(["the moon at night", "no star here"])
    rounds = []
    correct_all(
        trajs,
        _settings("teacher"),
        FIX,
        teacher=lambda: teacher,
        on_round=lambda r, s: rounds.append((r, s)),
    )
    assert rounds[0][1]["teacher_requests"] == 2
    assert trajs[0].verified and not trajs[1].verified
    stats = summarize(trajs)
    # "unresolved" is n - verified, so it says nothing once "verified" is checked; what can go
    # wrong is counting an answer as passing from the start when only its fix passes.
    assert stats["verified"] == 1 and stats["initial_all_pass"] == 0
    assert [t.to_record()["status"] for t in trajs] == ["verified", "unresolved"]
    assert stats["teacher_accepted"] == 1 and stats["teacher_rejected"] == 1


def test_json_fixes_are_parsed_repaired_once_and_a_failed_one_uses_its_attempt(tmp_path):
    # Three responses missing their keyword; the teacher answers {"response": ...} in JSON.
    words = ["moon", "sun", "star"]
    trajs = [
        start_trajectory(w, _instruction(["keywords:existence"], [{"keywords": [w]}]), "sky")
        for w in words
    ]

    def answer(request: ChatRequest) -> str:
        word = request.id.split(":")[0]
        if word == "moon":  # closed JSON, then chatter until the token limit
            return '```json\n{"response": "the moon at night"}\n```\nI hope this helps, and'
        if len(request.messages) > 1:  # the repair re-ask
            return '{"response": "the sun by day"}' if word == "sun" else "sorry, I cannot"
        return "Here is my fix: the sun by day"

    backend = ScriptedBackend(answer, finish=lambda r: "length" if "moon" in r.id else "stop")
    client = llm_client(backend, tmp_path)
    repair = PromptTemplate("json_repair.txt", "Not JSON: $error")
    step = json_fix_step(FIX.template, repair)
    settings = _settings("teacher", teacher_attempts_per_constraint=1)
    rounds = []
    correct_all(
        trajs, settings, step, teacher=lambda: client, on_round=lambda r, s: rounds.append(s)
    )

    moon, sun, star = trajs
    assert moon.verified and sun.verified and not star.verified
    # A closed JSON string is whole even though the answer ran on to the token limit.
    assert moon.current.response == "the moon at night"
    assert moon.current.finish_reason == "stop" and moon.current.model == "scripted"
    assert sun.current.response == "the sun by day"
    # The one that never parsed used its attempt; the trajectory and the ledger say why.
    failed = star.attempts[-1]
    assert (failed.method, failed.accepted, failed.response) == ("teacher", False, "")
    assert failed.error.startswith("parse_failed: no JSON object")
    assert "after one repair re-ask" in failed.error
    assert [(e.request_id, e.kind) for e in client.ledger.entries] == [("star:1:0", "parse_failed")]
    assert len(backend.requests) == 3 + 2  # one re-ask each for sun and star, none for moon
    assert rounds[0]["teacher_requests"] == 3 and rounds[0]["teacher_failed"] == 1
    assert summarize(trajs)["teacher_failed"] == 1
    # Every later round has nothing left to ask: star is at its attempt budget.
    assert all(r["teacher_requests"] == 0 for r in rounds[1:])


def test_a_plain_text_fix_cut_off_at_the_token_limit_stays_marked_cut_off(tmp_path):
    traj = start_trajectory(
        "r1", _instruction(["keywords:existence"], [{"keywords": ["moon"]}]), "sky"
    )
    backend = ScriptedBackend(lambda r: "the moon and the", finish=lambda r: "length")
    client = llm_client(backend, tmp_path)
    correct_all([traj], _settings("teacher"), FIX, teacher=lambda: client)
    assert traj.verified and traj.current.response == "the moon and the"
    assert traj.current.finish_reason == "length"  # never an SFT target


def test_strategy_without_teacher_factory_is_an_error():
    traj = start_trajectory(
        "a", _instruction(["keywords:existence"], [{"keywords": ["moon"]}]), "x"
    )
    with pytest.raises(ValueError, match="teacher"):
        correct_all([traj], _settings("teacher"), FIX, teacher=None)


def test_sft_targets_and_dpo_pairs_come_only_from_verified_trajectories():
    fixed = start_trajectory(
        "r1",
        _instruction(["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}]),
        "Cats, Dogs, and Birds.",
    )
    already_ok = start_trajectory(
        "r2", _instruction(["punctuation:no_comma"], [{}]), "No commas here."
    )
    # No program can translate an answer, so this one stays unresolved under the program strategy.
    stuck = start_trajectory(
        "r3",
        _instruction(["language:response_language"], [{"language": "ja"}]),
        "hello there my friend",
    )
    trajs = [fixed, already_ok, stuck]
    correct_all(trajs, _settings("program"), FIX)
    records = [t.to_record() for t in trajs]
    for rec in records:
        rec["instruction_id"] = rec["instruction_id"] + rec["id"]

    b = repo_params().build_data
    sft = build_sft(records, "easy_to_hard", b.seed, "verified", 1)
    assert [r["correction_id"] for r in sft] == ["r2", "r1"]  # easy (1 constraint) before hard (2)
    assert sft[1]["messages"][-1] == {"role": "assistant", "content": "cats dogs and birds."}

    dpo = build_dpo(records, 5, "easy_to_hard", b.seed)
    assert {p["correction_id"] for p in dpo} == {"r1"}
    assert len(dpo) == 2  # the original answer and the half-fixed one
    for pair in dpo:
        assert pair["chosen"][0]["content"] == "cats dogs and birds."
        assert pair["rejected"][0]["content"] != pair["chosen"][0]["content"]
        assert pair["rejected_failed"]
    # With room for one pair only, it is the student's original answer.
    (only,) = build_dpo(records, 1, "easy_to_hard", b.seed)
    assert only["rejected_step"] == 0
    assert only["rejected"][0]["content"] == "Cats, Dogs, and Birds."


def test_an_instruction_row_without_descriptions_is_named_by_file_line_and_field(tmp_path):
    from complexif.curation.correct import read_instructions
    from complexif.io import DataError

    good = {
        "id": "a",
        "prompt": "p",
        "instruction_id_list": ["detectable_format:title"],
        "kwargs": [{}],
        "descriptions": ["Give it a title."],
    }
    bad = {k: v for k, v in good.items() if k != "descriptions"} | {"id": "b"}
    path = tmp_path / "instructions.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"instructions.jsonl:2: missing field 'descriptions'"):
        read_instructions(str(path))
    path.write_text(json.dumps(good) + "\n")
    assert read_instructions(str(path)) == [good]
