"""Random instruction arguments, drawn as the official ``build_description`` draws them.

This is the only place arguments are invented; scoring never samples (a missing argument is an
error there). Every draw goes through the ``rng`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import random
from typing import Any

from complexif.constraints.registry import get_instruction_class


def sample_kwargs(instruction_id: str, rng: random.Random, prompt: str = "") -> dict[str, Any]:
    """Arguments for ``instruction_id``; ``prompt`` is the text ``repeat_prompt`` must repeat."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    return get_instruction_class(instruction_id).sample_kwargs(rng, prompt)
