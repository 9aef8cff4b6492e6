"""A local OpenAI-compatible chat-completions server, with optional fault injection.

Why it exists: the pipeline's API client is tested against a real HTTP server through the
official SDK (real sockets, real status codes, injected failures) instead of mocks; stages can be
dry-run against an echo model with a fixed latency; and a local model can be served to any tool
that speaks the OpenAI API (``complexif serve``).

What it refuses, and why (limits come from params.yaml ``serve:``, never from this module):

* a ``Host`` (or browser ``Origin``) it is not bound under: 403, so a web page cannot reach it
  through DNS rebinding or a cross-site form;
* a missing or wrong ``Authorization: Bearer`` key when one is set: 401, on every route;
* a chat body that is not ``application/json``: 415 (a browser sends a non-JSON body without
  asking first), or larger than ``max_body_bytes``: 413;
* ``max_tokens`` above ``serve.max_tokens``, or a prompt plus ``max_tokens`` beyond
  ``serve.context_tokens``: 400 in OpenAI's shape (refused, not clamped, so a client never gets
  a shorter answer than it asked for without being told). A request without ``max_tokens`` gets
  ``serve.max_tokens``, or what its prompt leaves of the context when that is less.

``/stats`` keeps counters and only the last ``serve.stats_window`` request hashes, so its memory
is bounded however long the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from complexif.llm.base import (
    ChatRequest,
    ChatResponse,
    GenerationParams,
    InvalidRequest,
    merge_samples,
    split_samples,
)
from complexif.llm.faults import FAULT_KINDS, FaultConfig, fault_response, openai_error

if TYPE_CHECKING:
    from complexif.config import ServeConfig

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.5  # how often a waiting request checks that its client is still there
LOOPBACK_HOST = "127.0.0.1"  # where in-process servers (tests, benchmarks) listen
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Responder(Protocol):
    """Answers one single-sample request (the app fans ``n > 1`` out over several calls)."""

    async def respond(self, request: ChatRequest) -> ChatResponse: ...

    def prompt_tokens(self, request: ChatRequest) -> int:
        """The prompt's length in the tokens the model counts against its context."""
        ...


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

    @property
    def asked_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def canonical(self, default_max_tokens: int) -> dict[str, Any]:
        """The request with the defaults filled in (OpenAI's, and the server's
        ``default_max_tokens``): what is hashed, and, within the context, what is generated."""
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "max_tokens": self.asked_max_tokens or default_max_tokens,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed or 0,
            "n": self.n or 1,
        }


@dataclass
class ServerStats:
    """Counters since start (or the last reset), for tests and benchmarks to check the client by.

    ``request_hashes`` holds the last ``window`` requests only (older ones drop off the front),
    so a long-running server's stats never grow.
    """

    window: int
    requests: int = 0
    completed: int = 0
    abandoned: int = 0  # the client hung up before its answer was ready; dropped unanswered
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    request_hashes: deque[str] = field(init=False)

    def __post_init__(self) -> None:
        self.request_hashes = deque(maxlen=self.window)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "abandoned": self.abandoned,
            "faults": dict(self.faults),
            "request_hashes": list(self.request_hashes),
            "request_hashes_window": self.window,
        }


# --------------------------------------------------------------------------------------------
# Access: Host, Origin and the API key


@dataclass(frozen=True)
class Access:
    """Who may talk to the server: the names it answers to in ``Host`` and ``Origin``, and the
    key every request must carry (None: no key, which only a loopback server may go without)."""

    api_key: str | None
    hosts: frozenset[str]
    # Bound to every interface (0.0.0.0, ::): its own addresses cannot be listed, so any IP
    # literal is accepted; a rebinding attack needs a DNS name, which is still checked.
    any_ip_host: bool

    @classmethod
    def loopback(cls, api_key: str | None = None) -> Access:
        return cls(api_key, LOOPBACK_NAMES, any_ip_host=False)

    @classmethod
    def for_bind(
        cls, host: str, bound_ip: str, extra_hosts: Iterable[str], api_key: str | None
    ) -> Access:
        """Loopback names, the host as given and the address it resolved to, plus
        ``extra_hosts`` (``serve.allowed_hosts``: DNS names clients use for this machine)."""
        names = {_normalise_host(h) for h in (host, bound_ip, *extra_hosts)}
        unspecified = ipaddress.ip_address(bound_ip).is_unspecified
        return cls(api_key, LOOPBACK_NAMES | names, any_ip_host=unspecified)

    def allows_host(self, name: str | None) -> bool:
        if not name:
            return False
        return name in self.hosts or (self.any_ip_host and _is_ip(name))

    def refusal(self, headers: Headers) -> Response | None:
        """The error response for a request with these headers, or None to let it through."""
        host = headers.get("host")
        if not self.allows_host(_host_header_name(host)):
            return openai_error(
                403,
                f"Host {_shorten(host)!r} is not one this server is bound under (a guard "
                "against DNS rebinding); add the name to serve.allowed_hosts",
                "invalid_request_error",
                code="host_not_allowed",
            )
        origin = headers.get("origin")
        if origin is not None and not self.allows_host(_origin_name(origin)):
            return openai_error(
                403,
                f"Origin {_shorten(origin)!r} may not call this server (cross-site request)",
                "invalid_request_error",
                code="origin_not_allowed",
            )
        if self.api_key is not None and not _key_matches(
            headers.get("authorization"), self.api_key
        ):
            return openai_error(
                401,
                "Missing or incorrect API key: send 'Authorization: Bearer <key>' with the key "
                "the server was started with",
                "invalid_request_error",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        return None


class _Guard:
    """ASGI middleware applying :class:`Access` to every HTTP request, unknown routes included.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would wrap ``receive`` and hide
    a client's disconnect from the chat handler (that is how abandoned requests are dropped)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.access.refusal(Headers(scope=scope))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _key_matches(authorization: str | None, key: str) -> bool:
    scheme, _, token = (authorization or "").partition(" ")
    # Digests of equal length, so the comparison's time reveals neither the key nor its length.
    given = hashlib.sha256(token.strip().encode()).digest()
    wanted = hashlib.sha256(key.encode()).digest()
    return hmac.compare_digest(given, wanted) and scheme.lower() == "bearer"


def _normalise_host(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _host_header_name(value: str | None) -> str | None:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``; None if malformed."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return _normalise_host(value[1:end])
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    return _normalise_host(name) or None


def _origin_name(origin: str) -> str | None:
    # "null" (sandboxed frames, file: pages) parses to no host name and is refused.
    try:
        name = urlsplit(origin).hostname
    except ValueError:
        return None
    return _normalise_host(name) if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _shorten(text: str | None, limit: int = 80) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# The app


def build_app(
    responder: Responder,
    model_name: str,
    fingerprint: str = "",
    faults: FaultConfig | None = None,
    *,
    config: ServeConfig,
    access: Access | None = None,
) -> FastAPI:
    """The ASGI app serving ``responder`` as ``model_name``; ``faults`` injects failures.

    ``config`` (params.yaml ``serve:``) gives the limits; ``access`` says who may call (default:
    loopback names only, no key)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        close = getattr(responder, "aclose", None)
        if close is not None:
            await close()

    app = FastAPI(title="complexif serve", lifespan=lifespan)
    app.add_middleware(_Guard, access=access or Access.loopback())
    app.state.model_name = model_name
    stats = ServerStats(config.stats_window)
    rng = random.Random(faults.seed if faults else 0)
    started = int(time.time())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        stats.requests += 1
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return openai_error(
                415,
                f"Content-Type must be application/json, got {media_type or 'none'!r}",
                "invalid_request_error",
            )
        raw = await _read_at_most(request, config.max_body_bytes)
        if raw is None:
            return openai_error(
                413,
                f"request body exceeds {config.max_body_bytes} bytes (serve.max_body_bytes)",
                "invalid_request_error",
            )
        try:
            body = CompletionBody.model_validate_json(raw)
        except ValidationError as exc:
            return _invalid_body(exc)
        canon = body.canonical(default_max_tokens=config.max_tokens)
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
        asked = body.asked_max_tokens
        if asked is not None and asked > config.max_tokens:
            which = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
            return openai_error(
                400,
                f"{which} is {asked}; this server allows at most {config.max_tokens} "
                "(serve.max_tokens)",
                "invalid_request_error",
                code="invalid_value",
                param=which,
            )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
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
        try:
            chat = _fit_context(chat, responder.prompt_tokens(chat), explicit=asked is not None)
        except InvalidRequest as exc:
            return openai_error(
                400,
                str(exc),
                "invalid_request_error",
                code="context_length_exceeded",
                param="messages",
            )
        except Exception as exc:  # the chat template refused the messages, ...
            log.exception("counting the prompt of %s failed", completion_id)
            return openai_error(500, f"generation failed: {exc}", "server_error")
        if faults is not None and (kind := faults.draw(rng)) is not None:
            stats.faults[kind] += 1
            skeleton = _completion(completion_id, model_name, fingerprint, [("", "stop")], 0, 0)
            failed = await fault_response(kind, faults, request, skeleton)
            if failed is not None:
                return failed
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

    def _fit_context(chat: ChatRequest, prompt: int, explicit: bool) -> ChatRequest:
        room = config.context_tokens - prompt
        wanted = chat.params.max_new_tokens
        if room < 1 or (explicit and wanted > room):
            asked = f" + max_tokens ({wanted})" if explicit else ""
            raise InvalidRequest(
                f"prompt ({prompt} tokens){asked} exceeds the context of "
                f"{config.context_tokens} tokens (serve.context_tokens)"
            )
        if wanted <= room:
            return chat
        # No max_tokens asked: as OpenAI does, answer up to what the context has left.
        return dataclasses.replace(
            chat, params=dataclasses.replace(chat.params, max_new_tokens=room)
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": model_name, "object": "model", "created": started, "owned_by": "complexif"}
        return {"object": "list", "data": [entry]}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.as_dict()

    # POST only (a link or an <img> cannot reset it); the Guard asks for the key when one is set.
    @app.post("/stats/reset")
    async def reset_stats() -> dict[str, Any]:
        nonlocal stats
        stats = ServerStats(config.stats_window)
        return stats.as_dict()

    return app


async def _read_at_most(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), not yet listening.

    Bound here rather than by uvicorn so that a taken port or an unknown host is one OSError
    (the CLI's one-line error) before a model is loaded, and the caller learns the real address
    (is it loopback?) before anything is served.
    """
    if not 0 <= port <= 65535:
        raise OSError(f"cannot serve on {host}:{port}: a port is 0-65535 (0 picks a free one)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    try:
        # As uvicorn does: a restart may rebind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def bound_ip(sock: socket.socket) -> str:
    return str(sock.getsockname()[0])


def is_loopback(sock: socket.socket) -> bool:
    return ipaddress.ip_address(bound_ip(sock)).is_loopback


def _config(app: FastAPI, host: str) -> uvicorn.Config:
    # A hung request must not hold shutdown for long; access logs cost time per request.
    return uvicorn.Config(
        app, host=host, log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )


def _base_url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = LOOPBACK_HOST, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on a daemon thread; yields its base URL (port 0 binds a free port)."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app, host))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="complexif-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"server on {host}:{port} did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield _base_url(sock, host)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing its URL once listening: the real port, even for port 0."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            name = self.config.app.state.model_name
            print(f"serving {name} at {_base_url(sockets[0], self.config.host)}", flush=True)


def run(app: FastAPI, sock: socket.socket, host: str) -> None:
    """Serve on ``sock`` (from :func:`bind`) until Ctrl-C or SIGTERM (``complexif serve``)."""
    server = _AnnouncingServer(_config(app, host))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
