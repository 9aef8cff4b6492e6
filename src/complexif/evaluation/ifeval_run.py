"""Run IFEval for one model: answer the (subset of) prompts, score strict and loose, write it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from complexif.config import EvaluateConfig, PathsConfig
from complexif.evaluation import ifeval
from complexif.io import write_json, write_jsonl
from complexif.llm.base import LLM, BatchBackend
from complexif.llm.factory import generation_params
from complexif.llm.step import answer_step, run_step


def evaluate_ifeval(
    llm: LLM | BatchBackend, paths: PathsConfig, cfg: EvaluateConfig, model: str
) -> dict[str, Any]:
    inputs = ifeval.load_input_data(paths.ifeval_input)
    if cfg.ifeval.subset is not None and cfg.ifeval.subset < len(inputs):
        inputs = ifeval.stratified_subset(inputs, cfg.ifeval.subset, cfg.ifeval.seed)
    prompts = [{"id": str(i.key), "prompt": i.prompt} for i in inputs]
    result = run_step(llm, answer_step("evaluated"), prompts, generation_params(cfg.generation))
    if result.failures:
        # A benchmark score over the prompts that happened to succeed would not be comparable.
        first = result.failures[0]
        raise RuntimeError(
            f"IFEval for {model}: {len(result.failures)} of {len(inputs)} prompts got no answer "
            f"(first: {first.request_id}: {first.reason})"
        )
    rows = [
        {
            "id": out.request_id,
            "prompt": out.row["prompt"],
            "response": out.value,
            "model": out.response.model,
            "finish_reason": out.response.finish_reason,
            "completion_tokens": out.response.completion_tokens,
        }
        for out in result.outputs
    ]
    out_dir = Path(paths.eval_dir) / model
    write_jsonl(out_dir / "responses.jsonl", rows)
    scored = ifeval.score(inputs, {r["prompt"]: r["response"] for r in rows})
    ifeval.write_results(scored, out_dir)
    metrics = dict(scored.metrics)
    write_json(paths.ifeval_metrics(model), metrics)
    return metrics
