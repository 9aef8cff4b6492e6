"""Program repairs fix exactly the failing constraint and keep the response's content."""

from __future__ import annotations

import json
import re

import pytest

from complexif.constraints.errors import InstructionArgumentError, UnknownInstructionError
from complexif.constraints.registry import INSTRUCTION_IDS
from complexif.constraints.repair import REPAIRABLE_IDS, repair
from complexif.constraints.verify import check

TEXT = (
    "Lighthouses guide ships at night. Their beams, seen from far away, warn of rocks.\n\n"
    "Keepers once lived in them. They trimmed wicks, cleaned lenses, and logged storms.\n\n"
    "Today most lights are automated. The old towers remain as museums."
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


# (instruction id, kwargs, failing response)
CASES: list[tuple[str, dict, str]] = [
    ("change_case:english_lowercase", {}, TEXT),
    ("change_case:english_capital", {}, TEXT),
    ("punctuation:no_comma", {}, TEXT + " It cost 1,500,000 dollars."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, TEXT),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"' + TEXT + '"'),
    ("startend:quotation", {}, TEXT),
    ("detectable_format:title", {}, TEXT),
    ("detectable_format:title", {}, "## Lighthouses of the World\n\n" + TEXT),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, TEXT),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "One idea. Another idea."),
    ("detectable_format:json_format", {}, TEXT),
    ("detectable_content:number_placeholders", {"num_placeholders": 9}, "Hi [name]. " + TEXT),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write about lighthouses."}, TEXT),
    ("keywords:existence", {"keywords": ["fog", "horn"]}, TEXT),
    ("keywords:forbidden_words", {"forbidden_words": ["rocks", "storms"]}, TEXT),
    (
        "keywords:frequency",
        {"keyword": "lighthouse", "frequency": 2, "relation": "less than"},
        "A lighthouse stood. The lighthouse shone. Another lighthouse slept.",
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 5}, TEXT),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, TEXT),
    ("length_constraints:number_words", {"num_words": 20, "relation": "less than"}, TEXT),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, TEXT),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, TEXT),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 3}, "# Lights\n" + TEXT),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 4},
        TEXT,
    ),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, TEXT),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "* a\n* b\n- c\n---\nEnd."),
]


def test_cases_cover_every_repairable_type() -> None:
    assert {c[0] for c in CASES} == set(REPAIRABLE_IDS)
    assert set(REPAIRABLE_IDS) < set(INSTRUCTION_IDS)


@pytest.mark.parametrize(("iid", "kwargs", "response"), CASES, ids=[c[0] for c in CASES])
def test_repair_fixes_failing_response(iid: str, kwargs: dict, response: str) -> None:
    assert not check(iid, kwargs, response)
    fixed = repair(iid, kwargs, response)
    assert fixed is not None
    assert check(iid, kwargs, fixed)
    assert repair(iid, kwargs, fixed) == fixed  # already passing: unchanged


@pytest.mark.parametrize(
    ("iid", "kwargs"),
    [
        ("change_case:english_lowercase", {}),
        ("change_case:english_capital", {}),
        ("punctuation:no_comma", {}),
        ("startend:quotation", {}),
        ("startend:end_checker", {"end_phrase": "Any other questions?"}),
        ("detectable_format:title", {}),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}),
        ("detectable_content:number_placeholders", {"num_placeholders": 3}),
        ("combination:repeat_prompt", {"prompt_to_repeat": "Write about lighthouses."}),
        ("keywords:existence", {"keywords": ["fog"]}),
        ("length_constraints:number_paragraphs", {"num_paragraphs": 5}),
        ("detectable_format:number_highlighted_sections", {"num_highlights": 2}),
        ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 3}),
        ("detectable_format:number_bullet_lists", {"num_bullets": 2}),
    ],
)
def test_repair_keeps_every_word(iid: str, kwargs: dict) -> None:
    fixed = repair(iid, kwargs, TEXT)
    assert fixed is not None
    kept = words(fixed)
    it = iter(kept)
    # The original words survive, in order (a repair may add markers around them).
    assert all(w in it for w in words(TEXT)), fixed


def test_specific_repairs_do_only_what_is_needed() -> None:
    assert repair("change_case:english_lowercase", {}, TEXT) == TEXT.lower()
    assert repair("punctuation:no_comma", {}, "Yes, 1,000 boats.") == "Yes 1000 boats."
    removed = repair(
        "keywords:forbidden_words", {"forbidden_words": ["rocks"]}, "Mind the rocks here."
    )
    assert removed == "Mind the here."
    assert repair("startend:quotation", {}, '"Half quoted') == '"Half quoted"'
    trimmed = repair(
        "length_constraints:number_words", {"num_words": 12, "relation": "less than"}, TEXT
    )
    assert trimmed == "Lighthouses guide ships at night."  # cut at a sentence boundary
    cut = repair("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, TEXT)
    assert cut == "Lighthouses guide"  # no sentence fits: cut at a word boundary
    assert json.loads(repair("detectable_format:json_format", {}, TEXT)) == {"response": TEXT}
    assert repair("detectable_format:title", {}, "## Lights\nText.") == "<<Lights>>\nText."
    freq = {"keyword": "tea", "frequency": 2, "relation": "less than"}
    assert (
        repair("keywords:frequency", freq, "Tea first. More tea. Tea again.")
        == "Tea first. More. again."
    )


def test_no_program_repair_returns_none() -> None:
    assert repair("language:response_language", {"language": "fr"}, "Hello there, friend.") is None
    assert repair("combination:two_responses", {}, "Only one answer.") is None
    # "at least" would need new prose.
    kw = {"num_words": 500, "relation": "at least"}
    assert repair("length_constraints:number_words", kw, TEXT) is None
    # A repair that cannot reach the target returns None rather than a failing text.
    assert (
        repair("length_constraints:number_paragraphs", {"num_paragraphs": 9}, "One. Two.") is None
    )
    # Substring hits ("steam" contains "tea") cannot be removed without damaging words.
    freq = {"keyword": "tea", "frequency": 1, "relation": "less than"}
    assert repair("keywords:frequency", freq, "Steam rose.") is None


def test_repair_validates_like_check() -> None:
    with pytest.raises(UnknownInstructionError):
        repair("punctuation:no_commas", {}, "a, b")
    with pytest.raises(InstructionArgumentError):
        repair("startend:end_checker", {}, "text")
