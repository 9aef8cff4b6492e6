"""Backoff timing, Retry-After parsing, cost accounting and the budget reservation."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from complexif.config import PriceConfig
from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.retry import RetryPolicy, parse_retry_after
from tests.conftest import gen_params


def test_backoff_is_jittered_below_an_exponential_ceiling():
    policy = RetryPolicy(max_retries=6, base_s=0.5, max_s=4.0)
    rng = random.Random(0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
        assert len(set(delays)) > 150


def test_retry_after_is_a_floor():
    policy = RetryPolicy(max_retries=6, base_s=0.1, max_s=1.0)
    assert all(policy.delay(0, 2.5, random.Random(i)) == 2.5 for i in range(20))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = parse_retry_after({"Retry-After": format_datetime(when, usegmt=True)})
    assert got is not None and 25 <= got <= 31


def _resp(model, p, c, cached=False):
    return ChatResponse("r", "x", model, "stop", p, c, cached=cached)


def test_costs_by_role_from_the_price_table_and_savings_from_cache_hits():
    meter = UsageMeter({"big": PriceConfig(input=2.0, output=8.0)}, budget_usd=None)
    meter.record("teacher", _resp("big", 1_000_000, 500_000))
    meter.record("teacher", _resp("big", 1_000_000, 0, cached=True))
    meter.record("student", _resp("local", 10_000, 10_000))  # not in the table: free
    m = meter.metrics()
    assert m["llm.teacher.cost_usd"] == pytest.approx(6.0)
    assert m["llm.teacher.saved_usd"] == pytest.approx(2.0)
    assert m["llm.teacher.requests"] == 1 and m["llm.teacher.cache_hits"] == 1
    assert m["llm.teacher.prompt_tokens"] == 1_000_000  # hits are not billed tokens
    assert m["llm.student.cost_usd"] == 0.0 and m["llm.student.completion_tokens"] == 10_000
    assert m["llm.cost_usd"] == pytest.approx(6.0)


def test_budget_reserves_worst_case_cost_so_concurrent_calls_cannot_overshoot():
    meter = UsageMeter({"big": PriceConfig(input=0.0, output=1_000_000.0)}, budget_usd=2.5)
    req = ChatRequest("r", ({"role": "user", "content": ""},), gen_params(1))
    assert meter.estimate("big", req) == pytest.approx(1.0)
    assert meter.try_reserve(1.0) and meter.try_reserve(1.0)
    assert not meter.try_reserve(1.0)  # 3 in flight would break the cap: wait for one
    assert meter.reserved_usd == 2.0
    meter.release(1.0)
    meter.record("t", _resp("big", 0, 1))  # the call cost $1
    assert not meter.try_reserve(1.0)  # 1 spent + 1 in flight + 1 more > 2.5
