"""Format and numerical requirements drawn from template lists (``format_numerical.yaml``)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from complexif.config import FormatNumericalConfig
from complexif.io import DataError, read_text

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class RequirementTemplate:
    kind: str  # "format" or "numerical"
    text: str
    choices: dict[str, list[object]] = field(default_factory=dict)
    # Templates of one group contradict each other (two ways to end the reply, a word limit and
    # a word minimum): one instruction never gets two of them.
    group: str | None = None

    def fill(self, rng: random.Random) -> str:
        values = {name: rng.choice(options) for name, options in sorted(self.choices.items())}
        return _SLOT.sub(lambda m: str(values[m.group(1)]), self.text)


def load_requirements(path: str | Path) -> dict[str, list[RequirementTemplate]]:
    """The ``format`` and ``numerical`` lists; errors name the file, the line and the entry."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
        lines = _entry_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with 'format' and 'numerical' lists")
    out: dict[str, list[RequirementTemplate]] = {}
    for kind in ("format", "numerical"):
        entries = data.get(kind)
        if not isinstance(entries, list) or not entries:
            line = lines.get((kind, -1))
            where = f"{path}:{line}" if line else str(path)
            raise DataError(f"{where}: {kind}: expected a non-empty list")
        out[kind] = [
            _template(f"{path}:{lines.get((kind, i), 1)}: {kind}[{i}]", kind, e)
            for i, e in enumerate(entries)
        ]
    return out


def _entry_lines(text: str) -> dict[tuple[str, int], int]:
    """Where each list entry starts, (kind, i) -> line ((kind, -1): the list's key)."""
    root = yaml.compose(text)
    lines: dict[tuple[str, int], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        kind = key.value
        lines[(kind, -1)] = key.start_mark.line + 1
        if isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                lines[(kind, i)] = item.start_mark.line + 1
    return lines


def _template(where: str, kind: str, entry: object) -> RequirementTemplate:
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise DataError(f"{where}: expected {{text: ..., choices: {{name: [values]}}}}")
    unknown = sorted(set(entry) - {"text", "choices", "group"})
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown} (expected text, choices, group)")
    choices = entry.get("choices") or {}
    if not isinstance(choices, dict) or not all(
        isinstance(v, list) and v and all(isinstance(x, str | int | float) for x in v)
        for v in choices.values()
    ):
        raise DataError(f"{where}.choices: expected a mapping of names to non-empty value lists")
    slots = set(_SLOT.findall(entry["text"]))
    if slots != set(choices):
        raise DataError(
            f"{where}: placeholders {sorted(slots)} do not match choices {sorted(choices)}"
        )
    group = entry.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise DataError(f"{where}.group: expected a name")
    return RequirementTemplate(kind, entry["text"], dict(choices), group)


def draw_requirements(
    lists: dict[str, list[RequirementTemplate]], cfg: FormatNumericalConfig, key: str
) -> list[str]:
    """The requirements to add to one instruction ([] when it is not in the sampled share).

    ``key`` seeds the draw, so an instruction always gets the same requirements. At most one
    template of a group is drawn; a draw runs short when the lists have too few compatible ones.
    """
    rng = random.Random(f"{cfg.seed}:{key}")
    if rng.random() >= cfg.fraction:
        return []
    k = rng.choice(cfg.counts)
    n_format = sum(rng.random() < cfg.format_share for _ in range(k))
    used: set[str] = set()
    picked = _pick(rng, lists["format"], n_format, used)
    picked += _pick(rng, lists["numerical"], k - len(picked), used)
    return [t.fill(rng) for t in picked]


def _pick(
    rng: random.Random, templates: list[RequirementTemplate], n: int, used: set[str]
) -> list[RequirementTemplate]:
    picked: list[RequirementTemplate] = []
    for t in rng.sample(templates, len(templates)):
        if len(picked) == n:
            break
        if t.group is None or t.group not in used:
            picked.append(t)
            if t.group is not None:
                used.add(t.group)
    return picked
