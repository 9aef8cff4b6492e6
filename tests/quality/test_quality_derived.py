"""Derived check columns are recomputed from raw fields, never trusted from the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from complexif.quality import DERIVED_COLUMNS, SuiteSpec, add_derived_columns


def _spec(*derived: str) -> SuiteSpec:
    return SuiteSpec.model_validate(
        {
            "name": "t",
            "derived": list(derived),
            "expectations": [
                {"type": "expect_table_row_count_to_be_between", "kwargs": {}, "meta": {"why": "t"}}
            ],
        }
    )


def test_constraint_counts_and_list_shapes() -> None:
    df = pd.DataFrame(
        {
            "instruction_id_list": [
                ["a:b", "c:d"],
                np.array(["a:b"], dtype=object),
                "a:b",
                ["a:b"],
                [],
            ],
            "kwargs": [[{}, {}], np.array([{}], dtype=object), [{}], [{}, {}], []],
            "n_constraints": [99, 99, 99, 99, 99],
        }
    )
    out = add_derived_columns(df, _spec("n_constraints", "constraint_lists_valid"))
    assert out["n_constraints"].tolist() == [2, 1, pd.NA, 1, 0]
    assert out["constraint_lists_valid"].tolist() == [True, True, False, False, True]
    assert df["n_constraints"].tolist() == [99] * 5, "the input frame must not be modified"


def test_prompt_text_from_string_messages_or_sft_messages() -> None:
    df = pd.DataFrame(
        {
            "prompt": [
                "plain",
                [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                None,
                5,
            ],
            "messages": [None, None, [{"role": "user", "content": "from messages"}], None],
        }
    )
    out = add_derived_columns(df, _spec("prompt_len_words"))
    assert out["prompt_text"].tolist()[:3] == ["plain", "u", "from messages"]
    assert pd.isna(out["prompt_text"].iloc[3])
    assert out["prompt_len_words"].tolist()[:3] == [1, 1, 2]


@pytest.mark.parametrize(
    ("messages", "valid"),
    [
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], True),
        (
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": ""},
            ],
            True,
        ),
        ([{"role": "user", "content": "q"}], False),
        ([{"role": "assistant", "content": "a"}], False),
        ([{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}], False),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}], False),
        ([], False),
        ("user: q", False),
    ],
)
def test_sft_message_shape(messages: object, valid: bool) -> None:
    out = add_derived_columns(pd.DataFrame({"messages": [messages]}), _spec("messages_valid"))
    assert out["messages_valid"].tolist() == [valid]


def test_chosen_equals_rejected_ignores_surrounding_whitespace() -> None:
    df = pd.DataFrame(
        {
            "chosen": ["same", [{"role": "assistant", "content": "x"}], "a", None],
            "rejected": ["same  \n", [{"role": "assistant", "content": "x"}], "b", None],
        }
    )
    out = add_derived_columns(df, _spec("chosen_equals_rejected"))
    assert out["chosen_equals_rejected"].tolist() == [True, True, False, False]


def test_unknown_derived_column_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown derived column"):
        _spec("nope")


def test_every_shipped_derived_column_is_known(tmp_path: Path) -> None:
    # Producers may only depend on columns produced earlier; the plan must resolve for all.
    for name in DERIVED_COLUMNS:
        if name.endswith(("_passes_all", "_verify_error")):
            continue  # need the verifier; covered in test_quality_gate
        add_derived_columns(pd.DataFrame({"id": ["x"]}), _spec(name))
