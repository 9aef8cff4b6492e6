"""Benchmark: generation through an OpenAI-compatible server (vLLM, or `complexif serve`).

Sends the IFEval prompts (greedy, ``--max-new-tokens``) through the project's own client stack
(OpenAIBackend + LLMClient, no response cache so every answer is generated) at the given
concurrency, and prints generated tokens/s, wall time and the IFEval scores of the answers:
the figures ``benchmarks/generation.py`` prints for in-process engines, for a served one.

    complexif serve --model base --port 8000 &          # the continuous engine, served
    python benchmarks/served_generation.py --base-url http://127.0.0.1:8000/v1 --model base
    bash benchmarks/gpu_check.sh                         # runs it against vLLM
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from generation import ifeval_scores, load_prompts

from complexif.config import load_params
from complexif.io import write_json
from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest, ChatResponse, GenerationParams
from complexif.llm.client import LLMClient
from complexif.llm.ledger import FailureLedger
from complexif.llm.openai_backend import OpenAIBackend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True, help="the served model name")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/served.json"))
    args = ap.parse_args()

    params = load_params(args.params)
    prompts, inputs = load_prompts("ifeval", params, args.limit)
    gen = GenerationParams(max_new_tokens=args.max_new_tokens)
    requests = [
        ChatRequest(id=pid, messages=({"role": "user", "content": text},), params=gen)
        for pid, text in prompts
    ]
    backend = OpenAIBackend(
        args.model,
        base_url=args.base_url,
        api_key="not-needed",
        concurrency=args.concurrency,
        timeout_s=3600,
    )
    client = LLMClient(backend, "bench", UsageMeter(), FailureLedger("bench"), cache=None)
    start = time.perf_counter()
    results = client.generate(requests)
    wall = time.perf_counter() - start
    client.close()
    answers = [r for r in results if isinstance(r, ChatResponse)]
    if len(answers) != len(requests):
        raise SystemExit(f"error: {len(requests) - len(answers)} requests failed")
    tokens = sum(a.completion_tokens for a in answers)
    figures = {
        "server": args.base_url,
        "model": args.model,
        "prompts": len(answers),
        "concurrency": args.concurrency,
        "max_new_tokens": args.max_new_tokens,
        "generated_tokens": tokens,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1),
        "ifeval": ifeval_scores(inputs, answers),
    }
    print(json.dumps(figures))
    write_json(args.output, figures)


if __name__ == "__main__":
    main()
