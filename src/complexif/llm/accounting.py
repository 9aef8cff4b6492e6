"""Tokens and dollars per role, and the budget cap that stops a stage before it overspends.

Costs come from the price table in params (USD per million tokens, by model name); a model not
in the table costs nothing (a local model). Before a call starts, its worst-case cost (prompt
estimate plus ``max_new_tokens`` per sample) is reserved against the budget, so concurrent calls
cannot together overshoot the cap; the reservation is replaced by the real cost when it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from complexif.llm.base import ChatRequest, ChatResponse


class Price(Protocol):
    input: float
    output: float


@dataclass
class RoleUsage:
    requests: int = 0  # answers received from the backend
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what the cache hits would have cost
    retries: int = 0
    failures: int = 0
    repairs: int = 0  # re-asks for an unparseable answer: extra calls, not extra rows


class BudgetExceeded(RuntimeError):
    """The stage reached ``llm.budget_usd``; what was done so far is kept and cached."""


def estimate_prompt_tokens(request: ChatRequest) -> int:
    # ~4 characters per token for English; a few tokens per message for the chat template.
    return sum(len(m.get("content", "")) // 4 + 4 for m in request.messages)


class UsageMeter:
    def __init__(self, prices: Mapping[str, Price], budget_usd: float | None):
        """``llm.prices`` and ``llm.budget_usd`` (None: no cap)."""
        self.prices = dict(prices)
        self.budget_usd = budget_usd
        self.by_role: dict[str, RoleUsage] = {}
        self._reserved = 0.0
        self.exhausted = False

    def role(self, role: str) -> RoleUsage:
        return self.by_role.setdefault(role, RoleUsage())

    @property
    def cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.by_role.values())

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    def estimate(self, model: str, request: ChatRequest) -> float:
        p = request.params
        return self.cost(model, estimate_prompt_tokens(request), p.max_new_tokens * p.n)

    @property
    def reserved_usd(self) -> float:
        return self._reserved

    def try_reserve(self, amount: float) -> bool:
        """Reserve ``amount`` for a call about to start; False if it does not fit now.

        Not fitting while other calls are in flight means "wait for one to finish" (most calls
        cost far less than their worst case); the caller sets ``exhausted`` when nothing is.
        """
        if self.budget_usd is None:
            return True
        if self.exhausted or self.cost_usd + self._reserved + amount > self.budget_usd:
            return False
        self._reserved += amount
        return True

    def release(self, amount: float) -> None:
        if self.budget_usd is not None:
            self._reserved = max(0.0, self._reserved - amount)

    def record(self, role: str, response: ChatResponse) -> None:
        usage = self.role(role)
        cost = self.cost(response.model, response.prompt_tokens, response.completion_tokens)
        if response.cached:
            usage.cache_hits += 1
            usage.saved_usd += cost
            return
        usage.requests += 1
        usage.prompt_tokens += response.prompt_tokens
        usage.completion_tokens += response.completion_tokens
        usage.cost_usd += cost

    def metrics(self) -> dict[str, float]:
        """Flat ``llm.<role>.<field>`` metrics for MLflow, plus the stage's total cost."""
        out: dict[str, float] = {}
        for role, usage in sorted(self.by_role.items()):
            out.update({f"llm.{role}.{k}": float(v) for k, v in asdict(usage).items()})
        out["llm.cost_usd"] = self.cost_usd
        return out
