"""Program repairs: make a response satisfy one constraint when a careful writer's edit of its
form does it exactly.

A repair changes only the form the constraint is about -- case, commas, a wrapping quotation, a
title, section markers, highlights, bullets, a postscript marker, an end phrase, paragraph breaks at
sentence boundaries -- and keeps every word of the response. It never appends keyword or
placeholder lists, never cuts the text short or deletes words, and never wraps prose in a JSON
stub: such edits satisfy a checker while making the answer worse, and the result would be trained
on as a good answer. Anything that needs different words (keywords, lengths, forbidden words, JSON,
another language, a second answer) is the teacher's job. Every repaired response is re-checked
with the strict checker before it is returned, so a repair that did not work gives ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from complexif.constraints import _util
from complexif.constraints.verify import build, check_instruction

Args = Mapping[str, Any]
_Repair = Callable[[Args, str], "str | None"]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_BULLET_LINE = re.compile(r"^\s*(\*(?!\*)|-)")


def _sentences(text: str) -> list[str]:
    """Sentences of ``text`` by the same punkt model the checkers use (original substrings)."""
    return [text[start:end] for start, end in _util._sentence_tokenizer().span_tokenize(text)]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]


def _split_to(blocks: list[str], n: int) -> list[str] | None:
    """Split blocks at sentence boundaries (largest block first) until there are ``n``."""
    blocks = list(blocks)
    while len(blocks) < n:
        best, best_sents = -1, []
        for i, block in enumerate(blocks):
            sents = _sentences(block)
            if len(sents) > max(1, len(best_sents)):
                best, best_sents = i, sents
        if best < 0:
            return None
        half = len(best_sents) // 2
        blocks[best : best + 1] = [" ".join(best_sents[:half]), " ".join(best_sents[half:])]
    return blocks


# --------------------------------------------------------------------------------------------
# One function per instruction type: (normalized args, failing response) -> candidate or None.


def _lowercase(args: Args, response: str) -> str:
    return response.lower()


def _uppercase(args: Args, response: str) -> str:
    return response.upper()


def _no_comma(args: Args, response: str) -> str:
    # Thousands separators just go ("1,000" -> "1000"); other commas are dropped.
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", response)
    return text.replace(",", "")


def _is_quoted(text: str) -> bool:
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def _end_phrase(args: Args, response: str) -> str:
    phrase = args["end_phrase"]
    body = response.strip()
    if _is_quoted(body):  # keep a wrapping quotation intact: the checker strips it anyway
        return f'"{body[1:-1].rstrip()}\n{phrase}"'
    return f"{body}\n{phrase}" if body else phrase


def _quotation(args: Args, response: str) -> str:
    body = response.strip()
    if not body.startswith('"'):
        body = '"' + body
    if not _is_quoted(body):
        body += '"'
    return body


# A lazy ``(?P<h>.+?)`` before ``[ \t#]*$`` would rescan the line's tail once per character
# (quadratic on a long line); ``.*[^ \t#\n]|.`` is the same shortest capture (up to the last
# character that is not trailing decoration, or one character), found in one pass.
_TITLE_LINE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+(?P<h>.*[^ \t#\n]|.)[ \t#]*|\*\*(?P<b>[^*\n]+)\*\*[ \t]*|"
    r"[Tt]itle:[ \t]*(?P<t>.*[^ \t\n]|.)[ \t]*)$"
)


def _title(args: Args, response: str) -> str | None:
    text = response.strip()
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    m = _TITLE_LINE.match(lines[first])
    if m:  # an existing heading becomes the title, in place
        lines[first] = f"<<{(m.group('h') or m.group('b') or m.group('t')).strip()}>>"
        return "\n".join(lines)
    # Otherwise the title is the opening words of the response, ahead of it.
    words = re.findall(r"[^\s<>]+", lines[first])[:6]
    title = " ".join(words).rstrip(".,;:!?")
    if not title.strip():
        return None
    return f"<<{title}>>\n\n{text}"


def _postscript(args: Args, response: str) -> str | None:
    marker = args["postscript_marker"]
    paragraphs = _paragraphs(response)
    if len(paragraphs) >= 2:  # the closing paragraph becomes the postscript
        paragraphs[-1] = f"{marker} {paragraphs[-1]}"
        return "\n\n".join(paragraphs)
    sentences = _sentences(response.strip())
    if len(sentences) < 2:
        return None
    return f"{' '.join(sentences[:-1])}\n\n{marker} {sentences[-1]}"


def _repeat_prompt(args: Args, response: str) -> str:
    return f"{args['prompt_to_repeat'].strip()}\n\n{response.strip()}"


def _number_paragraphs(args: Args, response: str) -> str | None:
    n = args["num_paragraphs"]
    if n < 1:
        return None
    blocks = [b.strip() for b in re.split(r"\s?\*\*\*\s?", response) if b.strip()]
    if len(blocks) <= 1:
        blocks = _paragraphs(response)
    if len(blocks) > n:  # merge the surplus into the last paragraph
        blocks = [*blocks[: n - 1], "\n\n".join(blocks[n - 1 :])]
    blocks = _split_to(blocks, n)
    return None if blocks is None else "\n\n***\n\n".join(blocks)


def _count_highlights(text: str) -> int:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [
        h
        for h in re.findall(r"\*\*[^\n\*]*\*\*", text)
        if h.removeprefix("**").removesuffix("**").strip()
    ]
    return len(single) + len(double)


# ``(?:.*\S)?`` is the lazy ``.*?`` before ``\s*$`` (the line up to its last non-space) without
# its quadratic rescans of a long run of spaces.
_LINE_PREFIX = re.compile(r"^(?P<prefix>\s*(?:#{1,6}\s+|\d+[.)]\s+|-\s+)?)(?P<body>(?:.*\S)?)\s*$")


def _highlights(args: Args, response: str) -> str | None:
    need = args["num_highlights"] - _count_highlights(response)
    lines = response.split("\n")
    in_code = False
    headings, plain = [], []
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or "*" in line or not line.strip():
            continue
        (headings if line.lstrip().startswith("#") else plain).append(i)
    chosen = (headings + plain)[:need]
    if len(chosen) < need:
        return None
    for i in chosen:
        m = _LINE_PREFIX.match(lines[i])
        prefix, body = m.group("prefix"), m.group("body")
        if not body:
            return None
        if prefix.strip():  # "## Heading" -> "## *Heading*"
            lines[i] = f"{prefix}*{body}*"
            continue
        # Plain text: emphasise its first sentence. "**" (not "*") at the start of a line, or
        # the bullet-list checker would count the line as a "* " bullet.
        first = re.match(r"(.+?[.!?])(\s+|$)", body)
        head = first.group(1) if first else body
        lines[i] = prefix + f"**{head}**" + body[len(head) :]
    return "\n".join(lines)


def _sections(args: Args, response: str) -> str | None:
    spliter, n = args["section_spliter"], args["num_sections"]
    header = re.compile(r"^\s*" + spliter + r"\s?\d+\s*[:.]?\s*$")
    kept = "\n".join(line for line in response.split("\n") if not header.match(line))
    blocks = _split_to(_paragraphs(kept), n) if n > 0 else None
    if not blocks:
        return None
    # Consecutive paragraphs, as evenly as possible, one group per section.
    size, extra = divmod(len(blocks), n)
    groups, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        groups.append("\n\n".join(blocks[start:end]))
        start = end
    return "\n\n".join(f"{spliter} {i + 1}\n{g}" for i, g in enumerate(groups))


def _bullets(args: Args, response: str) -> str | None:
    n = args["num_bullets"]
    lines = response.split("\n")
    bullet_idx = [i for i, line in enumerate(lines) if _BULLET_LINE.match(line)]
    if len(bullet_idx) > n:
        # Horizontal rules ("---") count as bullets but are not items: drop those first.
        rules = [i for i in bullet_idx if re.fullmatch(r"\s*-{3,}\s*", lines[i])]
        items = [i for i in bullet_idx if i not in rules]
        for i in (rules + items[::-1])[: len(bullet_idx) - n]:
            lines[i] = re.sub(r"^\s*(?:-+|\*)\s*", "", lines[i])
        return "\n".join(lines)
    need = n - len(bullet_idx)
    paragraphs = _PARAGRAPH_BREAK.split(response.strip())
    for p in range(len(paragraphs) - 1, -1, -1):
        if need == 0:
            break
        para = paragraphs[p]
        if any(_BULLET_LINE.match(x) or x.lstrip().startswith("#") for x in para.split("\n")):
            continue
        sents = [s.strip() for s in _sentences(para.replace("\n", " ")) if s.strip()]
        if not sents:
            continue
        take = min(need, len(sents))
        lead = " ".join(sents[:-take])
        items = "\n".join(f"* {s}" for s in sents[-take:])
        paragraphs[p] = f"{lead}\n{items}" if lead else items
        need -= take
    return "\n\n".join(paragraphs) if need == 0 else None


_REPAIRS: dict[str, _Repair] = {
    "change_case:english_lowercase": _lowercase,
    "change_case:english_capital": _uppercase,
    "punctuation:no_comma": _no_comma,
    "startend:end_checker": _end_phrase,
    "startend:quotation": _quotation,
    "detectable_format:title": _title,
    "detectable_content:postscript": _postscript,
    "combination:repeat_prompt": _repeat_prompt,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:multiple_sections": _sections,
    "detectable_format:number_bullet_lists": _bullets,
}

REPAIRABLE_IDS: frozenset[str] = frozenset(_REPAIRS)


def repair(
    instruction_id: str, kwargs: Mapping[str, Any] | None, response: str, prompt: str = ""
) -> str | None:
    """``response`` changed just enough to pass the strict check, or ``None`` if no exact repair.

    A response that already passes is returned unchanged. Unknown ids and bad arguments raise.
    """
    instruction = build(instruction_id, kwargs)
    if check_instruction(instruction, response):
        return response
    fix = _REPAIRS.get(instruction_id)
    if fix is None:
        return None
    candidate = fix(instruction.get_instruction_args() or {}, response)
    if candidate is None or not check_instruction(instruction, candidate):
        return None
    return candidate
