"""An OpenAI-compatible chat backend on the official async ``openai`` SDK.

Works with OpenAI and with any server speaking its chat-completions API (vLLM, llama.cpp,
``complexif serve``). The SDK's own retries are off: this module retries 429, 5xx, timeouts,
dropped connections and unreadable bodies itself, with exponential backoff and full jitter,
never sooner than a server's Retry-After, and counts every retry. A 429 also pauses every
worker of this backend until its Retry-After, so a rate-limited run backs off as a whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
from aiolimiter import AsyncLimiter

from complexif.llm.accounting import estimate_prompt_tokens
from complexif.llm.base import CallFailed, ChatRequest, ChatResponse, FatalBackendError
from complexif.llm.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

# Statuses that say "this configuration can never work": stop the stage instead of ledgering
# every row one by one.
FATAL_STATUSES = {401: "authentication failed", 403: "permission denied", 404: "not found"}

_DEFAULT_PORTS = {"http": 80, "https": 443}


class MalformedResponse(ValueError):
    """The server answered 200 but not with a readable chat completion."""


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str,
        concurrency: int,
        rpm: int | None,
        tpm: int | None,
        timeout_s: float,
        retry: RetryPolicy,
        seed: int | None = None,
        rate_period_s: float = 60.0,
    ) -> None:
        """``rpm``/``tpm`` are per ``rate_period_s`` (a minute; shorter only in tests)."""
        self.name = model
        # Providers version hosted models by name, but one name means different models at
        # different servers (and "base" at two local ports is two models): the endpoint is part
        # of the identity the cache keys answers by.
        self.fingerprint = normalise_base_url(base_url)
        self.base_url = base_url
        self.concurrency = concurrency
        self.retry = retry
        self.retries = 0
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s
        )
        self._rpm = AsyncLimiter(rpm, rate_period_s) if rpm else None
        self._tpm = AsyncLimiter(tpm, rate_period_s) if tpm else None
        self._tpm_max = float(tpm or 0)
        self._pause_until = 0.0
        self._rng = random.Random(seed)

    async def aclose(self) -> None:
        await self._client.close()

    async def _admit(self, request: ChatRequest) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._rpm is not None:
            await self._rpm.acquire()
        if self._tpm is not None:
            # Providers count max_tokens against TPM when a request starts; so do we.
            tokens = estimate_prompt_tokens(request) + request.params.max_new_tokens
            await self._tpm.acquire(min(float(tokens), self._tpm_max))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        attempt = 0
        while True:
            await self._admit(request)
            retry_after: float | None = None
            try:
                # The SDK's low-level post: auth, timeouts and status errors exactly as in
                # create(), without its per-call transform of the params and model building of
                # the answer (together ~1 ms of CPU a call, most of the client's own cost at
                # high concurrency). The body is read here, so a broken one is ours to retry.
                raw = await self._client.post(
                    "/chat/completions", cast_to=httpx2.Response, body=self._body(request)
                )
                return self._to_response(request, json.loads(raw.content))
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status in FATAL_STATUSES:
                    raise FatalBackendError(
                        f"{self.base_url}: HTTP {status} {FATAL_STATUSES[status]} for model "
                        f"{self.name!r}: {_error_message(exc)}"
                    ) from exc
                if status not in (408, 409, 429) and status < 500:
                    raise CallFailed(f"HTTP {status}: {_error_message(exc)}", attempt + 1) from exc
                reason = f"HTTP {status}: {_error_message(exc)}"
                retry_after = parse_retry_after(exc.response.headers)
            except openai.APITimeoutError:
                reason = "timeout"
            except openai.APIConnectionError as exc:
                reason = f"connection error: {exc.__cause__ or exc}"
            except ValueError as exc:  # MalformedResponse, a JSON or a Unicode decode error
                reason = f"malformed response: {exc}"
            if attempt >= self.retry.max_retries:
                raise CallFailed(f"{reason} (gave up after {attempt + 1} attempts)", attempt + 1)
            delay = self.retry.delay(attempt, retry_after, self._rng)
            if retry_after is not None:
                # Every worker waits what the server asked; this one also its own backoff.
                self._pause_until = max(self._pause_until, time.monotonic() + retry_after)
                if retry_after > self.retry.max_s:
                    log.warning(
                        "%s: server asks to wait %.0f s (Retry-After)", self.name, retry_after
                    )
            log.debug("%s: %s; retry %d in %.2fs", request.id, reason, attempt + 1, delay)
            self.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.name,
            "messages": list(request.messages),
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": p.seed,
        }
        if p.n > 1:
            body["n"] = p.n
        return body

    def _to_response(self, request: ChatRequest, completion: Any) -> ChatResponse:
        try:
            choices = sorted(completion["choices"], key=lambda c: c.get("index", 0))
            texts = tuple((c["message"].get("content") or "") for c in choices)
            finish = choices[0].get("finish_reason") or "stop"
            usage = completion.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise MalformedResponse(f"not a chat completion: {str(completion)[:200]}") from exc
        if len(texts) != request.params.n:
            raise MalformedResponse(f"asked for {request.params.n} choices, got {len(texts)}")
        return ChatResponse(
            request_id=request.id,
            text=texts[0],
            # Cache and price under the name we asked for: servers may answer with an alias.
            model=self.name,
            finish_reason=str(finish),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            choices=texts if len(texts) > 1 else (),
        )


def normalise_base_url(url: str) -> str:
    """``url`` with what does not change the server dropped: case of scheme and host, default
    port, credentials, fragment and trailing slashes (``HTTP://Host:80/v1/`` is
    ``http://host/v1``). Different spellings of one host (``localhost``, ``127.0.0.1``) stay
    different: a cache miss costs a call, a wrong hit costs a wrong answer."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a port number: keep the address as written
        return url.strip().rstrip("/")
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(exc.message)
