"""A progress bar for LLM calls: requests done, live rate, tokens, cost, cache hits, failures."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from complexif.llm.accounting import RoleUsage


class UsageBar:
    def __init__(self, total: int, desc: str, usage: RoleUsage, enabled: bool) -> None:
        self._bar = tqdm(
            total=total, desc=desc, unit="req", disable=not enabled, dynamic_ncols=True
        )
        self._usage = usage
        self._last = 0.0

    def update(self, n: int = 1, retries: int = 0) -> None:
        self._bar.update(n)
        now = time.monotonic()
        if now - self._last >= 0.25 or self._bar.n >= (self._bar.total or 0):
            self._last = now
            u = self._usage
            self._bar.set_postfix(
                tok=u.prompt_tokens + u.completion_tokens,
                cost=f"${u.cost_usd:.4f}",
                hit=u.cache_hits,
                retry=retries,
                fail=u.failures,
                refresh=False,
            )

    def close(self) -> None:
        self._bar.close()
