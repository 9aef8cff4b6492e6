"""JSON answers from chat models: found wherever the model put them, asked again once if not.

Models wrap JSON in code fences, preface it with "Sure! Here is...", or trail an explanation.
:func:`extract_json` takes the first fenced block that parses, else the first JSON object or
array that decodes anywhere in the text. :func:`repair_request` is the one re-ask an unparseable
answer gets (the bad answer and the parse error go back to the model); the step runner
(:mod:`complexif.llm.step`) sends it and ledgers what still fails as ``parse_failed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from complexif.llm.base import ChatRequest
from complexif.llm.prompts import PromptTemplate

FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\n?(.*?)```", re.DOTALL)
MAX_CANDIDATES = 200  # start positions tried in unfenced text; bounds the scan of long answers


class JSONExtractError(ValueError):
    pass


def _candidates(text: str) -> Iterator[Any]:
    """Every JSON value in the answer, in order: fenced blocks first, then anywhere in the text.

    Raises :class:`JSONExtractError` (why there is none) once the text is exhausted.
    """
    no_json = "no JSON object or array in the answer"
    last_error = no_json
    for block in FENCE.findall(text):
        try:
            yield json.loads(block.strip())
        except json.JSONDecodeError as exc:
            last_error = f"fenced block is not valid JSON: {exc}"
    decoder = json.JSONDecoder()
    for start in [m.start() for m in re.finditer(r"[\[{]", text)][:MAX_CANDIDATES]:
        try:
            yield decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError as exc:
            if last_error == no_json:
                last_error = f"invalid JSON: {exc}"
    raise JSONExtractError(last_error)


def extract_json(text: str) -> Any:
    """The first JSON value in a model's answer; :class:`JSONExtractError` says why there is none."""
    return next(_candidates(text))


Validator = Callable[[Any], Any]


def parse_json(text: str, validate: Validator | None) -> Any:
    """The first JSON value in ``text`` that ``validate`` accepts (a stray ``[2]`` in prose
    before the real answer must not hide it)."""
    shape_error: str | None = None
    try:
        for value in _candidates(text):
            if validate is None:
                return value
            try:
                return validate(value)
            except (KeyError, TypeError, ValueError) as exc:
                shape_error = shape_error or f"JSON has the wrong shape: {exc}"
    except JSONExtractError:
        if shape_error is None:
            raise
    raise JSONExtractError(shape_error)


def repair_request(
    request: ChatRequest, answer: str, error: str, template: PromptTemplate
) -> ChatRequest:
    # Same id: a failed repair is ledgered under the row it was for.
    return replace(
        request,
        messages=(
            *request.messages,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": template.render(error=error)},
        ),
        prompt_version=f"{request.prompt_version}+{template.version}",
    )
