"""Text that satisfies a checker while making an answer worse: never a training target.

Older program repairs wrote such text (a trailing ``Keywords: a; b.`` line, a row of
``[name] [address]`` placeholders, the answer wrapped as ``{"response": ...}``), and answers cut off
by the token limit end mid-thought. The SFT and DPO gates run :func:`find_artifacts` on every
target and ``chosen`` answer and name the rows that carry one.
"""

from __future__ import annotations

import json
import re

KEYWORD_LIST = "keyword_list"
PLACEHOLDER_TAIL = "placeholder_tail"
JSON_STUB = "json_stub"
CUT_OFF = "cut_off"

_KEYWORD_LINE = re.compile(r"(?im)^[ \t]*(?:key ?words?|keywords used)[ \t]*:[^\n]*$")
_PLACEHOLDER_LINE = re.compile(r"^[ \t]*(?:\[[^\]\n]*\][ \t,;]*){2,}$")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def _json_stub(text: str) -> bool:
    body = _FENCE.sub("", text.strip())
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and set(value) == {"response"}


def find_artifacts(text: str, finish_reason: str | None = None) -> list[str]:
    """The artifact kinds in ``text`` (empty when it is clean)."""
    found = []
    if _KEYWORD_LINE.search(text):
        found.append(KEYWORD_LIST)
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if lines and _PLACEHOLDER_LINE.match(lines[-1]):
        found.append(PLACEHOLDER_TAIL)
    if _json_stub(text):
        found.append(JSON_STUB)
    if finish_reason == "length":
        found.append(CUT_OFF)
    return found
