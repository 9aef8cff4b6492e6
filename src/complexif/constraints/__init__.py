"""The 25 verifiable IFEval constraints: checking, describing, composing and repairing.

- ``registry``: the instruction ids, their classes and the official conflict table.
- ``verify``: ``check`` / ``check_all`` (official strict and loose semantics), ``describe``.
- ``sampling``: official-style random arguments, reproducible through an explicit rng.
- ``composer``: seed request + k compatible constraints -> a complex instruction.
- ``repair``: exact program fixes for the constraints a program can satisfy.
- ``nltk_data``: offline punkt data for sentence counting.

The checkers are ported from google-research's ``instruction_following_eval`` (Apache-2.0);
see ``instructions.py`` for what we changed and why.
"""

from complexif.constraints.errors import (
    ConstraintError,
    InstructionArgumentError,
    UnknownInstructionError,
)
from complexif.constraints.registry import INSTRUCTION_IDS, conflicts, get_instruction_class
from complexif.constraints.verify import check, check_all, describe

__all__ = [
    "INSTRUCTION_IDS",
    "ConstraintError",
    "InstructionArgumentError",
    "UnknownInstructionError",
    "check",
    "check_all",
    "conflicts",
    "describe",
    "get_instruction_class",
]
