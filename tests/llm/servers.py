"""Helpers for tests that talk to a real loopback server (``complexif.llm.server``)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
from fastapi import FastAPI

from complexif.config import ServeConfig, load_params
from complexif.llm import server
from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.cache import ResponseCache
from complexif.llm.client import LLMClient
from complexif.llm.faults import FaultConfig
from complexif.llm.ledger import FailureLedger
from complexif.llm.server import Access, Responder, serve_in_thread
from tests.conftest import REPO_ROOT

# The shipped ``serve:`` section: test servers run under the limits a user's server has.
SERVE: ServeConfig = load_params(REPO_ROOT / "params.yaml").serve


def words(request: ChatRequest) -> int:
    """The test doubles' token: a whitespace-separated word."""
    return sum(len(m["content"].split()) for m in request.messages)


class ScriptedResponder:
    """Answers with ``fn(request)``: tests decide exactly what the model says (broken JSON, ...).

    Every request it was asked is kept in ``requests``; ``fn`` may raise to make the server fail.
    """

    def __init__(self, fn: Callable[[ChatRequest], str], model: str = "scripted") -> None:
        self.fn = fn
        self.model = model
        self.requests: list[ChatRequest] = []

    async def respond(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        text = self.fn(request)
        return ChatResponse(
            request_id=request.id,
            text=text,
            model=self.model,
            finish_reason="stop",
            prompt_tokens=self.prompt_tokens(request),
            completion_tokens=len(text.split()),
        )

    def prompt_tokens(self, request: ChatRequest) -> int:
        return words(request)


class ScriptedBackend:
    """A fake :class:`BatchBackend` answering ``answer(request)``, for the step runner's tests.

    Every request it got is kept in ``requests``; ``finish(request)`` gives the finish reason
    (``"length"`` stands for an answer cut off at the token limit).
    """

    name = "scripted"
    fingerprint = "fp-scripted"

    def __init__(
        self,
        answer: Callable[[ChatRequest], str],
        finish: Callable[[ChatRequest], str] = lambda request: "stop",
    ) -> None:
        self.answer = answer
        self.finish = finish
        self.requests: list[ChatRequest] = []

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResponse]:
        self.requests.extend(requests)
        return [
            ChatResponse(r.id, self.answer(r), self.name, self.finish(r), 1, 1) for r in requests
        ]


def llm_client(backend: Any, cache_dir: Path, role: str = "teacher") -> LLMClient:
    """The real :class:`LLMClient` over ``backend``: a cache in ``cache_dir``, its own ledger,
    no budget cap and no progress bar."""
    return LLMClient(
        backend,
        role=role,
        meter=UsageMeter({}, budget_usd=None),
        ledger=FailureLedger("test"),
        cache=ResponseCache(cache_dir / "cache.sqlite"),
        chunk_size=16,
        progress=False,
    )


class RecordingBackend:
    """A fake :class:`BatchBackend` that records every batch it is given.

    Each ``generate`` sleeps ``delay_s`` (so concurrent requests pile up behind it) and answers
    ``"answer to <id>"``; ``overlaps`` counts calls that ran while another was still running.
    With a ``gate``, each call first waits until the test opens it: a test then knows a batch is
    generating (``generating`` is set) and decides when it ends, without timing anything.
    """

    name = "recording"
    fingerprint = "fp-recording"

    def __init__(
        self,
        delay_s: float = 0.05,
        error: Exception | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.delay_s = delay_s
        self.error = error
        self.gate = gate
        self.generating = threading.Event()
        self.batches: list[list[ChatRequest]] = []
        self.threads: set[str] = set()
        self.overlaps = 0
        self._busy = threading.Lock()

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResponse]:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            self._busy.acquire()
        try:
            self.batches.append(list(requests))
            self.threads.add(threading.current_thread().name)
            self.generating.set()
            # Generous: a test that fails before opening the gate must not hang the suite.
            if self.gate is not None and not self.gate.wait(timeout=120):
                raise RuntimeError("the test never opened the gate")
            time.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
            return [
                ChatResponse(
                    request_id=r.id,
                    text=f"answer to {r.id}",
                    model=self.name,
                    finish_reason="stop",
                    prompt_tokens=1,
                    completion_tokens=3,
                )
                for r in requests
            ]
        finally:
            self._busy.release()


def build_app(
    responder: Responder,
    model_name: str,
    fingerprint: str = "",
    faults: FaultConfig | None = None,
    *,
    config: ServeConfig = SERVE,
    access: Access | None = None,
) -> FastAPI:
    """:func:`complexif.llm.server.build_app` under the shipped ``serve:`` limits unless told."""
    return server.build_app(
        responder, model_name, fingerprint, faults, config=config, access=access
    )


@contextmanager
def serving(
    responder: Responder,
    name: str = "test-model",
    fingerprint: str = "fp-test",
    faults: FaultConfig | None = None,
    config: ServeConfig = SERVE,
    access: Access | None = None,
) -> Iterator[str]:
    """A real server for ``responder`` on a free loopback port; yields its base URL (…/v1)."""
    app = build_app(responder, name, fingerprint, faults, config=config, access=access)
    with serve_in_thread(app) as url:
        yield url


def client(base_url: str, timeout: float = 10.0, api_key: str = "x") -> openai.OpenAI:
    """The official SDK pointed at a test server, with its own retries off."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)


def http(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A raw request to ``<server root><path>``: status and parsed JSON body (errors too).

    ``body`` is sent as JSON, or as-is when it is already bytes (to send broken bodies);
    ``headers`` add to or replace the JSON content type (``Host`` too).
    """
    root = base_url.removesuffix("/v1")
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        root + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stats(base_url: str) -> dict[str, Any]:
    """The server's ``/stats`` counters (what the tests count calls by)."""
    return http(base_url, "GET", "/stats")[1]
