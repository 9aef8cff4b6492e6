"""Test helper: write a response meant to satisfy a list of IFEval constraints.

It builds the text from the constraints' own arguments (title, sections, bullets, keywords,
markers...) around filler sentences made of words from the official keyword pool that avoid
every forbidden word / letter / keyword budget, then grows the filler until word and sentence
minimums are met. It does not write other languages, so ``response_language`` is out of scope.
Used to test that composed constraints are satisfiable and that our verdicts on "good"
responses match the reference implementation.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from complexif.constraints import _util, verify


class _Spec:
    """Normalized arguments per instruction type (a prompt may repeat a type)."""

    def __init__(self, ids: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None]):
        self.items = [
            (iid.split(":")[1], verify.build(iid, kw).get_instruction_args() or {})
            for iid, kw in zip(ids, kwargs_list, strict=True)
        ]

        self.vocab = [x for x in _allowed(self, _util.WORD_LIST) if len(x) >= 3] or ["zzz"]
        # Common English glue words make langdetect confident, when budgets allow them.
        self.glue = _allowed(self, ["the", "and", "with"])

    def all(self, name: str) -> list[dict[str, Any]]:
        return [args for n, args in self.items if n == name]

    def has(self, name: str) -> bool:
        return bool(self.all(name))

    def first(self, name: str) -> dict[str, Any] | None:
        found = self.all(name)
        return found[0] if found else None

    def bounds(self, name: str, value_key: str, rel_key: str) -> tuple[int, int | None]:
        """(largest "at least", smallest "less than") over all instances of ``name``."""
        low = max((a[value_key] for a in self.all(name) if a[rel_key] == "at least"), default=0)
        highs = [a[value_key] for a in self.all(name) if a[rel_key] == "less than"]
        return low, (min(highs) if highs else None)


def _allowed(spec: _Spec, words: Sequence[str]) -> list[str]:
    """Words that break no forbidden-word, letter "less than" or keyword budget."""
    patterns = [w for a in spec.all("forbidden_words") for w in a["forbidden_words"]]
    patterns += [a["keyword"] for a in spec.all("frequency")]  # placed deliberately
    avoid = {a["letter"] for a in spec.all("letter_frequency") if a["let_relation"] == "less than"}
    combined = (
        re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
    )
    return [w for w in words if not (avoid & set(w)) and not (combined and combined.search(w))]


class _Writer:
    def __init__(self, spec: _Spec, seed: int, punct: bool):
        self.rng = random.Random(seed)
        self.vocab = spec.vocab
        self.punct = punct
        self.glue = spec.glue

    def words(self, n: int) -> list[str]:
        return [self.rng.choice(self.vocab) for _ in range(n)]

    def sentence(self, extra: Sequence[str] = (), n: int = 5) -> str:
        words = self.words(n)
        if self.glue:
            words.insert(1, self.rng.choice(self.glue))
        for i, token in enumerate(extra):
            words.insert(min(2 + 2 * i, len(words)), token)
        words[0] = words[0].capitalize()
        return " ".join(words) + ("." if self.punct else "")


def _carriers(spec: _Spec, w: _Writer) -> list[str]:
    """Sentences carrying tokens that must appear a number of times."""
    out: list[str] = []
    for a in spec.all("existence"):
        out.append(w.sentence(a["keywords"]))
    for a in spec.all("frequency"):
        if a["relation"] == "at least":
            out.append(w.sentence([a["keyword"]] * a["frequency"]))
    for a in spec.all("number_placeholders"):
        out.append(w.sentence([f"[{x}]" for x in w.words(a["num_placeholders"])]))
    for a in spec.all("number_highlighted_sections"):
        out += [w.sentence(["*" + " ".join(w.words(2)) + "*"]) for _ in range(a["num_highlights"])]
    for a in spec.all("letter_frequency"):
        if a["let_relation"] == "at least":
            out.append(w.sentence([a["letter"] * a["let_frequency"]]))
    low, _ = spec.bounds("capital_word_frequency", "capital_frequency", "capital_relation")
    if low > 0:
        out.append(w.sentence([x.upper() for x in w.words(low)]))
    return out


def _build(spec: _Spec, seed: int, base: int, punct: bool, extra: int) -> str:
    w = _Writer(spec, seed, punct)
    block = _carriers(spec, w)
    for a in spec.all("multiple_sections"):
        for i in range(a["num_sections"]):
            block += [f"{a['section_spliter']} {i + 1}", w.sentence()]
    for a in spec.all("number_bullet_lists"):
        block += [f"* {w.sentence()}" for _ in range(a["num_bullets"])]

    star = spec.first("number_paragraphs")
    nth = spec.first("nth_paragraph_first_word")
    n_par = star["num_paragraphs"] if star else nth["num_paragraphs"] if nth else 1
    paragraphs = [[" ".join(w.sentence() for _ in range(base))] for _ in range(max(n_par, 1))]
    # Structured lines follow the opening sentence, which keeps any required first word.
    paragraphs[0] = paragraphs[0][:1] + block + paragraphs[0][1:]
    paragraphs[-1] += [w.sentence() for _ in range(extra)]
    if nth:
        lines = paragraphs[nth["nth_paragraph"] - 1]
        lines[0] = f"{nth['first_word']} {lines[0][0].lower()}{lines[0][1:]}"
    if spec.has("title"):
        title = "<<" + " ".join(w.words(3)).title() + ">>"
        paragraphs[0].insert(1 if nth and nth["nth_paragraph"] == 1 else 0, title)
    for a in spec.all("postscript"):
        paragraphs[-1].append(f"{a['postscript_marker']} {w.sentence()}")
    for a in spec.all("end_checker"):
        paragraphs[-1].append(a["end_phrase"])

    text = ("\n***\n" if star else "\n\n").join("\n".join(lines) for lines in paragraphs)
    if spec.has("two_responses"):
        other = _Writer(spec, seed + 1, punct)
        text = f"{text}\n******\n{other.sentence()} {other.sentence()}"
    for a in spec.all("repeat_prompt"):
        text = f"{a['prompt_to_repeat']}\n\n{text}"
    if spec.has("constrained_response"):
        text = "My answer is yes."
    if spec.has("json_format"):
        text = json.dumps({w.words(1)[0]: text}, indent=2)
    if spec.has("english_lowercase"):
        text = text.lower()
    if spec.has("english_capital"):
        text = text.upper()
    if spec.has("quotation"):
        # A leading bullet needs its own line to stay a bullet; a first word must not.
        # (a newline before the closing quote would hide an end phrase from its checker).
        text = f'"\n{text}"' if text[:1] in "*-" else f'"{text}"'
    return text


def _deficit(spec: _Spec, text: str) -> int:
    """Filler sentences still needed for word / sentence minimums (about 6 words each)."""
    words_low, _ = spec.bounds("number_words", "num_words", "relation")
    sents_low, _ = spec.bounds("number_sentences", "num_sentences", "relation")
    need_words = max(0, words_low - _util.count_words(text))
    need_sents = max(0, sents_low - _util.count_sentences(text))
    return max(-(-need_words // 6), need_sents)


def synthesize(
    ids: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None], seed: int = 0
) -> tuple[str, bool]:
    """(response, whether it passes every constraint strictly)."""
    spec = _Spec(ids, kwargs_list)
    first = None
    knobs = list(itertools.product(range(3), (2, 1, 3), (True, False)))
    if spec.has("response_language"):
        knobs = knobs[:1]  # we only write English: one try is enough
    for offset, base, punct in knobs:
        extra = 0
        for _ in range(4):
            text = _build(spec, seed + offset, base, punct, extra)
            first = first if first is not None else text
            if all(verify.check_all(ids, kwargs_list, text)):
                return text, True
            grow = _deficit(spec, text)
            if grow <= 0:
                break
            extra += grow
    return first, False
