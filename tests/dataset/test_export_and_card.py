"""The export (Parquet that `datasets` loads, rows read back as written), the card (what it
states) and the index of published sets."""

from __future__ import annotations

import json

import pytest
import yaml

from complexif.curation.funnel import Funnel
from complexif.dataset.card import CardFacts, InputRevision, render_card, size_category
from complexif.dataset.export import decode_row, json_columns, write_parquet
from complexif.dataset.index import datasets_markdown, read_headlines, write_headlines
from complexif.io import DataError

FCS_ROWS = [
    {
        "id": "sft-1",
        "prompt": "Write about tea.\n\nUse no commas.",
        "messages": [
            {"role": "user", "content": "Write about tea.\n\nUse no commas."},
            {"role": "assistant", "content": "Tea is good."},
        ],
        "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
        "kwargs": [{}, {"num_sections": 3, "section_spliter": "Part"}],
        "n_constraints": 2,
        "source": "fcs",
    },
    {
        "id": "sft-2",
        "prompt": "Describe rain.",
        "messages": [
            {"role": "user", "content": "Describe rain."},
            {"role": "assistant", "content": "Rain falls."},
        ],
        "instruction_id_list": ["keywords:existence"],
        "kwargs": [{"keywords": ["wet", "cloud"]}],
        "n_constraints": 1,
        "source": "fcs",
    },
    {
        # A Conifer row: no prompt or kwargs, levels instead.
        "id": "csft-1",
        "messages": [
            {"role": "user", "content": "Plan a trip."},
            {"role": "assistant", "content": "Go north."},
            {"role": "user", "content": "Plan a trip in 3 steps."},
            {"role": "assistant", "content": "1. Pack 2. Go 3. Rest"},
        ],
        "levels": [1, 2],
        "n_constraints": 3,
        "source": "conifer",
        "score": 0.5,
    },
]


def test_only_columns_whose_objects_change_keys_are_json():
    # kwargs: {} beside {num_sections, section_spliter} beside {keywords}: no one Arrow struct.
    # messages: always {role, content}. score: a float where others have none.
    assert json_columns(FCS_ROWS) == ["kwargs"]
    # int and float mix as float; a list of one element type stays a list.
    assert json_columns([{"x": 1, "l": [1]}, {"x": 2.5, "l": [2, 3]}]) == []
    assert json_columns([{"x": 1}, {"x": "one"}]) == ["x"]
    # Objects without keys, however nested, have no Parquet type either.
    assert json_columns([{"k": [{}], "m": {"a": {}}, "n": {"a": 1}}]) == ["k", "m"]


def _card(folder, exported, **changes):
    facts = dict(
        name="sft",
        kind="sft",
        folder="data/publish/sft",
        source_path="data/sft.jsonl",
        source_md5="0123456789abcdef0123456789abcdef",
        exported=exported,
        rows_by_source={"fcs": 2, "conifer": 1},
        recipe="The rows training used.",
        roles=[("FCS student (answers)", "transformers", "base")],
        base_model="`embedded`",
        git_commit="a" * 40,
        git_changes=(),
        inputs=[InputRevision("data/sft.jsonl", "feedbeef" * 4, "build_data")],
        funnels=[_funnel()],
        params={"curation": {"method": "both"}},
        license="apache-2.0",
        input_licenses={"seed tasks": "Apache-2.0"},
        analysis="| figure | value |\n|---|---:|\n| rows | 3 |",
        figures={"turns per conversation": "figures/turns.png"},
    )
    facts.update(changes)
    text = render_card(CardFacts(**facts))
    (folder / "README.md").write_text(text, encoding="utf-8")
    return text


def _funnel() -> Funnel:
    f = Funnel("fcs")
    f.add("correct (verified)", 10, 4, {"unresolved": 6})
    return f


def test_the_export_loads_with_datasets_and_reads_back_as_written(tmp_path):
    import datasets

    exported = write_parquet(FCS_ROWS, tmp_path, where="data/sft.jsonl")
    assert exported.rows == 3
    assert exported.data_file == "data/train-00000-of-00001.parquet"
    assert exported.json_columns == ("kwargs",)
    _card(tmp_path, exported)
    # The folder as a user loads it: the card's configs name the Parquet files.
    ds = datasets.load_dataset(str(tmp_path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == len(FCS_ROWS)
    assert [decode_row(r, exported.json_columns) for r in ds] == FCS_ROWS
    # The plain Parquet builder reads the same file.
    plain = datasets.load_dataset(
        "parquet",
        data_files=str(tmp_path / exported.data_file),
        split="train",
        cache_dir=str(tmp_path / "hf2"),
    )
    assert plain.num_rows == 3
    # messages keep their type (a list of {role, content}), not JSON text.
    assert plain[2]["messages"][3] == {"role": "assistant", "content": "1. Pack 2. Go 3. Rest"}
    assert json.loads(plain[1]["kwargs"]) == [{"keywords": ["wet", "cloud"]}]


def test_no_rows_is_an_error_naming_the_source(tmp_path):
    with pytest.raises(DataError, match=r"data/dpo.jsonl: no rows"):
        write_parquet([], tmp_path, where="data/dpo.jsonl")
    assert not (tmp_path / "data").exists()


def test_the_card_states_revisions_counts_licenses_and_the_hub_header(tmp_path):
    exported = write_parquet(FCS_ROWS, tmp_path, where="x")
    text = _card(tmp_path, exported)
    header = yaml.safe_load(text.split("---")[1])
    assert header["license"] == "apache-2.0"
    assert header["size_categories"] == ["n<1K"]
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*.parquet"}
    ]
    assert "**3** supervised fine-tuning rows" in text
    assert "2 from fcs, 1 from conifer" in text
    assert f"git commit: `{'a' * 40}`\n" in text and "uncommitted" not in text
    assert "`data/sft.jsonl` (DVC md5 `0123456789abcdef0123456789abcdef`)" in text
    assert "| `data/sft.jsonl` | feedbeeffeedbeeffeedbeeffeedbeef | build_data |" in text
    # Rows in and out per step, with the drop reasons.
    assert "#### fcs" in text
    assert "| correct (verified) | 10 | 4 | unresolved: 6 |" in text
    assert "| seed tasks | Apache-2.0 |" in text
    assert "`kwargs` (JSON text)" in text and "json.loads" in text
    assert "![turns per conversation](figures/turns.png)" in text
    assert "method: both" in text
    assert 'load_dataset("data/publish/sft", split="train")' in text
    unknown = _card(tmp_path, exported, git_commit=None)
    assert "git commit: `unknown (not a git checkout)`\n" in unknown
    changed = [f"src/m{i}.py" for i in range(12)]
    dirty = _card(tmp_path, exported, git_changes=changed)
    assert f"git commit: `{'a' * 40}`, with uncommitted changes to `src/m0.py`, " in dirty
    assert "`src/m9.py` and 2 more\n" in dirty


def test_a_card_for_an_unknown_kind_is_refused(tmp_path):
    exported = write_parquet(FCS_ROWS, tmp_path, where="x")
    with pytest.raises(ValueError, match="kind must be one of"):
        _card(tmp_path, exported, kind="rlhf")


def test_size_categories_follow_the_hub_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000, 10**7)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
        "n>10M",
    ]


def test_the_index_links_each_card_from_where_it_is_shown(tmp_path):
    metrics = tmp_path / "publish"
    write_headlines(metrics, {"sft": {"rows": 37}, "conifer_dpo": {"rows": 0}})
    (metrics / "gone.json").write_text("{}")  # a set no longer published
    write_headlines(metrics, {"sft": {"rows": 37}, "conifer_dpo": {"rows": 0}})
    assert sorted(p.name for p in metrics.iterdir()) == ["conifer_dpo.json", "sft.json"]
    heads = read_headlines(metrics)
    from_reports = datasets_markdown(heads, "data/publish", "reports")
    assert "| sft | 37 | [sft/README.md](../data/publish/sft/README.md) |" in from_reports
    assert "| conifer_dpo | 0 | empty in this run: not exported |" in from_reports
    here = datasets_markdown(heads, "data/publish", "data/publish")
    assert "(sft/README.md)" in here


def test_a_metrics_file_without_row_counts_is_a_clear_error(tmp_path):
    (tmp_path / "sft.json").write_text(json.dumps({"rows": "many"}))
    with pytest.raises(DataError, match=r"sft.json: field 'rows' must be an int"):
        read_headlines(tmp_path)
