"""Shared fixtures for the quality-gate tests: the shipped suites and good records per artifact."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

EXPECTATIONS_DIR = Path(__file__).resolve().parents[2] / "expectations"

# Two deterministic IFEval constraints: no comma anywhere, and the keyword "apple" present.
IDS = ["punctuation:no_comma", "keywords:existence"]
KWARGS: list[dict[str, Any]] = [{}, {"keywords": ["apple"]}]
PASSING = "I ate an apple at noon and it was crisp"
FAILING = "I ate a pear, then a plum"


@pytest.fixture
def expectations_dir() -> Path:
    return EXPECTATIONS_DIR


@pytest.fixture
def fake_verifier(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], str]]:
    """Replace check_all with a transparent stand-in: tests the gate's wiring, not the verifiers.

    Understands ``punctuation:no_comma`` and ``keywords:existence``; any other id raises, as the
    real registry does. Returns the list of (ids, response) calls it saw.
    """
    calls: list[tuple[list[str], str]] = []

    def check_all(ids, kwargs_list, response, prompt="", loose=False):
        calls.append((list(ids), response))
        out = []
        for iid, kw in zip(ids, kwargs_list, strict=True):
            if iid == "punctuation:no_comma":
                out.append("," not in response)
            elif iid == "keywords:existence":
                out.append(all(k in response for k in kw["keywords"]))
            else:
                raise KeyError(f"unknown instruction id {iid!r}")
        return out

    module = types.ModuleType("complexif.constraints.verify")
    module.check_all = check_all  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "complexif.constraints.verify", module)
    return calls


@pytest.fixture
def seed_records() -> list[dict[str, Any]]:
    return [
        {"id": "s1", "text": "Write a haiku about autumn.", "source": "jsonl:seeds.jsonl"},
        {"id": "s2", "text": "Explain how vaccines work.", "source": "jsonl:seeds.jsonl"},
    ]


@pytest.fixture
def instruction_records() -> list[dict[str, Any]]:
    return [
        {
            "id": "ins-1",
            "seed_id": "s1",
            "prompt": "Write a haiku about autumn. Do not use commas and mention apple.",
            "instruction_id_list": IDS,
            "kwargs": KWARGS,
            "descriptions": ["no commas", "mention apple"],
            "n_constraints": 2,
        },
        {
            "id": "ins-2",
            "seed_id": "s2",
            "prompt": "Explain how vaccines work without using any commas.",
            "instruction_id_list": IDS[:1],
            "kwargs": KWARGS[:1],
            "descriptions": ["no commas"],
            "n_constraints": 1,
        },
    ]


@pytest.fixture
def response_records() -> list[dict[str, Any]]:
    return [
        {"id": "res-1", "instruction_id": "ins-1", "response": PASSING, "model": "student"},
        {"id": "res-2", "instruction_id": "ins-2", "response": "", "model": "student"},
    ]


@pytest.fixture
def sft_records() -> list[dict[str, Any]]:
    prompt = "Describe lunch. Do not use commas and mention apple."
    return [
        {
            "id": f"sft-{i}",
            "prompt": prompt,
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": PASSING},
            ],
            "instruction_id_list": IDS,
            "kwargs": KWARGS,
            "n_constraints": 2,
        }
        for i in range(3)
    ]


@pytest.fixture
def dpo_records() -> list[dict[str, Any]]:
    """TRL conversational format (message lists), as the build_data stage writes it."""
    prompt = "Describe lunch. Do not use commas and mention apple."
    return [
        {
            "id": f"dpo-{i}",
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": PASSING}],
            "rejected": [{"role": "assistant", "content": FAILING}],
            "instruction_id_list": IDS,
            "kwargs": KWARGS,
            "n_constraints": 2,
        }
        for i in range(3)
    ]
