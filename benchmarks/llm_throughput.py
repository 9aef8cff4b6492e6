"""Benchmark: how close the API client gets to a server's ideal throughput, and what a cached
re-run costs.

Starts ``complexif serve --backend echo`` (a fixed-latency OpenAI-compatible endpoint) in its own
process on loopback, as a real provider would be, so the server does not share the client's
interpreter. Then sends N distinct requests through
the real client stack (OpenAIBackend + LLMClient: cache, accounting, ledger, progress) at the
given concurrency, then sends them again. The ideal time is N x latency / concurrency.

    python benchmarks/llm_throughput.py                    # 1000 requests, 32 at once, 200 ms
    python benchmarks/llm_throughput.py --n 5000 --concurrency 64 --latency-ms 100
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest, GenerationParams
from complexif.llm.cache import ResponseCache
from complexif.llm.client import LLMClient
from complexif.llm.ledger import FailureLedger
from complexif.llm.openai_backend import OpenAIBackend


@contextmanager
def echo_server(latency_ms: float) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "complexif.cli", "serve", "--backend", "echo", "--name", "echo"]
    cmd += ["--latency-ms", str(latency_ms), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url.removesuffix("/v1") + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"echo server did not start: {' '.join(cmd)}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _server_calls(base_url: str) -> int:
    return httpx.get(base_url.removesuffix("/v1") + "/stats").json()["requests"]


def _timed_run(base_url: str, cache_path: Path, requests: list[ChatRequest], concurrency: int):
    backend = OpenAIBackend("echo", base_url=base_url, api_key="bench", concurrency=concurrency)
    client = LLMClient(
        backend, "bench", UsageMeter(), FailureLedger("bench"), ResponseCache(cache_path)
    )
    before = _server_calls(base_url)
    cpu_start, start = time.process_time(), time.perf_counter()
    results = client.generate(requests)
    elapsed = time.perf_counter() - start
    cpu_ms = (time.process_time() - cpu_start) * 1000 / max(1, len(requests))
    client.close()
    failed = sum(1 for r in results if not hasattr(r, "text"))
    return elapsed, _server_calls(base_url) - before, failed, cpu_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    latency = args.latency_ms / 1000
    params = GenerationParams(max_new_tokens=16)
    requests = [
        ChatRequest(f"r{i}", ({"role": "user", "content": f"request {i}"},), params)
        for i in range(args.n)
    ]
    ideal = args.n * latency / args.concurrency
    with tempfile.TemporaryDirectory() as tmp, echo_server(args.latency_ms) as url:
        cache = Path(tmp) / "cache.sqlite"
        cold_s, cold_calls, cold_failed, cold_cpu = _timed_run(
            url, cache, requests, args.concurrency
        )
        warm_s, warm_calls, warm_failed, _ = _timed_run(url, cache, requests, args.concurrency)
    figures = {
        "requests": args.n,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "ideal_s": round(ideal, 3),
        "cold_s": round(cold_s, 3),
        "cold_ratio_to_ideal": round(cold_s / ideal, 3),
        "cold_server_calls": cold_calls,
        "cold_failed": cold_failed,
        "client_cpu_ms_per_request": round(cold_cpu, 3),
        "cached_rerun_s": round(warm_s, 3),
        "cached_rerun_server_calls": warm_calls,
        "cached_rerun_failed": warm_failed,
    }
    print(f"\n{args.n} requests, concurrency {args.concurrency}, {args.latency_ms:g} ms latency")
    print(f"  ideal       {ideal:7.2f} s")
    print(
        f"  cold run    {cold_s:7.2f} s  ({cold_s / ideal:.2f}x ideal, "
        f"{cold_calls} server calls, {cold_failed} failed, "
        f"client CPU {cold_cpu:.2f} ms/request)"
    )
    print(f"  cached run  {warm_s:7.2f} s  ({warm_calls} server calls, {warm_failed} failed)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
