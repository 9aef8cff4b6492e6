"""Conifer's training data: packing order, the sample kinds and their shapes, DPO pairs, the
funnel, and the gates the records must pass (or fail) on."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from complexif.conifer.packing import (
    DPO_COLUMNS,
    build_conifer_data,
    read_answers,
)
from complexif.curation.funnel import Funnel
from complexif.io import DataError, write_jsonl
from complexif.quality.gate import validate
from tests.conftest import updated
from tests.conifer.conftest import instruction

SUFFIX = "Please give a revised version."


def answer(query: str, level: int, fmt: list[str] | None = None, **more: Any) -> dict[str, Any]:
    """A row of paths.conifer_answers."""
    row = instruction(query, level, f"Instruction {query}{level}.", fmt or [])
    return {
        "id": f"can-{query}{level}",
        "instruction_id": row["id"],
        "query_id": row["query_id"],
        "seed_id": row["seed_id"],
        "query": row["query"],
        "level": level,
        "instruction": row["instruction"],
        "constraints": row["constraints"],
        "format_numerical": row["format_numerical"],
        "answer": f"Answer {query}{level}.",
        "model": "teacher",
        "finish_reason": "stop",
        "internal_feedback": None,
        "external_feedback": None,
        "prompt_versions": {},
        **more,
    }


def external(follows: bool, weak: str = "A weak answer.", critique: str = "Too short.") -> dict:
    return {"weak_answer": weak, "weak_model": "weak", "follows": follows, "critique": critique}


INTERNAL = "Answer a2.\nHow the requirements are met:\n1. Three sentences: counted 3."
ANSWERS = [
    # Out of order on purpose: packing sorts by level.
    answer("a", 3, ["Use 3 sentences."], external_feedback=external(False)),
    answer("a", 1),
    answer("a", 2, ["Use 3 sentences."], internal_feedback=INTERNAL),
    answer("b", 2, external_feedback=external(True)),
    answer("b", 4),  # levels 1 and 3 were dropped upstream: the gap is fine
    answer("c", 1, ["Use lower case."]),  # internal feedback failed upstream
]


def _steps(funnel: Funnel) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {s.step: (s.n_in, s.n_out, s.dropped) for s in funnel.steps}


def _by_kind(sft: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in sft:
        out.setdefault(s["kind"], []).append(s)
    return out


def test_easy_to_hard_packs_each_querys_levels_in_increasing_order(params):
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(ANSWERS, params.conifer, funnel)
    kinds = _by_kind(sft)
    packed = {s["query_id"]: s for s in kinds["easy_to_hard"]}
    assert sorted(packed) == ["cq-a", "cq-b"]
    a = packed["cq-a"]
    assert a["levels"] == [1, 2, 3]
    assert a["instruction_ids"] == ["cin-a1", "cin-a2", "cin-a3"]
    assert [(m["role"], m["content"]) for m in a["messages"]] == [
        ("user", "Instruction a1."),
        ("assistant", "Answer a1."),
        ("user", "Instruction a2."),
        ("assistant", "Answer a2."),
        ("user", "Instruction a3."),
        ("assistant", "Answer a3."),
    ]
    assert packed["cq-b"]["levels"] == [2, 4]
    # A query with one answered level is a plain single-turn sample.
    (single,) = kinds["single"]
    assert single["query_id"] == "cq-c" and single["levels"] == [1]
    assert [m["role"] for m in single["messages"]] == ["user", "assistant"]
    # The hardest level's constraints: 3 subcategory + 1 format constraint.
    assert a["n_constraints"] == 4
    assert all(s["source"] == "conifer" for s in sft)
    assert _steps(funnel)["easy_to_hard"] == (3, 3, {})


def test_without_packing_every_level_is_its_own_sample(params):
    cfg = updated(params, conifer={"packing": "none"}).conifer
    funnel = Funnel("conifer_data")
    sft, _ = build_conifer_data(ANSWERS, cfg, funnel)
    kinds = _by_kind(sft)
    assert "easy_to_hard" not in kinds
    assert sorted(s["instruction_ids"][0] for s in kinds["single"]) == sorted(
        a["instruction_id"] for a in ANSWERS
    )
    assert all(len(s["messages"]) == 2 for s in kinds["single"])
    assert _steps(funnel)["single"] == (6, 6, {})


def test_internal_feedback_is_the_whole_assistant_turn(params):
    funnel = Funnel("conifer_data")
    sft, _ = build_conifer_data(ANSWERS, params.conifer, funnel)
    (internal,) = _by_kind(sft)["internal"]
    assert internal["messages"] == [
        {"role": "user", "content": "Instruction a2."},
        {"role": "assistant", "content": INTERNAL},
    ]
    # a2 has feedback; a3 and c1 have format constraints but no feedback (the answers stage's
    # funnel says why).
    assert _steps(funnel)["internal"] == (3, 1, {"no_feedback": 2})


def test_a_failed_weak_answer_becomes_a_four_turn_sample_and_a_dpo_pair(params):
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(ANSWERS, params.conifer, funnel)
    (ext,) = _by_kind(sft)["external"]
    assert ext["messages"] == [
        {"role": "user", "content": "Instruction a3."},
        # Context only: the weak answer is never a target.
        {"role": "assistant", "content": "A weak answer.", "weight": 0},
        {"role": "user", "content": f"Too short.\n\n{SUFFIX}"},
        {"role": "assistant", "content": "Answer a3."},
    ]
    assert params.conifer.external_feedback.revise_suffix == SUFFIX
    (pair,) = dpo
    assert pair["prompt"] == [{"role": "user", "content": "Instruction a3."}]
    assert pair["chosen"] == [{"role": "assistant", "content": "Answer a3."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "A weak answer."}]
    assert pair["critique"] == "Too short." and pair["source"] == "conifer"
    assert set(pair) == set(DPO_COLUMNS)
    steps = _steps(funnel)
    assert steps["external"] == (2, 1, {"judged_follows": 1})
    assert steps["dpo"] == (1, 1, {})


def test_switches_for_the_ablations(params):
    cfg = updated(
        params,
        conifer={
            "internal_feedback": {"enabled": False},
            "external_feedback": {"dpo_pairs": False},
        },
    ).conifer
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(ANSWERS, cfg, funnel)
    assert "internal" not in _by_kind(sft) and dpo == []
    assert len(_by_kind(sft)["external"]) == 1
    steps = _steps(funnel)
    assert steps["internal"] == (3, 0, {"disabled": 3})
    assert steps["dpo"] == (1, 0, {"disabled": 1})

    cfg = updated(params, conifer={"external_feedback": {"enabled": False}}).conifer
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(ANSWERS, cfg, funnel)
    assert "external" not in _by_kind(sft) and dpo == []
    assert _steps(funnel)["external"] == (2, 0, {"disabled": 2})


def test_answers_that_cannot_be_targets_are_dropped_with_their_reason(params):
    rows = [
        answer("a", 1),
        answer("a", 2, answer="Answer a2.\nKeywords: lighthouse; sea."),
        # Judged failing, yet word for word the teacher's answer: nothing to revise or prefer.
        answer("b", 1, external_feedback=external(False, weak=" Answer b1.")),
        answer(
            "c",
            1,
            ["Use 3 sentences."],
            internal_feedback="Answer.\nHow the requirements are met:\nKeywords: x; y",
            external_feedback=external(False),
            finish_reason="length",
        ),
    ]
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(rows, params.conifer, funnel)
    assert dpo == []
    assert [s["kind"] for s in sft] == ["single", "single"]
    steps = _steps(funnel)
    assert steps["targets"] == (4, 2, {"artifact": 2})
    assert steps["internal"] == (1, 0, {"artifact": 1})
    assert steps["external"] == (2, 0, {"answer_artifact": 1, "same_answer": 1})
    assert steps["dpo"] == (2, 0, {"answer_artifact": 1, "same_answer": 1})


# ---------------------------------------------------------------------------------------------
# Gates


def test_the_records_pass_their_gates(params):
    sft, dpo = build_conifer_data(ANSWERS, params.conifer, Funnel("conifer_data"))
    expectations = params.paths.expectations_dir
    result = validate(pd.DataFrame.from_records(sft), "conifer_sft", expectations)
    assert result.success, result.summary()
    result = validate(pd.DataFrame.from_records(dpo), "conifer_dpo", expectations)
    assert result.success and not result.warnings, result.summary()


def test_no_pairs_passes_the_dpo_gate_with_a_warning(params):
    empty = pd.DataFrame(columns=list(DPO_COLUMNS))
    result = validate(empty, "conifer_dpo", params.paths.expectations_dir)
    assert result.success
    assert [w.type for w in result.warnings] == ["expect_table_row_count_to_be_between"]


def _sft_gate_failures(params, messages: list[dict]) -> set[str]:
    sft, _ = build_conifer_data(ANSWERS, params.conifer, Funnel("conifer_data"))
    bad = {**sft[0], "id": "csft-bad", "messages": messages}
    result = validate(
        pd.DataFrame.from_records([*sft, bad]), "conifer_sft", params.paths.expectations_dir
    )
    return {o.column for o in result.failures}


U, A = "user", "assistant"


@pytest.mark.parametrize(
    ("messages", "column"),
    [
        # The weak answer's turn must not be the last: the last turn is always a target.
        ([{"role": U, "content": "q"}, {"role": A, "content": "a", "weight": 0}], "turns_valid"),
        (
            [{"role": U, "content": "q"}, {"role": U, "content": "q"}, {"role": A, "content": "a"}],
            "turns_valid",
        ),
        (
            [
                {"role": U, "content": "q"},
                {"role": A, "content": " "},
                {"role": U, "content": "q"},
                {"role": A, "content": "a"},
            ],
            "turns_valid",
        ),
        ([{"role": U, "content": "q", "weight": 0}, {"role": A, "content": "a"}], "turns_valid"),
        # Every target turn is checked, not just the last one.
        (
            [
                {"role": U, "content": "q"},
                {"role": A, "content": "a\nKeywords: x; y"},
                {"role": U, "content": "q"},
                {"role": A, "content": "a"},
            ],
            "turn_artifacts",
        ),
    ],
)
def test_the_sft_gate_refuses_conversations_it_cannot_train_on(params, messages, column):
    assert column in _sft_gate_failures(params, messages)


def test_a_context_turn_may_carry_what_a_target_may_not(params):
    messages = [
        {"role": U, "content": "q"},
        {"role": A, "content": "a\nKeywords: x; y", "weight": 0},
        {"role": U, "content": "revise"},
        {"role": A, "content": "a"},
    ]
    assert _sft_gate_failures(params, messages) == set()


def test_the_answers_gate_checks_the_feedback(params):
    from complexif.conifer.packing import ANSWER_FIELDS

    rows = [answer("a", 1), answer("a", 2, ["Use 2 lines."], internal_feedback=INTERNAL)]
    rows.append(answer("b", 1, external_feedback=external(False)))
    expectations = params.paths.expectations_dir
    result = validate(pd.DataFrame.from_records(rows), "conifer_answers", expectations)
    assert result.success, result.summary()
    assert set(ANSWER_FIELDS) <= set(rows[0])
    bad = [
        answer("c", 1, internal_feedback=INTERNAL),  # nothing to explain
        answer("d", 1, external_feedback=external(False, critique=" ")),
        answer("e", 1, finish_reason="length"),
    ]
    result = validate(pd.DataFrame.from_records(rows + bad), "conifer_answers", expectations)
    failed = {o.column: [r.key for r in o.unexpected_rows] for o in result.failures}
    assert failed == {
        "internal_feedback_valid": ["can-c1"],
        "external_feedback_valid": ["can-d1"],
        "finish_reason": ["can-e1"],
    }


# ---------------------------------------------------------------------------------------------
# Reading the answers


def test_answers_are_read_and_bad_rows_are_named_by_file_line_and_field(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, ANSWERS)
    assert read_answers(path) == ANSWERS
    where = re.escape(str(path))
    cases = [
        ({"answer": 3}, "field 'answer' must be str"),
        ({"answer": "  "}, "field 'answer' is empty"),
        ({"internal_feedback": 1}, "field 'internal_feedback' must be str or NoneType"),
        (
            {"external_feedback": {"weak_answer": "w", "critique": "c"}},
            "field 'external_feedback.follows' must be bool",
        ),
        ({"instruction_id": "cin-a3"}, "field 'instruction_id' 'cin-a3' repeats line 1"),
    ]
    for change, message in cases:
        write_jsonl(path, [*ANSWERS, {**ANSWERS[1], **change}])
        with pytest.raises(DataError, match=rf"^{where}:7: {message}"):
            read_answers(path)
