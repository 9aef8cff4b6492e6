"""The API path for real: OpenAIBackend + LLMClient against loopback servers.

Servers are real HTTP servers (``complexif.llm.server``) on 127.0.0.1, some injecting faults; the
counts the tests check are taken at the server (``/stats``), not from the client's own story.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from complexif.config import ConfigError, PriceConfig
from complexif.llm.accounting import UsageMeter, estimate_prompt_tokens
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
from complexif.llm.responders import FixedLatencyResponder
from complexif.llm.retry import RetryPolicy
from complexif.llm.server import serve_in_thread
from tests.conftest import gen_params
from tests.llm.servers import build_app
from tests.llm.servers import stats as server_stats

PARAMS = gen_params(16)


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
    run: str | None = None,
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
        cache=ResponseCache(tmp_path / "cache.sqlite", run=run) if cache else None,
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
    # The client's timeout is far above a loopback answer's time even on a loaded machine (a
    # timeout the server did not cause would be a retry no fault explains); hung requests are
    # fewer than the other faults, each costing one timeout.
    faults = FaultConfig(
        rate_429=0.06,
        rate_500=0.06,
        rate_timeout=0.025,
        rate_malformed=0.055,
        retry_after_s=0.05,
        hang_s=60.0,
        seed=1,
    )
    with serve_in_thread(build_app(FixedLatencyResponder(0.01), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, timeout_s=5.0, max_retries=10, concurrency=16)
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


class _RecordingAsyncio:
    """The ``asyncio`` the backend sees, with every ``sleep`` it asks for written down.

    Retry-After is checked by what the backend asks to wait, not by a stopwatch.
    """

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(delay)

    def __getattr__(self, name: str):
        return getattr(asyncio, name)


def test_retry_after_is_honoured_before_giving_up(tmp_path, monkeypatch):
    from complexif.llm import openai_backend

    recorder = _RecordingAsyncio()
    monkeypatch.setattr(openai_backend, "asyncio", recorder)
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.3)
    with serve_in_thread(build_app(FixedLatencyResponder(0.0), "echo", faults=faults)) as url:
        client = _client(url, tmp_path, max_retries=2, concurrency=1)
        (out,) = client.generate(_requests(1))
        client.close()
        assert server_stats(url)["requests"] == 3
    assert isinstance(out, ChatFailure) and out.attempts == 3
    assert "HTTP 429" in out.reason and "gave up after 3 attempts" in out.reason
    # Two waits before the two retries, each at least the Retry-After (the backoff alone would
    # be at most 0.05 s); the third answer ends it without a wait.
    assert len([d for d in recorder.sleeps if d >= 0.3]) == 2
    assert client.meter.role("teacher").retries == 2


def test_wrong_model_stops_at_once_with_a_clear_error(echo_server, tmp_path):
    client = _client(echo_server, tmp_path, model="gpt-nope")
    with pytest.raises(FatalBackendError, match="404.*gpt-nope"):
        client.generate(_requests(50))
    client.close()
    assert server_stats(echo_server)["requests"] < 50  # did not grind through every row


# A window of about eleven days: nothing leaks out of a limiter while a test runs, so what a
# limiter holds after a batch is exactly what that batch reserved.
LONG_WINDOW_S = 1e6


def test_requests_per_minute_limit_admits_the_limit_then_holds_the_next(echo_server, tmp_path):
    client = _client(echo_server, tmp_path, rpm=5, rate_period_s=LONG_WINDOW_S, cache=False)
    assert all(isinstance(r, ChatResponse) for r in client.generate(_requests(5)))
    limiter = client.backend._rpm
    assert limiter is not None and not limiter.has_capacity(1)  # a 6th call would wait
    client.close()


def test_tokens_per_minute_limit_counts_max_tokens_up_front(echo_server, tmp_path):
    # Each request reserves 4 prompt tokens (estimated) + 16 max tokens = 20 before it is sent.
    client = _client(echo_server, tmp_path, tpm=200, rate_period_s=LONG_WINDOW_S, cache=False)
    requests = _requests(10)
    assert {estimate_prompt_tokens(r) + r.params.max_new_tokens for r in requests} == {20}
    limiter = client.backend._tpm
    assert limiter is not None
    assert all(isinstance(r, ChatResponse) for r in client.generate(requests[:9]))
    assert limiter.has_capacity(20) and not limiter.has_capacity(21)  # 9 x 20 = 180 held
    assert isinstance(client.generate(requests[9:])[0], ChatResponse)
    # Full: counting prompt tokens only (40) would have left room for 8 more requests.
    assert not limiter.has_capacity(1)
    client.close()


def test_rate_limited_requests_wait_their_turn_and_all_get_answers(echo_server, tmp_path):
    # A short window, so the limiters refill while the test runs: 5 calls and 100 tokens at once.
    client = _client(
        echo_server, tmp_path, rpm=5, tpm=100, rate_period_s=0.25, cache=False, concurrency=8
    )
    out = client.generate(_requests(15))
    client.close()
    assert [r.text for r in out] == [f"q {i}" for i in range(15)]
    assert server_stats(echo_server)["requests"] == 15


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


def _dead_url() -> str:
    """A loopback URL with nothing listening (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_answers_from_one_server_are_never_served_as_another_servers(echo_server, tmp_path):
    first = _client(echo_server, tmp_path, model="echo")
    assert all(isinstance(r, ChatResponse) for r in first.generate(_requests(5)))
    first.close()

    # Same model name, same cache, nothing listening: every request fails; none is answered
    # with what the echo server said.
    dead = _client(_dead_url(), tmp_path, model="echo", max_retries=0)
    out = dead.generate(_requests(5))
    dead.close()
    assert all(isinstance(r, ChatFailure) and r.kind == "request_failed" for r in out)
    assert dead.meter.role("teacher").cache_hits == 0

    # Another live server under the same name answers for itself.
    responder = FixedLatencyResponder(0.0, text="from the other server")
    with serve_in_thread(build_app(responder, "echo")) as other_url:
        other = _client(other_url, tmp_path, model="echo")
        out = other.generate(_requests(5))
        other.close()
        assert server_stats(other_url)["requests"] == 5
    assert [r.text for r in out] == ["from the other server"] * 5


def test_one_endpoint_spelled_differently_still_hits_the_cache(echo_server, tmp_path):
    client = _client(echo_server, tmp_path)
    client.generate(_requests(3))
    client.close()
    # An upper-case scheme and a trailing slash: the same server.
    respelled = echo_server.replace("http://", "HTTP://") + "/"
    again = _client(respelled, tmp_path)
    assert all(r.cached for r in again.generate(_requests(3)))
    again.close()
    assert server_stats(echo_server)["requests"] == 3


def test_normalise_base_url():
    from complexif.llm.openai_backend import normalise_base_url

    assert normalise_base_url("HTTPS://API.Example.com:443/v1/") == "https://api.example.com/v1"
    assert normalise_base_url("http://user:secret@host:80/v1") == "http://host/v1"
    assert normalise_base_url("http://host:8000/v1#x") == "http://host:8000/v1"
    assert normalise_base_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert normalise_base_url("https://host/openai?api-version=1") == (
        "https://host/openai?api-version=1"
    )
    distinct = {"http://h:8000/v1", "http://h:8001/v1", "https://h:8000/v1", "http://h:8000/v2"}
    assert len({normalise_base_url(u) for u in distinct}) == 4


def test_a_note_says_how_many_answers_earlier_runs_wrote(echo_server, tmp_path):
    def client(run: str) -> LLMClient:
        return _client(echo_server, tmp_path, run=run)

    first = client("respond (MLflow run aaa)")
    first.generate(_requests(3))
    first.generate(_requests(3))  # its own answers: not "from another run"
    assert first.cache_note() is None
    first.close()

    second = client("respond (MLflow run bbb)")
    second.generate(_requests(5))
    second.close()
    note = second.cache_note()
    assert note is not None
    assert note.startswith("3 of 5 answers came from the cache (written by earlier runs: ")
    assert "3 by respond (MLflow run aaa) on 20" in note

    third = client("respond (MLflow run ccc)")
    third.generate(_requests(6))
    third.close()
    note = third.cache_note()
    assert note is not None and note.startswith("5 of 6 answers came from the cache")
    assert "3 by respond (MLflow run aaa)" in note and "2 by respond (MLflow run bbb)" in note


def _echo_params(echo_server: str, tmp_path: Path):
    """The repository's params with the student at the echo server, the cache and the ledger
    under ``tmp_path``."""
    import yaml

    from complexif.config import Params, deep_merge
    from tests.conftest import REPO_ROOT

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    role = {"backend": "openai", "model": "echo", "api": {"base_url": echo_server}}
    return Params.model_validate(
        deep_merge(
            raw,
            {
                "respond": {"student": role},
                "llm": {"progress": False, "cache": {"path": str(tmp_path / "c.sqlite")}},
                "paths": {"ledger_dir": str(tmp_path / "ledger")},
            },
        )
    )


def test_the_stage_logs_the_note_and_the_cache_records_its_run(echo_server, tmp_path, caplog):
    import logging

    from complexif.llm.session import llm_session

    params = _echo_params(echo_server, tmp_path)

    class Run:  # the bits of a StageRun the session uses
        def __init__(self, run_id: str) -> None:
            self.run_id = run_id
            self.metrics: dict[str, float] = {}
            self.artifacts: list[Path] = []

        def log_metrics(self, metrics: dict[str, float]) -> None:
            self.metrics.update(metrics)

        def log_artifact(self, path: Path) -> None:
            self.artifacts.append(Path(path))

    runs = [Run("0123abcd"), Run("4567ef01")]
    caplog.set_level(logging.INFO, logger="complexif.llm.session")
    for run in runs:
        with llm_session("respond", params, run) as llm:
            llm.client("student", params.respond.student).generate(_requests(4))
    notes = [r.getMessage() for r in caplog.records if "came from the cache" in r.getMessage()]
    assert len(notes) == 1  # the first run paid for everything
    assert notes[0].startswith(
        "respond/student: 4 of 4 answers came from the cache (written by earlier runs: "
        "4 by respond (MLflow run 0123abcd) on "
    )
    assert runs[0].metrics["llm.student.cache_hits_earlier_runs"] == 0.0
    assert runs[1].metrics["llm.student.cache_hits_earlier_runs"] == 4.0
    # No request failed, and the (empty) failure ledger is kept with each run as evidence.
    assert [r.artifacts for r in runs] == [[tmp_path / "ledger" / "respond.jsonl"]] * 2
    assert server_stats(echo_server)["requests"] == 4


def test_the_failure_share_counts_rows_not_calls(echo_server, tmp_path):
    # Two rows asking the same thing are sent once but are two rows: both unusable is 2 of 2
    # (counting calls said "2 of 1" and broke any limit, 1.0 included).

    from complexif.llm.session import TooManyFailures, llm_session
    from complexif.llm.step import LLMStep, ParseError, run_step

    def unusable(row, text):
        raise ParseError("never usable")

    params = _echo_params(echo_server, tmp_path)
    step = LLMStep(
        "same",
        "student",
        None,
        prompt=lambda row: [{"role": "user", "content": "hi"}],
        parse=unusable,
    )
    rows = [{"id": "a"}, {"id": "b"}]
    with pytest.raises(TooManyFailures, match=r"^2 of 2 requests failed \(more than x=0.9\)"):
        with llm_session("respond", params, failure_limit=("x", 0.9)) as session:
            result = run_step(session.client("student", params.respond.student), step, rows, PARAMS)
            assert [f.kind for f in result.failures] == ["parse_failed", "parse_failed"]
    # At a limit of 1.0 nothing stops: every row failing is the whole share, not more.
    with llm_session("respond", params, failure_limit=("x", 1.0)) as session:
        run_step(session.client("student", params.respond.student), step, rows, PARAMS)
    assert server_stats(echo_server)["requests"] == 1
