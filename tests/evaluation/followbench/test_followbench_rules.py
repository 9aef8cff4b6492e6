"""FollowBench rule-based scorers: each source's checks level by level, format examples 22 and
30, the example-file template match, and which shipped items are rule-scored."""

from __future__ import annotations

import ast
import json
from collections import Counter

import pytest

from complexif.evaluation.followbench import data, rules
from complexif.evaluation.followbench.data import Item
from complexif.io import DataError


def make_item(source: str, level: int, target: str = "", category: str = "mixed", eid: int = 1):
    return Item(
        category=category,
        example_id=eid,
        level=level,
        source=source,
        instruction=f"instruction at level {level}",
        target=target,
        kinds=category,
    )


@pytest.fixture(scope="module")
def shipped() -> list[Item]:
    return data.evaluated_items(data.load_followbench())


# -- summary sources: one answer passing all five levels, and per level k an answer that
# -- passes level k-1 but breaks exactly the check level k adds.

LADDERS = {
    "xsum": (
        "The clean-up operation is continuing across the Borders after the floods.",
        [
            "Floods hit the Borders. The clean-up operation is continuing.",
            "The clean-up operation is continuing across the Scottish Borders and Dumfries and "
            "Galloway after the floods caused by Storm Frank last week.",
            "The clean-up operation is continuing in Newton Stewart after the floods.",
            "The clean-up operation continued across the Borders after the floods.",
            # 'operations' is not the whole word 'operation'
            "The clean-up operations are continuing across the Borders after the floods.",
        ],
    ),
    "samsum": (
        "Kim wants to get stuff done and may try the pomodoro technique.",
        [
            "Kim feels bad. She may try stuff.",
            "Kim wants to get stuff done this week and she may try the pomodoro technique Tim "
            "recommended.",
            "Kim wants to get things done and may try the pomodoro technique.",
            "Kim stopped Procrastinating on stuff and may try the pomodoro technique.",
            "Kim wants to get stuff done, so she may try the pomodoro technique.",
        ],
    ),
    "gigaword": (
        "two dead in bomb attack in southern philippines",
        [
            "two dead in bomb attack southern philippines",
            "two dead in bomb attack, southern philippines says",
            "two dead in bomb attack in southern Philippines",
            "two dead in bus bomb attack southern philippines",
            # 'in' inside 'philippines' is not the word 'in'
            "two dead after bomb attack on southern philippines",
        ],
    ),
    "arxiv": (
        "We locate factual associations in the activations and weights of large pretrained "
        "GPT models.",
        [
            "We locate facts. We edit them in the activations.",
            "We locate and edit the mechanisms underlying factual associations within the "
            "activations and weights of large pretrained GPT language models today.",
            "Factual associations live in the activations of GPT models.",
            "We locate factual associations in the weights of large pretrained GPT models.",
            "We locate factual associations in the activations of transformer models.",
        ],
    ),
    "cnn_dailymail": (
        "Harry Potter star Daniel Radcliffe turns 18 on Monday. The young actor says he will "
        "not waste his fortune. His earnings from the films have been held in a trust fund.",
        [
            "Harry Potter star Daniel Radcliffe turns 18 on Monday. The young actor says he will "
            "not waste his fortune.",
            "Harry Potter star Daniel Radcliffe turns 18 on Monday. The young actor says he has "
            "no plans at all to fritter his new fortune away on cars. His earnings from the "
            "films have been held in a trust fund.",
            "Harry Potter star Daniel Radcliffe turns 18 on Monday. His films have earned him a "
            "fortune. The young actor has kept his money in a trust fund.",
            "Harry Potter star Daniel Radcliffe turns 18 on Monday. The young actor will not buy "
            "lavish cars. His earnings from the films have been held in a trust fund.",
            "Harry Potter star Daniel Radcliffe turns 18 on Monday. The young actor says he will "
            "not waste his fortune. His earnings from the films were held in a trust fund.",
        ],
    ),
}


@pytest.mark.parametrize("source", LADDERS)
@pytest.mark.parametrize("level", data.LEVELS)
def test_summary_sources_pass_all_levels(source: str, level: int) -> None:
    passing, _ = LADDERS[source]
    assert rules.rule_score(make_item(source, level), passing)


@pytest.mark.parametrize(
    ("source", "level"), [(source, level) for source in LADDERS for level in data.LEVELS]
)
def test_summary_sources_fail_on_the_check_each_level_adds(source: str, level: int) -> None:
    answer = LADDERS[source][1][level - 1]
    if level > 1:
        assert rules.rule_score(make_item(source, level - 1), answer)
    assert not rules.rule_score(make_item(source, level), answer)
    # a failure at level k is also a failure at every higher level (the checks accumulate)
    assert not any(rules.rule_score(make_item(source, k), answer) for k in range(level, 6))


def test_word_counts_and_sentences_follow_the_official_counting() -> None:
    twenty = "We " + " ".join(["word"] * 18) + " end."
    assert rules.space_words(twenty) == 20
    assert rules.rule_score(make_item("arxiv", 2), twenty)  # at most 20
    assert not rules.rule_score(make_item("arxiv", 2), twenty.replace("end.", "the end."))
    # the bounds: xsum under 20, samsum under 15, gigaword exactly 8
    for source, limit in (("xsum", 20), ("samsum", 15), ("gigaword", 9)):
        assert rules.rule_score(make_item(source, 2), " ".join(["word"] * (limit - 1)))
        assert not rules.rule_score(make_item(source, 2), " ".join(["word"] * limit))
    assert not rules.rule_score(make_item("gigaword", 1), " ".join(["word"] * 7))
    # words are the pieces between single spaces: a double space adds one
    assert rules.space_words("two  words") == 3
    # only empty pieces are dropped: whitespace after the last mark is a second sentence
    assert rules.sentences("Done. ") == ["Done", " "]
    assert not rules.rule_score(make_item("xsum", 1), "One sentence.\n")
    assert rules.sentences("Pi is 3.14!") == ["Pi is 3", "14"]
    assert rules.has_word("Is it stuff?", "stuff") and not rules.has_word("stuffed", "stuff")
    assert not rules.has_word("Stuff", "stuff")  # case-sensitive, as the official check


# -- answer-key sources: the same comparison at every level -----------------------------------


@pytest.mark.parametrize(
    ("source", "target", "passing", "failing"),
    [
        (
            "E2E",
            "name[The Phoenix], eatType[pub]",
            "name[The Phoenix], eatType[pub]",
            "name[The Phoenix], eatType[pub]\n",
        ),
        ("text_editing", "apples love eating I", "apples love eating I", "Apples love eating I"),
        (
            "WIKIEVENTS",
            "a died at b\nc died at d\ne died at f",
            "e died at f\na died at b",
            "a died at b\ng died at h",
        ),
        ("CONLL2003", "['Bonn', 'BRUSSELS']", "BRUSSELS", "Bonn, BRUSSELS"),
        ("BBH_logical", "(A)", "Not (B): the answer is (A).", "(A) looks right, but it is (B)."),
        (
            "BBH_time",
            "12/25/1937",
            "Today is 12/24/1937, so tomorrow is 12/25/1937.",
            "Tomorrow is 12/25/1937; today is 12/24/1937.",
        ),
        ("gsm_8k", "$10", "At $12 an hour, 50 minutes pay $10.", "She earns $10, not $12."),
        ("self_made_space", "22nd floor", "He is on the 22nd floor now.", "He is on floor 22."),
    ],
)
@pytest.mark.parametrize("level", data.LEVELS)
def test_answer_key_sources(source, target, passing, failing, level) -> None:
    item = make_item(source, level, target, category="content")
    assert rules.rule_score(item, passing)
    assert not rules.rule_score(item, failing)
    assert rules.rule_failures(item, failing) != []


def test_answer_keys_of_every_shipped_item(shipped: list[Item]) -> None:
    """Each shipped answer-key item accepts its own key and rejects a wrong answer."""
    keyed = [i for i in shipped if i.category != "example" and i.source in rules.RULE_SOURCES]
    keyed = [i for i in keyed if i.target]  # the summary sources need none
    assert {i.source for i in keyed} == {
        "E2E",
        "WIKIEVENTS",
        "CONLL2003",
        "text_editing",
        "BBH_logical",
        "BBH_time",
        "self_made_space",
        "gsm_8k",
    }
    for item in keyed:
        if item.source == "CONLL2003":
            right = ast.literal_eval(item.target)[0]
        elif item.source == "WIKIEVENTS":
            right = item.target.split("\n")[0]
        else:
            right = item.target
        assert rules.rule_score(item, right), item.id
        assert not rules.rule_score(item, "I cannot answer that."), item.id


def test_malformed_conll_target_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"content/1/2: field 'target'"):
        rules.rule_score(make_item("CONLL2003", 2, "['Bonn'", category="content"), "Bonn")
    with pytest.raises(DataError, match="list of strings"):
        rules.rule_score(make_item("CONLL2003", 2, "[1, 2]", category="content"), "1")


# -- format examples 22 and 30 -----------------------------------------------------------------

LONG = [
    "Wipe the wooden table every week with a soft dry cloth so that dust and grit never get "
    "the chance to scratch its finish",
    "Keep hot dishes and wet glasses off the bare wood by always using coasters, placemats or "
    "trivets under anything that could leave a mark",
    "Polish the surface with a good beeswax or furniture oil a few times a year to feed the "
    "wood and keep its natural glow",
    "Place the table away from radiators and strong sunlight because heat and light dry the "
    "wood out and fade its colour over time",
]


def format_item(example_id: int, level: int) -> Item:
    return make_item("oasst", level, category="format", eid=example_id)


def test_format_22_levels_1_to_3() -> None:
    three = "\n\n".join(f"{s}." for s in LONG[:3])
    for level in (1, 2, 3):
        assert rules.rule_score(format_item(22, level), three)
    two = "\n\n".join([f"{LONG[0]}.", f"{LONG[1]}. {LONG[2]}."])
    assert not rules.rule_score(format_item(22, 1), two)
    crowded = "\n\n".join([f"{LONG[0]}. {LONG[1]}. {LONG[3]}.", f"{LONG[2]}.", f"{LONG[3]}."])
    assert rules.rule_score(format_item(22, 1), crowded)
    assert not rules.rule_score(format_item(22, 2), crowded)
    short = "\n\n".join([f"{LONG[0]}.", "Dust it often.", f"{LONG[2]}."])
    assert rules.rule_score(format_item(22, 2), short)
    assert not rules.rule_score(format_item(22, 3), short)


def test_format_22_levels_4_and_5_are_unreachable_as_in_the_official_check() -> None:
    numbered = "\n\n".join(f"{n}. {s}." for n, s in enumerate(LONG[:3], start=1))
    # Numbered as asked, yet the '1' before '1.' counts as a one-word sentence.
    assert rules.rule_failures(format_item(22, 4), numbered) == ["every sentence over 20 words"]
    plain = "\n\n".join(f"{s}." for s in LONG[:3])
    assert "paragraphs start with number markers" in rules.rule_failures(format_item(22, 4), plain)

    # Level 5 counts the closing line as a fourth paragraph, which must be numbered too; the
    # words check still fails (the '1' piece; 'Those are suggestions' has three words).
    closing = numbered + "\n\n4. Those are suggestions"
    assert rules.rule_failures(format_item(22, 5), closing) == ["every sentence over 20 words"]
    assert rules.rule_failures(format_item(22, 5), numbered + "\n\nThose are suggestions") == [
        "every sentence over 20 words",
        "paragraphs start with number markers",
    ]
    assert "four paragraphs" in rules.rule_failures(format_item(22, 5), numbered)
    assert not rules.rule_score(format_item(22, 4), closing)  # four paragraphs, not three


SPEECH = [
    "**1 Growth:** Innovation lifts productivity and wages across every Australian industry.",
    "**2 Jobs:** New firms built on fresh ideas create skilled work for our people.",
    "**3 Exports:** Australian inventions open new markets for our goods and services abroad.",
    "**4 Resilience:** Diverse and inventive industries help the economy weather global shocks.",
    "**5 Health:** Medical research delivers better treatments and longer lives for all "
    "Australians.",
]


def speech(*replace: tuple[int, str]) -> str:
    lines = list(SPEECH)
    for index, line in replace:
        lines[index] = line
    return "\n".join(line for line in lines if line)


FORMAT_30_FAILS = [
    speech(*[(i, line.replace("**", "")) for i, line in enumerate(SPEECH)]),  # no marker
    speech((4, "")),  # four keywords
    # "1." then a final period: three '.'-pieces in one point
    speech((0, SPEECH[0].replace("**1 ", "**1."))),
    # the official splitter cuts after "1. ", leaving "**1." as a one-word sentence
    speech((0, SPEECH[0].replace("**1 ", "**1. "))),
    speech((2, SPEECH[2].replace("abroad.", "year-ly abroad."))),
]


@pytest.mark.parametrize("level", data.LEVELS)
def test_format_30(level: int) -> None:
    assert rules.rule_score(format_item(30, level), speech())
    failing = FORMAT_30_FAILS[level - 1]
    if level > 1:
        assert rules.rule_score(format_item(30, level - 1), failing)
    assert not rules.rule_score(format_item(30, level), failing)


def test_format_30_quirks() -> None:
    # "-ly" means a hyphen: an ordinary adverb passes
    adverb = speech((2, SPEECH[2].replace("abroad.", "quickly abroad.")))
    assert rules.rule_score(format_item(30, 5), adverb)
    long_point = speech((1, SPEECH[1].replace("people.", "people in every state and town.")))
    assert rules.rule_failures(format_item(30, 5), long_point) == ["every sentence 10-15 words"]


# -- the example file ---------------------------------------------------------------------------


def example_item(target: str) -> Item:
    return make_item("imdb", 3, target, category="example")


def test_example_template_with_escaped_braces() -> None:
    item = example_item("{instruction}\n{{'AI assistant': '{answer}'}}")
    assert rules.rule_score(item, "{'AI assistant': 'Legal Anywhere.com'}")
    assert rules.rule_score(item, "{'AI assistant': ''}")
    assert not rules.rule_score(item, "{{'AI assistant': 'Legal Anywhere.com'}}")
    assert not rules.rule_score(item, "Sure! {'AI assistant': 'Legal Anywhere.com'}")  # full match
    assert not rules.rule_score(item, "{'AI assistant': 'Legal Anywhere.com'}\n")
    # the wildcard stays within a line, as in the official match
    assert not rules.rule_score(item, "{'AI assistant': 'two\nlines'}")


def test_example_template_escapes_regex_characters() -> None:
    item = example_item("{instruction}\n[Answer] ({answer}) *+?")
    assert rules.rule_score(item, "[Answer] (positive) *+?")
    assert not rules.rule_score(item, "A (positive) *+?")
    assert not rules.rule_score(item, "[Answer] positive *+?")
    assert rules.template_pattern("{instruction}\n{{x}}: {answer}").pattern == r"\{x\}:\ .*"


def test_shipped_example_answers_fill_their_templates(shipped: list[Item]) -> None:
    """The example file's reference answers match their own templates, except one group's
    multi-line answers, which the single-line wildcard cannot match (official behaviour)."""
    records = json.loads((data.DEFAULT_DIRECTORY / "example_constraints.json").read_text())
    answers = {(r["example_id"], r["level"]): r["answer"] for r in records}
    examples = [i for i in shipped if i.category == "example"]
    misses = [i for i in examples if not rules.rule_score(i, answers[i.example_id, i.level])]
    assert len(examples) == 200
    assert len({i.example_id for i in misses}) == 1 and len(misses) == 5
    assert all("\n" in answers[i.example_id, i.level] for i in misses)
    # one group's template is a bare '{answer}': any single line fits it, and nothing else does
    bare = [i for i in examples if i.target == "{instruction}\n{answer}"]
    assert len(bare) == 5
    assert all(rules.rule_score(i, "no template here") for i in bare)
    assert not any(rules.rule_score(i, "two\nlines") for i in bare)
    assert not any(rules.rule_score(i, "no template here") for i in examples if i not in bare)


# -- routing -----------------------------------------------------------------------------------


def test_rule_sources_are_the_official_thirteen() -> None:
    assert rules.RULE_SOURCES == {
        "E2E",
        "WIKIEVENTS",
        "CONLL2003",
        "text_editing",
        "cnn_dailymail",
        "xsum",
        "samsum",
        "gigaword",
        "arxiv",
        "BBH_logical",
        "BBH_time",
        "self_made_space",
        "gsm_8k",
    }


def test_shipped_items_split_350_rule_scored_470_judged(shipped: list[Item]) -> None:
    assert len(shipped) == 820
    scored = Counter(i.category for i in shipped if rules.is_rule_scored(i))
    assert sum(scored.values()) == 350
    assert len(shipped) - sum(scored.values()) == 470
    assert scored == {"content": 60, "situation": 40, "format": 10, "example": 200, "mixed": 40}
    # every rule-scored shipped item has usable checks (targets parse), and no other has any
    for item in shipped:
        if rules.is_rule_scored(item):
            rules.rule_score(item, "")
        else:
            with pytest.raises(ValueError, match="judged"):
                rules.rule_score(item, "")


def test_routing_precedence() -> None:
    # example items use the template even when their source is a summary source
    assert rules.is_rule_scored(make_item("xsum", 1, "{instruction}\n{answer}!", "example"))
    assert rules.rule_score(make_item("xsum", 1, "{instruction}\n{answer}!", "example"), "a. b!")
    # format ids 22 and 30 only in the format file
    assert rules.is_rule_scored(format_item(22, 1))
    assert not rules.is_rule_scored(make_item("oasst", 1, category="mixed", eid=22))
    assert not rules.is_rule_scored(format_item(21, 1))
    with pytest.raises(ValueError, match="only levels 1..5"):
        rules.rule_score(make_item("xsum", 0), "x")
