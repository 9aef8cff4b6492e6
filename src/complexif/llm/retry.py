"""When to try a failed call again: exponential backoff with full jitter, or what the server says.

Full jitter (a uniform draw below the exponential ceiling) spreads the retries of many concurrent
workers that failed together, so they do not hit the server again in lockstep.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """``api.max_retries``, ``api.backoff_base_s`` and ``api.backoff_max_s`` of params.yaml."""

    max_retries: int
    base_s: float
    max_s: float

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

        A server's Retry-After is a floor: we never come back sooner than it asked.
        """
        backoff = rng.uniform(0.0, min(self.max_s, self.base_s * (2**attempt)))
        return max(backoff, retry_after) if retry_after is not None else backoff


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
