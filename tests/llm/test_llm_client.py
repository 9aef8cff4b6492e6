"""The API path for real: OpenAIBackend + LLMClient against loopback servers.

Servers are real HTTP servers (``complexif.llm.server``) on 127.0.0.1, some injecting faults; the
counts the tests check are taken at the server (``/stats``), not from the client's own story.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from complexif.config import ConfigError, PriceConfig
from complexif.llm.accounting import UsageMeter
from complexif.llm.base import (
    ChatFailure,
    ChatRequest,
    ChatResponse,
    FatalBackendError,
    GenerationParams,
)
from complexif.llm.cache import ResponseCache
from complexif.llm.client import LLMClient
from complexif.llm.faults import FaultConfig
from complexif.llm.ledger import FailureLedger
from complexif.llm.openai_backend import OpenAIBackend
from complexif.llm.prompts import PromptTemplate
from complexif.llm.responders import FixedLatencyResponder
from complexif.llm.retry import RetryPolicy
from complexif.llm.server import build_app, serve_in_thread
from complexif.llm.structured import generate_json
from tests.conftest import gen_params
from tests.llm.servers import ScriptedResponder
from tests.llm.servers import stats as server_stats

PARAMS = gen_params(16)
REPAIR = PromptTemplate("json_repair.txt", "Not usable: $error. Only JSON please.")


def _requests(n: int, params: GenerationParams = PARAMS, prefix: str = "q") -> list[ChatRequest]:
    return [
        ChatRequest(f"r{i}", ({"role": "user", "content": f"{prefix} {i}"},), params)
        for i in range(n)
    ]


def _client(
    base_url: str,
    tmp_path: Path,
    model: str = "echo",
    cache: bool = True,
    meter: UsageMeter | None = None,
    max_retries: int = 6,
    timeout_s: float = 5.0,
    concurrency: int = 8,
    rpm: int | None = None,
    tpm: int | None = None,
    **backend_kwargs,
) -> LLMClient:
    backend = OpenAIBackend(
        model,
        base_url=base_url,
        api_key="test",
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        timeout_s=timeout_s,
        retry=RetryPolicy(max_retries=max_retries, base_s=0.01, max_s=0.05),
        **backend_kwargs,
    )
    return LLMClient(
        backend,
        role="teacher",
        meter=meter or UsageMeter({}, budget_usd=None),
        ledger=FailureLedger("test"),
        cache=ResponseCache(tmp_path / "cache.sqlite") if cache else None,
        chunk_size=16,
        progress=False,
    )


@pytest.fixture
def echo_server():
    with serve_in_thread(build_app(FixedLatencyResponder(0.0), "echo")) as url:
        yield url


def test_answers_in_order_and_a_rerun_is_served_from_the_cache(echo_server, tmp_path):
    client = _client(echo_server, tmp_path)
    first = client.generate(_requests(20))
    assert [r.request_id for r in first] == [f"r{i}" for i in range(20)]
    assert [r.text for r in first] == [f"q {i}" for i in range(20)]
    assert all(isinstance(r, ChatResponse) and not r.cached for r in first)
    assert server_stats(echo_server)["requests"] == 20
    client.close()

    again = _client(echo_server, tmp_path)  # a new process would see the same file
    second = again.generate(_requests(20))
    again.close()
    assert [r.text for r in second] == [r.text for r in first]
    assert all(r.cached for r in second)
    assert server_stats(echo_server)["requests"] == 20  # zero new calls
    usage = again.meter.role("teacher")
    assert (usage.cache_hits, usage.requests) == (20, 0)


def test_identical_requests_in_one_call_are_sent_once(echo_server, tmp_path):
    client = _client(echo_server, tmp_path)
    reqs = _requests(3) + [ChatRequest("dup", _requests(1)[0].messages, PARAMS)]
    out = client.generate(reqs)
    client.close()
    assert [r.request_id for r in out] == ["r0", "r1", "r2", "dup"]
    assert out[3].text == out[0].text
    assert server_stats(echo_server)["requests"] == 3


def test_seed_and_n_are_distinct_cache_entries(echo_server, tmp_path):
    client = _client(echo_server, tmp_path)
    msgs = ({"role": "user", "content": "same"},)
    reqs = [
        ChatRequest("a", msgs, gen_params(256, temperature=1.0, seed=1)),
        ChatRequest("b", msgs, gen_params(256, temperature=1.0, seed=2)),
        ChatRequest("c", msgs, gen_params(256, temperature=1.0, seed=1, n=3)),
    ]
    out = client.generate(reqs)
    assert server_stats(echo_server)["requests"] == 3
    assert len(out[2].texts) == 3 and len(out[0].texts) == 1
    assert all(r.cached for r in client.generate(reqs))
    client.close()
    assert server_stats(echo_server)["requests"] == 3


def test_twenty_percent_faults_all_recovered_and_counts_reconcile(tmp_path):
    faults = FaultConfig(
        rate_429=0.05,
        rate_500=0.05,
        rate_timeout=0.05,
        rate_malformed=0.05,
        retry_after_s=0.05,
        hang_s=3.0,
        seed=1,
    )
    with serve_in_thread(build_app(FixedLatencyResponder(0.01), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, timeout_s=0.5, max_retries=10, concurrency=16)
        out = client.generate(_requests(200))
        client.close()
        stats = server_stats(url)
    assert all(isinstance(r, ChatResponse) for r in out)
    assert [r.text for r in out] == [f"q {i}" for i in range(200)]
    n_faults = sum(stats["faults"][k] for k in ("429", "500", "timeout", "malformed"))
    assert n_faults > 20  # ~50 expected: the faults really happened
    # Every fault cost exactly one retry; every request was answered exactly once.
    assert client.meter.role("teacher").retries == n_faults
    assert stats["completed"] == 200
    assert stats["requests"] == 200 + n_faults
    assert client.ledger.entries == []


def test_retries_spent_go_to_the_ledger_and_nothing_is_lost(tmp_path):
    faults = FaultConfig(rate_500=0.5, seed=3)
    with serve_in_thread(build_app(FixedLatencyResponder(0.0), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, max_retries=0)
        out = client.generate(_requests(60))
        client.close()
        stats = server_stats(url)
    ok = [r for r in out if isinstance(r, ChatResponse)]
    failed = [r for r in out if isinstance(r, ChatFailure)]
    assert len(ok) + len(failed) == 60 and 10 < len(failed) < 50
    assert len(failed) == stats["faults"]["500"]
    ledger = client.ledger.entries
    assert sorted(e.request_id for e in ledger) == sorted(f.request_id for f in failed)
    assert all(e.kind == "request_failed" and "HTTP 500" in e.reason for e in ledger)
    # Failures are not cached: a re-run asks again for exactly those.
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        assert len(cache) == len(ok)


def test_retry_after_is_honoured_before_giving_up(tmp_path):
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.3)
    with serve_in_thread(build_app(FixedLatencyResponder(0.0), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, max_retries=2, concurrency=1)
        start = time.monotonic()
        (out,) = client.generate(_requests(1))
        elapsed = time.monotonic() - start
        client.close()
        assert server_stats(url)["requests"] == 3
    assert isinstance(out, ChatFailure) and out.attempts == 3
    assert "HTTP 429" in out.reason and "gave up after 3 attempts" in out.reason
    assert elapsed >= 0.6  # two waits of at least Retry-After, not the 0.01 s backoff


def test_wrong_model_stops_at_once_with_a_clear_error(echo_server, tmp_path):
    client = _client(echo_server, tmp_path, model="gpt-nope")
    with pytest.raises(FatalBackendError, match="404.*gpt-nope"):
        client.generate(_requests(50))
    client.close()
    assert server_stats(echo_server)["requests"] < 50  # did not grind through every row


def _seconds_for(client: LLMClient, n: int) -> float:
    start = time.monotonic()
    client.generate(_requests(n))
    elapsed = time.monotonic() - start
    client.close()
    return elapsed


def test_requests_per_minute_limit_spaces_calls(echo_server, tmp_path):
    # 5 per 1 s window (the window is a minute in params; shortened here to keep the test fast).
    client = _client(echo_server, tmp_path, rpm=5, rate_period_s=1.0, cache=False)
    assert _seconds_for(client, 15) >= 1.5  # 5 at once, then one every 0.2 s


def test_tokens_per_minute_limit_counts_max_tokens_up_front(echo_server, tmp_path):
    # Each request reserves ~4 prompt + 16 max tokens = 20: 200 per window admits 10 at once.
    client = _client(echo_server, tmp_path, tpm=200, rate_period_s=1.0, cache=False)
    assert _seconds_for(client, 30) >= 1.5  # 10 at once, then about 10 per second


def test_budget_cap_stops_new_calls_and_keeps_what_was_answered(tmp_path):
    # Every answer is 16 tokens (max_new_tokens) at $1/16 each: $1 a call, as estimated.
    prices = {"echo": PriceConfig(input=0.0, output=1e6 / 16)}
    responder = FixedLatencyResponder(0.0, text="word " * 20)
    with serve_in_thread(build_app(responder, "echo")) as url:
        meter = UsageMeter(prices, budget_usd=4.5)
        client = _client(url, tmp_path, meter=meter, concurrency=1)
        out = client.generate(_requests(10))
        client.close()
        answered = [r for r in out if isinstance(r, ChatResponse)]
        skipped = [r for r in out if isinstance(r, ChatFailure)]
        assert len(answered) == 4 and meter.exhausted
        assert meter.cost_usd == pytest.approx(4.0)
        assert {f.kind for f in skipped} == {"budget_exhausted"} and len(skipped) == 6
        assert len(client.ledger.entries) == 6
        # Raising the budget resumes: the 4 answers come from the cache, 6 new calls are made.
        assert server_stats(url)["requests"] == 4
        client = _client(url, tmp_path, meter=UsageMeter(prices, budget_usd=100))
        assert all(isinstance(r, ChatResponse) for r in client.generate(_requests(10)))
        client.close()
        assert server_stats(url)["requests"] == 10


def test_budget_waits_for_calls_in_flight_instead_of_giving_up_early(echo_server, tmp_path):
    # Worst case $1 a call (16 tokens at $1/16), real cost $0.125 (the echo answers 2 tokens):
    # 8 calls in flight reserve $8 of a $3 budget, but they free most of it when they return.
    meter = UsageMeter({"echo": PriceConfig(input=0.0, output=1e6 / 16)}, budget_usd=3.0)
    client = _client(echo_server, tmp_path, meter=meter, concurrency=8)
    out = client.generate(_requests(40))
    client.close()
    answered = sum(isinstance(r, ChatResponse) for r in out)
    assert answered >= 16  # spent down to within one worst-case call of the cap, not 3 calls
    assert meter.cost_usd <= 3.0 and meter.exhausted
    assert answered + len(client.ledger.entries) == 40


def test_json_answers_get_one_repair_re_ask_then_the_ledger(tmp_path):
    def answer(request: ChatRequest) -> str:
        last = request.messages[-1]["content"]
        if last.startswith("Not usable"):  # the repair re-ask
            first = request.messages[0]["content"]
            return '{"response": "fixed"}' if "fixable" in first else "still not json"
        if "good" in last:
            return 'Sure!\n```json\n{"response": "fine"}\n```'
        return "I think the answer is fine."

    with serve_in_thread(build_app(ScriptedResponder(answer), "echo")) as url:
        client = _client(url, tmp_path)
        reqs = [
            ChatRequest(rid, ({"role": "user", "content": rid},), PARAMS)
            for rid in ("good", "fixable", "hopeless")
        ]
        out = generate_json(client, reqs, REPAIR, validate=lambda v: v["response"])
        client.close()
        assert server_stats(url)["requests"] == 5  # 3 + one repair each for two
    assert out[:2] == ["fine", "fixed"]
    assert isinstance(out[2], ChatFailure) and out[2].kind == "parse_failed"
    assert "after one repair re-ask" in out[2].reason
    assert [(e.request_id, e.kind) for e in client.ledger.entries] == [("hopeless", "parse_failed")]


def test_api_key_from_env_or_dotenv_and_a_clear_error_without_one(tmp_path, monkeypatch):
    from complexif.llm.factory import resolve_api_key
    from tests.conftest import repo_params, updated

    monkeypatch.delenv("MY_KEY", raising=False)
    api = repo_params().respond.student.api
    remote = updated(api, base_url="https://api.example.com/v1", api_key_env="MY_KEY")
    with pytest.raises(ConfigError, match="MY_KEY"):
        resolve_api_key(remote, tmp_path / ".env")
    (tmp_path / ".env").write_text("MY_KEY=from-file\n")
    assert resolve_api_key(remote, tmp_path / ".env") == "from-file"
    monkeypatch.setenv("MY_KEY", "from-env")
    assert resolve_api_key(remote, tmp_path / ".env") == "from-env"
    local = updated(api, base_url="http://127.0.0.1:8000/v1", api_key_env="UNSET_KEY_XYZ")
    assert resolve_api_key(local, tmp_path / "missing.env") == "not-needed"


def test_a_server_failing_everything_stops_the_run_early(tmp_path):
    faults = FaultConfig(rate_500=1.0)
    with serve_in_thread(build_app(FixedLatencyResponder(0.0), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, max_retries=1, concurrency=2)
        with pytest.raises(FatalBackendError, match="last 10 requests all failed.*HTTP 500"):
            client.generate(_requests(200))
        client.close()
        # 10 requests x 2 attempts, plus at most one in flight on the other worker.
        assert server_stats(url)["requests"] <= 22
