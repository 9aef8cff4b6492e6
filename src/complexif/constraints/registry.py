# Copyright 2023-2025 The Google Research Authors.
# Modifications copyright 2025 the ComplexIF authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Registry of the 25 IFEval instruction types and the official conflict table.

Derived from ``instruction_following_eval/instructions_registry.py`` in google-research
(Apache-2.0). ``CONFLICTS`` is the official ``conflict_make(INSTRUCTION_CONFLICTS)``: symmetric,
and every id conflicts with itself. Unknown ids raise an error with a "Did you mean" suggestion.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

from complexif.constraints import instructions
from complexif.constraints.errors import UnknownInstructionError

_KEYWORD = "keywords:"
_LANGUAGE = "language:"
_LENGTH = "length_constraints:"
_CONTENT = "detectable_content:"
_FORMAT = "detectable_format:"
_COMBINATION = "combination:"
_STARTEND = "startend:"
_CHANGE_CASES = "change_case:"
_PUNCTUATION = "punctuation:"

# Same order as the official INSTRUCTION_DICT.
INSTRUCTION_DICT: MappingProxyType[str, type[instructions.Instruction]] = MappingProxyType(
    {
        _KEYWORD + "existence": instructions.KeywordChecker,
        _KEYWORD + "frequency": instructions.KeywordFrequencyChecker,
        _KEYWORD + "forbidden_words": instructions.ForbiddenWords,
        _KEYWORD + "letter_frequency": instructions.LetterFrequencyChecker,
        _LANGUAGE + "response_language": instructions.ResponseLanguageChecker,
        _LENGTH + "number_sentences": instructions.NumberOfSentences,
        _LENGTH + "number_paragraphs": instructions.ParagraphChecker,
        _LENGTH + "number_words": instructions.NumberOfWords,
        _LENGTH + "nth_paragraph_first_word": instructions.ParagraphFirstWordCheck,
        _CONTENT + "number_placeholders": instructions.PlaceholderChecker,
        _CONTENT + "postscript": instructions.PostscriptChecker,
        _FORMAT + "number_bullet_lists": instructions.BulletListChecker,
        _FORMAT + "constrained_response": instructions.ConstrainedResponseChecker,
        _FORMAT + "number_highlighted_sections": instructions.HighlightSectionChecker,
        _FORMAT + "multiple_sections": instructions.SectionChecker,
        _FORMAT + "json_format": instructions.JsonFormat,
        _FORMAT + "title": instructions.TitleChecker,
        _COMBINATION + "two_responses": instructions.TwoResponsesChecker,
        _COMBINATION + "repeat_prompt": instructions.RepeatPromptThenAnswer,
        _STARTEND + "end_checker": instructions.EndChecker,
        _CHANGE_CASES + "capital_word_frequency": instructions.CapitalWordFrequencyChecker,
        _CHANGE_CASES + "english_capital": instructions.CapitalLettersEnglishChecker,
        _CHANGE_CASES + "english_lowercase": instructions.LowercaseLettersEnglishChecker,
        _PUNCTUATION + "no_comma": instructions.CommaChecker,
        _STARTEND + "quotation": instructions.QuotationChecker,
    }
)

INSTRUCTION_IDS: tuple[str, ...] = tuple(INSTRUCTION_DICT)

_ALL = set(INSTRUCTION_IDS)

# The official table, verbatim (one-sided; made symmetric below).
_INSTRUCTION_CONFLICTS: dict[str, set[str]] = {
    _KEYWORD + "existence": {_KEYWORD + "existence"},
    _KEYWORD + "frequency": {_KEYWORD + "frequency"},
    _KEYWORD + "forbidden_words": {_KEYWORD + "forbidden_words"},
    _KEYWORD + "letter_frequency": {_KEYWORD + "letter_frequency"},
    _LANGUAGE + "response_language": {
        _LANGUAGE + "response_language",
        _FORMAT + "multiple_sections",
        _KEYWORD + "existence",
        _KEYWORD + "frequency",
        _KEYWORD + "forbidden_words",
        _STARTEND + "end_checker",
        _CHANGE_CASES + "english_capital",
        _CHANGE_CASES + "english_lowercase",
    },
    _LENGTH + "number_sentences": {_LENGTH + "number_sentences"},
    _LENGTH + "number_paragraphs": {
        _LENGTH + "number_paragraphs",
        _LENGTH + "nth_paragraph_first_word",
        _LENGTH + "number_sentences",
    },
    _LENGTH + "number_words": {_LENGTH + "number_words"},
    _LENGTH + "nth_paragraph_first_word": {
        _LENGTH + "nth_paragraph_first_word",
        _LENGTH + "number_paragraphs",
    },
    _CONTENT + "number_placeholders": {_CONTENT + "number_placeholders"},
    _CONTENT + "postscript": {_CONTENT + "postscript"},
    _FORMAT + "number_bullet_lists": {_FORMAT + "number_bullet_lists"},
    _FORMAT + "constrained_response": set(_ALL),
    _FORMAT + "number_highlighted_sections": {_FORMAT + "number_highlighted_sections"},
    _FORMAT + "multiple_sections": {
        _FORMAT + "multiple_sections",
        _LANGUAGE + "response_language",
        _FORMAT + "number_highlighted_sections",
    },
    _FORMAT + "json_format": _ALL - {_KEYWORD + "forbidden_words", _KEYWORD + "existence"},
    _FORMAT + "title": {_FORMAT + "title"},
    _COMBINATION + "two_responses": _ALL
    - {
        _KEYWORD + "forbidden_words",
        _KEYWORD + "existence",
        _LANGUAGE + "response_language",
        _FORMAT + "title",
        _PUNCTUATION + "no_comma",
    },
    _COMBINATION + "repeat_prompt": _ALL
    - {_KEYWORD + "existence", _FORMAT + "title", _PUNCTUATION + "no_comma"},
    _STARTEND + "end_checker": {_STARTEND + "end_checker"},
    _CHANGE_CASES + "capital_word_frequency": {
        _CHANGE_CASES + "capital_word_frequency",
        _CHANGE_CASES + "english_lowercase",
        _CHANGE_CASES + "english_capital",
    },
    _CHANGE_CASES + "english_capital": {_CHANGE_CASES + "english_capital"},
    _CHANGE_CASES + "english_lowercase": {
        _CHANGE_CASES + "english_lowercase",
        _CHANGE_CASES + "english_capital",
    },
    _PUNCTUATION + "no_comma": {_PUNCTUATION + "no_comma"},
    _STARTEND + "quotation": {_STARTEND + "quotation", _FORMAT + "title"},
}


def conflict_make(conflicts: dict[str, set[str]]) -> dict[str, set[str]]:
    """Make the table symmetric and reflexive (official ``conflict_make``, without mutating)."""
    out = {key: set(values) for key, values in conflicts.items()}
    for key in conflicts:
        for other in conflicts[key]:
            out[other].add(key)
        out[key].add(key)
    return out


CONFLICTS: dict[str, set[str]] = conflict_make(_INSTRUCTION_CONFLICTS)


def conflicts(a: str, b: str) -> bool:
    """True when instructions ``a`` and ``b`` may not be combined (an id conflicts with itself)."""
    get_instruction_class(a)
    get_instruction_class(b)
    return b in CONFLICTS[a]


def get_instruction_class(instruction_id: str) -> type[instructions.Instruction]:
    """The checker class for ``instruction_id``; unknown ids raise with a suggestion."""
    try:
        return INSTRUCTION_DICT[instruction_id]
    except (KeyError, TypeError):
        pass
    guess = difflib.get_close_matches(str(instruction_id), INSTRUCTION_IDS, n=1, cutoff=0.5)
    if not guess and isinstance(instruction_id, str):
        # Typing only the part after the colon ("no_comma") is a common slip.
        suffix = instruction_id.split(":")[-1]
        guess = [i for i in INSTRUCTION_IDS if i.split(":")[1] == suffix][:1]
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    raise UnknownInstructionError(
        f"unknown instruction id {instruction_id!r}.{hint} Known ids: {', '.join(INSTRUCTION_IDS)}"
    )
