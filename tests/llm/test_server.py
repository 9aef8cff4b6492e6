"""The OpenAI-compatible server, exercised through real sockets and the official SDK."""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import yaml

from complexif.cli import main
from complexif.llm.base import ChatRequest, GenerationParams
from complexif.llm.faults import FaultConfig
from complexif.llm.responders import FixedLatencyResponder, MicroBatcher
from complexif.llm.transformers_backend import TransformersLLM
from tests.conftest import REPO_ROOT, gen_params
from tests.llm.servers import RecordingBackend, ScriptedResponder, client, http, serving

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
        max_new_tokens=256, temperature=1.0, top_p=1.0, seed=0, n=1
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
    faults = FaultConfig(rate_timeout=1.0, hang_s=3.0)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        start = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client(url, timeout=0.5).chat.completions.create(model="test-model", messages=HELLO)
        assert time.monotonic() - start < 2.0
        # The hung handler notices the client left, so it does not hold the server.
        assert http(url, "GET", "/health")[0] == 200


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
    faults = FaultConfig(rate_slow=1.0, slow_s=0.6)
    with serving(FixedLatencyResponder(0.0), faults=faults) as url:
        start = time.monotonic()
        out = client(url).chat.completions.create(model="test-model", messages=HELLO)
        elapsed = time.monotonic() - start
        _, stats = http(url, "GET", "/stats")
    assert elapsed >= 0.6
    assert out.choices[0].message.content == HELLO[0]["content"]
    assert stats["completed"] == 1 and stats["faults"]["slow"] == 1


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
        "max_tokens": 256,
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


def test_a_failing_responder_is_a_500():
    def boom(request: ChatRequest) -> str:
        raise RuntimeError("out of memory")

    with serving(ScriptedResponder(boom)) as url:
        with pytest.raises(openai.InternalServerError, match="out of memory"):
            client(url).chat.completions.create(model="test-model", messages=HELLO)


# --------------------------------------------------------------------------------------------
# MicroBatcher


def _request(i: int, temperature: float = 0.0) -> ChatRequest:
    return ChatRequest(
        id=f"r{i}",
        messages=({"role": "user", "content": f"question {i}"},),
        params=gen_params(8, temperature=temperature),
    )


def test_concurrent_requests_share_batches_of_at_most_max_batch():
    backend = RecordingBackend(delay_s=0.05)

    async def go() -> list[str]:
        batcher = MicroBatcher(backend, max_batch=4, max_wait_ms=20)
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
        batcher = MicroBatcher(backend, max_batch=8, max_wait_ms=20)
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
    backend = RecordingBackend(delay_s=0.3)

    async def go() -> None:
        batcher = MicroBatcher(backend, max_batch=16, max_wait_ms=5)
        try:
            first = asyncio.ensure_future(batcher.respond(_request(0)))
            await asyncio.sleep(0.05)  # the first batch is generating
            rest = [asyncio.ensure_future(batcher.respond(_request(i))) for i in range(1, 4)]
            await asyncio.sleep(0.05)
            rest.append(asyncio.ensure_future(batcher.respond(_request(4))))
            await asyncio.gather(first, *rest)
        finally:
            await batcher.aclose()

    asyncio.run(go())
    assert [len(b) for b in backend.batches] == [1, 4]


def test_a_failed_batch_fails_every_waiter_and_the_loop_stays_responsive():
    backend = RecordingBackend(delay_s=1.0, error=RuntimeError("CUDA error"))
    with serving(MicroBatcher(backend, max_batch=4, max_wait_ms=100)) as url:
        sdk = client(url)
        with ThreadPoolExecutor(3) as pool:
            calls = [
                pool.submit(sdk.chat.completions.create, model="test-model", messages=HELLO)
                for _ in range(3)
            ]
            time.sleep(0.4)  # the batch is now generating on the worker thread
            start = time.monotonic()
            assert http(url, "GET", "/health")[0] == 200
            assert time.monotonic() - start < 0.2
            for call in calls:
                with pytest.raises(openai.InternalServerError, match="CUDA error"):
                    call.result()
    assert [len(b) for b in backend.batches] == [3]


SERVED_PROMPTS = ["hi", "Name a colour.", "2+2?", "Write a poem about the sea.", "Why?"]


def _direct_and_served(llm, responder, max_tokens, then=None):
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
    with serving(responder, "tiny", llm.fingerprint) as url:
        sdk = client(url, timeout=60)
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
    expected, outs = _direct_and_served(
        llm, MicroBatcher(llm, max_batch=4, max_wait_ms=50), [6] * len(SERVED_PROMPTS)
    )
    assert [o.choices[0].message.content for o in outs] == [e.text for e in expected]
    assert [o.usage.completion_tokens for o in outs] == [e.completion_tokens for e in expected]
    assert all(o.system_fingerprint == llm.fingerprint for o in outs)


def test_serving_the_tiny_model_with_continuous_batching(tiny_model_dir):
    from complexif.llm.responders import ContinuousResponder

    llm = TransformersLLM(
        tiny_model_dir, 2, "cpu", name="tiny", engine="continuous", precision="auto"
    )
    assert llm.engine == "continuous"

    def too_long(sdk) -> None:
        with pytest.raises(openai.BadRequestError, match="exceeds the context of 256"):
            sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=300)

    # More concurrent requests than slots: they queue and join as slots free up.
    responder = ContinuousResponder(llm, context_tokens=256)
    expected, outs = _direct_and_served(llm, responder, [6, 3, 9, 5, 7], then=too_long)
    assert [o.choices[0].message.content for o in outs] == [e.text for e in expected]
    assert [o.usage.completion_tokens for o in outs] == [e.completion_tokens for e in expected]
    assert not llm.batcher.busy


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_serves_the_echo_backend_until_terminated():
    proc = subprocess.Popen(
        [sys.executable, "-m", "complexif.cli", *"serve --backend=echo --port=0 --name=x".split()],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        seen: list[str] = []
        while not seen or not seen[-1].startswith("serving "):
            seen.append(lines.get(timeout=30))
        assert seen[-1].startswith("serving x at http://127.0.0.1:"), seen
        url = seen[-1].split(" at ")[1].strip()
        assert http(url, "GET", "/health") == (200, {"status": "ok"})
        out = client(url).chat.completions.create(model="x", messages=HELLO)
        assert out.choices[0].message.content == HELLO[0]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_reports_a_missing_model_directory(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["paths"]["models_dir"] = str(tmp_path / "models")
    params.write_text(yaml.safe_dump(raw))
    assert main(["serve", "--params", str(params), "--model", "sft"]) == 2
    missing = tmp_path / "models" / "sft"
    expected = f"error: model directory {missing} not found; run dvc repro first"
    assert capsys.readouterr().err.strip() == expected


def test_cli_rejects_fault_rates_summing_above_one(capsys):
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--backend", "echo"]
    assert main([*argv, "--fault-429", "0.6", "--fault-500", "0.6"]) == 2
    assert capsys.readouterr().err.startswith("error: fault rates sum to 1.2")


def test_requests_of_clients_that_hung_up_never_reach_the_model():
    # One request per batch, one second each: a killed or timed-out client's queued requests
    # must be dropped, not generated while a resumed run waits behind them.
    backend = RecordingBackend(delay_s=1.0)
    with serving(MicroBatcher(backend, max_batch=1, max_wait_ms=0)) as url:
        sdk = client(url, timeout=0.3)

        def ask(i: int) -> None:
            with pytest.raises(openai.APITimeoutError):
                sdk.chat.completions.create(
                    model="test-model", messages=[{"role": "user", "content": f"q{i}"}]
                )

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(ask, range(4)))
        time.sleep(2.0)  # the first batch finishes; the other three would run now
        _, stats = http(url, "GET", "/stats")
    assert len(backend.batches) == 1
    assert stats["abandoned"] == 4 and stats["completed"] == 0
