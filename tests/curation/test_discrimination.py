"""The correction loop: one failed constraint at a time, every fix re-verified, trajectory kept."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from complexif.curation.correct import correction_settings
from complexif.curation.discrimination import correct_all, start_trajectory, summarize
from complexif.curation.training_data import build_dpo, build_sft
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.prompts import PromptTemplate
from tests.conftest import repo_params, updated

TEMPLATE = PromptTemplate(
    "fix.txt", "Instruction: $instruction\nAnswer: $response\nFix: $constraint"
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

    correct_all([traj], _settings("program"), TEMPLATE, teacher=no_teacher)
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
    correct_all([traj], settings, TEMPLATE, teacher=lambda: teacher)
    assert not traj.verified
    assert traj.attempts[-1].method == "teacher" and traj.attempts[-1].accepted is False
    assert traj.current.response == "cats are soft."
    assert "Fix:" in teacher.requests[0].messages[0]["content"]
    assert "whiskers" in teacher.requests[0].messages[0]["content"]


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
        TEMPLATE,
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


def test_strategy_without_teacher_factory_is_an_error():
    traj = start_trajectory(
        "a", _instruction(["keywords:existence"], [{"keywords": ["moon"]}]), "x"
    )
    with pytest.raises(ValueError, match="teacher"):
        correct_all([traj], _settings("teacher"), TEMPLATE, teacher=None)


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
    correct_all(trajs, _settings("program"), TEMPLATE)
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
