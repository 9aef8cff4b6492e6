"""Verify responses against IFEval instructions, strictly or loosely, as the official scorer does.

Strict: the response as given. Loose (official ``test_instruction_following_loose``): an
instruction passes if any of eight variants passes -- the response, without its first line,
without its last line, without both, and each of those four with every ``*`` removed.
In both modes a blank (or whitespace-only) candidate never passes.

``prompt`` is accepted for parity with the official scorer, which hands the prompt to
instructions whose arguments include ``prompt``; none of the 25 registered types do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from complexif.constraints.errors import InstructionArgumentError
from complexif.constraints.instructions import Instruction
from complexif.constraints.registry import get_instruction_class


def build(instruction_id: str, kwargs: Mapping[str, Any] | None) -> Instruction:
    """An instruction with validated arguments (``None`` values count as absent)."""
    cls = get_instruction_class(instruction_id)
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise InstructionArgumentError(
            f"{instruction_id}: arguments must be a mapping, got {type(kwargs).__name__}"
        )
    return cls(instruction_id, **dict(kwargs))


def loose_variants(response: str) -> list[str]:
    """The official loose-mode candidates, in the official order."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        remove_first,
        remove_last,
        remove_both,
        remove_first.replace("*", ""),
        remove_last.replace("*", ""),
        remove_both.replace("*", ""),
    ]


def _passes(instruction: Instruction, candidate: str) -> bool:
    return bool(candidate.strip()) and instruction.check_following(candidate)


def check_instruction(instruction: Instruction, response: str, loose: bool = False) -> bool:
    """Verdict of an already-built instruction (reuse it to check many responses cheaply)."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    if not loose:
        return _passes(instruction, response)
    return any(_passes(instruction, candidate) for candidate in loose_variants(response))


def check(
    instruction_id: str,
    kwargs: Mapping[str, Any] | None,
    response: str,
    prompt: str = "",
    loose: bool = False,
) -> bool:
    """Whether ``response`` follows one instruction."""
    return check_instruction(build(instruction_id, kwargs), response, loose=loose)


def check_all(
    instruction_id_list: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None],
    response: str,
    prompt: str = "",
    loose: bool = False,
) -> list[bool]:
    """Verdicts for several instructions on one response (the official per-prompt list)."""
    if len(instruction_id_list) != len(kwargs_list):
        raise InstructionArgumentError(
            f"{len(instruction_id_list)} instruction ids but {len(kwargs_list)} kwargs entries"
        )
    # Build everything first so a bad argument fails before any (slow) checking.
    built = [build(iid, kw) for iid, kw in zip(instruction_id_list, kwargs_list, strict=True)]
    variants = loose_variants(response) if loose else [response]
    return [any(_passes(inst, cand) for cand in variants) for inst in built]


def describe(instruction_id: str, kwargs: Mapping[str, Any] | None, prompt: str = "") -> str:
    """The official natural-language description (``build_description``) for these arguments."""
    return build(instruction_id, kwargs).build_description()
