"""Loading InFoBench items from every supported source, the errors on bad data, and subsets."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import datasets
import pytest

from complexif.evaluation.infobench.data import Item, load_infobench, select_items
from complexif.io import DataError, read_jsonl


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_loads_the_fixture(sample_path):
    items = load_infobench(sample_path, split="train")
    assert [i.id for i in items] == [r["id"] for r in read_jsonl(sample_path)]
    assert {i.subset for i in items} == {"Easy_set", "Hard_set"}
    poem = items[0]
    assert poem == Item(
        id="fixture_easy_1",
        instruction="Write a four-line poem about a tram crossing a bridge at night.",
        input="",
        category="Writing",
        subset="Easy_set",
        questions=(
            "Is the generated text a poem?",
            "Does the poem have exactly four lines?",
            "Is the poem about a tram crossing a bridge at night?",
        ),
    )


def test_prompt_is_the_instruction_then_the_input_when_there_is_one(sample_path):
    items = {i.id: i for i in load_infobench(sample_path, split="train")}
    assert items["fixture_easy_1"].prompt == items["fixture_easy_1"].instruction
    recipe = items["fixture_easy_2"]
    assert recipe.prompt == (
        "Using only the ingredients listed below, give a recipe in numbered steps.\n\n"
        "Lemons, sugar, water, ice.\n"
    )


def test_json_array_and_directory_load_the_same_items(sample_path, tmp_path):
    expected = load_infobench(sample_path, split="train")
    array = tmp_path / "array" / "infobench.json"
    array.parent.mkdir()
    array.write_text(json.dumps(read_jsonl(sample_path)), encoding="utf-8")
    assert load_infobench(array, split="train") == expected
    assert load_infobench(str(array.parent), split="train") == expected  # a folder with one file

    folder = tmp_path / "jsonl"
    folder.mkdir()
    write_jsonl(folder / "data.jsonl", read_jsonl(sample_path))
    (folder / "README.md").write_text("not data")
    assert load_infobench(folder, split="train") == expected


def test_directory_with_several_or_no_data_files_is_an_error(sample_path, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", read_jsonl(sample_path))
    write_jsonl(tmp_path / "b.jsonl", read_jsonl(sample_path))
    with pytest.raises(DataError, match=r"expected one .*found a\.jsonl, b\.jsonl"):
        load_infobench(tmp_path, split="train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="found none"):
        load_infobench(empty, split="train")


def test_saved_dataset_folders(sample_path, tmp_path):
    expected = load_infobench(sample_path, split="train")
    recs = read_jsonl(sample_path)
    datasets.Dataset.from_list(recs).save_to_disk(str(tmp_path / "one"))
    assert load_infobench(tmp_path / "one", split="train") == expected

    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(recs), "test": datasets.Dataset.from_list(recs[:2])}
    )
    splits.save_to_disk(str(tmp_path / "dict"))
    assert load_infobench(tmp_path / "dict", split="test") == expected[:2]
    with pytest.raises(DataError, match=r"no split 'dev' \(splits: test, train\)"):
        load_infobench(tmp_path / "dict", split="dev")


def test_hub_id_goes_to_load_dataset(sample_path, monkeypatch):
    calls = []

    def fake_load_dataset(source, split):
        calls.append((source, split))
        return read_jsonl(sample_path)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_infobench("kqsong/InFoBench", split="train") == load_infobench(
        sample_path, split="train"
    )
    assert calls == [("kqsong/InFoBench", "train")]


def test_hub_rows_are_validated_by_index(sample_path, monkeypatch):
    rows = read_jsonl(sample_path)
    rows[3]["subset"] = "Medium_set"
    monkeypatch.setattr(datasets, "load_dataset", lambda source, split: rows)
    with pytest.raises(DataError, match=r"kqsong/InFoBench\[train\]\[3\]: field 'subset'"):
        load_infobench("kqsong/InFoBench", split="train")


def test_hub_failure_says_how_to_get_the_data(monkeypatch):
    def offline(source, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_infobench("kqsong/InFoBench", split="train")
    message = str(err.value)
    assert "ConnectionError: no network" in message
    assert "not shipped" in message
    assert "load_dataset('kqsong/InFoBench', split='train').to_json(" in message
    assert "evaluate.infobench.source" in message


def test_missing_file_path_is_not_sent_to_the_hub(tmp_path, monkeypatch):
    def never(source, split):
        raise AssertionError("a file path must not reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", never)
    missing = tmp_path / "infobench.jsonl"
    with pytest.raises(DataError, match=r"infobench\.jsonl: file not found\. InFoBench is not"):
        load_infobench(missing, split="train")


@pytest.mark.parametrize(
    "change, line, message",
    [
        (lambda r: r.pop("instruction"), 2, "missing field 'instruction'"),
        (lambda r: r.update(id=7), 2, "field 'id' must be str, got int"),
        (lambda r: r.update(subset="easy"), 2, "field 'subset' must be one of"),
        (lambda r: r.update(decomposed_questions=[]), 2, "field 'decomposed_questions' is empty"),
        (
            lambda r: r.update(decomposed_questions="Is it?"),
            2,
            "field .decomposed_questions. must be list, got str",
        ),
        (
            lambda r: r.update(decomposed_questions=["Is it?", ""]),
            2,
            "field 'decomposed_questions' item 1 must be a non-empty string",
        ),
        (lambda r: r.update(instruction="  "), 2, "field 'instruction' is empty"),
        (lambda r: r.update(id="fixture_easy_1"), 2, "field 'id' 'fixture_easy_1' repeats .*:1"),
    ],
)
def test_jsonl_errors_name_file_line_and_field(sample_path, tmp_path, change, line, message):
    recs = read_jsonl(sample_path)[:3]
    change(recs[line - 1])
    path = write_jsonl(tmp_path / "bad.jsonl", recs)
    with pytest.raises(DataError, match=rf"bad\.jsonl:{line}: {message}"):
        load_infobench(path, split="train")


def test_json_array_errors_name_the_index(sample_path, tmp_path):
    recs = read_jsonl(sample_path)
    recs[5].pop("decomposed_questions")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recs), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json\[5\]: missing field 'decomposed_questions'"):
        load_infobench(path, split="train")
    path.write_text(json.dumps({"items": recs}), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: expected a JSON array of items, got dict"):
        load_infobench(path, split="train")


def test_invalid_json_and_empty_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing field 'instruction'"):
        load_infobench(bad, split="train")
    bad.write_text('\n{"id": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        load_infobench(bad, split="train")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: no items"):
        load_infobench(empty, split="train")
    other = tmp_path / "data.csv"
    other.write_text("id\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.csv: expected a \.jsonl or \.json file"):
        load_infobench(other, split="train")


# ----------------------------------------------------------------------------------------------
# select_items


def many(n_easy: int, n_hard: int) -> list[Item]:
    def item(i: int, subset: str) -> Item:
        return Item(f"{subset[0]}{i:02d}", "Do it.", "", "Test", subset, ("Is it done?",))

    return [item(i, "Easy_set") for i in range(n_easy)] + [
        item(i, "Hard_set") for i in range(n_hard)
    ]


def test_select_none_or_too_many_is_everything_sorted_by_id(sample_path):
    items = load_infobench(sample_path, split="train")
    shuffled = list(reversed(items))
    everything = sorted(items, key=lambda i: i.id)
    assert select_items(shuffled, None, 0) == everything
    assert select_items(shuffled, 8, 0) == everything
    assert select_items(shuffled, 50, 0) == everything


def test_select_keeps_the_subset_mix():
    items = many(6, 2)
    for n, easy in [(4, 3), (1, 1), (2, 2), (3, 2), (7, 5)]:
        chosen = select_items(items, n, seed=1)
        assert len(chosen) == n
        assert sum(i.subset == "Easy_set" for i in chosen) == easy, n
        assert chosen == sorted(chosen, key=lambda i: i.id)


def test_select_depends_on_seed_not_on_input_order():
    items = many(10, 10)
    chosen = select_items(items, 6, seed=3)
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    assert select_items(shuffled, 6, seed=3) == chosen
    subsets = {tuple(i.id for i in select_items(items, 6, seed=s)) for s in range(8)}
    assert len(subsets) > 1  # the seed does choose


def test_select_rejects_bad_sizes():
    for n in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="n must be an integer >= 1 or None"):
            select_items(many(2, 2), n, 0)


def test_items_are_frozen():
    item = many(1, 0)[0]
    with pytest.raises(AttributeError):
        item.id = "other"  # type: ignore[misc]
    assert replace(item, input="x").prompt == "Do it.\n\nx\n"
