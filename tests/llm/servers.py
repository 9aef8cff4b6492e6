"""Helpers for tests that talk to a real loopback server (``complexif.llm.server``)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import openai

from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.faults import FaultConfig
from complexif.llm.server import Responder, build_app, serve_in_thread


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
            prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
            completion_tokens=len(text.split()),
        )


class RecordingBackend:
    """A fake :class:`BatchBackend` that records every batch it is given.

    Each ``generate`` sleeps ``delay_s`` (so concurrent requests pile up behind it) and answers
    ``"answer to <id>"``; ``overlaps`` counts calls that ran while another was still running.
    """

    name = "recording"
    fingerprint = "fp-recording"

    def __init__(self, delay_s: float = 0.05, error: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.error = error
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


@contextmanager
def serving(
    responder: Responder,
    name: str = "test-model",
    fingerprint: str = "fp-test",
    faults: FaultConfig | None = None,
) -> Iterator[str]:
    """A real server for ``responder`` on a free loopback port; yields its base URL (…/v1)."""
    with serve_in_thread(build_app(responder, name, fingerprint, faults)) as url:
        yield url


def client(base_url: str, timeout: float = 10.0) -> openai.OpenAI:
    """The official SDK pointed at a test server, with its own retries off."""
    return openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=timeout)


def http(base_url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A raw request to ``<server root><path>``: status and parsed JSON body (errors too).

    ``body`` is sent as JSON, or as-is when it is already bytes (to send broken bodies).
    """
    root = base_url.removesuffix("/v1")
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        root + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stats(base_url: str) -> dict[str, Any]:
    """The server's ``/stats`` counters (what the tests count calls by)."""
    return http(base_url, "GET", "/stats")[1]
