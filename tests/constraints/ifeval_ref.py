"""Shared constants for the constraint tests (importable; conftest modules are not)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INPUT_DATA = REPO / "data" / "benchmarks" / "ifeval" / "input_data.jsonl"

# IFEval prompts whose letter_frequency letter is not a-z ('#' and '!'): the reference draws a
# random letter for them, we count the named character.
NON_LETTER_KEYS = frozenset({1122, 1129})
