"""Quality gates on the shipped suites: good artifacts pass, each kind of breakage is named.

The GX context is process-wide (created on first use), so only the first validation pays for it.
Tests marked by ``verifier`` use the real IFEval verifiers; ``fake_verifier`` tests only check the
gate's wiring around ``check_all``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from complexif.quality import (
    MAX_ROWS_SHOWN,
    GateFailed,
    GateResult,
    available_suites,
    gate,
    load_suite,
    to_gx_suite,
    validate,
)


@pytest.fixture
def verifier() -> None:
    pytest.importorskip("complexif.constraints.verify")


def _df(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


def _fail(
    records: list[dict[str, Any]], suite: str, expectations_dir: Path, **kw: Any
) -> GateFailed:
    with pytest.raises(GateFailed) as info:
        gate(_df(records), suite, expectations_dir=expectations_dir, **kw)
    return info.value


def _failed(exc: GateFailed, column: str) -> list[Any]:
    """The failed outcomes on ``column`` (normally exactly one)."""
    return [o for o in exc.result.failures if o.column == column]


def test_all_pipeline_suites_are_shipped_and_build(expectations_dir: Path) -> None:
    names = available_suites(expectations_dir)
    assert {"seeds", "instructions", "responses", "sft", "dpo"} <= set(names)
    for name in names:
        spec = load_suite(name, expectations_dir)
        assert len(to_gx_suite(spec).expectations) == len(spec.expectations)


@pytest.mark.parametrize(
    ("suite", "records_fixture"),
    [
        ("seeds", "seed_records"),
        ("instructions", "instruction_records"),
        ("responses", "response_records"),
        ("sft", "sft_records"),
        ("dpo", "dpo_records"),
    ],
)
def test_good_artifact_passes(
    suite: str,
    records_fixture: str,
    expectations_dir: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if suite in ("sft", "dpo"):
        pytest.importorskip("complexif.constraints.verify")
    records = request.getfixturevalue(records_fixture)
    with caplog.at_level(logging.INFO, logger="complexif.quality.gate"):
        result = gate(
            _df(records), suite, expectations_dir=expectations_dir, artifact=f"{suite}.jsonl"
        )
    assert isinstance(result, GateResult)
    assert result.success, result.summary()
    assert result.n_rows == len(records)
    assert all(o.success for o in result.outcomes), result.summary()
    # Outcomes come back in the suite file's order, whatever order GX evaluated them in.
    spec = load_suite(suite, expectations_dir)
    assert [(o.type, o.why) for o in result.outcomes] == [
        (e.type, e.why) for e in spec.expectations
    ]
    assert f"quality gate {suite} passed on {suite}.jsonl" in caplog.text


def test_validation_result_json_is_written(tmp_path: Path, seed_records, expectations_dir) -> None:
    out = tmp_path / "gates" / "seeds.json"
    seed_records[1]["id"] = "s1"
    result = validate(_df(seed_records), "seeds", expectations_dir, result_path=out)
    assert not result.success
    assert result.result_path == out
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["suite"] == "seeds"
    assert payload["success"] is False
    assert payload["n_rows"] == 2
    assert [f["type"] for f in payload["failures"]] == ["expect_column_values_to_be_unique"]
    gx_results = payload["validation_result"]["results"]
    assert len(gx_results) == len(load_suite("seeds", expectations_dir).expectations)
    unique = next(r for r in gx_results if r["expectation_config"]["type"].endswith("_be_unique"))
    assert unique["result"]["unexpected_index_list"] == [{"id": "s1"}, {"id": "s1"}]
    # Atomic write: no temp file is left beside the result.
    assert sorted(p.name for p in out.parent.iterdir()) == ["seeds.json"]


def test_duplicate_ids_are_named(seed_records, expectations_dir) -> None:
    seed_records[1]["id"] = "s1"
    exc = _fail(seed_records, "seeds", expectations_dir, artifact="data/seeds.jsonl")
    msg = str(exc)
    assert "Quality gate 'seeds' on data/seeds.jsonl" in msg
    assert "expect_column_values_to_be_unique(column='id')" in msg
    assert "id=s1" in msg
    assert "Duplicate ids make resume and joins ambiguous" in msg  # meta.why
    (outcome,) = _failed(exc, "id")
    assert outcome.unexpected_count == 2


def test_empty_prompt_is_named(instruction_records, expectations_dir) -> None:
    instruction_records[1]["prompt"] = "   "
    exc = _fail(instruction_records, "instructions", expectations_dir)
    (outcome,) = _failed(exc, "prompt_text")
    assert outcome.type == "expect_column_values_to_match_regex"
    assert [r.row for r in outcome.unexpected_rows] == ["id=ins-2"]
    msg = str(exc)
    assert "expect_column_values_to_match_regex(column='prompt_text'" in msg
    assert "id=ins-2 ('   ')" in msg
    assert "empty or whitespace-only prompt" in msg


def test_null_prompt_is_named(instruction_records, expectations_dir) -> None:
    instruction_records[0]["prompt"] = None
    exc = _fail(instruction_records, "instructions", expectations_dir)
    assert "expect_column_values_to_not_be_null(column='prompt_text')" in str(exc)
    assert "id=ins-1" in str(exc)


@pytest.mark.parametrize("n", [0, 6])
def test_constraint_count_out_of_range(n: int, instruction_records, expectations_dir) -> None:
    instruction_records[0]["instruction_id_list"] = ["punctuation:no_comma"] * n
    instruction_records[0]["kwargs"] = [{}] * n
    # The producer's own count is not trusted: the gate recounts from instruction_id_list.
    instruction_records[0]["n_constraints"] = 2
    exc = _fail(instruction_records, "instructions", expectations_dir)
    (outcome,) = _failed(exc, "n_constraints")
    assert outcome.type == "expect_column_values_to_be_between"
    assert [(r.row, r.value) for r in outcome.unexpected_rows] == [("id=ins-1", n)]
    assert f"id=ins-1 ({n})" in str(exc)


def test_suite_parameters_can_be_overridden(instruction_records, expectations_dir) -> None:
    instruction_records[0]["instruction_id_list"] = ["punctuation:no_comma"] * 6
    instruction_records[0]["kwargs"] = [{}] * 6
    result = gate(
        _df(instruction_records),
        "instructions",
        expectations_dir,
        parameters={"max_constraints": 6},
    )
    assert result.success
    assert result.parameters["max_constraints"] == 6
    with pytest.raises(ValueError, match="no parameter"):
        validate(_df(instruction_records), "instructions", expectations_dir, parameters={"nope": 1})


def test_mismatched_constraint_lists(instruction_records, expectations_dir) -> None:
    instruction_records[1]["kwargs"] = [{}, {}]
    exc = _fail(instruction_records, "instructions", expectations_dir)
    (outcome,) = _failed(exc, "constraint_lists_valid")
    assert [r.row for r in outcome.unexpected_rows] == ["id=ins-2"]


def test_non_string_response(response_records, expectations_dir) -> None:
    response_records[0]["response"] = {"choices": []}
    response_records[1]["response"] = None
    exc = _fail(response_records, "responses", expectations_dir)
    (is_str,) = _failed(exc, "response_is_str")
    # A null response is both null and not a string.
    assert [r.row for r in is_str.unexpected_rows] == ["id=res-1", "id=res-2"]
    (not_null,) = _failed(exc, "response")
    assert [r.row for r in not_null.unexpected_rows] == ["id=res-2"]


def test_missing_column_is_reported_not_crashed(seed_records, expectations_dir) -> None:
    for rec in seed_records:
        del rec["source"]
    exc = _fail(seed_records, "seeds", expectations_dir)
    assert "expect_table_columns_to_match_set" in exc.result.failed_types()
    assert "'missing': ['source']" in str(exc)
    # The not-null check on the absent column fails with GX's error message, not a traceback.
    (outcome,) = _failed(exc, "source")
    assert outcome.exception and "source" in outcome.exception


def test_empty_artifact_fails(expectations_dir) -> None:
    exc = _fail([], "dpo", expectations_dir)
    assert "expect_table_row_count_to_be_between" in exc.result.failed_types()


def test_many_offenders_are_capped(expectations_dir) -> None:
    records = [{"id": f"s{i:02d}", "text": "ab", "source": "x"} for i in range(25)]
    exc = _fail(records, "seeds", expectations_dir)
    (outcome,) = _failed(exc, "text")
    assert outcome.unexpected_count == 25
    assert len(outcome.unexpected_rows) == MAX_ROWS_SHOWN
    assert "25 of 25 rows unexpected: id=s00 ('ab')" in str(exc)
    assert f"(+{25 - MAX_ROWS_SHOWN} more)" in str(exc)


def test_rows_named_by_position_without_id_column(seed_records, expectations_dir) -> None:
    for rec in seed_records:
        rec["key"] = rec.pop("id")
    seed_records[1]["text"] = None
    result = validate(_df(seed_records), "seeds", expectations_dir, id_column="key")
    text = next(o for o in result.failures if o.column == "text")
    assert [r.row for r in text.unexpected_rows] == ["key=s2"]
    result = validate(_df(seed_records), "seeds", expectations_dir, id_column="nope")
    text = next(o for o in result.failures if o.column == "text")
    assert [r.row for r in text.unexpected_rows] == ["row 1"]


def test_show_context_by_position_and_with_duplicate_ids(tmp_path, fake_verifier, dpo_records):
    suite = json.loads((Path(__file__).parents[2] / "expectations" / "dpo.json").read_text())
    (tmp_path / "dpo.json").write_text(json.dumps(suite), encoding="utf-8")
    dpo_records[2]["chosen"] = [{"role": "assistant", "content": "pear, plum"}]
    dpo_records[2]["id"] = dpo_records[0]["id"] = "dup"
    df = _df(dpo_records)
    by_id = validate(df, "dpo", tmp_path)
    (chosen,) = [o for o in by_id.failures if o.column == "chosen_passes_all"]
    # Duplicate ids: the first row with that id is shown (here it passed, so it has no failures).
    assert [(r.row, r.context["chosen_failed_ids"]) for r in chosen.unexpected_rows] == [
        ("id=dup", "")
    ]
    by_position = validate(df, "dpo", tmp_path, id_column="missing")
    (chosen,) = [o for o in by_position.failures if o.column == "chosen_passes_all"]
    assert [(r.row, r.context["chosen_text"]) for r in chosen.unexpected_rows] == [
        ("row 2", "pear, plum")
    ]


def test_warning_severity_does_not_block(instruction_records, expectations_dir, caplog) -> None:
    instruction_records[0]["prompt"] = "word " * 2500
    with caplog.at_level(logging.WARNING, logger="complexif.quality.gate"):
        result = gate(_df(instruction_records), "instructions", expectations_dir)
    assert result.success
    (warning,) = result.warnings
    assert warning.column == "prompt_len_words" and warning.severity == "warning"
    assert "non-blocking" in caplog.text


# --- DPO / SFT with the real IFEval verifiers -------------------------------------------------


def test_chosen_equals_rejected(verifier, dpo_records, expectations_dir) -> None:
    dpo_records[1]["rejected"] = [
        {"role": "assistant", "content": dpo_records[1]["chosen"][0]["content"] + "\n"}
    ]
    exc = _fail(dpo_records, "dpo", expectations_dir)
    (outcome,) = _failed(exc, "chosen_equals_rejected")
    assert [(r.row, r.value) for r in outcome.unexpected_rows] == [("id=dpo-1", True)]
    assert "expect_column_values_to_be_in_set(column='chosen_equals_rejected'" in str(exc)
    assert "zero DPO gradient" in str(exc)


def test_chosen_failing_a_constraint(verifier, expectations_dir) -> None:
    records = [
        {
            "id": "p1",
            "prompt": "List two letters without commas.",
            "chosen": "a, b",
            "rejected": "a, b, c",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
            # A producing stage claiming success must not be believed.
            "chosen_passes_all": True,
        }
    ]
    exc = _fail(records, "dpo", expectations_dir)
    (outcome,) = _failed(exc, "chosen_passes_all")
    assert [(r.row, r.value) for r in outcome.unexpected_rows] == [("id=p1", False)]
    # meta.show puts the failed constraint and the text beside the row id.
    assert outcome.unexpected_rows[0].context == {
        "chosen_failed_ids": "punctuation:no_comma",
        "chosen_text": "a, b",
    }
    assert "id=p1 (False; chosen_failed_ids='punctuation:no_comma'; chosen_text='a, b')" in str(exc)
    assert "chosen must satisfy every constraint" in str(exc)
    assert not _failed(exc, "rejected_passes_all")


def test_rejected_passing_all(verifier, dpo_records, expectations_dir) -> None:
    dpo_records[2]["rejected"] = [{"role": "assistant", "content": "An apple a day is plenty"}]
    exc = _fail(dpo_records, "dpo", expectations_dir)
    (outcome,) = _failed(exc, "rejected_passes_all")
    assert [(r.row, r.value) for r in outcome.unexpected_rows] == [("id=dpo-2", True)]
    assert "rejected must violate at least one constraint" in str(exc)
    assert exc.result.failed_types() == ["expect_column_values_to_be_in_set"]


def test_sft_response_failing_a_constraint(verifier, sft_records, expectations_dir) -> None:
    sft_records[0]["messages"][-1]["content"] = "A pear, then a plum"
    exc = _fail(sft_records, "sft", expectations_dir)
    (outcome,) = _failed(exc, "response_passes_all")
    assert [r.row for r in outcome.unexpected_rows] == ["id=sft-0"]
    # Both constraints fail: a comma, and no "apple".
    assert outcome.unexpected_rows[0].context["response_failed_ids"] == (
        "punctuation:no_comma, keywords:existence"
    )


def test_sft_messages_must_end_with_assistant(verifier, sft_records, expectations_dir) -> None:
    sft_records[1]["messages"] = sft_records[1]["messages"][:1]
    exc = _fail(sft_records, "sft", expectations_dir)
    (outcome,) = _failed(exc, "messages_valid")
    assert [r.row for r in outcome.unexpected_rows] == ["id=sft-1"]


def test_unknown_instruction_id_is_a_verify_error(verifier, dpo_records, expectations_dir) -> None:
    dpo_records[0]["instruction_id_list"] = ["punctuation:no_comma", "made:up"]
    exc = _fail(dpo_records, "dpo", expectations_dir)
    (outcome,) = _failed(exc, "chosen_verify_error")
    assert outcome.unexpected_rows[0].row == "id=dpo-0"
    assert "made:up" in str(outcome.unexpected_rows[0].value)


def test_arrow_shaped_records_pass(verifier, dpo_records, expectations_dir) -> None:
    """`datasets`/Arrow hands lists back as numpy arrays and pads kwargs dicts with None keys."""
    for rec in dpo_records:
        rec["instruction_id_list"] = np.array(rec["instruction_id_list"], dtype=object)
        rec["kwargs"] = np.array(
            [{"keywords": None, "num_words": None}, {"keywords": ["apple"], "num_words": None}],
            dtype=object,
        )
        rec["prompt"] = rec["prompt"][0]["content"]
        rec["chosen"] = rec["chosen"][0]["content"]
        rec["rejected"] = rec["rejected"][0]["content"]
    result = gate(_df(dpo_records), "dpo", expectations_dir)
    assert result.success, result.summary()


# --- wiring around check_all, independent of the real verifiers ------------------------------


def test_check_all_gets_assistant_text_and_errors_are_per_row(
    fake_verifier, dpo_records, expectations_dir
) -> None:
    dpo_records[1]["instruction_id_list"] = ["punctuation:no_comma", "made:up"]
    exc = _fail(dpo_records, "dpo", expectations_dir)
    # chosen and rejected were each verified once per row, as plain assistant text.
    assert len(fake_verifier) == 2 * len(dpo_records)
    assert fake_verifier[0] == (
        ["punctuation:no_comma", "keywords:existence"],
        dpo_records[0]["chosen"][0]["content"],
    )
    (chosen_err,) = _failed(exc, "chosen_verify_error")
    (rejected_err,) = _failed(exc, "rejected_verify_error")
    for outcome in (chosen_err, rejected_err):
        assert [(r.row, r.value) for r in outcome.unexpected_rows] == [
            ("id=dpo-1", "KeyError: \"unknown instruction id 'made:up'\"")
        ]
    # Rows that verified cleanly are not reported.
    assert not _failed(exc, "chosen_passes_all") or all(
        r.row == "id=dpo-1" for o in _failed(exc, "chosen_passes_all") for r in o.unexpected_rows
    )


def _artifact_texts(clean: str) -> dict[str, str]:
    """Planted artifacts: text that games a checker (``clean`` passes every constraint)."""
    return {
        "keyword_list": clean + "\n\nKeywords: apple; noon.",
        "placeholder_tail": clean + "\n\n[name] [address]",
        "json_stub": '{"response": "' + clean + '"}',
    }


def test_sft_targets_with_artifacts_or_cut_off_are_named(verifier, sft_records, expectations_dir):
    rows = [dict(r, messages=[dict(m) for m in r["messages"]]) for r in sft_records]
    planted = []
    for kind, text in _artifact_texts(rows[0]["messages"][-1]["content"]).items():
        row = dict(rows[0], id=f"sft-{kind}")
        row["messages"] = [row["messages"][0], {"role": "assistant", "content": text}]
        planted.append(row)
    planted.append(dict(rows[1], id="sft-cut", finish_reason="length"))
    exc = _fail(rows[2:] + planted, "sft", expectations_dir)
    (outcome,) = _failed(exc, "response_artifacts")
    named = {r.row: r.context["response_artifacts"] for r in outcome.unexpected_rows}
    assert named == {
        "id=sft-keyword_list": "keyword_list",
        "id=sft-placeholder_tail": "placeholder_tail",
        "id=sft-json_stub": "json_stub",
        "id=sft-cut": "cut_off",
    }
    gate(_df(rows), "sft", expectations_dir=expectations_dir)  # the clean rows pass


def test_dpo_chosen_with_artifacts_or_cut_off_are_named(verifier, dpo_records, expectations_dir):
    bad = dict(dpo_records[0], id="dpo-bad")
    clean = dpo_records[0]["chosen"][-1]["content"]
    bad["chosen"] = [{"role": "assistant", "content": _artifact_texts(clean)["keyword_list"]}]
    cut = dict(dpo_records[1], id="dpo-cut", chosen_finish_reason="length")
    exc = _fail([bad, cut, *dpo_records[2:]], "dpo", expectations_dir)
    (outcome,) = _failed(exc, "chosen_artifacts")
    assert {r.row for r in outcome.unexpected_rows} == {"id=dpo-bad", "id=dpo-cut"}
