"""FollowBench's rule-based scorers: the items whose constraints a program can check.

Which items are rule-scored, and every check below (thresholds, words, how sentences and words
are counted), follow the official ``rule_based_evaluation.py``, so our numbers compare with the
paper's. Three kinds of rule:

* summary and format sources add one check per level: level k must pass the first k checks
  (format example 22 differs at level 5, see there);
* answer-key sources (extraction, editing, reasoning) compare the answer with the item's
  ``target`` in one way at every level;
* the example file: the answer must fill the item's template, ``{answer}`` being any text.

The official quirks are kept on purpose, since they move the scores: the answer is used verbatim
(no stripping); sentences are the pieces between '.', '!' and '?', with only empty pieces
dropped (so "Done. " is two sentences, and "3.5" splits); some checks count words as the pieces
between single spaces; word checks are case-sensitive and whole-word; the template wildcard
does not cross a line break. Where the official check order differs from the order in which
the instruction adds its constraints (format example 30), the official order is kept too.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from complexif.evaluation.followbench.data import MAX_LEVEL, Item
from complexif.io import DataError


@dataclass(frozen=True)
class Check:
    name: str
    test: Callable[[str], bool]  # answer -> satisfied


Ladder = tuple[tuple[Check, ...], ...]  # the checks of levels 1..5


def _cumulative(*checks: Check) -> Ladder:
    """Level k applies the first k checks."""
    assert len(checks) == MAX_LEVEL
    return tuple(checks[:level] for level in range(1, MAX_LEVEL + 1))


# -- text measures, as the official script counts --------------------------------------------

_SENTENCE_MARK = re.compile(r"[.!?]")


def sentences(text: str) -> list[str]:
    return [piece for piece in _SENTENCE_MARK.split(text) if piece]


def space_words(text: str) -> int:
    """Word count as the pieces between single spaces (so double spaces or a leading space
    add one; a newline does not separate)."""
    return len(text.split(" "))


def has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _nth_sentence_has(n: int, word: str) -> Callable[[str], bool]:
    def test(answer: str) -> bool:
        parts = sentences(answer)
        return len(parts) >= n and has_word(parts[n - 1], word)

    return test


def _punctuation_count(text: str) -> int:
    return sum(char in string.punctuation for char in text)


_PRESENT_CONTINUOUS = re.compile(r"\b(am|is|are)\s+\w+ing\b")
_PRESENT_PERFECT = re.compile(r"\b(has|have)\s+\w+")


def _one_sentence() -> Check:
    return Check("one sentence", lambda a: len(sentences(a)) == 1)


# -- per-level ladders of the summary sources -------------------------------------------------

_SUMMARY_LADDERS: dict[str, Ladder] = {
    "cnn_dailymail": _cumulative(
        Check("three sentences", lambda a: len(sentences(a)) == 3),
        Check(
            "each sentence under 15 words", lambda a: all(len(s.split()) < 15 for s in sentences(a))
        ),
        Check(
            "'Potter', 'actor', 'films' in sentences 1, 2, 3",
            lambda a: all(
                _nth_sentence_has(n, word)(a)
                for n, word in ((1, "Potter"), (2, "actor"), (3, "films"))
            ),
        ),
        Check("no 'lavish' in sentence 2", lambda a: not _nth_sentence_has(2, "lavish")(a)),
        Check(
            "sentence 3 in the present perfect",
            lambda a: len(sentences(a)) >= 3 and bool(_PRESENT_PERFECT.search(sentences(a)[2])),
        ),
    ),
    "xsum": _cumulative(
        _one_sentence(),
        Check("under 20 words", lambda a: space_words(a) < 20),
        Check("no 'Newton Stewart'", lambda a: not has_word(a, "Newton Stewart")),
        Check("present continuous", lambda a: bool(_PRESENT_CONTINUOUS.search(a))),
        Check("contains 'operation'", lambda a: has_word(a, "operation")),
    ),
    "samsum": _cumulative(
        _one_sentence(),
        Check("under 15 words", lambda a: space_words(a) < 15),
        Check("contains 'stuff'", lambda a: has_word(a, "stuff")),
        Check("no form of 'procrast'", lambda a: not re.search("procrast", a, re.IGNORECASE)),
        Check("exactly one punctuation mark", lambda a: _punctuation_count(a) == 1),
    ),
    "gigaword": _cumulative(
        Check("8 words", lambda a: space_words(a) == 8),
        Check("no punctuation", lambda a: _punctuation_count(a) == 0),
        Check("all lowercase", lambda a: a.islower()),
        Check("no 'bus'", lambda a: not has_word(a, "bus")),
        Check("contains 'in'", lambda a: has_word(a, "in")),
    ),
    "arxiv": _cumulative(
        _one_sentence(),
        Check("at most 20 words", lambda a: space_words(a) <= 20),
        Check("starts with 'We'", lambda a: a.startswith("We")),
        Check("contains 'activations'", lambda a: has_word(a, "activations")),
        Check("no 'transformer'", lambda a: not has_word(a, "transformer")),
    ),
}


# -- the two rule-scored examples of the format file ------------------------------------------


def _paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def _numbered_paragraphs(text: str) -> bool:
    stripped = (paragraph.lstrip() for paragraph in _paragraphs(text))
    return all(re.match(r"\d+\.", p) for p in stripped if p)


_FORMAT_22_CHECKS = (
    Check(
        "paragraphs 1-3 under three sentences each",
        lambda a: all(len(sentences(p)) < 3 for p in _paragraphs(a)[:3]),
    ),
    Check("every sentence over 20 words", lambda a: all(len(s.split()) > 20 for s in sentences(a))),
    Check("paragraphs start with number markers", _numbered_paragraphs),
    Check("ends with 'Those are suggestions'", lambda a: a.endswith("Those are suggestions")),
)
# Level 5 wants four paragraphs where levels 1-4 want three: the official check takes the
# closing 'Those are suggestions' to be a paragraph of its own. Levels 4 and 5 cannot be met:
# the '1' before the first marker's period counts as a one-word sentence, failing "over 20
# words". Kept as is, like every official check (tests/evaluation/followbench shows it).
_FORMAT_22 = _cumulative(
    Check("three paragraphs", lambda a: len(_paragraphs(a)) == 3), *_FORMAT_22_CHECKS
)[:4] + ((Check("four paragraphs", lambda a: len(_paragraphs(a)) == 4), *_FORMAT_22_CHECKS),)

# Sentences of example 30: split after '.' or '?' plus a space, except after "e.g." style
# abbreviations and a capitalised two-letter word ("Mr.").
_SENTENCE_30 = re.compile(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?)\s")


def _sentences_30(text: str) -> list[str]:
    return _SENTENCE_30.split(text)


def _points_under_two_sentences(text: str) -> bool:
    points = [s for s in _sentences_30(text) if any(f"{n}." in s for n in range(1, 6))]
    return all(len(point.split(".")) < 3 for point in points)


# The instruction adds: marker, <2 sentences, 10-15 words, no '-ly', keyword-then-detail; the
# official checks take the keyword pattern second. Kept, as the scores depend on it. (With this
# splitter a "**1. Growth:**" marker is a one-word sentence, so only markers without ". " after
# the digit, like "**1 Growth:**", can pass the 10-15 words check.)
_FORMAT_30 = _cumulative(
    Check("uses the '**' marker", lambda a: "**" in a),
    Check("five '**<digit>...:' keywords", lambda a: len(re.findall(r"\*\*\d.+?:", a)) == 5),
    Check("each point under two sentences", _points_under_two_sentences),
    Check(
        "every sentence 10-15 words",
        lambda a: all(10 <= len(s.split()) <= 15 for s in _sentences_30(a)),
    ),
    Check(
        "no word ending in '-ly'",
        lambda a: not any(word.endswith("-ly") for s in _sentences_30(a) for word in s.split()),
    ),
)

_FORMAT_LADDERS: dict[int, Ladder] = {22: _FORMAT_22, 30: _FORMAT_30}


# -- answer-key sources: the same comparison with the target at every level -------------------


def _last_match(pattern: str) -> Callable[[str, str], bool]:
    def test(answer: str, target: str) -> bool:
        found = re.findall(pattern, answer)
        return bool(found) and found[-1] == target

    return test


def _conll_entities(item: Item) -> list[str]:
    try:
        entities = ast.literal_eval(item.target)
    except (ValueError, SyntaxError) as exc:
        raise DataError(f"{item.id}: field 'target' is not a Python list literal: {exc}") from exc
    if not isinstance(entities, list) or not all(isinstance(e, str) for e in entities):
        raise DataError(f"{item.id}: field 'target' must be a list of strings")
    return entities


_KEY_RULES: dict[str, tuple[str, Callable[[str, str], bool]]] = {
    "E2E": ("equals the target", lambda a, t: a == t),
    "text_editing": ("equals the target", lambda a, t: a == t),
    "WIKIEVENTS": (
        "every line is a target event",
        lambda a, t: all(line in t.split("\n") for line in a.split("\n")),
    ),
    "BBH_logical": ("last '(X)' option is the target", _last_match(r"\([A-Z]\)")),
    "BBH_time": ("last MM/DD/YYYY date is the target", _last_match(r"\d{2}/\d{2}/\d{4}")),
    "gsm_8k": ("last '$N' amount is the target", _last_match(r"\$\d+")),
    "self_made_space": ("contains the target", lambda a, t: t in a),
}

RULE_SOURCES = frozenset(_SUMMARY_LADDERS) | frozenset(_KEY_RULES) | {"CONLL2003"}
RULE_FORMAT_EXAMPLES = frozenset(_FORMAT_LADDERS)


# -- the example file --------------------------------------------------------------------------


def template_pattern(target: str) -> re.Pattern[str]:
    """The example item's target as a regex: the '{instruction}' line dropped, '{{' and '}}'
    unescaped, '{answer}' any text within a line."""
    template = target.replace("{instruction}\n", "").replace("{{", "{").replace("}}", "}")
    return re.compile(".*".join(re.escape(part) for part in template.split("{answer}")))


# -- routing and scoring -----------------------------------------------------------------------


def is_rule_scored(item: Item) -> bool:
    return (
        item.category == "example"
        or (item.category == "format" and item.example_id in RULE_FORMAT_EXAMPLES)
        or item.source in RULE_SOURCES
    )


def checks(item: Item) -> tuple[Check, ...]:
    """The checks an answer to ``item`` must all pass (ValueError for a judged item)."""
    if not 1 <= item.level <= MAX_LEVEL:
        raise ValueError(f"{item.id}: only levels 1..{MAX_LEVEL} are scored")
    if item.category == "example":
        pattern = template_pattern(item.target)
        return (Check("fills the template", lambda a: pattern.fullmatch(a) is not None),)
    if item.category == "format" and item.example_id in _FORMAT_LADDERS:
        return _FORMAT_LADDERS[item.example_id][item.level - 1]
    if item.source in _SUMMARY_LADDERS:
        return _SUMMARY_LADDERS[item.source][item.level - 1]
    if item.source == "CONLL2003":
        entities = _conll_entities(item)
        return (Check("is one of the target entities", lambda a: a in entities),)
    if item.source in _KEY_RULES:
        name, compare = _KEY_RULES[item.source]
        target = item.target
        return (Check(name, lambda a: compare(a, target)),)
    raise ValueError(f"{item.id} (source {item.source!r}) is judged by an LLM, not rule-scored")


def rule_failures(item: Item, answer: str) -> list[str]:
    """Names of the checks ``answer`` fails (empty when it satisfies the item)."""
    return [check.name for check in checks(item) if not check.test(answer)]


def rule_score(item: Item, answer: str) -> bool:
    return all(check.test(answer) for check in checks(item))
