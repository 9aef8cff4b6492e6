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

    def fill(self, rng: random.Random) -> str:
        values = {name: rng.choice(options) for name, options in sorted(self.choices.items())}
        return _SLOT.sub(lambda m: str(values[m.group(1)]), self.text)


def load_requirements(path: str | Path) -> dict[str, list[RequirementTemplate]]:
    """The ``format`` and ``numerical`` lists; errors name the file and the entry."""
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with 'format' and 'numerical' lists")
    out: dict[str, list[RequirementTemplate]] = {}
    for kind in ("format", "numerical"):
        entries = data.get(kind)
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{path}: {kind}: expected a non-empty list")
        out[kind] = [_template(path, kind, i, e) for i, e in enumerate(entries)]
    return out


def _template(path: str | Path, kind: str, i: int, entry: object) -> RequirementTemplate:
    where = f"{path}: {kind}[{i}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise DataError(f"{where}: expected {{text: ..., choices: {{name: [values]}}}}")
    choices = entry.get("choices") or {}
    if not isinstance(choices, dict) or not all(
        isinstance(v, list) and v for v in choices.values()
    ):
        raise DataError(f"{where}.choices: expected a mapping of names to non-empty lists")
    slots = set(_SLOT.findall(entry["text"]))
    if slots != set(choices):
        raise DataError(
            f"{where}: placeholders {sorted(slots)} do not match choices {sorted(choices)}"
        )
    return RequirementTemplate(kind, entry["text"], dict(choices))


def draw_requirements(
    lists: dict[str, list[RequirementTemplate]], cfg: FormatNumericalConfig, key: str
) -> list[str]:
    """The requirements to add to one instruction ([] when it is not in the sampled share).

    ``key`` seeds the draw, so an instruction always gets the same requirements.
    """
    rng = random.Random(f"{cfg.seed}:{key}")
    if rng.random() >= cfg.fraction:
        return []
    k = rng.choice(cfg.counts)
    n_format = sum(rng.random() < cfg.format_share for _ in range(k))
    n_format = min(n_format, len(lists["format"]))
    n_num = min(k - n_format, len(lists["numerical"]))
    picked = rng.sample(lists["format"], n_format) + rng.sample(lists["numerical"], n_num)
    return [t.fill(rng) for t in picked]
