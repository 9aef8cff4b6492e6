"""The OpenAI-compatible server, exercised through real sockets and the official SDK."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from complexif.cli import main
from complexif.config import deep_merge
from complexif.llm import server
from complexif.llm.base import ChatRequest, GenerationParams
from complexif.llm.faults import FaultConfig
from complexif.llm.responders import FixedLatencyResponder, MicroBatcher, prompt_counter
from complexif.llm.server import Access
from complexif.llm.transformers_backend import TransformersLLM
from tests.conftest import REPO_ROOT, gen_params
from tests.llm.servers import (
    SERVE,
    RecordingBackend,
    ScriptedResponder,
    client,
    http,
    serving,
    words,
)

HELLO = [{"role": "user", "content": "say hello to the world"}]


def _hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def test_completion_carries_text_usage_and_fingerprint():
    with serving(FixedLatencyResponder(0.0), name="echo-1", fingerprint="fp-abc") as url:
        out = client(url).chat.completions.create(
            model="echo-1",
            messages=[{"role": "system", "content": "be brief"}, *HELLO],
            max_tokens=2,
        )
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.model == "echo-1" and out.system_fingerprint == "fp-abc"
    [choice] = out.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "say hello"  # the echo, cut at max_tokens words
    assert choice.finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (7, 2)
    assert out.usage.total_tokens == 9


def test_n_samples_are_separate_requests_with_successive_seeds():
    responder = ScriptedResponder(lambda r: f"seed {r.params.seed}")
    with serving(responder) as url:
        out = client(url).chat.completions.create(
            model="test-model", messages=HELLO, n=3, seed=5, temperature=0.7
        )
    assert [c.message.content for c in out.choices] == ["seed 5", "seed 6", "seed 7"]
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert all(r.params.n == 1 for r in responder.requests)
    assert out.usage.completion_tokens == 6


def test_absent_fields_take_openai_defaults_and_max_completion_tokens_counts():
    responder = ScriptedResponder(lambda r: "ok")
    with serving(responder) as url:
        sdk = client(url)
        sdk.chat.completions.create(model="test-model", messages=HELLO)
        sdk.chat.completions.create(model="test-model", messages=HELLO, max_completion_tokens=9)
    assert responder.requests[0].params == GenerationParams(
        max_new_tokens=SERVE.max_tokens, temperature=1.0, top_p=1.0, seed=0, n=1
    )
    assert responder.requests[1].params.max_new_tokens == 9
    assert responder.requests[0].messages == tuple(HELLO)


def test_streaming_is_rejected_with_400():
    with serving(FixedLatencyResponder(0.0)) as url:
        with pytest.raises(openai.BadRequestError, match="stream"):
            client(url).chat.completions.create(model="test-model", messages=HELLO, stream=True)


def test_unknown_model_is_404_naming_the_served_model():
    with serving(FixedLatencyResponder(0.0), name="base") as url:
        with pytest.raises(openai.NotFoundError, match="serves 'base'") as exc:
            client(url).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert exc.value.code == "model_not_found"


BAD_BODIES = [
    b'{"model": "test-model", "messages": [',
    b"[]",
    {"model": "test-model"},
    {"model": "test-model", "messages": []},
    {"model": "test-model", "messages": [{"role": "user", "content": 3}]},
    {"model": "test-model", "messages": HELLO, "temperature": "hot"},
    {"model": "test-model", "messages": HELLO, "n": 0},
]


def test_bad_bodies_are_400_in_openai_error_shape():
    with serving(FixedLatencyResponder(0.0)) as url:
        for body in BAD_BODIES:
            status, payload = http(url, "POST", "/v1/chat/completions", body)
            assert status == 400, body
            assert payload["error"]["type"] == "invalid_request_error"
            assert payload["error"]["message"].startswith("invalid request: ")
            assert "code" in payload["error"]
        _, stats = http(url, "GET", "/stats")
    assert stats["requests"] == len(BAD_BODIES) and stats["completed"] == 0


def test_models_and_health():
    with serving(FixedLatencyResponder(0.0), name="sft") as url:
        assert [m.id for m in client(url).models.list()] == ["sft"]
        assert http(url, "GET", "/health") == (200, {"status": "ok"})


# --------------------------------------------------------------------------------------------
# Faults


def test_429_carries_retry_after_in_seconds_and_ms():
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.25)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        with pytest.raises(openai.RateLimitError) as exc:
            client(url).chat.completions.create(model="test-model", messages=HELLO)
    headers = exc.value.response.headers
    assert float(headers["retry-after"]) == 0.25
    assert float(headers["retry-after-ms"]) == 250
    assert exc.value.code == "rate_limit_exceeded"


def test_500_fault_is_an_internal_server_error():
    with serving(FixedLatencyResponder(0.0), faults=FaultConfig(rate_500=1.0)) as url:
        with pytest.raises(openai.InternalServerError):
            client(url).chat.completions.create(model="test-model", messages=HELLO)


def test_timeout_fault_hangs_past_the_client_timeout():
    # An hour: the client's 0.5 s timeout is what ends the call, however loaded the machine.
    faults = FaultConfig(rate_timeout=1.0, hang_s=3600.0)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        with pytest.raises(openai.APITimeoutError):
            client(url, timeout=0.5).chat.completions.create(model="test-model", messages=HELLO)
        # The hung handler notices the client left, so it does not hold the server (leaving
        # the block shuts the server down, which would wait on a handler still hanging).
        assert http(url, "GET", "/health")[0] == 200
        _, stats = http(url, "GET", "/stats")
    assert stats["faults"]["timeout"] == 1 and stats["completed"] == 0


def test_malformed_fault_sends_200_json_that_does_not_parse():
    with serving(FixedLatencyResponder(0.0), faults=FaultConfig(rate_malformed=1.0)) as url:
        # The SDK lets the decoder's error through: it is not an openai.APIError.
        with pytest.raises(json.JSONDecodeError):
            client(url).chat.completions.create(model="test-model", messages=HELLO)
        raw = client(url).chat.completions.with_raw_response.create(
            model="test-model", messages=HELLO
        )
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/json"
    assert raw.http_response.text.startswith('{"id": "chatcmpl-')


def test_slow_fault_answers_normally_after_the_delay():
    faults = FaultConfig(rate_slow=1.0, slow_s=0.2)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        out = client(url).chat.completions.create(model="test-model", messages=HELLO)
        _, stats = http(url, "GET", "/stats")
    assert out.choices[0].message.content == HELLO[0]["content"]
    assert stats["completed"] == 1 and stats["faults"]["slow"] == 1


def test_slow_fault_delays_the_answer():
    # The delay is shown without timing it: a slow fault of an hour outlasts a 0.5 s client.
    # (The slow handler sleeps without watching the client, so the server holds it until
    # shutdown cancels it.)
    faults = FaultConfig(rate_slow=1.0, slow_s=3600.0)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        with pytest.raises(openai.APITimeoutError):
            client(url, timeout=0.5).chat.completions.create(model="test-model", messages=HELLO)
        _, stats = http(url, "GET", "/stats")
    assert stats["faults"]["slow"] == 1 and stats["completed"] == 0


def test_fault_draws_are_seeded_and_mixed():
    faults = FaultConfig(rate_429=0.3, rate_500=0.3, seed=7)

    def outcomes() -> list[str]:
        seen = []
        with serving(FixedLatencyResponder(0.0), faults=faults) as url:
            sdk = client(url)
            for _ in range(30):
                try:
                    sdk.chat.completions.create(model="test-model", messages=HELLO)
                    seen.append("ok")
                except openai.APIStatusError as exc:
                    seen.append(str(exc.status_code))
            _, stats = http(url, "GET", "/stats")
        assert stats["faults"]["429"] == seen.count("429")
        assert stats["faults"]["500"] == seen.count("500")
        assert stats["completed"] == seen.count("ok")
        return seen

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {"ok", "429", "500"}


@pytest.mark.parametrize(
    "rates",
    [{"rate_429": 0.6, "rate_500": 0.5}, {"rate_slow": -0.1}, {"rate_timeout": 1.5}],
)
def test_fault_rates_are_validated(rates):
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(**rates)


def test_stats_count_requests_faults_and_distinct_request_hashes():
    faults = FaultConfig(rate_500=1.0)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        sdk = client(url)
        other = [{"role": "user", "content": "something else"}]
        for messages, extra in ((HELLO, {}), (HELLO, {"temperature": 1.0}), (other, {})):
            with pytest.raises(openai.InternalServerError):
                sdk.chat.completions.create(model="test-model", messages=messages, **extra)
        _, stats = http(url, "GET", "/stats")
        _, after_reset = http(url, "POST", "/stats/reset")
        _, fresh = http(url, "GET", "/stats")
    assert stats["requests"] == 3 and stats["completed"] == 0
    assert stats["faults"] == {"429": 0, "500": 3, "timeout": 0, "malformed": 0, "slow": 0}
    canonical = {
        "model": "test-model",
        "messages": HELLO,
        "max_tokens": SERVE.max_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 0,
        "n": 1,
    }
    # An explicit default is the same request as an absent field.
    assert Counter(stats["request_hashes"]) == {
        _hash(canonical): 2,
        _hash({**canonical, "messages": other}): 1,
    }
    assert stats["request_hashes"][0] == _hash(canonical)
    for zeroed in (after_reset, fresh):
        assert zeroed["requests"] == zeroed["completed"] == 0
        assert zeroed["request_hashes"] == [] and set(zeroed["faults"].values()) == {0}


def test_stats_keep_only_the_last_window_of_request_hashes():
    config = SERVE.model_copy(update={"stats_window": 3})
    with serving(FixedLatencyResponder(0.0), config=config) as url:
        sdk = client(url)
        asked = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
        for messages in asked:
            sdk.chat.completions.create(model="test-model", messages=messages, max_tokens=4)
        _, stats = http(url, "GET", "/stats")
    hashes = [
        _hash(
            {
                "model": "test-model",
                "messages": m,
                "max_tokens": 4,
                "temperature": 1.0,
                "top_p": 1.0,
                "seed": 0,
                "n": 1,
            }
        )
        for m in asked
    ]
    # Counters cover every request; the hashes only the most recent, oldest first.
    assert stats["requests"] == stats["completed"] == 5
    assert stats["request_hashes"] == hashes[2:]
    assert stats["request_hashes_window"] == 3


def test_a_failing_responder_is_a_500():
    def boom(request: ChatRequest) -> str:
        raise RuntimeError("out of memory")

    with serving(ScriptedResponder(boom)) as url:
        with pytest.raises(openai.InternalServerError, match="out of memory"):
            client(url).chat.completions.create(model="test-model", messages=HELLO)


# --------------------------------------------------------------------------------------------
# Access and limits


KEY = "test-key-0123456789"


def test_a_key_is_required_on_every_route_when_one_is_set():
    responder = ScriptedResponder(lambda r: "ok")
    with serving(responder, access=Access.loopback(api_key=KEY)) as url:
        routes = [
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("GET", "/health"),
            ("GET", "/stats"),
            ("POST", "/stats/reset"),
            ("GET", "/no/such/route"),
        ]
        chat = {"model": "test-model", "messages": HELLO}
        for method, path in routes:
            for auth in (None, "Bearer wrong-key", f"Basic {KEY}", KEY, f"Bearer {KEY}x"):
                headers = {"Authorization": auth} if auth else {}
                status, payload = http(url, method, path, chat, headers=headers)
                assert status == 401, (path, auth)
                assert payload["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client(url, api_key="wrong").chat.completions.create(model="test-model", messages=HELLO)
        out = client(url, api_key=KEY).chat.completions.create(model="test-model", messages=HELLO)
        assert http(url, "GET", "/health", headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        _, stats = http(url, "GET", "/stats", headers={"Authorization": f"bearer {KEY}"})
    assert out.choices[0].message.content == "ok"
    # Refused requests never reach the handler, let alone the model.
    assert len(responder.requests) == 1 and stats["requests"] == 1


def test_a_host_header_the_server_is_not_bound_under_is_403():
    responder = ScriptedResponder(lambda r: "ok")
    with serving(responder) as url:
        port = url.split(":")[2].split("/")[0]
        chat = {"model": "test-model", "messages": HELLO}
        # A DNS-rebinding page reaches 127.0.0.1 under its own name.
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
            status, payload = http(url, "POST", "/v1/chat/completions", chat, {"Host": host})
            assert status == 403, host
            assert payload["error"]["code"] == "host_not_allowed"
            assert http(url, "GET", "/health", headers={"Host": host})[0] == 403
        for host in (
            f"localhost:{port}",
            f"LOCALHOST:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
        ):
            assert http(url, "GET", "/health", headers={"Host": host})[0] == 200, host
        # A Host header that does not parse is refused, not guessed at.
        assert http(url, "GET", "/health", headers={"Host": "localhost:80x"})[0] == 403
    assert responder.requests == []


def test_a_cross_site_origin_is_403():
    responder = ScriptedResponder(lambda r: "ok")
    with serving(responder) as url:
        root = url.removesuffix("/v1")
        chat = {"model": "test-model", "messages": HELLO}
        for origin in ("https://attacker.example", "null"):
            status, payload = http(url, "POST", "/stats/reset", headers={"Origin": origin})
            assert status == 403 and payload["error"]["code"] == "origin_not_allowed"
            status, _ = http(url, "POST", "/v1/chat/completions", chat, {"Origin": origin})
            assert status == 403
        # A page served from the server's own address may call it.
        status, _ = http(url, "POST", "/v1/chat/completions", chat, {"Origin": root})
    assert status == 200 and len(responder.requests) == 1


def test_hosts_accepted_for_a_bind_address():
    lan = Access.for_bind("192.168.1.5", "192.168.1.5", ["box.lan"], KEY)
    assert all(lan.allows_host(h) for h in ("192.168.1.5", "box.lan", "localhost", "::1"))
    assert not any(lan.allows_host(h) for h in ("10.0.0.7", "attacker.example", "", None))
    # Every interface: any address of this machine, but a DNS name only if listed.
    wild = Access.for_bind("0.0.0.0", "0.0.0.0", [], KEY)
    assert all(wild.allows_host(h) for h in ("10.0.0.7", "192.168.1.5", "fe80::1", "localhost"))
    assert not wild.allows_host("attacker.example")
    named = Access.for_bind("localhost", "127.0.0.1", ["Box.LAN."], None)
    assert named.allows_host("box.lan") and not named.allows_host("10.0.0.7")


def test_a_chat_body_must_be_json_or_it_is_415():
    responder = ScriptedResponder(lambda r: "ok")
    body = json.dumps({"model": "test-model", "messages": HELLO}).encode()
    with serving(responder) as url:
        # Bodies a web page may send cross-site without asking first (CORS "simple" requests).
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            status, payload = http(
                url, "POST", "/v1/chat/completions", body, {"Content-Type": content_type}
            )
            assert status == 415, content_type
            assert content_type in payload["error"]["message"]
        bare = httpx.post(url + "/chat/completions", content=body)  # no Content-Type at all
        assert bare.status_code == 415
        status, _ = http(
            url,
            "POST",
            "/v1/chat/completions",
            body,
            {"Content-Type": "application/json; charset=utf-8"},
        )
        _, stats = http(url, "GET", "/stats")
    assert status == 200 and len(responder.requests) == 1
    assert stats["requests"] == 5 and stats["completed"] == 1


def test_a_body_over_the_limit_is_413_declared_or_streamed():
    config = SERVE.model_copy(update={"max_body_bytes": 2048})
    responder = ScriptedResponder(lambda r: "ok")
    small = {"model": "test-model", "messages": HELLO}
    padding = 2048 - len(json.dumps(small).encode())
    at_limit = json.dumps(small).encode() + b" " * padding  # JSON allows trailing space
    over = at_limit + b" "
    with serving(responder, config=config) as url:
        status, payload = http(url, "POST", "/v1/chat/completions", over)
        assert status == 413 and "2048 bytes" in payload["error"]["message"]
        # Chunked, with no Content-Length to refuse it by: counted as it arrives.
        chunks = [over[i : i + 512] for i in range(0, len(over), 512)]
        streamed = httpx.post(
            url + "/chat/completions",
            content=iter(chunks),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        status, _ = http(url, "POST", "/v1/chat/completions", at_limit)
    assert status == 200 and len(responder.requests) == 1


def test_max_tokens_above_the_cap_is_400_and_the_cap_is_the_default():
    responder = ScriptedResponder(lambda r: "ok")
    cap = SERVE.max_tokens
    with serving(responder) as url:
        sdk = client(url)
        with pytest.raises(openai.BadRequestError, match=f"allows at most {cap}") as exc:
            sdk.chat.completions.create(model="test-model", messages=HELLO, max_tokens=cap + 1)
        assert exc.value.param == "max_tokens"
        with pytest.raises(openai.BadRequestError, match="max_completion_tokens is") as exc:
            sdk.chat.completions.create(
                model="test-model", messages=HELLO, max_completion_tokens=10**9
            )
        assert exc.value.param == "max_completion_tokens"
        sdk.chat.completions.create(model="test-model", messages=HELLO, max_tokens=cap)
        sdk.chat.completions.create(model="test-model", messages=HELLO)
    assert [r.params.max_new_tokens for r in responder.requests] == [cap, cap]


def test_prompt_and_max_tokens_beyond_the_context_is_400():
    # Tokens are words here: a 40-word prompt leaves 10 of a 50-token context.
    config = SERVE.model_copy(update={"context_tokens": 50, "max_tokens": 20})
    responder = ScriptedResponder(lambda r: "ok")
    forty = [{"role": "user", "content": "word " * 40}]
    with serving(responder, config=config) as url:
        sdk = client(url)
        with pytest.raises(openai.BadRequestError, match="exceeds the context of 50") as exc:
            sdk.chat.completions.create(model="test-model", messages=forty, max_tokens=11)
        assert exc.value.code == "context_length_exceeded"
        assert "prompt (40 tokens) + max_tokens (11)" in exc.value.message
        sdk.chat.completions.create(model="test-model", messages=forty, max_tokens=10)
        # Asked for no length: as much as the context leaves (10), not the cap (20).
        sdk.chat.completions.create(model="test-model", messages=forty)
        for n in (2, 3):  # each of n samples must fit, not their sum
            sdk.chat.completions.create(model="test-model", messages=forty, max_tokens=10, n=n)
        fifty = [{"role": "user", "content": "word " * 50}]
        with pytest.raises(openai.BadRequestError, match=r"prompt \(50 tokens\) exceeds"):
            sdk.chat.completions.create(model="test-model", messages=fifty)
    assert [r.params.max_new_tokens for r in responder.requests] == [10] * 7


def test_stats_reset_is_post_only_and_needs_the_key():
    with serving(FixedLatencyResponder(0.0), access=Access.loopback(api_key=KEY)) as url:
        auth = {"Authorization": f"Bearer {KEY}"}
        client(url, api_key=KEY).chat.completions.create(model="test-model", messages=HELLO)
        assert http(url, "GET", "/stats/reset", headers=auth)[0] == 405
        assert http(url, "POST", "/stats/reset")[0] == 401
        assert http(url, "GET", "/stats", headers=auth)[1]["requests"] == 1  # not reset
        status, reset = http(url, "POST", "/stats/reset", headers=auth)
    assert status == 200 and reset["requests"] == 0


# --------------------------------------------------------------------------------------------
# MicroBatcher


def _request(i: int, temperature: float = 0.0) -> ChatRequest:
    return ChatRequest(
        id=f"r{i}",
        messages=({"role": "user", "content": f"question {i}"},),
        params=gen_params(8, temperature=temperature),
    )


def _batcher(backend: RecordingBackend, max_batch: int, max_wait_ms: float) -> MicroBatcher:
    return MicroBatcher(backend, max_batch, max_wait_ms, count_prompt=words)


async def _until(event: threading.Event) -> None:
    """Wait on the event loop, without blocking it, for a worker thread to set ``event``."""
    opened = await asyncio.get_running_loop().run_in_executor(None, event.wait, 120)
    assert opened, "the backend never started a batch"


def test_concurrent_requests_share_batches_of_at_most_max_batch():
    backend = RecordingBackend(delay_s=0.05)

    async def go() -> list[str]:
        batcher = _batcher(backend, max_batch=4, max_wait_ms=20)
        try:
            answers = await asyncio.gather(*(batcher.respond(_request(i)) for i in range(8)))
        finally:
            await batcher.aclose()
        return [a.request_id + ":" + a.text for a in answers]

    assert asyncio.run(go()) == [f"r{i}:answer to r{i}" for i in range(8)]
    assert [len(b) for b in backend.batches] == [4, 4]
    assert backend.overlaps == 0
    # One worker thread, not the event loop's.
    assert len(backend.threads) == 1
    assert threading.current_thread().name not in backend.threads


def test_requests_with_different_params_never_share_a_batch():
    backend = RecordingBackend(delay_s=0.05)

    async def go() -> None:
        batcher = _batcher(backend, max_batch=8, max_wait_ms=20)
        try:
            await asyncio.gather(
                *(batcher.respond(_request(i, temperature=0.7 * (i % 2))) for i in range(8))
            )
        finally:
            await batcher.aclose()

    asyncio.run(go())
    assert sorted(len(b) for b in backend.batches) == [4, 4]
    assert all(len({r.params for r in batch}) == 1 for batch in backend.batches)


def test_requests_arriving_while_the_model_is_busy_join_the_next_batch():
    gate = threading.Event()
    backend = RecordingBackend(delay_s=0.0, gate=gate)

    async def go() -> None:
        batcher = _batcher(backend, max_batch=16, max_wait_ms=5)
        try:
            first = asyncio.ensure_future(batcher.respond(_request(0)))
            await _until(backend.generating)  # the first batch is generating
            rest = [asyncio.ensure_future(batcher.respond(_request(i))) for i in range(1, 4)]
            await asyncio.sleep(0.05)  # past the new batch's max_wait: it is due, and waits
            rest.append(asyncio.ensure_future(batcher.respond(_request(4))))
            await asyncio.sleep(0)  # let the last request join before the model frees up
            gate.set()
            await asyncio.gather(first, *rest)
        finally:
            gate.set()
            await batcher.aclose()

    asyncio.run(go())
    assert [[r.id for r in b] for b in backend.batches] == [["r0"], ["r1", "r2", "r3", "r4"]]


def test_a_failed_batch_fails_every_waiter_and_the_loop_stays_responsive():
    gate = threading.Event()
    backend = RecordingBackend(delay_s=0.0, error=RuntimeError("CUDA error"), gate=gate)
    # Due only when full (the wait is an hour), so the three requests share one batch.
    batcher = _batcher(backend, max_batch=3, max_wait_ms=3_600_000)
    try:
        with serving(batcher) as url:
            sdk = client(url, timeout=120)
            with ThreadPoolExecutor(3) as pool:
                calls = [
                    pool.submit(sdk.chat.completions.create, model="test-model", messages=HELLO)
                    for _ in range(3)
                ]
                assert backend.generating.wait(timeout=120)
                # The batch is generating on the worker thread, held there by the gate: the
                # event loop still answers.
                assert http(url, "GET", "/health")[0] == 200
                assert not gate.is_set() and len(backend.batches) == 1
                gate.set()
                for call in calls:
                    with pytest.raises(openai.InternalServerError, match="CUDA error"):
                        call.result()
    finally:
        gate.set()
    assert [len(b) for b in backend.batches] == [3]


SERVED_PROMPTS = ["hi", "Name a colour.", "2+2?", "Write a poem about the sea.", "Why?"]


def _prompt(text: str) -> ChatRequest:
    return ChatRequest("p", ({"role": "user", "content": text},), gen_params(1))


def _direct_and_served(llm, responder, max_tokens, then=None, config=SERVE):
    """The same greedy prompts answered by ``llm.generate`` and, all at once, through a server
    on ``responder``; ``then(sdk)`` runs while the server is still up."""
    asked = list(zip(SERVED_PROMPTS, max_tokens, strict=True))
    expected = llm.generate(
        [
            ChatRequest(
                id=str(i),
                messages=({"role": "user", "content": p},),
                params=gen_params(n),
            )
            for i, (p, n) in enumerate(asked)
        ],
        progress=False,
    )
    with serving(responder, "tiny", llm.fingerprint, config=config) as url:
        sdk = client(url, timeout=120)
        with ThreadPoolExecutor(len(asked)) as pool:
            outs = list(
                pool.map(
                    lambda pn: sdk.chat.completions.create(
                        model="tiny",
                        messages=[{"role": "user", "content": pn[0]}],
                        max_tokens=pn[1],
                        temperature=0.0,
                    ),
                    asked,
                )
            )
        if then is not None:
            then(sdk)
    return expected, outs


def test_serving_the_tiny_model_through_the_batcher(tiny_model_dir):
    llm = TransformersLLM(
        tiny_model_dir, 4, "cpu", name="tiny", engine="continuous", precision="auto"
    )
    count = prompt_counter(llm)
    batcher = MicroBatcher(llm, max_batch=4, max_wait_ms=50, count_prompt=count)
    expected, outs = _direct_and_served(llm, batcher, [6] * len(SERVED_PROMPTS))
    assert [o.choices[0].message.content for o in outs] == [e.text for e in expected]
    assert [o.usage.completion_tokens for o in outs] == [e.completion_tokens for e in expected]
    assert all(o.system_fingerprint == llm.fingerprint for o in outs)
    # The server's context check counts a prompt as the model does.
    assert [count(_prompt(p)) for p in SERVED_PROMPTS] == [o.usage.prompt_tokens for o in outs]


def test_serving_the_tiny_model_with_continuous_batching(tiny_model_dir):
    from complexif.llm.responders import ContinuousResponder

    llm = TransformersLLM(
        tiny_model_dir, 2, "cpu", name="tiny", engine="continuous", precision="auto"
    )
    assert llm.engine == "continuous"

    def too_long(sdk) -> None:
        with pytest.raises(openai.BadRequestError, match="exceeds the context of 256") as exc:
            sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=250)
        assert exc.value.code == "context_length_exceeded"

    # More concurrent requests than slots: they queue and join as slots free up.
    config = SERVE.model_copy(update={"context_tokens": 256, "max_tokens": 255})
    responder = ContinuousResponder(llm, context_tokens=config.context_tokens)
    expected, outs = _direct_and_served(
        llm, responder, [6, 3, 9, 5, 7], then=too_long, config=config
    )
    assert [o.choices[0].message.content for o in outs] == [e.text for e in expected]
    assert [o.usage.completion_tokens for o in outs] == [e.completion_tokens for e in expected]
    counted = [responder.prompt_tokens(_prompt(p)) for p in SERVED_PROMPTS]
    assert [o.usage.prompt_tokens for o in outs] == counted
    assert not llm.batcher.busy


# --------------------------------------------------------------------------------------------
# CLI


@contextlib.contextmanager
def _serve_cli(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> Iterator[list[str]]:
    """``complexif serve`` in a subprocess (run in ``cwd``) until it prints ``serving ...``:
    yields the lines it printed up to then; terminates it when the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "complexif.cli", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        seen: list[str] = []
        while not seen or not seen[-1].startswith("serving "):
            seen.append(lines.get(timeout=120))
        yield seen
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_cli_serves_the_echo_backend_until_terminated():
    with _serve_cli("serve --backend=echo --port=0 --name=x".split()) as seen:
        assert seen[-1].startswith("serving x at http://127.0.0.1:"), seen
        url = seen[-1].split(" at ")[1].strip()
        assert http(url, "GET", "/health") == (200, {"status": "ok"})
        out = client(url).chat.completions.create(model="x", messages=HELLO)
        assert out.choices[0].message.content == HELLO[0]["content"]


def _params_file(tmp_path, **overrides) -> str:
    """The shipped params.yaml with ``overrides`` merged in, written under ``tmp_path``."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(deep_merge(raw, overrides)))
    return str(path)


def test_cli_reports_a_missing_model_directory(tmp_path, capsys):
    params = _params_file(tmp_path, paths={"models_dir": str(tmp_path / "models")})
    assert main(["serve", "--params", str(params), "--model", "sft"]) == 2
    missing = tmp_path / "models" / "sft"
    expected = f"error: model directory {missing} not found; run dvc repro first"
    assert capsys.readouterr().err.strip() == expected


def test_cli_rejects_fault_rates_summing_above_one(capsys):
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, "--fault-429", "0.6", "--fault-500", "0.6"]) == 2
    assert capsys.readouterr().err.startswith("error: fault rates sum to 1.2")


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "eighty", "80.5"])
def test_cli_rejects_a_bad_port_in_one_line(port, capsys):
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, f"--port={port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --port '{port}': a port is an integer in 0-65535")
    assert err.count("\n") == 1


def test_cli_reports_an_address_in_use_in_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
        assert main([*argv, "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


def _fake_run(calls: list, then=None):
    """Stands in for ``server.run``: records the app (and tries it, with ``then(url)``)."""

    def run(app, *rest) -> None:
        calls.append(app)
        if then is not None:
            with server.serve_in_thread(app) as url:
                then(url)

    return run


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_cli_refuses_to_serve_beyond_loopback_without_a_key(host, monkeypatch, capsys):
    monkeypatch.delenv(SERVE.api_key_env, raising=False)
    monkeypatch.chdir(REPO_ROOT / "tests")  # where no .env can hold a key
    calls: list = []
    monkeypatch.setattr(server, "run", _fake_run(calls))
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, "--host", host, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {host} ") and f"${SERVE.api_key_env}" in err
    assert err.count("\n") == 1 and calls == []


def test_cli_takes_the_key_from_the_named_variable_and_checks_it(monkeypatch, capsys):
    monkeypatch.setenv("MY_SERVE_KEY", KEY)

    def check(url: str) -> None:
        assert http(url, "GET", "/health")[0] == 401
        assert http(url, "GET", "/health", headers={"Authorization": f"Bearer {KEY}"})[0] == 200

    calls: list = []
    monkeypatch.setattr(server, "run", _fake_run(calls, then=check))
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, "--port", "0", "--api-key-env", "MY_SERVE_KEY"]) == 0
    assert len(calls) == 1 and capsys.readouterr().err == ""  # loopback: no warning


def test_cli_rejects_a_key_pasted_in_place_of_its_variable_name(capsys):
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, "--port", "0", "--api-key-env", "sk-proj-abc123"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --api-key-env") and err.count("\n") == 1
    assert "abc123" not in err  # a pasted key is never echoed


def test_cli_serves_beyond_loopback_with_a_key_after_a_warning():
    env = {**os.environ, "COMPLEXIF_TEST_SERVE_KEY": KEY}
    argv = "serve --backend=echo --host=0.0.0.0 --port=0 --name=x"
    with _serve_cli([*argv.split(), "--api-key-env", "COMPLEXIF_TEST_SERVE_KEY"], env) as seen:
        assert [line for line in seen if line.startswith("warning: ")] == [seen[0]], seen
        assert "reachable from other machines" in seen[0]
        port = seen[-1].rsplit(":", 1)[1].split("/")[0]
        url = f"http://127.0.0.1:{port}/v1"
        assert http(url, "GET", "/health")[0] == 401
        with pytest.raises(openai.AuthenticationError):
            client(url).chat.completions.create(model="x", messages=HELLO)
        out = client(url, api_key=KEY).chat.completions.create(model="x", messages=HELLO)
        assert out.choices[0].message.content == HELLO[0]["content"]


def test_requests_of_clients_that_hung_up_never_reach_the_model():
    # One request per batch, and the model held busy by a gate: a killed or timed-out client's
    # queued requests must be dropped, not generated while a resumed run waits behind them.
    gate = threading.Event()
    backend = RecordingBackend(delay_s=0.0, gate=gate)
    try:
        with serving(_batcher(backend, max_batch=1, max_wait_ms=0)) as url:
            sdk = client(url, timeout=0.5)

            def ask(i: int) -> None:
                with pytest.raises(openai.APITimeoutError):
                    sdk.chat.completions.create(
                        model="test-model", messages=[{"role": "user", "content": f"q{i}"}]
                    )

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(ask, range(4)))
            # The server notices each hang-up at its next poll of the connection.
            deadline = time.monotonic() + 120
            while http(url, "GET", "/stats")[1]["abandoned"] < 4:
                assert time.monotonic() < deadline, "the server never noticed the hang-ups"
                time.sleep(0.05)
            gate.set()
            # Batches run in arrival order: once a later request is answered, the three
            # abandoned ones queued before it have had their turn.
            later = client(url, timeout=120).chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "later"}]
            )
            _, stats = http(url, "GET", "/stats")
    finally:
        gate.set()
    assert later.choices[0].message.content.startswith("answer to chatcmpl-")
    # The first request was already generating when its client left; the other three never ran.
    assert len(backend.batches) == 2 and len(backend.batches[0]) == 1
    assert backend.batches[1][0].messages[0]["content"] == "later"
    assert stats["abandoned"] == 4 and stats["completed"] == 1
