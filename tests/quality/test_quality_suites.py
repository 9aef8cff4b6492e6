"""Suite files: a typo or an undocumented expectation is rejected when the suite is loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from complexif.quality import SuiteError, load_suite, to_gx_suite


def _write(tmp_path: Path, name: str, **overrides: Any) -> Path:
    suite: dict[str, Any] = {
        "name": name,
        "derived": [],
        "parameters": {},
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "id"},
                "meta": {"why": "ids join records"},
            }
        ],
    }
    suite.update(overrides)
    (tmp_path / f"{name}.json").write_text(json.dumps(suite), encoding="utf-8")
    return tmp_path


def test_minimal_suite_loads_and_builds(tmp_path: Path) -> None:
    spec = load_suite("mini", _write(tmp_path, "mini"))
    assert spec.expectations[0].why == "ids join records"
    assert spec.expectations[0].column == "id"
    gx_suite = to_gx_suite(spec)
    assert gx_suite.name == "mini"
    assert gx_suite.expectations[0].meta == {"why": "ids join records", "suite_index": 0}


def test_missing_suite_lists_available(tmp_path: Path) -> None:
    _write(tmp_path, "other")
    with pytest.raises(SuiteError, match=r"suite 'nope' not found \(available: \['other'\]\)"):
        load_suite("nope", tmp_path)


def test_name_must_match_file(tmp_path: Path) -> None:
    _write(tmp_path, "a")
    (tmp_path / "a.json").rename(tmp_path / "b.json")
    with pytest.raises(SuiteError, match="does not match file name 'b'"):
        load_suite("b", tmp_path)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SuiteError, match=r"bad\.json: invalid JSON"):
        load_suite("bad", tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}}
                ]
            },
            "meta.why is required",
        ),
        ({"derived": ["no_such_column"]}, "unknown derived column"),
        (
            {
                "expectations": [
                    {
                        "type": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": "id"},
                        "meta": {"why": "w", "show": "text"},
                    }
                ]
            },
            "meta.show must be a list",
        ),
        (
            {
                "expectations": [
                    {
                        "type": "expect_column_values_to_be_between",
                        "kwargs": {"column": "n", "max_value": {"$PARAMETER": "max_n"}},
                        "meta": {"why": "bounded"},
                    }
                ]
            },
            r"without a default in 'parameters': \['max_n'\]",
        ),
        ({"expectations": []}, "at least 1 item"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_malformed_suites_are_rejected_on_load(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    _write(tmp_path, "s", **overrides)
    with pytest.raises(SuiteError, match=message):
        load_suite("s", tmp_path)


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "id"}}, "not found"),
        ({"type": "expect_column_values_to_be_between", "kwargs": {"colum": "id"}}, "column"),
    ],
)
def test_gx_rejects_unknown_types_and_kwargs(
    tmp_path: Path, expectation: dict, message: str
) -> None:
    expectation["meta"] = {"why": "testing"}
    spec = load_suite("s", _write(tmp_path, "s", expectations=[expectation]))
    with pytest.raises(SuiteError, match=rf"suite 's', expectation #0 .*{message}"):
        to_gx_suite(spec)
