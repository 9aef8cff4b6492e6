"""Run IFEval for one model: answer the (subset of) prompts, score strict and loose, write it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from complexif.config import EvaluateConfig
from complexif.evaluation import ifeval
from complexif.evaluation.answers import generate_answers, write_answers
from complexif.llm.base import LLM, BatchBackend


def evaluate_ifeval(
    llm: LLM | BatchBackend, input_data: str | Path, cfg: EvaluateConfig, out_dir: str | Path
) -> dict[str, Any]:
    """Answers, verdicts and metrics go to ``out_dir``; returns the metrics."""
    inputs = ifeval.load_input_data(input_data)
    if cfg.ifeval.subset is not None and cfg.ifeval.subset < len(inputs):
        inputs = ifeval.stratified_subset(inputs, cfg.ifeval.subset, cfg.ifeval.seed)
    prompts = [{"id": str(i.key), "prompt": i.prompt} for i in inputs]
    rows = generate_answers(llm, prompts, cfg.generation, "IFEval")
    write_answers(rows, out_dir)
    scored = ifeval.score(inputs, {r["prompt"]: r["response"] for r in rows})
    ifeval.write_results(scored, out_dir)
    return dict(scored.metrics)
