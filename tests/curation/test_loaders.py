"""Seed loaders: each format on its fixture, skip reporting, and errors that name file/line/field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from complexif.curation.loaders import (
    SeedRecord,
    iter_json_array,
    load_alpaca_seeds,
    load_jsonl_seeds,
    load_seeds,
    load_sharegpt_seeds,
    normalize_text,
    seed_id,
    sniff_format,
)
from complexif.io import DataError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def test_normalize_text_case_punctuation_whitespace() -> None:
    assert (
        normalize_text("  Hello,\tWORLD!  It’s “fine”—end.Next ")
        == "hello world it s fine end next"
    )
    assert normalize_text("") == ""


def test_seed_id_is_stable_and_content_based() -> None:
    a = seed_id("Write a poem about rain.")
    assert a.startswith("seed-") and len(a) == len("seed-") + 16
    assert seed_id("  write a POEM about rain ") == a  # same normalised text -> same id
    assert seed_id("Write a poem about snow.") != a


def test_plain_jsonl_fields_input_ids_and_skips() -> None:
    res = load_jsonl_seeds(FIX / "plain.jsonl")
    texts = [r.text for r in res.records]
    assert texts == [
        "Write a haiku about a quiet harbour at dawn.",
        "Summarise the passage below in two sentences.\n\nThe river flooded twice this spring, "
        "and the town rebuilt the footbridge both times.",
        "Explain why bread goes stale faster in the fridge.",  # fallback field 'prompt'
        "List three uses for an old tennis ball.",  # fallback field 'text'
    ]
    first, second, third, fourth = res.records
    assert first == SeedRecord("p-1", texts[0], "jsonl:plain.jsonl", "writing")
    assert second.id == seed_id(texts[1]) and second.category == "summarising"
    assert third.category is None
    assert fourth.id == "17"  # integer ids from the source are kept, as strings
    # The whitespace-only instruction on line 6 (after a blank line) is reported, not dropped silently.
    assert len(res.skipped) == 1
    skip = res.skipped[0]
    assert skip.line == 6 and "empty" in skip.reason and skip.file.endswith("plain.jsonl")
    assert res.skip_counts() == {"empty field 'instruction'": 1}


def test_plain_jsonl_configured_field_wins_and_is_required(tmp_path: Path) -> None:
    res = load_jsonl_seeds(FIX / "custom_field.jsonl", field_name="question")
    assert [r.text for r in res.records] == [
        "How do magnets attract iron filings?",
        "Why do cats purr when they are content?",
    ]
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "ok?"}\n{"instruction": "no question field"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"q\.jsonl:2: missing field 'question'"):
        load_jsonl_seeds(bad, field_name="question")


def test_alpaca_joins_input_and_skips_empty_instruction() -> None:
    res = load_alpaca_seeds(FIX / "alpaca.json")
    assert [r.text for r in res.records] == [
        "Give three tips for keeping basil alive indoors.",
        "Translate the sentence into plain English.\n\n"
        "Per our previous correspondence, kindly revert at your earliest convenience.",
        "Describe the smell of a pine forest after rain.",
    ]
    assert all(r.source == "alpaca:alpaca.json" for r in res.records)
    assert all(r.id.startswith("seed-") for r in res.records)
    # The empty instruction is the third element, which starts on line 12 of the file.
    assert [(s.line, s.reason) for s in res.skipped] == [(12, "empty field 'instruction'")]


def test_sharegpt_conversations_first_human_turn_and_no_human_skip() -> None:
    res = load_sharegpt_seeds(FIX / "sharegpt.json")
    assert [(r.id, r.text) for r in res.records] == [
        ("conv-a", "What should I pack for a two-day hike in autumn?"),
        (
            seed_id("Recommend a board game for four players who like trading."),
            "Recommend a board game for four players who like trading.",
        ),
    ]
    assert [(s.line, s.reason) for s in res.skipped] == [(11, "no human turn")]


def test_sharegpt_messages_jsonl_with_content_parts() -> None:
    res = load_sharegpt_seeds(FIX / "sharegpt_messages.jsonl")
    assert [r.text for r in res.records] == [
        "Suggest a name for a grey kitten.",
        "Describe this picture of a lighthouse.",
    ]
    assert res.records[1].category == "multimodal"
    assert [(s.line, s.reason) for s in res.skipped] == [(2, "no human turn")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.jsonl", "jsonl"),
        ("custom_field.jsonl", "jsonl"),
        ("alpaca.json", "alpaca"),
        ("sharegpt.json", "sharegpt"),
        ("sharegpt_messages.jsonl", "sharegpt"),
    ],
)
def test_sniff_format(name: str, expected: str) -> None:
    assert sniff_format(FIX / name) == expected


def test_load_seeds_auto_matches_explicit_loaders() -> None:
    assert load_seeds(FIX / "alpaca.json", "auto") == load_alpaca_seeds(FIX / "alpaca.json")
    assert load_seeds(FIX / "sharegpt.json", format="sharegpt") == load_sharegpt_seeds(
        FIX / "sharegpt.json"
    )
    assert load_seeds(FIX / "plain.jsonl", "auto") == load_jsonl_seeds(FIX / "plain.jsonl")
    assert load_seeds(FIX / "custom_field.jsonl", "auto", field_name="question").records[
        0
    ].text == ("How do magnets attract iron filings?")


def test_load_seeds_rejects_unknown_format_and_undetectable_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown seed format"):
        load_seeds(FIX / "plain.jsonl", format="csv")
    odd = tmp_path / "odd.json"
    odd.write_text('[{"question": "no known keys"}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"odd\.json:1: cannot detect seed format"):
        load_seeds(odd, "auto")


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_seeds(tmp_path / "nope.json", "auto")


@pytest.mark.parametrize(
    ("name", "fmt", "pattern"),
    [
        # file, line and field all appear in the message
        (
            "broken_missing_field.jsonl",
            "auto",
            r"broken_missing_field\.jsonl:3: missing field 'instruction'",
        ),
        ("broken_type.json", "alpaca", r"broken_type\.json:3: field 'input' must be str, got int"),
        (
            "broken_sharegpt.jsonl",
            "auto",
            r"broken_sharegpt\.jsonl:2: missing field 'conversations\[1\]\.value'",
        ),
        (
            "broken_role.json",
            "auto",
            r"broken_role\.json:3: field 'conversations\[0\]\.from' has unknown role 'narrator'",
        ),
        ("broken_json.jsonl", "jsonl", r"broken_json\.jsonl:2: invalid JSON"),
        ("broken_array.json", "alpaca", r"broken_array\.json:3: expected ',' or '\]'"),
    ],
)
def test_broken_inputs_name_file_line_and_field(name: str, fmt: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_seeds(FIX / name, format=fmt)


def test_bad_id_and_category_types_are_rejected(tmp_path: Path) -> None:
    p = tmp_path / "ids.jsonl"
    p.write_text('{"instruction": "ok", "id": true}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"ids\.jsonl:1: field 'id' must be str or int, got bool"):
        load_seeds(p, "auto")
    p.write_text('{"instruction": "ok", "category": ["a"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"ids\.jsonl:1: field 'category' must be str, got list"):
        load_seeds(p, "auto")


def test_iter_json_array_line_numbers_match_json_load(tmp_path: Path) -> None:
    items = [{"k": i, "pad": "x" * i} for i in range(6)]
    text = json.dumps(items, indent=2)
    p = tmp_path / "a.json"
    got = list(iter_json_array(p, text))
    assert [obj for _, obj in got] == json.loads(text)
    lines = text.splitlines()
    for lineno, obj in got:
        # each element's opening brace sits on the reported line
        assert lines[lineno - 1].strip() == "{"
        assert re.search(rf'"k": {obj["k"]}\b', lines[lineno])
    assert list(iter_json_array(p, "  [ ]  ")) == []
    with pytest.raises(DataError, match=r"a\.json:1: expected a JSON array"):
        list(iter_json_array(p, '{"instruction": "x"}'))
