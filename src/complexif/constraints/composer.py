"""Compose complex instructions: a seed request plus k verifiable IFEval constraints.

Following From-Complex-to-Simple (He et al. 2024), ``compose`` picks k distinct instruction types
that do not conflict, samples their arguments, and appends one natural phrasing of each to the seed
text. The phrasings are our own (:mod:`complexif.constraints.phrasing`), never IFEval's sentences,
and arguments fit the seed: keywords, forbidden words and a paragraph's first word are content
words of the seed itself; end phrases and section markers come from our own pools.

Beyond the official conflict table we avoid combinations whose checkers cannot all pass:

- ``combination:repeat_prompt`` with ``punctuation:no_comma``: a verbatim repetition of a
  request containing a comma (or of the title/keyword descriptions, which contain commas) breaks
  the no-comma rule.
- ``change_case:english_lowercase`` with ``detectable_format:multiple_sections``: both section
  markers are capitalised and the section check is case-sensitive.
- With ``change_case:english_capital`` the section marker is always ``SECTION``.
- ``length_constraints:number_sentences`` "less than 1" is impossible (a non-blank response has a
  sentence), so "less than" thresholds start at 2; so do the other "less than" counts (keyword,
  letter and all-caps word frequency), where "fewer than 1" is a roundabout "never".
- Literal text one checker requires (keywords, end phrase, postscript marker, section markers,
  first word, the repeated request) must not break a budget set by another (forbidden words,
  "less than" keyword/letter/capital-word counts, no commas); arguments are redrawn until it fits.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from complexif.constraints import _util
from complexif.constraints.phrasing import Phrasebook
from complexif.constraints.registry import CONFLICTS, INSTRUCTION_IDS, get_instruction_class
from complexif.constraints.sampling import sample_kwargs
from complexif.constraints.seed_words import seed_keywords

REPEAT_PROMPT = "combination:repeat_prompt"
NO_COMMA = "punctuation:no_comma"
LOWERCASE = "change_case:english_lowercase"
CAPITAL = "change_case:english_capital"
SECTIONS = "detectable_format:multiple_sections"
SENTENCES = "length_constraints:number_sentences"

# Pairs the official table allows but no response can satisfy (see module docstring).
EXTRA_CONFLICTS: frozenset[frozenset[str]] = frozenset(
    {frozenset({REPEAT_PROMPT, NO_COMMA}), frozenset({LOWERCASE, SECTIONS})}
)

# How often to redraw arguments before giving up on a set of instruction ids.
_MAX_ATTEMPTS = 200


@dataclass
class ComposedInstruction:
    """A seed request with constraints; ``descriptions[i]`` describes ``instruction_id_list[i]``."""

    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]
    descriptions: list[str]
    prompt: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def composer_conflicts(a: str, b: str) -> bool:
    """Official conflict or one of :data:`EXTRA_CONFLICTS`."""
    return b in CONFLICTS[a] or frozenset({a, b}) in EXTRA_CONFLICTS


def sample_k(distribution: Mapping[int, float], rng: random.Random) -> int:
    """Draw a constraint count from ``{k: weight}`` (weights need not sum to 1)."""
    if not distribution:
        raise ValueError("distribution over k is empty")
    for k, weight in distribution.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"distribution keys must be integers >= 1, got {k!r}")
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight for k={k} must be a finite number >= 0, got {weight!r}")
    keys = sorted(distribution)  # fixed order so a seed always gives the same draw
    weights = [float(distribution[k]) for k in keys]
    if sum(weights) <= 0:
        raise ValueError("distribution over k has no positive weight")
    return rng.choices(keys, weights=weights, k=1)[0]


def _pick_ids(candidates: list[str], k: int, rng: random.Random) -> list[str] | None:
    """k pairwise non-conflicting ids in random order, or None if no such set exists.

    Depth-first search over a shuffled candidate list: the first set found is random, and an
    exhausted search proves impossibility. The bound ``chosen + still-compatible >= k`` keeps it
    fast even when k is infeasible.
    """
    order = list(candidates)
    rng.shuffle(order)

    def search(chosen: list[str], pool: list[str]) -> list[str] | None:
        if len(chosen) == k:
            return chosen
        for i, cand in enumerate(pool):
            rest = [c for c in pool[i + 1 :] if not composer_conflicts(cand, c)]
            if len(chosen) + 1 + len(rest) < k:
                continue
            found = search([*chosen, cand], rest)
            if found is not None:
                return found
        return None

    return search([], order)


# "less than" count arguments that must start at 2, and their upper sampling bound.
_LESS_THAN_COUNTS = {
    SENTENCES: ("relation", "num_sentences", 20),
    "keywords:frequency": ("relation", "frequency", 3),
    "keywords:letter_frequency": ("let_relation", "let_frequency", 10),
    "change_case:capital_word_frequency": ("capital_relation", "capital_frequency", 20),
}


def _sample_args(
    ids: list[str], rng: random.Random, seed_text: str, phrasebook: Phrasebook
) -> list[dict[str, Any]]:
    kwargs = [sample_kwargs(iid, rng, prompt=seed_text) for iid in ids]
    words = seed_keywords(seed_text)
    for iid, kw in zip(ids, kwargs, strict=True):
        if iid in _LESS_THAN_COUNTS:
            rel, count, top = _LESS_THAN_COUNTS[iid]
            if kw[rel] == "less than" and kw[count] < 2:
                kw[count] = rng.randint(2, top)
        if iid == "keywords:existence" and len(words) >= len(kw["keywords"]):
            kw["keywords"] = sorted(rng.sample(words, len(kw["keywords"])))
        elif iid == "keywords:forbidden_words" and len(words) >= len(kw["forbidden_words"]):
            kw["forbidden_words"] = sorted(rng.sample(words, len(kw["forbidden_words"])))
        elif iid == "keywords:frequency" and words:
            kw["keyword"] = rng.choice(words)
        elif iid == "length_constraints:nth_paragraph_first_word" and words:
            kw["first_word"] = rng.choice(words)
        elif iid == "startend:end_checker":
            kw["end_phrase"] = rng.choice(phrasebook.end_phrases)
        elif iid == SECTIONS:
            marker = rng.choice(phrasebook.section_markers)
            kw["section_spliter"] = marker.upper() if CAPITAL in ids else marker
    return kwargs


def _required_fragments(iid: str, kw: Mapping[str, Any]) -> list[str]:
    """Literal text any response satisfying ``iid`` must contain (with multiplicity)."""
    if iid == "keywords:existence":
        return list(kw["keywords"])
    if iid == "keywords:frequency" and kw["relation"] == "at least":
        return [kw["keyword"]] * kw["frequency"]
    if iid == "length_constraints:nth_paragraph_first_word":
        return [kw["first_word"]]
    if iid == "startend:end_checker":
        return [kw["end_phrase"]]
    if iid == "detectable_content:postscript":
        return [kw["postscript_marker"]]
    if iid == SECTIONS:
        return [kw["section_spliter"]] * kw["num_sections"]
    if iid == REPEAT_PROMPT:
        return [kw["prompt_to_repeat"]]
    return []


def _budget_ok(iid: str, kw: Mapping[str, Any], fragments: list[str]) -> bool:
    """Whether the other constraints' required text leaves ``iid`` satisfiable."""
    if iid == "keywords:forbidden_words":
        return not any(
            re.search(r"\b" + word + r"\b", frag, flags=re.IGNORECASE)
            for word in kw["forbidden_words"]
            for frag in fragments
        )
    if iid == "keywords:frequency" and kw["relation"] == "less than":
        used = sum(len(re.findall(kw["keyword"], f, flags=re.IGNORECASE)) for f in fragments)
        return used < kw["frequency"]
    if iid == "keywords:letter_frequency" and kw["let_relation"] == "less than":
        used = sum(f.lower().count(kw["letter"]) for f in fragments)
        return used < kw["let_frequency"]
    if iid == "change_case:capital_word_frequency" and kw["capital_relation"] == "less than":
        used = sum(1 for f in fragments for w in _util.word_tokenize(f) if w.isupper())
        return used < kw["capital_frequency"]
    if iid == NO_COMMA:
        return not any("," in f for f in fragments)
    return True


def _args_feasible(ids: list[str], kwargs: list[dict[str, Any]]) -> bool:
    for i, (iid, kw) in enumerate(zip(ids, kwargs, strict=True)):
        others = [
            frag
            for j, (other, other_kw) in enumerate(zip(ids, kwargs, strict=True))
            if j != i
            for frag in _required_fragments(other, other_kw)
        ]
        if not _budget_ok(iid, kw, others):
            return False
    return True


def compose(
    seed_text: str,
    k: int,
    rng: random.Random,
    phrasebook: Phrasebook,
    allowed_ids: Sequence[str] | None = None,
) -> ComposedInstruction:
    """Attach ``k`` compatible constraints to ``seed_text``, each worded by ``phrasebook``.

    The prompt is the seed text, a blank line, then one description per line; the
    ``repeat_prompt`` description (if any) comes last and its ``prompt_to_repeat`` is the seed
    text, which is exactly how the composed prompt starts -- so a response that repeats the seed
    (or the whole request before that sentence) passes its checker.
    """
    if not isinstance(seed_text, str) or not seed_text.strip():
        raise ValueError("seed_text must be a non-empty string")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    seed = seed_text.strip()
    pool = list(INSTRUCTION_IDS if allowed_ids is None else dict.fromkeys(allowed_ids))
    for iid in pool:
        get_instruction_class(iid)  # unknown ids fail here with a suggestion
    if len(pool) < k:
        raise ValueError(f"cannot pick {k} distinct instructions from {len(pool)} allowed ids")

    for _ in range(_MAX_ATTEMPTS):
        ids = _pick_ids(pool, k, rng)
        if ids is None:
            raise ValueError(
                f"no {k} pairwise non-conflicting instructions exist among {sorted(pool)}"
            )
        # The repeat sentence must come last: the request to repeat is everything before it.
        ids.sort(key=lambda iid: iid == REPEAT_PROMPT)
        kwargs = _sample_args(ids, rng, seed, phrasebook)
        if _args_feasible(ids, kwargs):
            break
    else:
        raise ValueError(
            f"could not sample satisfiable arguments for {k} instructions from {sorted(pool)} "
            f"in {_MAX_ATTEMPTS} attempts"
        )

    descriptions = [phrasebook.render(iid, kw, rng) for iid, kw in zip(ids, kwargs, strict=True)]
    prompt = seed + "\n\n" + "\n".join(descriptions)
    return ComposedInstruction(
        instruction_id_list=ids, kwargs=kwargs, descriptions=descriptions, prompt=prompt
    )
