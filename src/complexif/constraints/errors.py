"""Errors raised by the constraint library (all are ``ValueError`` so callers can catch broadly)."""

from __future__ import annotations


class ConstraintError(ValueError):
    """Base class for bad instruction ids or arguments."""


class UnknownInstructionError(ConstraintError):
    """The instruction id is not one of the 25 IFEval types."""


class InstructionArgumentError(ConstraintError):
    """An argument is missing, unexpected, or has a value the checker cannot use."""
