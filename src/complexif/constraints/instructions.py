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

"""The 25 verifiable IFEval instructions.

Derived from ``instruction_following_eval/instructions.py`` in google-research
(https://github.com/google-research/google-research, Apache-2.0; Zhou et al. 2023,
arXiv:2311.07911). ``check_following`` and ``build_description`` keep the official logic and text
line for line; the differences are all about how arguments get in:

- Arguments go to the constructor and are validated there. Where the official
  ``build_description`` would silently draw a random value (argument ``None``, a negative count,
  an out-of-range paragraph index, a letter outside a-z), we raise
  :class:`~complexif.constraints.errors.InstructionArgumentError` instead: during scoring a
  random argument is a silent wrong verdict. A ``None`` value counts as absent (the HF copy of
  IFEval fills every unused key with ``None``).
- The official random sampling lives in the ``sample_kwargs`` classmethods and takes an explicit
  ``random.Random``, so composed instructions are reproducible (used by the composer only).
- ``keywords:letter_frequency``: the official checker only accepts a-z and otherwise draws a
  random letter, so IFEval prompts 1122 ('#') and 1129 ('!') get random verdicts. We count the
  character the prompt names, case-insensitively as the official code does for letters. (A 2025
  revision of the google-research file dropped the a-z test too; the widely used copies, e.g.
  if-verifiable 0.1.2 and lm-evaluation-harness, still have it.)
- Checkers never mutate themselves (the official ``EndChecker`` lowercases its phrase in place),
  and langdetect runs seeded (see ``_util``), so every verdict is a pure function of its inputs.
- The official conflict-free sampler of ``nth_paragraph_first_word`` can pick paragraph
  ``num_paragraphs + 1`` (an unsatisfiable constraint); ours picks within range.
- The placeholder, bullet-list, title and postscript checkers count with the linear scans of
  ``_scan`` instead of the official regexes, which backtrack quadratically (a megabyte of ``[``
  took about an hour); the counts, and so the verdicts, are the official ones.
"""

from __future__ import annotations

import collections
import json
import random
import re
import string
from typing import Any, ClassVar

from complexif.constraints import _scan, _util
from complexif.constraints.errors import InstructionArgumentError

_LANGUAGES = _util.LANGUAGE_CODES

# The relational operation for comparison.
_COMPARISON_RELATION = ("less than", "at least")

# The maximum number of sentences.
_MAX_NUM_SENTENCES = 20

# The number of placeholders.
_NUM_PLACEHOLDERS = 4

# The number of bullet lists.
_NUM_BULLETS = 5

# The options of constrained response.
_CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# The options of ending keywords.
_ENDING_OPTIONS = ("Any other questions?", "Is there anything else I can help with?")

# The number of highlighted sections.
_NUM_HIGHLIGHTED_SECTIONS = 4

# The section spliter.
_SECTION_SPLITER = ("Section", "SECTION")

# The number of sections.
_NUM_SECTIONS = 5

# The number of paragraphs.
_NUM_PARAGRAPHS = 5

# The postscript marker.
_POSTSCRIPT_MARKER = ("P.S.", "P.P.S")

# The number of keywords.
_NUM_KEYWORDS = 2

# The occurrences of a single keyword.
_KEYWORD_FREQUENCY = 3

# The occurrences of a single letter.
_LETTER_FREQUENCY = 10

# The occurrences of words with all capital letters.
_ALL_CAPITAL_WORD_FREQUENCY = 20

# The number of words in the response.
_NUM_WORDS_LOWER_LIMIT = 100
_NUM_WORDS_UPPER_LIMIT = 500


# --------------------------------------------------------------------------------------------
# Argument validation. Each helper names the instruction and argument in its error.


def _int_arg(iid: str, name: str, value: Any, minimum: int | None = None) -> int:
    # JSON readers may hand over 3.0 for 3; a bool is an int subclass but never a valid count.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} must be an integer, got {value!r}"
        )
    if minimum is not None and value < minimum:
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} must be >= {minimum}, got {value}"
        )
    return value


def _relation_arg(iid: str, name: str, value: Any) -> str:
    if value not in _COMPARISON_RELATION:
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} must be one of {_COMPARISON_RELATION}, got {value!r}"
        )
    return value


def _str_arg(iid: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} must be a non-empty string, got {value!r}"
        )
    return value


def _regex_arg(iid: str, name: str, pattern: str) -> str:
    # The official checkers use keywords as regular expressions; an invalid one would crash
    # in the middle of scoring, so reject it up front.
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} is used as a regular expression and {pattern!r} "
            f"is not valid ({exc})"
        ) from exc
    return pattern


def _word_list_arg(iid: str, name: str, value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or not value:
        raise InstructionArgumentError(
            f"{iid}: argument {name!r} must be a non-empty list of strings, got {value!r}"
        )
    for item in value:
        _str_arg(iid, name, item)
    return list(value)


# --------------------------------------------------------------------------------------------


class Instruction:
    """An instruction with fixed arguments.

    ``ARGS`` lists the arguments (all required). Subclasses validate them in ``_setup``.
    """

    ARGS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, instruction_id: str, **kwargs: Any) -> None:
        self.id = instruction_id
        given = {k: v for k, v in kwargs.items() if v is not None}
        unexpected = sorted(set(given) - set(self.ARGS))
        if unexpected:
            accepted = ", ".join(self.ARGS) if self.ARGS else "no arguments"
            raise InstructionArgumentError(
                f"{instruction_id}: unexpected argument(s) {unexpected}; accepts {accepted}"
            )
        missing = [name for name in self.ARGS if name not in given]
        if missing:
            raise InstructionArgumentError(
                f"{instruction_id}: missing required argument(s) {missing}"
            )
        self._setup(**given)

    def _setup(self, **kwargs: Any) -> None:
        """Validate and store arguments (no-op for argument-free instructions)."""

    def build_description(self) -> str:
        raise NotImplementedError

    def get_instruction_args(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def get_instruction_args_keys(self) -> list[str]:
        return list(self.ARGS)

    def check_following(self, value: str) -> bool:
        raise NotImplementedError

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        """Arguments drawn the way the official ``build_description`` draws missing ones."""
        return {}


class ResponseLanguageChecker(Instruction):
    """Check the language of the entire response."""

    ARGS = ("language",)

    def _setup(self, *, language: Any) -> None:
        if language not in _LANGUAGES:
            raise InstructionArgumentError(
                f"{self.id}: argument 'language' must be one of {sorted(_LANGUAGES)}, "
                f"got {language!r}"
            )
        self._language = language

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"language": rng.choice(list(_LANGUAGES.keys()))}

    def build_description(self) -> str:
        return (
            f"Your ENTIRE response should be in {_LANGUAGES[self._language]} language, no other "
            "language is allowed."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"language": self._language}

    def check_following(self, value: str) -> bool:
        try:
            return _util.detect_language(value) == self._language
        except _util.LanguageDetectionError:
            # Count as instruction is followed (official behaviour).
            return True


class NumberOfSentences(Instruction):
    """Check the number of sentences."""

    ARGS = ("num_sentences", "relation")

    def _setup(self, *, num_sentences: Any, relation: Any) -> None:
        self._num_sentences_threshold = _int_arg(self.id, "num_sentences", num_sentences, 0)
        self._comparison_relation = _relation_arg(self.id, "relation", relation)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "num_sentences": rng.randint(1, _MAX_NUM_SENTENCES),
            "relation": rng.choice(_COMPARISON_RELATION),
        }

    def build_description(self) -> str:
        return (
            f"Your response should contain {self._comparison_relation} "
            f"{self._num_sentences_threshold} sentences."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {
            "num_sentences": self._num_sentences_threshold,
            "relation": self._comparison_relation,
        }

    def check_following(self, value: str) -> bool:
        num_sentences = _util.count_sentences(value)
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return num_sentences < self._num_sentences_threshold
        return num_sentences >= self._num_sentences_threshold


class PlaceholderChecker(Instruction):
    """Check the placeholders in template writing."""

    ARGS = ("num_placeholders",)

    def _setup(self, *, num_placeholders: Any) -> None:
        self._num_placeholders = _int_arg(self.id, "num_placeholders", num_placeholders, 0)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"num_placeholders": rng.randint(1, _NUM_PLACEHOLDERS)}

    def build_description(self) -> str:
        return (
            f"The response must contain at least {self._num_placeholders} placeholders "
            "represented by square brackets, such as [address]."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"num_placeholders": self._num_placeholders}

    def check_following(self, value: str) -> bool:
        # = len(re.findall(r"\[.*?\]", value)), without its quadratic backtracking.
        return _scan.count_placeholders(value) >= self._num_placeholders


class BulletListChecker(Instruction):
    """Checks the bullet list in the prompt."""

    ARGS = ("num_bullets",)

    def _setup(self, *, num_bullets: Any) -> None:
        self._num_bullets = _int_arg(self.id, "num_bullets", num_bullets, 0)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"num_bullets": rng.randint(1, _NUM_BULLETS)}

    def build_description(self) -> str:
        return (
            f"Your answer must contain exactly {self._num_bullets} bullet points. "
            "Use the markdown bullet points such as:\n"
            "* This is point 1. \n"
            "* This is point 2"
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"num_bullets": self._num_bullets}

    def check_following(self, value: str) -> bool:
        # = the official re.findall(r"^\s*\*[^\*].*$") + re.findall(r"^\s*-.*$") (MULTILINE)
        # match counts, without their quadratic backtracking over runs of blank lines.
        return _scan.count_bullets(value) == self._num_bullets


class ConstrainedResponseChecker(Instruction):
    """Checks the constrained response."""

    _constrained_responses = _CONSTRAINED_RESPONSE_OPTIONS

    def build_description(self) -> str:
        return f"Answer with one of the following options: {self._constrained_responses}"

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        value = value.strip()
        return any(option in value for option in self._constrained_responses)


class HighlightSectionChecker(Instruction):
    """Checks the highlighted section."""

    ARGS = ("num_highlights",)

    def _setup(self, *, num_highlights: Any) -> None:
        self._num_highlights = _int_arg(self.id, "num_highlights", num_highlights, 0)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"num_highlights": rng.randint(1, _NUM_HIGHLIGHTED_SECTIONS)}

    def build_description(self) -> str:
        return (
            f"Highlight at least {self._num_highlights} sections in your answer with "
            "markdown, i.e. *highlighted section*."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"num_highlights": self._num_highlights}

    def check_following(self, value: str) -> bool:
        num_highlights = 0
        highlights = re.findall(r"\*[^\n\*]*\*", value)
        double_highlights = re.findall(r"\*\*[^\n\*]*\*\*", value)
        for highlight in highlights:
            if highlight.strip("*").strip():
                num_highlights += 1
        for highlight in double_highlights:
            if highlight.removeprefix("**").removesuffix("**").strip():
                num_highlights += 1
        return num_highlights >= self._num_highlights


class SectionChecker(Instruction):
    """Checks the sections."""

    ARGS = ("section_spliter", "num_sections")

    def _setup(self, *, section_spliter: Any, num_sections: Any) -> None:
        spliter = _str_arg(self.id, "section_spliter", section_spliter).strip()
        self._section_spliter = _regex_arg(self.id, "section_spliter", spliter)
        self._num_sections = _int_arg(self.id, "num_sections", num_sections, 0)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "section_spliter": rng.choice(_SECTION_SPLITER),
            "num_sections": rng.randint(1, _NUM_SECTIONS),
        }

    def build_description(self) -> str:
        return (
            f"Your response must have {self._num_sections} sections. Mark the beginning "
            f"of each section with {self._section_spliter} X, such as:\n"
            f"{self._section_spliter} 1\n"
            "[content of section 1]\n"
            f"{self._section_spliter} 2\n"
            "[content of section 2]"
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"section_spliter": self._section_spliter, "num_sections": self._num_sections}

    def check_following(self, value: str) -> bool:
        section_splitter_patten = r"\s?" + self._section_spliter + r"\s?\d+\s?"
        sections = re.split(section_splitter_patten, value)
        return len(sections) - 1 >= self._num_sections


class ParagraphChecker(Instruction):
    """Checks the paragraphs."""

    ARGS = ("num_paragraphs",)

    def _setup(self, *, num_paragraphs: Any) -> None:
        self._num_paragraphs = _int_arg(self.id, "num_paragraphs", num_paragraphs, 0)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"num_paragraphs": rng.randint(1, _NUM_PARAGRAPHS)}

    def build_description(self) -> str:
        return (
            f"There should be {self._num_paragraphs} paragraphs. "
            "Paragraphs are separated with the markdown divider: ***"
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"num_paragraphs": self._num_paragraphs}

    def check_following(self, value: str) -> bool:
        paragraphs = re.split(r"\s?\*\*\*\s?", value)
        num_paragraphs = len(paragraphs)
        for index, paragraph in enumerate(paragraphs):
            if not paragraph.strip():
                if index == 0 or index == len(paragraphs) - 1:
                    num_paragraphs -= 1
                else:
                    return False
        return num_paragraphs == self._num_paragraphs


class PostscriptChecker(Instruction):
    """Checks the postscript."""

    ARGS = ("postscript_marker",)

    def _setup(self, *, postscript_marker: Any) -> None:
        marker = _str_arg(self.id, "postscript_marker", postscript_marker).strip()
        if marker not in ("P.P.S", "P.S."):
            _regex_arg(self.id, "postscript_marker", marker.lower())
            # The official checker compiles the marker inside a longer pattern, where an inline
            # flag such as "(?i)" is an error; reject what it would crash on.
            _regex_arg(self.id, "postscript_marker", r"\s*" + marker.lower() + r".*$")
        self._postscript_marker = marker

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"postscript_marker": rng.choice(_POSTSCRIPT_MARKER)}

    def build_description(self) -> str:
        return (
            "At the end of your response, please explicitly add a postscript "
            f"starting with {self._postscript_marker}"
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"postscript_marker": self._postscript_marker}

    def check_following(self, value: str) -> bool:
        value = value.lower()
        if self._postscript_marker == "P.P.S":
            marker_pattern = r"p\.\s?p\.\s?s"
        elif self._postscript_marker == "P.S.":
            marker_pattern = r"p\.\s?s\."
        else:
            marker_pattern = self._postscript_marker.lower()
        # = bool(re.findall(r"\s*" + marker_pattern + r".*$", value, flags=re.MULTILINE)).
        return _scan.has_postscript(marker_pattern, value)


class KeywordChecker(Instruction):
    """Check the existence of certain keywords."""

    ARGS = ("keywords",)

    def _setup(self, *, keywords: Any) -> None:
        words = _word_list_arg(self.id, "keywords", keywords)
        self._keywords = sorted(_regex_arg(self.id, "keywords", w) for w in words)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"keywords": _util.generate_keywords(_NUM_KEYWORDS, rng)}

    def build_description(self) -> str:
        return f"Include keywords {self._keywords} in the response."

    def get_instruction_args(self) -> dict[str, Any]:
        return {"keywords": list(self._keywords)}

    def check_following(self, value: str) -> bool:
        return all(re.search(keyword, value, flags=re.IGNORECASE) for keyword in self._keywords)


class KeywordFrequencyChecker(Instruction):
    """Check the keyword frequency."""

    ARGS = ("keyword", "frequency", "relation")

    def _setup(self, *, keyword: Any, frequency: Any, relation: Any) -> None:
        word = _str_arg(self.id, "keyword", keyword).strip()
        self._keyword = _regex_arg(self.id, "keyword", word)
        self._frequency = _int_arg(self.id, "frequency", frequency, 0)
        self._comparison_relation = _relation_arg(self.id, "relation", relation)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "keyword": _util.generate_keywords(1, rng)[0],
            "frequency": rng.randint(1, _KEYWORD_FREQUENCY),
            "relation": rng.choice(_COMPARISON_RELATION),
        }

    def build_description(self) -> str:
        return (
            f"In your response, the word {self._keyword} should appear "
            f"{self._comparison_relation} {self._frequency} times."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {
            "keyword": self._keyword,
            "frequency": self._frequency,
            "relation": self._comparison_relation,
        }

    def check_following(self, value: str) -> bool:
        actual_occurrences = len(re.findall(self._keyword, value, flags=re.IGNORECASE))
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return actual_occurrences < self._frequency
        return actual_occurrences >= self._frequency


class NumberOfWords(Instruction):
    """Checks the number of words."""

    ARGS = ("num_words", "relation")

    def _setup(self, *, num_words: Any, relation: Any) -> None:
        self._num_words = _int_arg(self.id, "num_words", num_words, 0)
        self._comparison_relation = _relation_arg(self.id, "relation", relation)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "num_words": rng.randint(_NUM_WORDS_LOWER_LIMIT, _NUM_WORDS_UPPER_LIMIT),
            "relation": rng.choice(_COMPARISON_RELATION),
        }

    def build_description(self) -> str:
        return f"Answer with {self._comparison_relation} {self._num_words} words."

    def get_instruction_args(self) -> dict[str, Any]:
        return {"num_words": self._num_words, "relation": self._comparison_relation}

    def check_following(self, value: str) -> bool:
        num_words = _util.count_words(value)
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return num_words < self._num_words
        return num_words >= self._num_words


class JsonFormat(Instruction):
    """Check the Json format."""

    def build_description(self) -> str:
        return (
            "Entire output should be wrapped in JSON format. You can use markdown"
            " ticks such as ```."
        )

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        value = (
            value.strip()
            .removeprefix("```json")
            .removeprefix("```Json")
            .removeprefix("```JSON")
            .removeprefix("```")
            .removesuffix("```")
            .strip()
        )
        try:
            json.loads(value)
        except ValueError:
            return False
        return True


class ParagraphFirstWordCheck(Instruction):
    """Check the paragraph and the first word of the nth paragraph."""

    ARGS = ("num_paragraphs", "nth_paragraph", "first_word")

    def _setup(self, *, num_paragraphs: Any, nth_paragraph: Any, first_word: Any) -> None:
        self._num_paragraphs = _int_arg(self.id, "num_paragraphs", num_paragraphs, 0)
        self._nth_paragraph = _int_arg(self.id, "nth_paragraph", nth_paragraph, 1)
        if self._nth_paragraph > self._num_paragraphs:
            raise InstructionArgumentError(
                f"{self.id}: argument 'nth_paragraph' ({self._nth_paragraph}) must not exceed "
                f"'num_paragraphs' ({self._num_paragraphs})"
            )
        self._first_word = _str_arg(self.id, "first_word", first_word).lower()

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        num_paragraphs = rng.randint(1, _NUM_PARAGRAPHS)
        return {
            "num_paragraphs": num_paragraphs,
            # Official: randint(1, num_paragraphs + 1), which can be out of range.
            "nth_paragraph": rng.randint(1, num_paragraphs),
            "first_word": _util.generate_keywords(1, rng)[0].lower(),
        }

    def build_description(self) -> str:
        return (
            f"There should be {self._num_paragraphs} paragraphs. "
            "Paragraphs and only paragraphs are separated with each other by two "
            "new lines as if it was '\\n\\n' in python. "
            f"Paragraph {self._nth_paragraph} must start with word {self._first_word}."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {
            "num_paragraphs": self._num_paragraphs,
            "nth_paragraph": self._nth_paragraph,
            "first_word": self._first_word,
        }

    def check_following(self, value: str) -> bool:
        paragraphs = re.split(r"\n\n", value)
        num_paragraphs = len(paragraphs)
        for paragraph in paragraphs:
            if not paragraph.strip():
                num_paragraphs -= 1

        # check that index doesn't go out of bounds
        if self._nth_paragraph <= num_paragraphs:
            paragraph = paragraphs[self._nth_paragraph - 1].strip()
            if not paragraph:
                return False
        else:
            return False

        first_word = ""
        punctuation = {".", ",", "?", "!", "'", '"'}

        # get first word and remove punctuation
        word = paragraph.split()[0].strip()
        word = word.lstrip("'")
        word = word.lstrip('"')

        for letter in word:
            if letter in punctuation:
                break
            first_word += letter.lower()

        return num_paragraphs == self._num_paragraphs and first_word == self._first_word


class ForbiddenWords(Instruction):
    """Checks that specified words are not used in response."""

    ARGS = ("forbidden_words",)

    def _setup(self, *, forbidden_words: Any) -> None:
        words = _word_list_arg(self.id, "forbidden_words", forbidden_words)
        for word in words:
            _regex_arg(self.id, "forbidden_words", r"\b" + word + r"\b")
        self._forbidden_words = sorted(set(words))

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"forbidden_words": _util.generate_keywords(_NUM_KEYWORDS, rng)}

    def build_description(self) -> str:
        return f"Do not include keywords {self._forbidden_words} in the response."

    def get_instruction_args(self) -> dict[str, Any]:
        return {"forbidden_words": list(self._forbidden_words)}

    def check_following(self, value: str) -> bool:
        return not any(
            re.search(r"\b" + word + r"\b", value, flags=re.IGNORECASE)
            for word in self._forbidden_words
        )


class TwoResponsesChecker(Instruction):
    """Check that two responses were given."""

    def build_description(self) -> str:
        return (
            "Give two different responses. Responses and only responses should"
            " be separated by 6 asterisk symbols: ******."
        )

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        valid_responses = []
        responses = value.split("******")
        for index, response in enumerate(responses):
            if not response.strip():
                if index != 0 and index != len(responses) - 1:
                    return False
            else:
                valid_responses.append(response)
        return (
            len(valid_responses) == 2 and valid_responses[0].strip() != valid_responses[1].strip()
        )


class RepeatPromptThenAnswer(Instruction):
    """Checks that Prompt is first repeated then answered."""

    ARGS = ("prompt_to_repeat",)

    def _setup(self, *, prompt_to_repeat: Any) -> None:
        self._prompt_to_repeat = _str_arg(self.id, "prompt_to_repeat", prompt_to_repeat)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        # Nothing random: the text to repeat is the request itself.
        if not prompt.strip():
            raise InstructionArgumentError(
                "combination:repeat_prompt: needs a non-empty prompt to repeat"
            )
        return {"prompt_to_repeat": prompt}

    def build_description(self) -> str:
        return (
            "First repeat the request word for word without change,"
            " then give your answer (1. do not say any words or characters"
            " before repeating the request; 2. the request you need to repeat"
            " does not include this sentence)"
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"prompt_to_repeat": self._prompt_to_repeat}

    def check_following(self, value: str) -> bool:
        return value.strip().lower().startswith(self._prompt_to_repeat.strip().lower())


class EndChecker(Instruction):
    """Checks that the prompt ends with a given phrase."""

    ARGS = ("end_phrase",)

    def _setup(self, *, end_phrase: Any) -> None:
        self._end_phrase = _str_arg(self.id, "end_phrase", end_phrase).strip()

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {"end_phrase": rng.choice(_ENDING_OPTIONS)}

    def build_description(self) -> str:
        return (
            f"Finish your response with this exact phrase {self._end_phrase}. "
            "No other words should follow this phrase."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {"end_phrase": self._end_phrase}

    def check_following(self, value: str) -> bool:
        value = value.strip().strip('"').lower()
        return value.endswith(self._end_phrase.strip().lower())


class TitleChecker(Instruction):
    """Checks the response for a title."""

    def build_description(self) -> str:
        return (
            "Your answer must contain a title, wrapped in double angular brackets,"
            " such as <<poem of joy>>."
        )

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        # _scan.titles = re.findall(r"<<[^\n]+>>", value), without its quadratic backtracking.
        return any(title.lstrip("<").rstrip(">").strip() for title in _scan.titles(value))


class LetterFrequencyChecker(Instruction):
    """Checks letter (or, for us, any single character) frequency."""

    ARGS = ("letter", "let_frequency", "let_relation")

    def _setup(self, *, letter: Any, let_frequency: Any, let_relation: Any) -> None:
        # Official: random letter unless a single a-z letter. Ours: any single visible character.
        if not isinstance(letter, str) or len(letter) != 1 or not letter.strip():
            raise InstructionArgumentError(
                f"{self.id}: argument 'letter' must be a single non-space character, got {letter!r}"
            )
        self._letter = letter.lower()
        self._frequency = _int_arg(self.id, "let_frequency", let_frequency, 0)
        self._comparison_relation = _relation_arg(self.id, "let_relation", let_relation)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "letter": rng.choice(list(string.ascii_letters)).lower(),
            "let_frequency": rng.randint(1, _LETTER_FREQUENCY),
            "let_relation": rng.choice(_COMPARISON_RELATION),
        }

    def build_description(self) -> str:
        return (
            f"In your response, the letter {self._letter} should appear {self._comparison_relation}"
            f" {self._frequency} times."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {
            "letter": self._letter,
            "let_frequency": self._frequency,
            "let_relation": self._comparison_relation,
        }

    def check_following(self, value: str) -> bool:
        letters = collections.Counter(value.lower())
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return letters[self._letter] < self._frequency
        return letters[self._letter] >= self._frequency


class CapitalLettersEnglishChecker(Instruction):
    """Checks that the response is in english and is in all capital letters."""

    def build_description(self) -> str:
        return "Your entire response should be in English, and in all capital letters."

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        try:
            return value.isupper() and _util.detect_language(value) == "en"
        except _util.LanguageDetectionError:
            # Count as instruction is followed (official behaviour).
            return True


class LowercaseLettersEnglishChecker(Instruction):
    """Checks that the response is in english and is in all lowercase letters."""

    def build_description(self) -> str:
        return (
            "Your entire response should be in English, and in all lowercase"
            " letters. No capital letters are allowed."
        )

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        try:
            return value.islower() and _util.detect_language(value) == "en"
        except _util.LanguageDetectionError:
            # Count as instruction is followed (official behaviour).
            return True


class CommaChecker(Instruction):
    """Checks the response for no commas."""

    def build_description(self) -> str:
        return "In your entire response, refrain from the use of any commas."

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        return not re.search(r"\,", value)


class CapitalWordFrequencyChecker(Instruction):
    """Checks frequency of words with all capital letters."""

    ARGS = ("capital_frequency", "capital_relation")

    def _setup(self, *, capital_frequency: Any, capital_relation: Any) -> None:
        # The official code accepts any integer here (no negative check); so do we.
        self._frequency = _int_arg(self.id, "capital_frequency", capital_frequency)
        self._comparison_relation = _relation_arg(self.id, "capital_relation", capital_relation)

    @classmethod
    def sample_kwargs(cls, rng: random.Random, prompt: str = "") -> dict[str, Any]:
        return {
            "capital_frequency": rng.randint(1, _ALL_CAPITAL_WORD_FREQUENCY),
            "capital_relation": rng.choice(_COMPARISON_RELATION),
        }

    def build_description(self) -> str:
        return (
            "In your response, words with all capital letters should appear"
            f" {self._comparison_relation} {self._frequency} times."
        )

    def get_instruction_args(self) -> dict[str, Any]:
        return {
            "capital_frequency": self._frequency,
            "capital_relation": self._comparison_relation,
        }

    def check_following(self, value: str) -> bool:
        # Hyphenated words will count as one word
        words = _util.word_tokenize(value)
        capital_words = len([word for word in words if word.isupper()])
        if self._comparison_relation == _COMPARISON_RELATION[0]:
            return capital_words < self._frequency
        return capital_words >= self._frequency


class QuotationChecker(Instruction):
    """Checks response is wrapped with double quotation marks."""

    def build_description(self) -> str:
        return "Wrap your entire response with double quotation marks."

    def get_instruction_args(self) -> None:
        return None

    def check_following(self, value: str) -> bool:
        value = value.strip()
        return len(value) > 1 and value[0] == '"' and value[-1] == '"'
