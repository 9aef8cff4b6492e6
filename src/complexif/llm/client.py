"""What stands between a stage and a backend: cache, budget, accounting, ledger, progress.

``LLMClient.generate`` looks every request up in the response cache first; only misses reach the
backend, each distinct request once. Every answer is cached the moment it arrives, so a crashed
or killed run resumes where it stopped. A request that fails for good, or is not started because
the budget is spent, comes back as a :class:`ChatFailure` and goes to the failure ledger.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import threading
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from complexif.llm.accounting import UsageMeter
from complexif.llm.base import (
    AsyncBackend,
    BatchBackend,
    CallFailed,
    ChatFailure,
    ChatRequest,
    ChatResponse,
    ChatResult,
    FatalBackendError,
)
from complexif.llm.cache import Origin, ResponseCache, request_key
from complexif.llm.ledger import FailureLedger
from complexif.llm.progress import UsageBar

T = TypeVar("T")
OnResult = Callable[[str, ChatResult], None]


class LLMClient:
    """An :class:`~complexif.llm.base.LLM` for one role of one stage."""

    def __init__(
        self,
        backend: BatchBackend | AsyncBackend,
        role: str,
        meter: UsageMeter,
        ledger: FailureLedger,
        cache: ResponseCache | None,
        chunk_size: int,
        progress: bool,
    ) -> None:
        self.backend = backend
        self.role = role
        self.meter = meter
        self.ledger = ledger
        self.cache = cache
        self.chunk_size = chunk_size
        self.progress = progress
        self.name = backend.name
        # The cache's model identity: the name plus the weights' hash (local) or the endpoint
        # (API), so one name at two servers, or retrained in place, never shares answers.
        fp = backend.fingerprint
        self.model_id = f"{backend.name}@{fp}" if fp else backend.name
        self.answers = 0  # results returned, cached or not
        # Answers served from the cache that another run wrote: how many, and since when.
        self.earlier_hits: Counter[str] = Counter()
        self._earlier_since: dict[str, float] = {}
        self._loop: _LoopThread | None = None

    def close(self) -> None:
        """Close an async backend's connections and stop its event loop."""
        if self._loop is not None:
            backend: AsyncBackend = self.backend  # type: ignore[assignment]
            try:
                self._loop.run(backend.aclose())
            finally:
                self._loop.stop()
                self._loop = None

    def generate(self, requests: Sequence[ChatRequest], progress: bool = True) -> list[ChatResult]:
        keys = [request_key(self.model_id, r) for r in requests]
        found = self.cache.get_many_with_origin(keys) if self.cache else {}
        done: dict[str, ChatResult] = {k: resp for k, (resp, _) in found.items()}
        todo = {k: r for k, r in zip(keys, requests, strict=True) if k not in done}
        usage = self.meter.role(self.role)
        bar = UsageBar(
            len(requests), f"{self.role}[{self.name}]", usage, self.progress and progress
        )
        self.answers += len(keys)
        own_run = self.cache.run if self.cache else None
        for key in keys:
            if key in done:
                self.meter.record(self.role, done[key])  # type: ignore[arg-type]
                if found[key][1].run != own_run:  # not written earlier in this same run
                    self._note_earlier(found[key][1])
                bar.update()
        retries_before = getattr(self.backend, "retries", 0)
        # Identical requests in one call are sent once and count as done together.
        copies = Counter(k for k in keys if k in todo)
        ids_by_key: dict[str, list[str]] = {}
        for key, req in zip(keys, requests, strict=True):
            ids_by_key.setdefault(key, []).append(req.id)

        def on_result(key: str, result: ChatResult) -> None:
            if isinstance(result, ChatResponse):
                if self.cache is not None:
                    self.cache.put(key, result)
                self.meter.record(self.role, result)
            else:
                # Ledgered as it happens, so a run that aborts later still says what failed.
                for request_id in ids_by_key[key]:
                    self.record_failure(replace(result, request_id=request_id))
            done[key] = result
            bar.update(copies[key], getattr(self.backend, "retries", 0) - retries_before)

        try:
            if todo:
                if isinstance(self.backend, AsyncBackend):
                    if self._loop is None:
                        self._loop = _LoopThread()
                    self._loop.run(self._run_async(list(todo.items()), on_result))
                else:
                    self._run_batches(list(todo.items()), on_result)
        finally:
            usage.retries += getattr(self.backend, "retries", 0) - retries_before
            bar.close()
        results: list[ChatResult] = []
        for key, req in zip(keys, requests, strict=True):
            results.append(replace(done[key], request_id=req.id))
        return results

    def _note_earlier(self, origin: Origin) -> None:
        label = origin.run or "runs before the cache recorded its writers"
        self.earlier_hits[label] += 1
        self._earlier_since[label] = min(
            self._earlier_since.get(label, origin.created), origin.created
        )

    def cache_note(self, max_runs: int = 3) -> str | None:
        """``N of M answers came from the cache (written by earlier runs: ...)``, or None."""
        n = sum(self.earlier_hits.values())
        if not n:
            return None
        runs = [
            f"{count} by {label} on {_when(self._earlier_since[label])}"
            for label, count in self.earlier_hits.most_common(max_runs)
        ]
        if len(self.earlier_hits) > max_runs:
            runs.append(f"and {len(self.earlier_hits) - max_runs} more runs")
        return (
            f"{n} of {self.answers} answers came from the cache (written by earlier runs: "
            f"{'; '.join(runs)})"
        )

    def record_failure(self, failure: ChatFailure) -> None:
        """Ledger a failure (also used by callers for answers they could not parse)."""
        self.meter.role(self.role).failures += 1
        self.ledger.add(self.role, self.name, failure)

    def _skip(self, key: str, request: ChatRequest, on_result: OnResult) -> None:
        self.meter.exhausted = True
        on_result(
            key,
            ChatFailure(request.id, "budget_exhausted", "budget cap llm.budget_usd reached", 0),
        )

    async def _reserve(self, estimate: float, released: asyncio.Condition) -> bool:
        """Reserve a call's worst-case cost, waiting while calls in flight may free some."""
        async with released:
            while not self.meter.try_reserve(estimate):
                if self.meter.exhausted or self.meter.reserved_usd <= 0:
                    return False
                await released.wait()
            return True

    async def _run_async(self, todo: list[tuple[str, ChatRequest]], on_result: OnResult) -> None:
        backend: AsyncBackend = self.backend  # type: ignore[assignment]
        queue = deque(todo)
        # A server that is down fails every request only after all its retries; without this,
        # 50,000 requests would each wait out their backoff before the stage could give up.
        breaker = max(10, 2 * backend.concurrency)
        streak, last_reason = 0, ""
        released = asyncio.Condition()

        async def worker() -> None:
            nonlocal streak, last_reason
            while queue:
                key, request = queue.popleft()
                reserved = self.meter.estimate(self.name, request)
                if not await self._reserve(reserved, released):
                    self._skip(key, request, on_result)
                    continue
                try:
                    result: ChatResult = await backend.complete(request)
                    streak = 0
                except CallFailed as exc:
                    result = ChatFailure(request.id, "request_failed", exc.reason, exc.attempts)
                    streak, last_reason = streak + 1, exc.reason
                finally:
                    self.meter.release(reserved)
                on_result(key, result)
                async with released:
                    released.notify_all()
                if streak >= breaker:
                    raise FatalBackendError(
                        f"{backend.name}: the last {streak} requests all failed after their "
                        f"retries (last: {last_reason}); is the server up?"
                    )

        workers = [
            asyncio.create_task(worker()) for _ in range(min(backend.concurrency, len(todo)))
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _run_batches(self, todo: list[tuple[str, ChatRequest]], on_result: OnResult) -> None:
        backend: BatchBackend = self.backend  # type: ignore[assignment]
        # One chunk is one batch: answers are cached (and the bar moves) batch by batch, so a
        # kill loses at most one batch. Sorting by length first keeps each batch's padding small.
        queue = deque(sorted(todo, key=lambda kr: (repr(kr[1].params), _chars(kr[1]))))
        while queue:
            chunk: list[tuple[str, ChatRequest, float]] = []
            while queue and len(chunk) < self.chunk_size:
                key, request = queue[0]
                estimate = self.meter.estimate(self.name, request)
                if not self.meter.try_reserve(estimate):
                    break  # run what fits; the rest waits for this chunk's real cost
                queue.popleft()
                chunk.append((key, request, estimate))
            if not chunk:  # nothing in flight and the next call does not fit: budget spent
                for key, request in queue:
                    self._skip(key, request, on_result)
                return
            delivered: set[int] = set()

            def stream(index: int, resp: ChatResponse, chunk=chunk, delivered=delivered) -> None:
                # Cached the moment it is final: a kill mid-chunk loses only unfinished answers.
                delivered.add(index)
                on_result(chunk[index][0], resp)

            requests = [r for _, r, _ in chunk]
            try:
                if _streams(backend):
                    responses = backend.generate(requests, progress=False, on_result=stream)
                else:
                    responses = backend.generate(requests, progress=False)
            finally:
                for _, _, estimate in chunk:
                    self.meter.release(estimate)
            for i, ((key, _, _), resp) in enumerate(zip(chunk, responses, strict=True)):
                if i not in delivered:
                    on_result(key, resp)


def _streams(backend: object) -> bool:
    """Whether ``backend.generate`` reports each answer as it finishes (``on_result``)."""
    try:
        return "on_result" in inspect.signature(backend.generate).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _chars(request: ChatRequest) -> int:
    return sum(len(m.get("content", "")) for m in request.messages)


class _LoopThread:
    """One event loop on a daemon thread for the client's whole life.

    The async SDK client, its connection pool and the rate limiters are bound to the loop they
    were first used on; keeping that loop alive between ``generate`` calls keeps their state
    (and lets a sync caller that itself runs inside an event loop, like a Prefect task, call us).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller: stop the workers too (finished answers are already cached).
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
