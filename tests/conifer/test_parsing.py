"""How Conifer reads the teacher's answers: lists, verdicts, constraint lists, rewrites.

A parse either returns a usable value or raises ``ParseError`` (the step runner then re-asks
once and ledgers what still fails); it never guesses.
"""

from __future__ import annotations

import pytest

from complexif.conifer import parsing
from complexif.llm.step import ParseError

# ---------------------------------------------------------------------------------------------
# numbered_items (reframing)


def test_numbered_and_bulleted_lines_are_items_and_prose_is_not() -> None:
    text = (
        "Here are three instructions:\n"
        "1. Explain how tides form on a coast with large bays.\n"
        "2) Describe the daily routine of a lighthouse keeper in winter.\n"
        "3: Compare spring tides with neap tides for a sailor.\n"
        "- Discuss why some harbours dry out at low tide.\n"
        "* List the dangers of walking on tidal flats alone.\n"
        "\u2022 Suggest a safe walking route along a tidal estuary.\n"
        "I hope these help!"
    )
    assert parsing.numbered_items(text, limit=10) == [
        "Explain how tides form on a coast with large bays.",
        "Describe the daily routine of a lighthouse keeper in winter.",
        "Compare spring tides with neap tides for a sailor.",
        "Discuss why some harbours dry out at low tide.",
        "List the dangers of walking on tidal flats alone.",
        "Suggest a safe walking route along a tidal estuary.",
    ]


def test_items_are_distinct_long_enough_and_capped() -> None:
    text = (
        "1. Too short here.\n"  # 3 words
        "2. Explain how tides form on a coast.\n"
        "3. Explain how tides form on a coast.\n"  # a repeat
        "4. Describe the daily routine of a lighthouse keeper.\n"
        "5. Compare spring tides with neap tides."
    )
    assert parsing.numbered_items(text, limit=2) == [
        "Explain how tides form on a coast.",
        "Describe the daily routine of a lighthouse keeper.",
    ]


def test_labels_quotes_and_bold_lead_ins_are_decoration() -> None:
    text = (
        '1. "Explain how tides form on a coast."\n'
        "2. **Describe the routine of a lighthouse keeper.**\n"
        "3. **Safety:** Explain why tidal flats are dangerous to walk on.\n"
        "4. Instruction: Compare spring tides with neap tides."
    )
    assert parsing.numbered_items(text, limit=5) == [
        "Explain how tides form on a coast.",
        "Describe the routine of a lighthouse keeper.",
        "Safety: Explain why tidal flats are dangerous to walk on.",
        "Compare spring tides with neap tides.",
    ]


@pytest.mark.parametrize(
    "text",
    ["", "Sure, I can help with that!", "1. Too short.\n2. Also short.", "Step 1 explain tides"],
)
def test_no_usable_item_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="numbered list"):
        parsing.numbered_items(text, limit=3)


# ---------------------------------------------------------------------------------------------
# yes_no (filters 1 and 2)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("yes", True),
        ("Yes.", True),
        ("YES", True),
        ("no", False),
        ("No, it needs the pasted document.", False),
        ("Answer: no", False),
        ("Yes - nothing else is needed, no document.", True),  # the first of the two words
        ("I would say no, not yes.", False),
    ],
)
def test_the_first_yes_or_no_decides(text: str, verdict: bool) -> None:
    assert parsing.yes_no({"id": "q"}, text) is verdict


@pytest.mark.parametrize("text", ["", "maybe", "It depends.", "Nothing is missing", "yesterday"])
def test_an_answer_without_yes_or_no_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="yes or no"):
        parsing.yes_no({"id": "q"}, text)


# ---------------------------------------------------------------------------------------------
# constraint_lists


def _lists(text: str, min_categories: int = 2) -> dict[str, list[str]]:
    return parsing.constraint_lists(min_categories)({"id": "q"}, text)


def test_a_json_object_of_lists_is_read_after_prose_or_in_a_fence() -> None:
    plain = '{"Tone": ["formal", "warm"], "Audience": ["children"]}'
    assert _lists(plain) == {"Tone": ["formal", "warm"], "Audience": ["children"]}
    fenced = f"Here you go:\n```json\n{plain}\n```\nHope it helps."
    assert _lists(fenced) == _lists(plain)
    # A stray JSON value before the real answer does not hide it.
    assert _lists(f"I found [2] groups: {plain}") == _lists(plain)


def test_values_are_normalised_to_distinct_strings() -> None:
    text = (
        '{" Tone ": "formal; warm, formal", "Length": [300, "300", " short "],'
        ' "Empty": [], "Nested": [{"a": 1}], "Blank": ["", "  "]}'
    )
    assert _lists(text) == {"Tone": ["formal", "warm"], "Length": ["300", "short"]}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"Tone": ["formal"]}', "at least 2 categories"),  # one category cannot grow
        ('{"Tone": [], "Audience": []}', "at least 2 categories"),
        ('["formal", "warm"]', "object of category"),
        ("{'Tone': ['formal'], 'Audience': ['kids']}", "JSON"),  # Python, not JSON
        ('{"Tone": ["formal"], "Audience": ["kids",]}', "JSON"),  # trailing comma
        ("Tone: formal\nAudience: kids", "no JSON"),
    ],
)
def test_wrong_shapes_and_broken_json_are_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        _lists(text)


def test_the_minimum_number_of_categories_is_the_callers() -> None:
    assert _lists('{"Tone": ["formal"]}', min_categories=1) == {"Tone": ["formal"]}
    with pytest.raises(ParseError, match="at least 3 categories"):
        _lists('{"Tone": ["formal"], "Audience": ["kids"]}', min_categories=3)


# ---------------------------------------------------------------------------------------------
# rewritten (recombination, format/numerical rewrite)

ROW = {"id": "cin-1", "query": "Explain how tides form."}


def test_a_rewrite_loses_its_label_and_wrapping_quotes() -> None:
    want = "Explain how tides form, in a friendly tone, for ten-year-olds."
    for answer in (
        want,
        f"Rewritten instruction: {want}",
        f'instruction: "{want}"',
        f"  {want}\n",
        f'"{want}"',
    ):
        assert parsing.rewritten(ROW, answer) == want, answer


def test_a_bold_label_is_removed_whole() -> None:
    # Regression: the label was looked for before the bold markers were stripped, so
    # "**Rewritten instruction:** ..." left "Rewritten instruction:" in the dataset.
    want = "Explain how tides form, in a friendly tone, for ten-year-olds."
    for answer in (f"**Rewritten instruction:** {want}", f"**Instruction**: {want}", f"**{want}**"):
        assert parsing.rewritten(ROW, answer) == want, answer


def test_markdown_inside_the_instruction_is_kept() -> None:
    # Regression: every "**" was deleted, which garbles an instruction whose format rule is
    # about bold text (the rewrite step adds exactly such rules).
    text = "Explain how tides form and wrap each key term in double asterisks, like **tide**."
    assert parsing.rewritten(ROW, text) == text
    quoted = 'Explain how tides form and end with the words "Any questions?" on their own line.'
    assert parsing.rewritten(ROW, quoted) == quoted


def test_short_long_and_unchanged_rewrites_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="3 words"):
        parsing.rewritten(ROW, "Explain tides briefly.")
    with pytest.raises(ParseError, match="one instruction"):
        parsing.rewritten(ROW, "word " * (parsing.MAX_INSTRUCTION_WORDS + 1))
    with pytest.raises(ParseError, match="unchanged"):
        parsing.rewritten(ROW, "  explain how TIDES form. ")
    # With an instruction in the row (the format rewrite), that is what must change.
    row = {**ROW, "instruction": "Explain how tides form, for ten-year-olds."}
    with pytest.raises(ParseError, match="unchanged"):
        parsing.rewritten(row, "Instruction: Explain how tides form, for ten-year-olds.")
    assert parsing.rewritten(row, "Explain how tides form.") == "Explain how tides form."
