"""Registry, conflict table, argument validation and descriptions (vs. the reference)."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from ifeval_ref import NON_LETTER_KEYS

from complexif.constraints import registry
from complexif.constraints.errors import InstructionArgumentError, UnknownInstructionError
from complexif.constraints.sampling import sample_kwargs
from complexif.constraints.verify import build, check, check_all, describe


def test_ids_match_reference(reference: Any) -> None:
    assert len(registry.INSTRUCTION_IDS) == 25
    assert list(registry.INSTRUCTION_IDS) == list(reference.INSTRUCTION_DICT)


def test_conflicts_match_official_conflict_make(reference: Any) -> None:
    official = reference.conflict_make(copy.deepcopy(reference.INSTRUCTION_CONFLICTS))
    assert registry.CONFLICTS == official
    for a in registry.INSTRUCTION_IDS:
        assert registry.conflicts(a, a)
        for b in registry.INSTRUCTION_IDS:
            assert registry.conflicts(a, b) == registry.conflicts(b, a)
    assert registry.conflicts("detectable_format:json_format", "punctuation:no_comma")
    assert not registry.conflicts("keywords:existence", "punctuation:no_comma")


def test_unknown_id_suggests_closest() -> None:
    with pytest.raises(UnknownInstructionError, match="Did you mean 'punctuation:no_comma'"):
        registry.get_instruction_class("punctuation:no_commas")
    with pytest.raises(UnknownInstructionError, match="Did you mean 'startend:quotation'"):
        check("quotation", {}, "x")
    with pytest.raises(UnknownInstructionError, match="unknown instruction id"):
        registry.conflicts("keywords:existence", "zzz")


@pytest.mark.parametrize(
    ("iid", "kwargs", "message"),
    [
        ("keywords:frequency", {"keyword": "a", "relation": "at least"}, "missing .*frequency"),
        ("length_constraints:number_words", {}, "missing .*num_words"),
        ("detectable_content:postscript", {"postscript_marker": None}, "missing"),
        ("combination:repeat_prompt", {"prompt_to_repeat": ""}, "non-empty string"),
        ("punctuation:no_comma", {"num_words": 3}, "unexpected argument"),
        ("length_constraints:number_words", {"num_words": 5, "relation": "most"}, "relation"),
        ("length_constraints:number_words", {"num_words": -1, "relation": "at least"}, ">= 0"),
        ("length_constraints:number_words", {"num_words": "5", "relation": "at least"}, "integer"),
        ("detectable_format:number_bullet_lists", {"num_bullets": True}, "integer"),
        (
            "keywords:letter_frequency",
            {"letter": "ab", "let_frequency": 1, "let_relation": "at least"},
            "single",
        ),
        ("keywords:existence", {"keywords": "ocean"}, "list of strings"),
        ("keywords:existence", {"keywords": ["f(x"]}, "regular expression"),
        ("language:response_language", {"language": "xx"}, "must be one of"),
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "so"},
            "must not exceed",
        ),
    ],
)
def test_bad_arguments_raise(iid: str, kwargs: dict, message: str) -> None:
    # The official build_description would silently draw a random value for most of these.
    with pytest.raises(InstructionArgumentError, match=message):
        check(iid, kwargs, "some response")


def test_none_values_count_as_absent() -> None:
    # The HF copy of IFEval lists every argument name with None for unused ones.
    hf_style = {"num_words": 3, "relation": "at least", "keyword": None, "language": None}
    assert check("length_constraints:number_words", hf_style, "one two three")


def test_check_all_validates_before_checking() -> None:
    with pytest.raises(InstructionArgumentError, match="2 instruction ids but 1 kwargs"):
        check_all(["punctuation:no_comma", "startend:quotation"], [{}], "x")
    with pytest.raises(InstructionArgumentError, match="missing"):
        check_all(["punctuation:no_comma", "keywords:existence"], [{}, {}], "x")


def test_descriptions_equal_reference_on_all_prompts(reference: Any, ifeval_rows: list) -> None:
    for row in ifeval_rows:
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"], strict=True):
            if iid == "keywords:letter_frequency" and row["key"] in NON_LETTER_KEYS:
                continue
            ref = reference.INSTRUCTION_DICT[iid](iid)
            assert describe(iid, kw) == ref.build_description(**kw), (row["key"], iid)
            ours = build(iid, kw).get_instruction_args()
            assert ours == ref.get_instruction_args(), (row["key"], iid)


def test_sampled_kwargs_are_deterministic_valid_and_described_like_reference(
    reference: Any,
) -> None:
    for iid in registry.INSTRUCTION_IDS:
        for seed in range(20):
            kw = sample_kwargs(iid, random.Random(seed), prompt="Write a poem.")
            assert kw == sample_kwargs(iid, random.Random(seed), prompt="Write a poem.")
            ref = reference.INSTRUCTION_DICT[iid](iid)
            assert describe(iid, kw) == ref.build_description(**kw)
    assert sample_kwargs("combination:repeat_prompt", random.Random(0), "Say hi.") == {
        "prompt_to_repeat": "Say hi."
    }
    with pytest.raises(InstructionArgumentError):
        sample_kwargs("combination:repeat_prompt", random.Random(0), "")
