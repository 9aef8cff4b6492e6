"""DVC stage (foreach evaluate.models): the benchmarks of evaluate.benchmarks (IFEval,
FollowBench, InFoBench) -> data/eval/<model>/<benchmark>/ and metrics/evaluate/<model>/."""

import argparse
from pathlib import Path

from complexif.evaluation.benchmarks import evaluate_model
from complexif.evaluation.judging import judge_session
from complexif.llm.factory import make_local_llm
from complexif.runtime import run_stage
from complexif.tracking import flatten_metrics, numeric
from complexif.tracking.models import record_evaluation


def main(params, run, model: str) -> None:
    e = params.evaluate
    llm = make_local_llm(
        params.paths.model_dir(model), e.generation, params.train.device, name=model
    )
    with judge_session(f"evaluate@{model}", params, run) as judge:
        results = evaluate_model(llm, params, model, judge)
    scores = {name: numeric(metrics) for name, metrics in results.items()}
    run.log_metrics(scores)
    # Evidence: every response and per-prompt verdict behind the numbers.
    run.log_artifact(Path(params.paths.eval_dir) / model, artifact_path="eval")
    record_evaluation(params, model, run, flatten_metrics(scores))
    # Who judged with which prompt version: tags, so runs can be filtered by judge.
    for name, metrics in results.items():
        run.set_tags({f"{name}.judge.{k}": v for k, v in metrics.get("judge", {}).items()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, choices=["base", "sft", "dpo"])
    model = parser.parse_args().model
    run_stage(f"evaluate@{model}", lambda p, r: main(p, r, model), ["evaluate"])
