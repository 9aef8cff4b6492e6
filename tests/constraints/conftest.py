"""Fixtures for the constraint tests: the official prompts and the reference implementation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from ifeval_ref import INPUT_DATA


@pytest.fixture(scope="session")
def ifeval_rows() -> list[dict[str, Any]]:
    with INPUT_DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="session")
def reference() -> Any:
    """if-verifiable's copy of the official registry, made offline and deterministic.

    - its sentence counter loads ``nltk:tokenizers/punkt/english.pickle``, which NLTK >= 3.9 maps
      to the punkt_tab English model: we provide that data offline (same as our code does);
    - official langdetect calls are unseeded; seeding the global factory makes them repeatable
      (our checkers use a private factory with the same seed).
    """
    registry = pytest.importorskip("if_verifiable.ifeval.instructions_registry")
    from langdetect import DetectorFactory

    from complexif.constraints.nltk_data import ensure_punkt

    ensure_punkt()
    DetectorFactory.seed = 0
    return registry


RefChecker = Callable[[Sequence[str], Sequence[dict], str, str, bool], list[bool]]


@pytest.fixture(scope="session")
def reference_check_all(reference: Any) -> RefChecker:
    """The official ``test_instruction_following_*`` loop over the reference classes."""
    from complexif.constraints.verify import loose_variants

    def run(ids: Sequence[str], kwargs: Sequence[dict], response: str, prompt: str, loose: bool):
        variants = loose_variants(response) if loose else [response]
        out = []
        for iid, kw in zip(ids, kwargs, strict=True):
            inst = reference.INSTRUCTION_DICT[iid](iid)
            inst.build_description(**kw)
            args = inst.get_instruction_args()
            if args and "prompt" in args:
                inst.build_description(prompt=prompt)
            out.append(any(bool(r.strip() and inst.check_following(r)) for r in variants))
        return out

    return run
