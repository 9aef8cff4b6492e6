"""Content words of a seed request: keywords that fit what the request is about.

From Complex to Simple picks keywords that suit the seed instead of random dictionary words, so a
keyword constraint asks for something a good answer would plausibly say (or plausibly has to
avoid). Offline we take them from the seed's own text: alphabetic words of four letters or more
that are not function words, in order of first use.
"""

from __future__ import annotations

import re

MIN_LETTERS = 4

# Function words and request boilerplate ("write", "describe") that say nothing about the topic.
_STOPWORDS = frozenset(
    """
    about above after again against also among another answer around because been before being
    below between both came come could does doing down during each either else even every from
    further have having here into just least less like made make many more most much must need
    never next once only other over please same should since some such than that their them then
    there these they this those though through under until upon very want were what when where
    which while whom whose will with within without would your yours yourself tell give write
    explain describe draft compose create list short brief text words word used
    using make give someone something things thing reply response request question following
    """.split()
)

_WORD = re.compile(r"[A-Za-z]+")


def seed_keywords(text: str) -> list[str]:
    """Distinct lowercase content words of ``text``, in order of first appearance."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text):
        w = word.lower()
        if len(w) >= MIN_LETTERS and w not in _STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)
