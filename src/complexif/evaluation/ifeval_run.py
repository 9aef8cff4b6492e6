"""Run IFEval for one model: answer the (subset of) prompts, score strict and loose, write it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from complexif.config import EvaluateConfig, PathsConfig
from complexif.evaluation import ifeval
from complexif.evaluation.generate import answer_prompts
from complexif.io import write_json, write_jsonl
from complexif.llm.base import LLM, BatchBackend
from complexif.llm.factory import generation_params


def evaluate_ifeval(
    llm: LLM | BatchBackend, paths: PathsConfig, cfg: EvaluateConfig, model: str
) -> dict[str, Any]:
    inputs = ifeval.load_input_data(paths.ifeval_input)
    if cfg.ifeval.subset is not None and cfg.ifeval.subset < len(inputs):
        inputs = ifeval.stratified_subset(inputs, cfg.ifeval.subset, cfg.ifeval.seed)
    rows, failures = answer_prompts(
        llm, [(str(i.key), i.prompt) for i in inputs], generation_params(cfg.generation)
    )
    if failures:
        # A benchmark score over the prompts that happened to succeed would not be comparable.
        raise RuntimeError(
            f"IFEval for {model}: {len(failures)} of {len(inputs)} prompts got no answer "
            f"(first: {failures[0].request_id}: {failures[0].reason})"
        )
    out_dir = Path(paths.eval_dir) / model
    write_jsonl(out_dir / "responses.jsonl", rows)
    result = ifeval.score(inputs, {r["prompt"]: r["response"] for r in rows})
    ifeval.write_results(result, out_dir)
    metrics = dict(result.metrics)
    write_json(paths.ifeval_metrics(model), metrics)
    return metrics
