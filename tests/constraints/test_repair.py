"""Program repairs fix exactly the failing constraint, change only form, and keep every word."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write about lighthouses."}, TEXT),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 5}, TEXT),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, TEXT),
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
        ("combination:repeat_prompt", {"prompt_to_repeat": "Write about lighthouses."}),
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
    assert repair("startend:quotation", {}, '"Half quoted') == '"Half quoted"'
    assert repair("detectable_format:title", {}, "## Lights\nText.") == "<<Lights>>\nText."


# What a checker would accept but a careful writer would not do: no program repair exists.
GAMING_REPAIRS = [
    ("keywords:existence", {"keywords": ["fog", "horn"]}, TEXT),  # a "Keywords:" line
    ("detectable_content:number_placeholders", {"num_placeholders": 4}, TEXT),  # a [..] tail
    ("detectable_format:json_format", {}, TEXT),  # {"response": ...}
    ("keywords:forbidden_words", {"forbidden_words": ["rocks"]}, TEXT),  # "warn of ."
    (
        "keywords:frequency",
        {"keyword": "lighthouses", "frequency": 1, "relation": "less than"},
        TEXT,
    ),
    ("length_constraints:number_words", {"num_words": 20, "relation": "less than"}, TEXT),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, TEXT),
    ("language:response_language", {"language": "fr"}, TEXT),
    ("combination:two_responses", {}, TEXT),
    ("length_constraints:number_words", {"num_words": 500, "relation": "at least"}, TEXT),
]


@pytest.mark.parametrize(("iid", "kwargs", "response"), GAMING_REPAIRS)
def test_no_repair_that_adds_lists_cuts_or_deletes(iid: str, kwargs: dict, response: str) -> None:
    assert iid not in REPAIRABLE_IDS
    assert not check(iid, kwargs, response)
    assert repair(iid, kwargs, response) is None


def test_a_repair_that_cannot_reach_the_target_returns_none() -> None:
    assert (
        repair("length_constraints:number_paragraphs", {"num_paragraphs": 9}, "One. Two.") is None
    )


# --------------------------------------------------------------------------------------------
# Property: over many generated responses and arguments, a repair keeps every word.

_SENTENCES = [
    "The harbour was quiet before dawn.",
    "Nobody expected the storm, least of all the ferry captain.",
    "Prices rose by 1,250 dollars in a year.",
    'She wrote: "keep the light burning."',
    "Is it worth the cost?",
    "Tea, bread and cheese were all they had!",
    "Section 2 of the report covers safety.",
    "The answer, in short, is yes.",
    "Each keeper logged the weather twice a day.",
    "Modern lamps use LEDs and solar panels.",
]

_response = st.lists(
    st.tuples(
        st.lists(st.sampled_from(_SENTENCES), min_size=1, max_size=4),
        st.sampled_from(["plain", "bullets", "heading", "quote"]),
    ),
    min_size=1,
    max_size=5,
).map(
    lambda paras: "\n\n".join(
        "\n".join(f"* {s}" for s in sents)
        if kind == "bullets"
        else f"## {sents[0].rstrip('.?!')}\n" + " ".join(sents[1:] or sents)
        if kind == "heading"
        else f'"{" ".join(sents)}"'
        if kind == "quote"
        else " ".join(sents)
        for sents, kind in paras
    )
)

_ARGS = {
    "change_case:english_lowercase": st.just({}),
    "change_case:english_capital": st.just({}),
    "punctuation:no_comma": st.just({}),
    "startend:end_checker": st.sampled_from(["Thank you for reading.", "Until next time."]).map(
        lambda p: {"end_phrase": p}
    ),
    "startend:quotation": st.just({}),
    "detectable_format:title": st.just({}),
    "detectable_content:postscript": st.sampled_from(["P.S.", "P.P.S"]).map(
        lambda m: {"postscript_marker": m}
    ),
    "combination:repeat_prompt": st.just({"prompt_to_repeat": "Describe a harbour at dawn."}),
    "length_constraints:number_paragraphs": st.integers(1, 6).map(lambda n: {"num_paragraphs": n}),
    "detectable_format:number_highlighted_sections": st.integers(1, 4).map(
        lambda n: {"num_highlights": n}
    ),
    "detectable_format:multiple_sections": st.tuples(
        st.sampled_from(["Section", "PART"]), st.integers(1, 4)
    ).map(lambda t: {"section_spliter": t[0], "num_sections": t[1]}),
    "detectable_format:number_bullet_lists": st.integers(1, 6).map(lambda n: {"num_bullets": n}),
}


def _word_counts(text: str) -> Counter[str]:
    # Case and commas are form ("1,250" may become "1250"); words are letters and digits.
    return Counter(re.findall(r"[a-z0-9]+", text.lower().replace(",", "")))


def test_property_covers_every_repairable_type() -> None:
    assert set(_ARGS) == set(REPAIRABLE_IDS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), response=_response)
def test_every_repair_keeps_every_word(data, response: str) -> None:
    iid = data.draw(st.sampled_from(sorted(REPAIRABLE_IDS)))
    kwargs = data.draw(_ARGS[iid])
    fixed = repair(iid, kwargs, response)
    if fixed is None:
        return
    assert check(iid, kwargs, fixed)
    missing = _word_counts(response) - _word_counts(fixed)
    assert not missing, (iid, kwargs, missing, fixed)


def test_repair_validates_like_check() -> None:
    with pytest.raises(UnknownInstructionError):
        repair("punctuation:no_commas", {}, "a, b")
    with pytest.raises(InstructionArgumentError):
        repair("startend:end_checker", {}, "text")
