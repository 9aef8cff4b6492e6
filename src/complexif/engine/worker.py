"""One thread that drives a :class:`ContinuousBatcher` for callers on other threads.

The server's requests arrive on its event loop; the model must run off it (the loop stays
responsive) and on one thread only (the batcher is not thread-safe). Requests join the running
batch at the next step instead of waiting for a batch to fill or to finish.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from complexif.engine.scheduler import ContinuousBatcher, SeqRequest, SeqResult

log = logging.getLogger(__name__)

Callback = Callable[[SeqResult | BaseException], None]


@dataclass(frozen=True)
class _Submit:
    ticket: int
    request: SeqRequest
    callback: Callback


@dataclass(frozen=True)
class _Cancel:
    ticket: int


_STOP = object()


class BatcherThread:
    """Owns ``batcher`` from a daemon thread; :meth:`submit` and :meth:`cancel` from anywhere.

    ``callback`` is called on the worker thread with the result, or with the exception that
    stopped the request (a bad request, or a failed step, which fails every live request).
    """

    def __init__(self, batcher: ContinuousBatcher) -> None:
        self.batcher = batcher
        self._inbox: queue.Queue = queue.Queue()
        self._tickets = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="complexif-engine", daemon=True)
        self._thread.start()

    def submit(self, request: SeqRequest, callback: Callback) -> int:
        ticket = next(self._tickets)
        self._inbox.put(_Submit(ticket, request, callback))
        return ticket

    def cancel(self, ticket: int) -> None:
        self._inbox.put(_Cancel(ticket))

    def close(self, timeout: float = 5.0) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        idents: dict[int, int] = {}  # ticket -> the batcher's id, while live
        callbacks: dict[int, Callback] = {}
        while True:
            # Block only when idle; while decoding, take whatever has arrived since the last step.
            block = not self.batcher.busy
            try:
                while True:
                    msg = self._inbox.get(block=block)
                    block = False
                    if msg is _STOP:
                        self._fail_all(callbacks, RuntimeError("engine shutting down"))
                        return
                    self._handle(msg, idents, callbacks)
            except queue.Empty:
                pass
            if not self.batcher.busy:
                continue
            try:
                self.batcher.step()
            except Exception as exc:  # a failed step leaves the cache undefined: start over
                log.exception("engine step failed")
                self._fail_all(callbacks, exc)
                idents.clear()
                self.batcher.reset()

    def _handle(self, msg, idents: dict[int, int], callbacks: dict[int, Callback]) -> None:
        if isinstance(msg, _Cancel):
            ident = idents.pop(msg.ticket, None)
            callbacks.pop(msg.ticket, None)
            if ident is not None:
                self.batcher.cancel(ident)
            return

        def done(result: SeqResult, ticket: int = msg.ticket) -> None:
            idents.pop(ticket, None)
            callback = callbacks.pop(ticket, None)
            if callback is not None:
                callback(result)

        try:
            idents[msg.ticket] = self.batcher.submit(msg.request, done)
        except ValueError as exc:  # too long for the context, empty prompt
            msg.callback(exc)
            return
        callbacks[msg.ticket] = msg.callback

    @staticmethod
    def _fail_all(callbacks: dict[int, Callback], exc: BaseException) -> None:
        for callback in callbacks.values():
            callback(exc)
        callbacks.clear()
