"""DVC stage (foreach evaluate.models): IFEval generation and scoring ->
metrics/ifeval/<model>.json."""

import argparse

from complexif.evaluation.ifeval_run import evaluate_ifeval
from complexif.llm.factory import make_local_llm
from complexif.runtime import run_stage


def main(params, run, model: str) -> None:
    e = params.evaluate
    llm = make_local_llm(
        params.paths.model_dir(model), e.generation, params.train.device, name=model
    )
    metrics = evaluate_ifeval(llm, params.paths, e, model)
    run.log_metrics(metrics)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, choices=["base", "sft", "dpo"])
    model = parser.parse_args().model
    run_stage(f"evaluate@{model}", lambda p, r: main(p, r, model), ["evaluate"])
