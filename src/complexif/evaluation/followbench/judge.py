"""The FollowBench judge as an LLM step: it reads an item's constraint-evolution path and the
answer, and ends with one YES/NO per added constraint (the benchmark's protocol).

What counts: only a last line that is a list of exactly ``level`` YES/NO strings (or, at level
1, a bare YES or NO). Anything else raises :class:`ParseError`; the runner re-asks once with the
reason, then ledgers the item as ``parse_failed``, and it is counted as unparseable, never as
YES or NO (the original scorer added such items as -1 to the sums).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import yaml

from complexif.evaluation.followbench.data import Group, Item
from complexif.llm.prompts import PromptTemplate
from complexif.llm.step import LLMStep, ParseError, Row

PATH_FILE = "followbench_path.yaml"
_LIST = re.compile(r"\[[^\[\]]*\]")
_WORD = re.compile(r"\b(YES|NO)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PathWording:
    """The judge prompt's words for the evolution path (``followbench_path.yaml``)."""

    kinds: Mapping[str, str]
    original: str
    added_one: str
    added_many: str

    @classmethod
    def load(cls, prompts_dir: str | Path) -> PathWording:
        path = Path(prompts_dir) / PATH_FILE
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        try:
            return cls(
                kinds=dict(data["kinds"]),
                original=str(data["original"]),
                added_one=str(data["added_one"]),
                added_many=str(data["added_many"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: needs kinds, original, added_one and added_many") from exc

    def version_text(self) -> str:
        """Folded into the step's prompt version: new wording is never served old verdicts."""
        return repr(sorted(self.kinds.items())) + self.original + self.added_one + self.added_many

    def path_block(self, steps: list[str]) -> str:
        parts = []
        for n, text in enumerate(steps):
            if n == 0:
                heading = self.original
            elif n == 1:
                heading = self.added_one
            else:
                heading = Template(self.added_many).substitute(n=n)
            parts.append(f"{heading}\n{text}")
        return "\n\n".join(parts)


def judge_rows(items: list[tuple[Group, Item, str]]) -> list[dict[str, Any]]:
    """One row per judged item: its id, level, category, evolution path and the answer."""
    return [
        {
            "id": f"{item.id}/followbench_judge",
            "item_id": item.id,
            "category": item.category,
            "level": item.level,
            "path": group.path(item.level),
            "answer": answer,
        }
        for group, item, answer in items
    ]


def parse_verdicts(text: str, level: int) -> tuple[bool, ...]:
    """The YES/NO list on the reply's last non-empty line, exactly ``level`` long."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise ParseError("the reply is empty")
    last = lines[-1]
    found = _LIST.findall(last)
    if not found:
        words = _WORD.findall(last)
        if level == 1 and len(words) == 1 and last.strip(" .'\"*`").upper() in ("YES", "NO"):
            return (words[0].upper() == "YES",)
        raise ParseError(
            f"the last line is not a list of {level} 'YES'/'NO' strings: {last[:120]!r}"
        )
    try:
        value = ast.literal_eval(found[-1])
    except (ValueError, SyntaxError) as exc:
        raise ParseError(
            f"the list on the last line is not a Python list: {found[-1][:120]!r}"
        ) from exc
    if not isinstance(value, list | tuple):
        raise ParseError(f"expected a list, got {found[-1][:120]!r}")
    if len(value) != level:
        raise ParseError(f"the list has {len(value)} element(s); {level} constraint(s) were added")
    verdicts = []
    for element in value:
        word = str(element).strip().upper() if isinstance(element, str) else None
        if word not in ("YES", "NO"):
            raise ParseError(f"list elements must be 'YES' or 'NO', got {element!r}")
        verdicts.append(word == "YES")
    return tuple(verdicts)


def judge_step(
    template: PromptTemplate, wording: PathWording, repair: PromptTemplate | None
) -> LLMStep[tuple[bool, ...]]:
    def prompt(row: Row):
        return template.render_messages(
            kind=wording.kinds.get(row["category"], "constraint"),
            path=wording.path_block(list(row["path"])),
            answer=row["answer"],
            n=row["level"],
        )

    # The path wording is part of the prompt: its text joins the template's in the version.
    versioned = PromptTemplate(template.name, template.text + "\n" + wording.version_text())
    return LLMStep(
        "followbench_judge",
        "judge",
        versioned,
        prompt=prompt,
        parse=lambda row, text: parse_verdicts(text, int(row["level"])),
        repair=repair,
    )
