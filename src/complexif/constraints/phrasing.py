"""Word a constraint the way a person would: several phrasings per type, arguments as prose.

The phrasings and the argument pools live in a template file (``prompts/constraint_phrasings.yaml``)
so they can be read and edited without touching code. :class:`Phrasebook` loads and validates it;
:meth:`Phrasebook.render` turns ``(instruction id, arguments)`` into one sentence, choosing the
phrasing and the way counts are said ("fewer than 12 words" or "at most 11 words") with the
caller's RNG, so a seed fixes the wording.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from complexif.constraints._util import LANGUAGE_CODES
from complexif.constraints.registry import INSTRUCTION_IDS
from complexif.io import DataError

MIN_PHRASINGS = 4

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
_SMALL_TIMES = {1: "once", 2: "twice"}


def quoted_list(words: Sequence[str], conjunction: str = "and") -> str:
    """``"a"``, ``"a" and "b"``, ``"a", "b" and "c"``."""
    items = [f'"{w}"' for w in words]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _times(n: int) -> str:
    return _SMALL_TIMES.get(n, f"{n} times")


def count_phrase(relation: str, n: int, unit: str | None, rng: random.Random) -> str:
    """A comparison in words. ``unit`` None counts occurrences ("at least twice").

    "less than n" is said as "fewer than n ..." or, equivalently for whole counts, "at most n-1
    ..."; "at least n" as "at least n ..." or "n or more ...".
    """
    say = _times if unit is None else (lambda k: plural(k, unit))
    if relation == "less than":
        if n < 2:
            raise ValueError(f"'less than {n}' cannot be phrased as a positive count")
        if rng.random() < 0.5:
            return f"fewer than {n} times" if unit is None else f"fewer than {n} {unit}s"
        return f"at most {say(n - 1)}"
    if relation == "at least":
        if rng.random() < 0.5 or unit is None:
            return f"at least {say(n)}"
        return f"{n} or more {unit}s"
    raise ValueError(f"unknown relation {relation!r}")


def _fields(iid: str, kw: Mapping[str, Any], rng: random.Random) -> dict[str, str]:
    """The template fields of one constraint, rendered from its checker arguments."""
    if iid == "keywords:existence":
        return {"keywords": quoted_list(kw["keywords"])}
    if iid == "keywords:frequency":
        return {
            "keyword": kw["keyword"],
            "times": count_phrase(kw["relation"], kw["frequency"], None, rng),
        }
    if iid == "keywords:forbidden_words":
        words = kw["forbidden_words"]
        return {"words_or": quoted_list(words, "or"), "words_and": quoted_list(words)}
    if iid == "keywords:letter_frequency":
        return {
            "letter": kw["letter"],
            "times": count_phrase(kw["let_relation"], kw["let_frequency"], None, rng),
        }
    if iid == "language:response_language":
        return {"language": LANGUAGE_CODES[kw["language"]]}
    if iid == "length_constraints:number_sentences":
        return {"count": count_phrase(kw["relation"], kw["num_sentences"], "sentence", rng)}
    if iid == "length_constraints:number_words":
        return {"count": count_phrase(kw["relation"], kw["num_words"], "word", rng)}
    if iid == "length_constraints:number_paragraphs":
        return {"paragraphs": plural(kw["num_paragraphs"], "paragraph")}
    if iid == "length_constraints:nth_paragraph_first_word":
        nth = kw["nth_paragraph"]
        return {
            "paragraphs": plural(kw["num_paragraphs"], "paragraph"),
            "nth": str(nth),
            "ordinal": _ORDINALS[nth - 1] if nth <= len(_ORDINALS) else f"{nth}th",
            "first_word": kw["first_word"],
        }
    if iid == "detectable_content:number_placeholders":
        return {"placeholders": _at_least(kw["num_placeholders"], "placeholder", rng)}
    if iid == "detectable_content:postscript":
        return {"marker": kw["postscript_marker"]}
    if iid == "detectable_format:number_bullet_lists":
        return {"bullets": plural(kw["num_bullets"], "bullet point")}
    if iid == "detectable_format:constrained_response":
        from complexif.constraints.instructions import _CONSTRAINED_RESPONSE_OPTIONS

        return {"options": quoted_list(_CONSTRAINED_RESPONSE_OPTIONS, "or")}
    if iid == "detectable_format:number_highlighted_sections":
        return {"sections": _at_least(kw["num_highlights"], "section", rng)}
    if iid == "detectable_format:multiple_sections":
        marker = kw["section_spliter"]
        return {
            "sections": plural(kw["num_sections"], "section"),
            "marker": marker,
            "example": f"{marker} 1",
        }
    if iid == "startend:end_checker":
        return {"phrase": kw["end_phrase"]}
    if iid == "change_case:capital_word_frequency":
        relation, n = kw["capital_relation"], kw["capital_frequency"]
        return {
            "times": count_phrase(relation, n, None, rng),
            "count_caps": count_phrase(relation, n, "all-caps word", rng),
        }
    return {}


def _at_least(n: int, unit: str, rng: random.Random) -> str:
    return plural(n, unit) if n == 1 or rng.random() < 0.5 else f"at least {plural(n, unit)}"


def _finish(sentence: str) -> str:
    text = sentence.strip()
    return text if text[-1] in ".!?\"')]" else text + "."


@dataclass(frozen=True)
class Phrasebook:
    phrasings: Mapping[str, tuple[str, ...]]
    end_phrases: tuple[str, ...]
    section_markers: tuple[str, ...]
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | Path) -> Phrasebook:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(f"{path}: cannot read the constraint phrasings: {exc}") from exc
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a mapping with 'phrasings', got {type(data)}")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<memory>") -> Phrasebook:
        for key in ("phrasings", "end_phrases", "section_markers"):
            if key not in data:
                raise DataError(f"{source}: missing field {key!r}")
        raw = data["phrasings"]
        missing = [iid for iid in INSTRUCTION_IDS if iid not in raw]
        unknown = sorted(set(raw) - set(INSTRUCTION_IDS))
        if missing or unknown:
            raise DataError(f"{source}: phrasings: missing types {missing}, unknown {unknown}")
        phrasings = {}
        for iid in INSTRUCTION_IDS:
            texts = raw[iid]
            if not isinstance(texts, list) or len(texts) < MIN_PHRASINGS:
                raise DataError(
                    f"{source}: phrasings.{iid}: need a list of at least {MIN_PHRASINGS} phrasings"
                )
            allowed = set(_sample_fields(iid))
            for i, text in enumerate(texts):
                used = {f for _, f, _, _ in string.Formatter().parse(text) if f}
                if not used <= allowed:
                    raise DataError(
                        f"{source}: phrasings.{iid}[{i}]: unknown field(s) "
                        f"{sorted(used - allowed)}; this type has {sorted(allowed)}"
                    )
            phrasings[iid] = tuple(texts)
        return cls(
            phrasings=phrasings,
            end_phrases=tuple(data["end_phrases"]),
            section_markers=tuple(data["section_markers"]),
            source=source,
        )

    def render(self, iid: str, kwargs: Mapping[str, Any], rng: random.Random) -> str:
        template = rng.choice(self.phrasings[iid])
        return _finish(template.format(**_fields(iid, kwargs, rng)))


def _sample_fields(iid: str) -> list[str]:
    """The fields ``iid``'s phrasings may use (rendered from representative arguments)."""
    rng = random.Random(0)
    examples: dict[str, dict[str, Any]] = {
        "keywords:existence": {"keywords": ["a", "b"]},
        "keywords:frequency": {"keyword": "a", "frequency": 2, "relation": "at least"},
        "keywords:forbidden_words": {"forbidden_words": ["a", "b"]},
        "keywords:letter_frequency": {
            "letter": "a",
            "let_frequency": 2,
            "let_relation": "at least",
        },
        "language:response_language": {"language": "en"},
        "length_constraints:number_sentences": {"num_sentences": 2, "relation": "at least"},
        "length_constraints:number_words": {"num_words": 2, "relation": "at least"},
        "length_constraints:number_paragraphs": {"num_paragraphs": 2},
        "length_constraints:nth_paragraph_first_word": {
            "num_paragraphs": 2,
            "nth_paragraph": 1,
            "first_word": "a",
        },
        "detectable_content:number_placeholders": {"num_placeholders": 2},
        "detectable_content:postscript": {"postscript_marker": "P.S."},
        "detectable_format:number_bullet_lists": {"num_bullets": 2},
        "detectable_format:number_highlighted_sections": {"num_highlights": 2},
        "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
        "startend:end_checker": {"end_phrase": "a"},
        "change_case:capital_word_frequency": {
            "capital_frequency": 2,
            "capital_relation": "at least",
        },
    }
    return list(_fields(iid, examples.get(iid, {}), rng))
