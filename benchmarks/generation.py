"""Benchmark: local generation, the project's engine against plain transformers, same prompts.

Runs in one process, one after the other on the same prompts, greedy, 512 new tokens:
  (a) baseline: transformers' ``generate`` on static batches of 32 sorted by length, fp32
      (``TransformersLLM(engine="static", precision="float32")``);
  (b) the project's local backend as ``params.yaml`` configures it (``evaluate.generation``:
      continuous batching, ``precision: auto``), or as the flags below override it.
Prints generated tokens/s, wall time and peak resident memory of each, the speed-up, how many
answers differ from the baseline's token for token, and, for the IFEval prompts, the four IFEval
scores of both outputs. Timing lives here, never in tests.

    python benchmarks/generation.py --batch-size 96 --also-float32   # the README's table (1 h)
    python benchmarks/generation.py --limit 64 --max-new-tokens 128        # a smoke run
    python benchmarks/generation.py --prompts curation       # data/instructions.jsonl
    python benchmarks/generation.py --precision float32 --skip-baseline   # one engine alone
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from complexif.config import load_params
from complexif.evaluation import ifeval
from complexif.io import read_jsonl, write_json
from complexif.llm.base import ChatRequest, ChatResponse, GenerationParams
from complexif.llm.transformers_backend import TransformersLLM


@dataclass
class Run:
    label: str
    engine: str
    precision: str
    batch_size: int
    prompts: int
    generated_tokens: int
    wall_s: float
    tokens_per_s: float
    peak_rss_gb: float
    ifeval: dict[str, float] | None = None


@contextmanager
def peak_rss() -> Iterator[list[float]]:
    """Samples this process's resident memory every 50 ms; yields [peak bytes] when done."""
    proc, peak, stop = psutil.Process(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def load_prompts(which: str, params, limit: int | None) -> tuple[list[tuple[str, str]], list]:
    """(id, prompt) pairs and, for IFEval, its input examples (for scoring)."""
    if which == "ifeval":
        inputs = ifeval.load_input_data(params.paths.ifeval_input)[:limit]
        return [(str(e.key), e.prompt) for e in inputs], inputs
    path = Path(params.paths.instructions)
    if not path.is_file():
        sys.exit(f"error: {path} not found; run `dvc repro compose` first")
    rows = list(read_jsonl(path))[:limit]
    return [(str(r["id"]), r["prompt"]) for r in rows], []


def run_one(
    label: str, llm: TransformersLLM, prompts: list[tuple[str, str]], max_new: int
) -> tuple[Run, list[ChatResponse]]:
    params = GenerationParams(max_new_tokens=max_new)
    requests = [
        ChatRequest(id=pid, messages=({"role": "user", "content": text},), params=params)
        for pid, text in prompts
    ]
    with peak_rss() as peak:
        start = time.perf_counter()
        answers = llm.generate(requests, progress=True)
        wall = time.perf_counter() - start
    tokens = sum(a.completion_tokens for a in answers)
    run = Run(
        label,
        llm.engine,
        llm.precision,
        llm.batch_size,
        len(prompts),
        tokens,
        round(wall, 2),
        round(tokens / wall, 1),
        round(peak[0] / 1e9, 2),
    )
    return run, answers


def ifeval_scores(inputs: list, answers: list[ChatResponse]) -> dict[str, float]:
    by_prompt = {e.prompt: a.text for e, a in zip(inputs, answers, strict=True)}
    metrics = ifeval.score(inputs, by_prompt).metrics
    keys = ("prompt_level_strict_acc", "prompt_level_loose_acc")
    keys += ("inst_level_strict_acc", "inst_level_loose_acc")
    return {k: round(100 * metrics[k], 2) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--model", default="base", help="base/sft/dpo, a directory or a hub id")
    ap.add_argument("--prompts", choices=["ifeval", "curation"], default="ifeval")
    ap.add_argument("--limit", type=int, default=None, help="first N prompts only (smoke runs)")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--baseline-batch-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, help="engine slots (default: evaluate.generation)")
    ap.add_argument("--engine", choices=["continuous", "static"])
    ap.add_argument("--precision", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--also-float32",
        action="store_true",
        help="also run the engine in fp32: the speed of scheduling alone, and its exactness",
    )
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/generation.json"))
    args = ap.parse_args()

    params = load_params(args.params)
    gen = params.evaluate.generation
    path = params.paths.resolve_model(args.model)
    prompts, inputs = load_prompts(args.prompts, params, args.limit)
    print(f"{len(prompts)} {args.prompts} prompts, {args.max_new_tokens} new tokens, greedy")

    runs: list[Run] = []
    outputs: dict[str, list[ChatResponse]] = {}
    configs = []
    if not args.skip_baseline:
        configs.append(("baseline", "static", "float32", args.baseline_batch_size))
    engine = args.engine or gen.engine
    precision = args.precision or gen.precision
    slots = args.batch_size or gen.batch_size
    configs.append(("engine", engine, precision, slots))
    if args.also_float32:
        configs.append(("engine-fp32", engine, "float32", slots))
    for label, engine, precision, batch in configs:
        llm = TransformersLLM(
            path, batch, params.train.device, name=args.model, engine=engine, precision=precision
        )
        run, answers = run_one(label, llm, prompts, args.max_new_tokens)
        if inputs:
            run.ifeval = ifeval_scores(inputs, answers)
        runs.append(run)
        outputs[label] = answers
        print(json.dumps(asdict(run)), flush=True)
        del llm
        # Written after every run, so a long benchmark cut short keeps what it measured.
        summary = compare(runs, outputs)
        summary["max_new_tokens"] = args.max_new_tokens
        write_json(args.output, summary)
    print_table(runs, summary)
    print(f"results written to {args.output}")


def compare(runs: list[Run], outputs: dict[str, list[ChatResponse]]) -> dict:
    """Every run against the baseline: speed-up, answers that differ, IFEval deltas."""
    summary: dict = {"runs": [asdict(r) for r in runs]}
    if "baseline" not in outputs:
        return summary
    base, against = runs[0], {}
    for run in runs[1:]:
        pairs = zip(outputs["baseline"], outputs[run.label], strict=True)
        row = {
            "speedup": round(run.tokens_per_s / base.tokens_per_s, 2),
            "differ": sum(a.text != b.text for a, b in pairs),
            "of": len(outputs["baseline"]),
        }
        if base.ifeval and run.ifeval:
            row["ifeval_delta"] = {k: round(run.ifeval[k] - base.ifeval[k], 2) for k in base.ifeval}
        against[run.label] = row
    summary["against_baseline"] = against
    return summary


def print_table(runs: list[Run], summary: dict) -> None:
    scored = any(r.ifeval for r in runs)
    print(
        f"\n{'run':11} {'engine':11} {'precision':9} {'batch':>5} {'tok/s':>7} {'wall s':>8} "
        f"{'peak GB':>7}" + ("  IFEval p-strict p-loose i-strict i-loose" if scored else "")
    )
    for run in runs:
        line = f"{run.label:11} {run.engine:11} {run.precision:9} {run.batch_size:>5} "
        line += f"{run.tokens_per_s:>7.1f} {run.wall_s:>8.1f} {run.peak_rss_gb:>7.2f}"
        if run.ifeval:
            line += "         " + " ".join(f"{v:>7.2f}" for v in run.ifeval.values())
        print(line)
    for label, row in summary.get("against_baseline", {}).items():
        print(
            f"\n{label}: {row['speedup']:.2f}x the baseline's tokens/s; answers that differ from "
            f"the baseline's: {row['differ']} of {row['of']}"
        )
        if "ifeval_delta" in row:
            print(f"  IFEval {label} - baseline (points): {row['ifeval_delta']}")


if __name__ == "__main__":
    main()
