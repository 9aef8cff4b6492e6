"""How Conifer's steps read the teacher's answers. Each raises ``ParseError`` with a reason the
model is shown once in a repair re-ask; what still fails is ledgered, never guessed."""

from __future__ import annotations

import re
from typing import Any

from complexif.llm.step import ParseError, Row, json_answer

_ITEM = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*\u2022])\s+(.+?)\s*$")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# A leading label, bold or not: "Instruction:", "**Rewritten instruction:**", "**Answer**:".
_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*(?:rewritten instruction|instruction|answer)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
MIN_WORDS = 4
MAX_INSTRUCTION_WORDS = 300


_BOLD_LEAD = re.compile(r"^\*\*([^*\n]+?)(?::\*\*|\*\*:)")


def _clean(text: str) -> str:
    text = _LABEL.sub("", text.strip())
    # Bold or quotes around the whole text, or around a lead-in ("**Budget:** ..."), are
    # decoration; elsewhere they may be the point (a format rule can ask for **bold** terms),
    # so they stay.
    text = _BOLD_LEAD.sub(r"\1:", text)
    for mark in ("**", '"', "'"):
        inner = text[len(mark) : -len(mark)]
        if text.startswith(mark) and text.endswith(mark) and inner.strip() and mark not in inner:
            text = inner.strip()
    return text


def numbered_items(text: str, limit: int) -> list[str]:
    """The numbered or bulleted lines of an answer (at most ``limit``, distinct, >= 4 words)."""
    items: list[str] = []
    for line in text.splitlines():
        if (m := _ITEM.match(line)) is None:
            continue
        item = _clean(m.group(1))
        if len(item.split()) >= MIN_WORDS and item not in items:
            items.append(item)
    if not items:
        raise ParseError(f"expected a numbered list of instructions of at least {MIN_WORDS} words")
    return items[:limit]


def yes_no(row: Row, text: str) -> bool:
    """True for yes, False for no: the first of the two words in the answer."""
    m = _YES_NO.search(text)
    if m is None:
        raise ParseError("expected the single word yes or no")
    return m.group(1).lower() == "yes"


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = re.split(r"\s*[;,]\s*", value)
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for v in value:
        if isinstance(v, str | int | float) and (s := str(v).strip()) and s not in out:
            out.append(s)
    return out


def _constraint_dict(value: Any, min_categories: int) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError("expected an object of category -> list of requirements")
    lists = {str(k).strip(): _as_list(v) for k, v in value.items() if str(k).strip()}
    lists = {k: v for k, v in lists.items() if v}
    if len(lists) < min_categories:
        raise ValueError(
            f"expected at least {min_categories} categories with requirements, got {len(lists)}"
        )
    return lists


def constraint_lists(min_categories: int):
    """The parse for constraint lists: a JSON object {category: [requirements]}."""
    return json_answer(lambda row, value: _constraint_dict(value, min_categories))


def rewritten(row: Row, text: str) -> str:
    """A rewritten instruction: the answer without labels or quotes, of sensible length, and
    not the instruction it was asked to change."""
    out = _clean(text)
    n_words = len(out.split())
    if n_words < MIN_WORDS:
        raise ParseError(f"expected a rewritten instruction, got {n_words} words")
    if n_words > MAX_INSTRUCTION_WORDS:
        raise ParseError(f"expected one instruction, got {n_words} words")
    original = row.get("instruction") or row.get("query") or ""
    if out.strip().lower() == str(original).strip().lower():
        raise ParseError("the instruction came back unchanged; add the requirements to it")
    return out
