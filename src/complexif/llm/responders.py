"""What answers a served request: a model behind the continuous engine or a micro-batcher, or a
fixed-latency echo.

Both implement :class:`complexif.llm.server.Responder` (``async respond(request)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from complexif.llm.base import (
    BatchBackend,
    ChatRequest,
    ChatResponse,
    GenerationParams,
    InvalidRequest,
)

log = logging.getLogger(__name__)


class FixedLatencyResponder:
    """Answers after a fixed delay with ``text`` or an echo of the last user message.

    A stand-in API with known latency: benchmarks measure the client's concurrency against it,
    and stages dry-run against it with no model. Tokens are whitespace-separated words.
    """

    def __init__(self, latency_s: float, text: str | None = None, model: str = "echo") -> None:
        self.latency_s = latency_s
        self.text = text
        self.model = model

    async def respond(self, request: ChatRequest) -> ChatResponse:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        text = self.text
        if text is None:
            users = [m["content"] for m in request.messages if m["role"] == "user"]
            text = users[-1] if users else ""
        words = text.split()
        finish = "stop"
        if len(words) > request.params.max_new_tokens:
            words = words[: request.params.max_new_tokens]
            text, finish = " ".join(words), "length"
        return ChatResponse(
            request_id=request.id,
            text=text,
            model=self.model,
            finish_reason=finish,
            prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
            completion_tokens=len(words),
        )


@dataclass
class _Batch:
    params: GenerationParams
    items: list[tuple[ChatRequest, asyncio.Future[ChatResponse]]] = field(default_factory=list)
    due: bool = False  # full, or its first request has waited max_wait_ms
    timer: asyncio.TimerHandle | None = None


class MicroBatcher:
    """Collects concurrent requests into batches for a :class:`BatchBackend`.

    A local model answers a batch of 16 barely slower than one request, so requests that arrive
    together should share a ``generate`` call. A batch holds requests with equal
    :class:`GenerationParams` only (one call uses one set), is due when full or when its first
    request has waited ``max_wait_ms``, and keeps taking requests until the model is free to run
    it. Batches run one at a time on one worker thread: the event loop stays responsive and the
    model is never called concurrently. A failed batch fails every request in it.
    """

    def __init__(self, backend: BatchBackend, max_batch: int, max_wait_ms: float):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.backend = backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._open: list[_Batch] = []
        self._running: _Batch | None = None
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def respond(self, request: ChatRequest) -> ChatResponse:
        loop = asyncio.get_running_loop()
        if self._worker is None:
            # Started on first use, so it runs on the serving loop whatever thread that is in.
            self._wakeup = asyncio.Event()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="microbatch")
            self._worker = loop.create_task(self._work())
        future: asyncio.Future[ChatResponse] = loop.create_future()
        batch = next(
            (b for b in self._open if b.params == request.params and len(b.items) < self.max_batch),
            None,
        )
        if batch is None:
            batch = _Batch(request.params)
            batch.timer = loop.call_later(self.max_wait_s, self._mark_due, batch)
            self._open.append(batch)
        batch.items.append((request, future))
        if len(batch.items) >= self.max_batch:
            self._mark_due(batch)
        return await future

    def _mark_due(self, batch: _Batch) -> None:
        batch.due = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while (batch := next((b for b in self._open if b.due), None)) is not None:
                self._open.remove(batch)
                self._running = batch
                await self._run(batch)
                self._running = None

    async def _run(self, batch: _Batch) -> None:
        # Requests whose clients hung up were cancelled while waiting: generate only the rest.
        batch.items = [(r, f) for r, f in batch.items if not f.cancelled()]
        if not batch.items:
            return
        requests = [r for r, _ in batch.items]
        generate = functools.partial(self.backend.generate, requests, progress=False)
        try:
            answers = await asyncio.get_running_loop().run_in_executor(self._executor, generate)
            if len(answers) != len(requests):
                raise RuntimeError(f"backend gave {len(answers)} answers to {len(requests)}")
        except Exception as exc:
            for _, future in batch.items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(batch.items, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    async def aclose(self) -> None:
        """Stop the worker and fail whatever was still waiting (the server is shutting down)."""
        if self._worker is None:
            return
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        for batch in [*self._open, *([self._running] if self._running else [])]:
            if batch.timer is not None:
                batch.timer.cancel()
            for _, future in batch.items:
                if not future.done():
                    future.set_exception(RuntimeError("server shutting down"))
        assert self._executor is not None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._open, self._running = [], None
        self._worker = self._executor = self._wakeup = None


class ContinuousResponder:
    """A local model's continuous batcher, shared by every concurrent request.

    A request joins the running batch at the engine's next step and leaves it as soon as it is
    done, so a short answer never waits for a long one. A request whose client hung up is
    cancelled and frees its slot.
    """

    def __init__(self, llm, context_tokens: int) -> None:
        from complexif.engine.worker import BatcherThread

        self.llm = llm
        llm.batcher.resize(context_tokens)
        self._thread = BatcherThread(llm.batcher)

    async def respond(self, request: ChatRequest) -> ChatResponse:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def deliver(outcome) -> None:
            loop.call_soon_threadsafe(_settle, future, outcome)

        ticket = self._thread.submit(self.llm.seq_request(request), deliver)
        try:
            result = await future
        except asyncio.CancelledError:
            self._thread.cancel(ticket)
            raise
        except ValueError as exc:  # refused by the engine: too long, empty
            raise InvalidRequest(str(exc)) from exc
        return self.llm.response(request, result)

    async def aclose(self) -> None:
        self._thread.close()


def _settle(future: asyncio.Future, outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
