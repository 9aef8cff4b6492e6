"""FollowBench data: the six category files, validated, as groups of instructions by level.

A group is one (category, example_id): its instructions at levels 0..5 are the benchmark's
constraint-evolution path (level k = the initial instruction plus k constraints). Only levels
1..5 are evaluated; level 0 (absent in the example file) is the unconstrained start the judge
is shown. ``Item.category`` is always the file's category; the item's own ``category`` field,
which in the mixed file lists the kinds of constraint added so far, is kept as ``kinds``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.io import DataError

# src/complexif/evaluation/followbench/data.py -> repository root
DEFAULT_DIRECTORY = Path(__file__).resolve().parents[4] / "data/benchmarks/followbench"

CATEGORIES = ("content", "situation", "style", "format", "example", "mixed")
LEVELS = (1, 2, 3, 4, 5)  # the evaluated levels
MAX_LEVEL = LEVELS[-1]

# Field -> type; bool is excluded from int separately (JSON true would pass isinstance(int)).
_FIELDS: dict[str, type] = {
    "example_id": int,
    "category": str,
    "source": str,
    "level": int,
    "instruction": str,
    "target": str,
}


@dataclass(frozen=True)
class Item:
    category: str  # the file's category
    example_id: int
    level: int
    source: str
    instruction: str
    target: str  # may be empty (most judged items have none)
    kinds: str  # the item's own 'category' field

    @property
    def id(self) -> str:
        return f"{self.category}/{self.example_id}/{self.level}"


@dataclass(frozen=True)
class Group:
    category: str
    example_id: int
    items: tuple[Item, ...]  # sorted by level

    def path(self, level: int) -> list[str]:
        """The instructions of levels 0..``level`` that exist, in order: the evolution the judge
        sees, ending with the instruction of ``level`` itself."""
        self.item(level)  # a level the group lacks is an error, not a shorter path
        return [item.instruction for item in self.items if item.level <= level]

    def item(self, level: int) -> Item:
        for item in self.items:
            if item.level == level:
                return item
        raise KeyError(f"{self.category}/{self.example_id} has no level {level}")


def file_name(category: str) -> str:
    return f"{category}_constraints.json"


def load_followbench(
    directory: str | Path = DEFAULT_DIRECTORY, categories: Iterable[str] = CATEGORIES
) -> list[Group]:
    """Load and validate the named categories' files; groups in (category, example_id) order."""
    categories = tuple(categories)
    unknown = [name for name in categories if name not in CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown FollowBench categor{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; valid: {', '.join(CATEGORIES)}"
        )
    groups: list[Group] = []
    for category in sorted(set(categories), key=CATEGORIES.index):
        groups.extend(_load_file(Path(directory) / file_name(category), category))
    return groups


def _load_file(path: Path, category: str) -> list[Group]:
    if not path.is_file():
        raise DataError(f"{path}: FollowBench file not found")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty JSON array of items")

    by_group: dict[int, dict[int, Item]] = {}
    first_index: dict[tuple[int, int], int] = {}
    for index, record in enumerate(records):
        item = _parse_item(path, index, record, category)
        key = (item.example_id, item.level)
        if key in first_index:
            raise DataError(
                f"{path}: item {index}: example_id {item.example_id} level {item.level} "
                f"repeats item {first_index[key]}"
            )
        first_index[key] = index
        by_group.setdefault(item.example_id, {})[item.level] = item

    groups = []
    for example_id in sorted(by_group):
        levels = by_group[example_id]
        missing = [level for level in LEVELS if level not in levels]
        if missing:
            raise DataError(
                f"{path}: example_id {example_id} lacks level(s) {', '.join(map(str, missing))} "
                f"(every group needs levels {LEVELS[0]}..{MAX_LEVEL})"
            )
        items = tuple(levels[level] for level in sorted(levels))
        groups.append(Group(category=category, example_id=example_id, items=items))
    return groups


def _parse_item(path: Path, index: int, record: Any, category: str) -> Item:
    where = f"{path}: item {index}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name, typ in _FIELDS.items():
        if name not in record:
            raise DataError(f"{where}: field {name!r} is missing")
        value = record[name]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise DataError(
                f"{where}: field {name!r} must be {typ.__name__}, got {type(value).__name__}"
            )
    level = record["level"]
    if not 0 <= level <= MAX_LEVEL:
        raise DataError(f"{where}: field 'level' must be 0..{MAX_LEVEL}, got {level}")
    if level > 0 and not record["instruction"].strip():
        raise DataError(f"{where}: field 'instruction' is empty at level {level}")
    # Outside the mixed file the item's category must be the file's: a mismatch means a
    # renamed or swapped file, which would silently score one category as another.
    if category != "mixed" and record["category"] != category:
        raise DataError(
            f"{where}: field 'category' is {record['category']!r} in the {category} file"
        )
    if category == "example" and "{answer}" not in record["target"]:
        raise DataError(f"{where}: field 'target' has no {{answer}} placeholder")
    return Item(
        category=category,
        example_id=record["example_id"],
        level=level,
        source=record["source"],
        instruction=record["instruction"],
        target=record["target"],
        kinds=record["category"],
    )


def select_groups(groups: Sequence[Group], per_category: int | None, seed: int) -> list[Group]:
    """A seeded sample of at most ``per_category`` groups from each category (None = all).

    Each category is shuffled by its own generator, seeded by (seed, category), from the
    groups sorted by example_id: so the sample ignores the input order and which other
    categories are present, and a larger ``per_category`` keeps the smaller one's groups.
    The result is sorted by (category order, example_id).
    """
    if per_category is not None and per_category < 0:
        raise ValueError(f"per_category must be >= 0 or None, got {per_category}")
    by_category: dict[str, list[Group]] = {}
    seen: set[tuple[str, int]] = set()
    for group in groups:
        key = (group.category, group.example_id)
        if key in seen:
            raise ValueError(f"group {group.category}/{group.example_id} given twice")
        seen.add(key)
        by_category.setdefault(group.category, []).append(group)

    chosen: list[Group] = []
    for category, members in by_category.items():
        members = sorted(members, key=lambda group: group.example_id)
        if per_category is not None:
            # A str seed is hashed with SHA-512 by random, so it is stable across runs.
            random.Random(f"followbench/{seed}/{category}").shuffle(members)
            members = members[:per_category]
        chosen.extend(members)
    return sorted(chosen, key=_group_order)


def _group_order(group: Group) -> tuple[int, str, int]:
    # Unknown categories (hand-built groups) sort after the benchmark's, by name.
    rank = CATEGORIES.index(group.category) if group.category in CATEGORIES else len(CATEGORIES)
    return rank, group.category, group.example_id


def evaluated_items(groups: Iterable[Group]) -> list[Item]:
    """The items of levels 1..5, group by group, by level."""
    return [item for group in groups for item in group.items if item.level >= LEVELS[0]]
