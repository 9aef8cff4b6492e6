"""Finding the JSON in what models actually answer."""

from __future__ import annotations

import pytest

from complexif.llm.structured import JSONExtractError, extract_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"response": "ok"}', {"response": "ok"}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure! Here it is:\n```\n{"a": 1}\n```\nHope this helps.', {"a": 1}),
        ('Here is the JSON: {"a": {"b": "}"}} and that is all.', {"a": {"b": "}"}}),
        ("The list: [1, 2, 3].", [1, 2, 3]),
        # A fenced block that does not parse falls back to JSON elsewhere in the text.
        ('```json\n{broken\n```\nCorrected: {"a": 2}', {"a": 2}),
        # Braces in prose before the JSON are skipped.
        ('Use {curly} braces like this: {"x": null}', {"x": None}),
    ],
)
def test_extracts(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no json here", "no JSON object or array"),
        ('{"a": 1,', "invalid JSON"),
        ("```json\n{'a': 1}\n```", "fenced block is not valid JSON"),
    ],
)
def test_reports_why_there_is_no_json(text, message):
    with pytest.raises(JSONExtractError, match=message):
        extract_json(text)


def test_validation_picks_the_first_json_of_the_right_shape():
    from complexif.llm.structured import parse_json

    def response(v):
        return v["response"]

    text = 'I fixed constraint [2].\n{"response": "Hello world"}'
    assert parse_json(text, response) == "Hello world"
    with pytest.raises(JSONExtractError, match="wrong shape"):
        parse_json("[1] and [2]", response)
    with pytest.raises(JSONExtractError, match="no JSON"):
        parse_json("nothing here", response)
