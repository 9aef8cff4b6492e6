"""Benchmark: SFT and DPO training speed, the project's settings against plain fp32 + padding.

Trains the same LoRA run twice per method, on the same examples in the same order, in one
process: (a) the baseline, fp32 with padded batches; (b) the settings of ``params.yaml``
(``train.sft`` / ``train.dpo``: ``precision``, ``padding_free``) or of the flags below. Prints
real (non-padding) tokens trained per second, the speed-up, and both loss curves step by step
with their correlation, so a faster run that learns differently shows. Timing lives here,
never in tests.

    dvc repro build_data                         # the curated data it trains on
    python benchmarks/training.py                # SFT and DPO, max_steps from params.yaml
    python benchmarks/training.py --method sft --steps 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from complexif.config import load_params
from complexif.io import read_jsonl, write_json
from complexif.training.common import train_precision


@dataclass
class Run:
    method: str
    label: str
    precision: str
    padding_free: bool
    steps: int
    train_s: float
    tokens: int
    tokens_per_s: float
    losses: list[float]


def real_tokens(records: list[dict], tokenizer, method: str) -> list[int]:
    """Tokens per example as the model sees them, without padding (DPO: chosen + rejected)."""

    def count(messages: list[dict]) -> int:
        return len(
            tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        )

    if method == "sft":
        return [count(r["messages"]) for r in records]
    return [count(r["prompt"] + r["chosen"]) + count(r["prompt"] + r["rejected"]) for r in records]


def train_once(method: str, label: str, records: list[dict], params, cfg, tokens: list[int]) -> Run:
    from complexif.training.dpo import train_dpo
    from complexif.training.sft import train_sft

    with tempfile.TemporaryDirectory(prefix="bench-train-") as out:
        if method == "sft":
            result = train_sft(
                records,
                params.paths.model_dir("base"),
                out,
                cfg,
                params.train.device,
                curriculum=params.build_data.curriculum == "easy_to_hard",
            )
        else:
            result = train_dpo(
                records, params.paths.model_dir("base"), out, cfg, params.train.device
            )
    seen = cfg.max_steps * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    # SFT reads the examples in order; DPO's order is seeded, and equal in both runs: the
    # mean tokens per example times the examples seen is what both runs trained on.
    if method == "sft" and params.build_data.curriculum == "easy_to_hard":
        n_tokens = sum((tokens * (seen // len(tokens) + 1))[:seen])
    else:
        n_tokens = round(statistics.fmean(tokens) * seen)
    runtime = result.metrics["train_runtime"]
    return Run(
        method,
        label,
        train_precision(cfg.precision, params.train.device),
        cfg.padding_free,
        cfg.max_steps,
        round(runtime, 2),
        n_tokens,
        round(n_tokens / runtime, 1),
        [round(h["loss"], 4) for h in result.history],
    )


def correlation(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    if n < 3:
        return float("nan")
    return statistics.correlation(a[:n], b[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--method", choices=["sft", "dpo", "both"], default="both")
    ap.add_argument("--steps", type=int, help="max_steps (default: params.yaml)")
    ap.add_argument("--precision", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--padding-free", choices=["on", "off"])
    ap.add_argument("--output", type=Path, default=Path("benchmarks/results/training.json"))
    args = ap.parse_args()

    from transformers import AutoTokenizer

    params = load_params(args.params)
    tokenizer = AutoTokenizer.from_pretrained(str(params.paths.model_dir("base")))
    methods = ["sft", "dpo"] if args.method == "both" else [args.method]
    runs: list[Run] = []
    summary: dict = {}
    for method in methods:
        path = Path(params.paths.sft if method == "sft" else params.paths.dpo)
        if not path.is_file():
            raise SystemExit(f"error: {path} not found; run `dvc repro build_data` first")
        records = read_jsonl(path)
        tokens = real_tokens(records, tokenizer, method)
        tuned = getattr(params.train, method)
        if args.steps:
            tuned = tuned.model_copy(update={"max_steps": args.steps})
        if args.precision:
            tuned = tuned.model_copy(update={"precision": args.precision})
        if args.padding_free:
            tuned = tuned.model_copy(update={"padding_free": args.padding_free == "on"})
        baseline = tuned.model_copy(update={"precision": "float32", "padding_free": False})
        pair = [
            train_once(method, "baseline", records, params, baseline, tokens),
            train_once(method, "project", records, params, tuned, tokens),
        ]
        runs += pair
        ratio = pair[1].tokens_per_s / pair[0].tokens_per_s
        corr = correlation(pair[0].losses, pair[1].losses)
        summary[method] = {"speedup": round(ratio, 2), "loss_correlation": round(corr, 3)}
        for run in pair:
            print(json.dumps(asdict(run)), flush=True)

    print(
        f"\n{'method':6} {'run':9} {'precision':9} {'pad-free':8} {'steps':>5} {'train s':>8} "
        f"{'tokens':>7} {'tok/s':>7}"
    )
    for r in runs:
        print(
            f"{r.method:6} {r.label:9} {r.precision:9} {str(r.padding_free):8} {r.steps:>5} "
            f"{r.train_s:>8.1f} {r.tokens:>7} {r.tokens_per_s:>7.1f}"
        )
    for method in methods:
        base, proj = [r for r in runs if r.method == method]
        print(
            f"\n{method}: speed-up {summary[method]['speedup']:.2f}x, loss curves correlate "
            f"{summary[method]['loss_correlation']:.3f}"
        )
        print("  step  baseline  project")
        for i, (a, b) in enumerate(zip(base.losses, proj.losses, strict=False), start=1):
            print(f"  {i:>4}  {a:>8.4f}  {b:>7.4f}")
    write_json(args.output, {"runs": [asdict(r) for r in runs], "summary": summary})
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
