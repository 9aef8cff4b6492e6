"""FollowBench data: the shipped files, loader errors on malformed files, groups and their
evolution paths, and the seeded group sample."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from complexif.evaluation.followbench import data
from complexif.evaluation.followbench.data import CATEGORIES, Group
from complexif.io import DataError


@pytest.fixture(scope="module")
def groups() -> list[Group]:
    return data.load_followbench()


def record(example_id: int, level: int, category: str = "style", **changes: Any) -> dict:
    rec = {
        "example_id": example_id,
        "category": category,
        "source": "oasst",
        "level": level,
        "instruction": f"Write a poem. (+{level} constraints)",
        "target": "",
    }
    return {**rec, **changes}


def group_records(example_id: int, category: str = "style", levels=range(6)) -> list[dict]:
    return [record(example_id, level, category) for level in levels]


def write(directory: Path, category: str, records: Any) -> Path:
    path = directory / data.file_name(category)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


# -- the shipped data --------------------------------------------------------------------------


def test_shipped_files(groups: list[Group]) -> None:
    per_category = {c: sum(g.category == c for g in groups) for c in CATEGORIES}
    assert per_category == {
        "content": 25,
        "situation": 22,
        "style": 30,
        "format": 30,
        "example": 40,
        "mixed": 17,
    }
    assert [(g.category, g.example_id) for g in groups] == sorted(
        ((g.category, g.example_id) for g in groups),
        key=lambda key: (CATEGORIES.index(key[0]), key[1]),
    )
    items = data.evaluated_items(groups)
    assert len(items) == 820 and {i.level for i in items} == {1, 2, 3, 4, 5}
    assert len({i.id for i in items}) == 820
    mixed = next(g for g in groups if g.category == "mixed" and g.example_id == 12)
    assert mixed.item(2).kinds == "format, format" and mixed.item(2).category == "mixed"
    assert mixed.item(2).id == "mixed/12/2"


def test_group_path_is_the_evolution_up_to_a_level(groups: list[Group]) -> None:
    xsum = next(g for g in groups if g.category == "mixed" and g.example_id == 12)
    path = xsum.path(3)
    assert path == [xsum.item(level).instruction for level in (0, 1, 2, 3)]
    assert path[0].startswith("Write a summary") and "'Newton Stewart'" in path[3]
    example = next(g for g in groups if g.category == "example")
    assert [i.level for i in example.items] == [1, 2, 3, 4, 5]
    assert example.path(2) == [example.item(1).instruction, example.item(2).instruction]
    with pytest.raises(KeyError, match="no level 0"):
        example.item(0)


def test_categories_subset_and_unknown(tmp_path: Path) -> None:
    write(tmp_path, "style", group_records(2) + group_records(1))
    loaded = data.load_followbench(tmp_path, categories=["style"])
    assert [g.example_id for g in loaded] == [1, 2]
    with pytest.raises(ValueError, match="'stile'.*valid: content, situation, style"):
        data.load_followbench(tmp_path, categories=["style", "stile"])


# -- loader errors -----------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    write(tmp_path, "style", group_records(1))
    with pytest.raises(DataError, match=r"format_constraints\.json: FollowBench file not found"):
        data.load_followbench(tmp_path, categories=["style", "format"])


@pytest.mark.parametrize(
    ("index", "changes", "message"),
    [
        (3, {"instruction": None}, "item 3: field 'instruction' must be str, got NoneType"),
        (2, {"level": "2"}, "item 2: field 'level' must be int, got str"),
        (0, {"example_id": True}, "item 0: field 'example_id' must be int, got bool"),
        (4, {"level": 6}, "item 4: field 'level' must be 0..5, got 6"),
        (1, {"instruction": "  "}, "item 1: field 'instruction' is empty at level 1"),
        (5, {"category": "format"}, "item 5: field 'category' is 'format' in the style file"),
        (2, {"target": 3}, "item 2: field 'target' must be str, got int"),
    ],
)
def test_bad_item_names_file_index_and_field(tmp_path, index, changes, message) -> None:
    records = group_records(1)
    records[index] = {**records[index], **changes}
    path = write(tmp_path, "style", records)
    with pytest.raises(DataError) as info:
        data.load_followbench(tmp_path, categories=["style"])
    assert str(info.value) == f"{path}: {message}"


def test_missing_field_and_non_object(tmp_path: Path) -> None:
    records = group_records(1)
    del records[4]["source"]
    path = write(tmp_path, "style", records)
    with pytest.raises(
        DataError, match=f"^{re.escape(str(path))}: item 4: field 'source' is missing$"
    ):
        data.load_followbench(tmp_path, categories=["style"])
    write(tmp_path, "style", group_records(1) + [["not", "an", "object"]])
    with pytest.raises(DataError, match="item 6: expected a JSON object, got list"):
        data.load_followbench(tmp_path, categories=["style"])


@pytest.mark.parametrize("content", ["{not json", '{"a": 1}', "[]"])
def test_unreadable_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "style_constraints.json").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="style_constraints.json: "):
        data.load_followbench(tmp_path, categories=["style"])


def test_group_structure_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "style", group_records(1) + group_records(2, levels=[0, 1, 2, 3, 5]))
    with pytest.raises(
        DataError, match=f"^{re.escape(str(path))}: example_id 2 lacks level\\(s\\) 4 "
    ):
        data.load_followbench(tmp_path, categories=["style"])
    write(tmp_path, "style", group_records(1) + [record(1, 3)])
    with pytest.raises(DataError, match="item 6: example_id 1 level 3 repeats item 3"):
        data.load_followbench(tmp_path, categories=["style"])


def test_level_0_is_optional_and_items_are_sorted(tmp_path: Path) -> None:
    records = group_records(7, levels=[5, 3, 1, 2, 4])
    write(tmp_path, "style", records)
    (group,) = data.load_followbench(tmp_path, categories=["style"])
    assert [i.level for i in group.items] == [1, 2, 3, 4, 5]
    assert group.path(5)[0] == records[2]["instruction"]


def test_mixed_keeps_kinds_and_example_needs_a_placeholder(tmp_path: Path) -> None:
    mixed = [record(1, lv, "format, content" if lv else "mixed") for lv in range(6)]
    write(tmp_path, "mixed", mixed)
    (group,) = data.load_followbench(tmp_path, categories=["mixed"])
    assert group.item(3).kinds == "format, content" and group.item(3).category == "mixed"

    example = [
        record(1, lv, "example", target="{instruction}\n[Bot] {answer}") for lv in range(1, 6)
    ]
    example[2]["target"] = "{instruction}\n[Bot]"
    path = write(tmp_path, "example", example)
    with pytest.raises(
        DataError, match=f"^{re.escape(str(path))}: item 2: field 'target' has no {{answer}}"
    ):
        data.load_followbench(tmp_path, categories=["example"])


# -- the seeded sample -------------------------------------------------------------------------


def test_select_groups_is_seeded_and_order_independent(groups: list[Group]) -> None:
    chosen = data.select_groups(groups, per_category=2, seed=0)
    assert [g.category for g in chosen] == [c for c in CATEGORIES for _ in range(2)]
    assert chosen == sorted(chosen, key=lambda g: (CATEGORIES.index(g.category), g.example_id))
    shuffled = list(groups)
    random.Random(5).shuffle(shuffled)
    assert data.select_groups(shuffled, per_category=2, seed=0) == chosen
    assert data.select_groups(list(reversed(groups)), 2, 0) == chosen
    # a category's sample does not depend on the other categories being present
    content = [g for g in groups if g.category == "content"]
    assert data.select_groups(content, 2, 0) == chosen[:2]
    # a larger sample keeps the smaller one's groups
    larger = data.select_groups(groups, per_category=5, seed=0)
    assert set(map(id, chosen)) <= set(map(id, larger)) and len(larger) == 30
    # other seeds give other samples
    samples = {tuple(g.example_id for g in data.select_groups(groups, 2, s)) for s in range(5)}
    assert len(samples) > 1


def test_select_groups_bounds(groups: list[Group]) -> None:
    assert data.select_groups(groups, None, 0) == groups
    assert len(data.select_groups(groups, 25, 3)) == 25 + 22 + 25 + 25 + 25 + 17  # at most all
    assert data.select_groups(groups, 0, 0) == []
    with pytest.raises(ValueError, match="per_category"):
        data.select_groups(groups, -1, 0)
    style = next(g for g in groups if g.category == "style")
    with pytest.raises(ValueError, match=f"style/{style.example_id} given twice"):
        data.select_groups([style, style], 1, 0)


def test_evaluated_items_skip_level_0(groups: list[Group]) -> None:
    two = data.select_groups(groups, 1, 0)[:2]
    items = data.evaluated_items(two)
    assert [i.id for i in items] == [
        f"{g.category}/{g.example_id}/{lv}" for g in two for lv in range(1, 6)
    ]
