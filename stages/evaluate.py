"""DVC stage (foreach evaluate.models): the benchmarks of evaluate.benchmarks (IFEval,
FollowBench, InFoBench) -> data/eval/<model>/<benchmark>/ and metrics/evaluate/<model>/."""

import argparse

from complexif.evaluation.benchmarks import evaluate_model, numeric
from complexif.llm.factory import make_local_llm
from complexif.llm.session import llm_session
from complexif.runtime import run_stage


def main(params, run, model: str) -> None:
    e = params.evaluate
    llm = make_local_llm(
        params.paths.model_dir(model), e.generation, params.train.device, name=model
    )
    limit = ("evaluate.judge_max_failure_fraction", e.judge_max_failure_fraction)
    with llm_session(f"evaluate@{model}", params, run, failure_limit=limit) as session:
        results = evaluate_model(llm, params, model, lambda: session.client("judge", e.judge))
    run.log_metrics({name: numeric(metrics) for name, metrics in results.items()})
    # Who judged with which prompt version: tags, so runs can be filtered by judge.
    for name, metrics in results.items():
        run.set_tags({f"{name}.judge.{k}": v for k, v in metrics.get("judge", {}).items()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, choices=["base", "sft", "dpo"])
    model = parser.parse_args().model
    run_stage(f"evaluate@{model}", lambda p, r: main(p, r, model), ["evaluate"])
