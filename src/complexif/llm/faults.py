"""Injected server failures, so the client's retries, timeouts and parsing are tested for real.

Each chat request draws at most one fault from a seeded RNG, so a run with the same seed and the
same request order fails in the same places. The kinds mirror what hosted APIs actually do: rate
limits with ``Retry-After``, 5xx errors, requests that hang past the client's timeout, bodies cut
off mid-JSON, and answers that are merely slow.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response

FaultKind = Literal["429", "500", "timeout", "malformed", "slow"]
FAULT_KINDS: tuple[FaultKind, ...] = ("429", "500", "timeout", "malformed", "slow")


@dataclass(frozen=True)
class FaultConfig:
    """Per-request probabilities of each fault (at most one per request) and their shape."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    rate_slow: float = 0.0
    retry_after_s: float | None = 0.1
    hang_s: float = 30.0
    slow_s: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind} must be in [0, 1], got {rate}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(self.rates.values()):g}; at most 1 allowed")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        if self.hang_s < 0 or self.slow_s < 0:
            raise ValueError("hang_s and slow_s must be >= 0")

    @property
    def rates(self) -> dict[FaultKind, float]:
        return {
            "429": self.rate_429,
            "500": self.rate_500,
            "timeout": self.rate_timeout,
            "malformed": self.rate_malformed,
            "slow": self.rate_slow,
        }

    def draw(self, rng: random.Random) -> FaultKind | None:
        """One uniform draw mapped onto the stacked rates; None (no fault) for the rest."""
        u = rng.random()
        for kind, rate in self.rates.items():
            if u < rate:
                return kind
            u -= rate
        return None


def openai_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape, which the SDK turns into its typed exceptions."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def fault_response(
    kind: FaultKind, config: FaultConfig, request: Request, partial_body: dict[str, Any]
) -> Response | None:
    """The response a fault replaces the answer with; None means answer normally (``slow``).

    ``partial_body`` is a completion skeleton; ``malformed`` sends it cut off mid-JSON under a
    JSON content type, as a dropped connection behind a proxy would.
    """
    if kind == "429":
        headers: dict[str, str] = {}
        if config.retry_after_s is not None:
            headers = {
                "retry-after": f"{config.retry_after_s:g}",
                "retry-after-ms": f"{config.retry_after_s * 1000:g}",
            }
        return openai_error(
            429,
            "Rate limit reached (injected fault)",
            "requests",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if kind == "500":
        return openai_error(500, "The server had an error (injected fault)", "server_error")
    if kind == "timeout":
        await _sleep_while_connected(request, config.hang_s)
        return openai_error(504, "Gateway timeout (injected fault)", "server_error")
    if kind == "malformed":
        text = json.dumps(partial_body)
        return Response(text[: len(text) // 2], status_code=200, media_type="application/json")
    await asyncio.sleep(config.slow_s)
    return None


async def _sleep_while_connected(request: Request, seconds: float) -> None:
    """Hang like a stuck server, but stop once the client gives up so shutdown is not held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(0.05, left))
        if await request.is_disconnected():
            return
