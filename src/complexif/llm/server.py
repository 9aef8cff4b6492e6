"""A local OpenAI-compatible chat-completions server, with optional fault injection.

Why it exists: the pipeline's API client is tested against a real HTTP server through the
official SDK (real sockets, real status codes, injected failures) instead of mocks; stages can be
dry-run against an echo model with a fixed latency; and a local model can be served to any tool
that speaks the OpenAI API (``complexif serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from complexif.llm.base import (
    ChatRequest,
    ChatResponse,
    GenerationParams,
    InvalidRequest,
    merge_samples,
    split_samples,
)
from complexif.llm.faults import FAULT_KINDS, FaultConfig, fault_response, openai_error

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
DISCONNECT_POLL_S = 0.5  # how often a waiting request checks that its client is still there


class Responder(Protocol):
    """Answers one single-sample request (the app fans ``n > 1`` out over several calls)."""

    async def respond(self, request: ChatRequest) -> ChatResponse: ...


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


class CompletionBody(BaseModel):
    """The part of OpenAI's request body this server honours; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = None

    def canonical(self) -> dict[str, Any]:
        """The request with OpenAI's defaults filled in: what is generated, and what is hashed."""
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "max_tokens": self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed or 0,
            "n": self.n or 1,
        }


@dataclass
class ServerStats:
    """Counters since start (or the last reset), for tests and benchmarks to check the client by."""

    requests: int = 0
    completed: int = 0
    abandoned: int = 0  # the client hung up before its answer was ready; dropped unanswered
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    request_hashes: list[str] = field(default_factory=list)


def build_app(
    responder: Responder,
    model_name: str,
    fingerprint: str = "",
    faults: FaultConfig | None = None,
) -> FastAPI:
    """The ASGI app serving ``responder`` as ``model_name``; ``faults`` injects failures."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        close = getattr(responder, "aclose", None)
        if close is not None:
            await close()

    app = FastAPI(title="complexif serve", lifespan=lifespan)
    app.state.model_name = model_name
    stats = ServerStats()
    rng = random.Random(faults.seed if faults else 0)
    started = int(time.time())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        stats.requests += 1
        try:
            body = CompletionBody.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid_body(exc)
        canon = body.canonical()
        digest = hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()
        stats.request_hashes.append(digest)
        if body.stream:
            return openai_error(
                400, "stream=true is not supported", "invalid_request_error", param="stream"
            )
        if body.model != model_name:
            return openai_error(
                404,
                f"The model '{body.model}' does not exist; this server serves '{model_name}'",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if faults is not None and (kind := faults.draw(rng)) is not None:
            stats.faults[kind] += 1
            skeleton = _completion(completion_id, model_name, fingerprint, [("", "stop")], 0, 0)
            failed = await fault_response(kind, faults, request, skeleton)
            if failed is not None:
                return failed
        chat = ChatRequest(
            id=completion_id,
            messages=tuple(canon["messages"]),
            params=GenerationParams(
                max_new_tokens=canon["max_tokens"],
                temperature=canon["temperature"],
                top_p=canon["top_p"],
                seed=canon["seed"],
                n=canon["n"],
            ),
        )
        answering = asyncio.gather(*(responder.respond(r) for r in split_samples(chat)))
        try:
            samples = await _unless_disconnected(request, answering)
        except ClientGone:
            stats.abandoned += 1
            return Response(status_code=499)  # nobody is listening; nginx's "client closed"
        except InvalidRequest as exc:
            return openai_error(400, str(exc), "invalid_request_error", param="messages")
        except Exception as exc:
            log.exception("generation failed for %s", completion_id)
            return openai_error(500, f"generation failed: {exc}", "server_error")
        merged = merge_samples(chat, samples)
        choices = [(s.text, s.finish_reason) for s in samples]
        usage = (merged.prompt_tokens, merged.completion_tokens)
        stats.completed += 1
        return JSONResponse(_completion(completion_id, model_name, fingerprint, choices, *usage))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": model_name, "object": "model", "created": started, "owned_by": "complexif"}
        return {"object": "list", "data": [entry]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return asdict(stats)

    @app.post("/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        nonlocal stats
        stats = ServerStats()
        return asdict(stats)

    return app


class ClientGone(Exception):
    """The client hung up (timed out, was killed) before its answer was ready."""


async def _unless_disconnected(
    request: Request, work: asyncio.Future[Any], poll_s: float = DISCONNECT_POLL_S
) -> Any:
    """Await ``work`` unless the client disconnects first; then cancel it, so a queued request
    of a killed client never takes a slot in a model batch (a resumed run would wait for it)."""
    while True:
        done, _ = await asyncio.wait({work}, timeout=poll_s)
        if done:
            return work.result()
        if await request.is_disconnected():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            raise ClientGone


def _invalid_body(exc: ValidationError) -> JSONResponse:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:3]]
    param = ".".join(str(p) for p in errors[0]["loc"]) or None
    return openai_error(
        400, "invalid request: " + "; ".join(parts), "invalid_request_error", param=param
    )


def _completion(
    completion_id: str,
    model: str,
    fingerprint: str,
    choices: Sequence[tuple[str, str]],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
            for i, (text, finish) in enumerate(choices)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# --------------------------------------------------------------------------------------------
# Serving


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # A hung request must not hold shutdown for long; access logs cost time per request.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


def _base_url(server: uvicorn.Server, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{host}:{port}/v1"


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a daemon thread; yields its base URL (port 0 binds a free port)."""
    server = uvicorn.Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name="complexif-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {host}:{port} did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield _base_url(server, host)
    finally:
        server.should_exit = True
        thread.join()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing its URL once bound: the real port, even for port 0."""

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            name = self.config.app.state.model_name
            print(f"serving {name} at {_base_url(self, self.config.host)}", flush=True)


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM (``complexif serve``)."""
    server = _AnnouncingServer(_config(app, host, port))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit:
        if server.started:
            raise
        # uvicorn has logged why (port in use, ...); report it the CLI's way.
        raise OSError(f"could not serve on {host}:{port}") from None
