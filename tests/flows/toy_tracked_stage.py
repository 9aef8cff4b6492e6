"""A toy DVC stage that runs through :func:`complexif.runtime.run_stage` like the real ones (its
MLflow run, lineage tags and input datasets are the real code's), for the lineage tests.

``python toy_tracked_stage.py data``: ``data/sft.jsonl`` with ``n`` rows (``n`` from the toy
project's ``params.yaml``). ``python toy_tracked_stage.py evaluate@<model>``: responses under
``data/eval/<model>/`` and IFEval/FollowBench-shaped metrics under ``metrics/evaluate/<model>/``,
logged with the keys stages/evaluate.py logs. The ComplexIF params ``run_stage`` validates come
from ``COMPLEXIF_PARAMS`` (the repository's params.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from complexif.io import read_jsonl, write_json, write_jsonl
from complexif.runtime import run_stage

BONUS = {"base": 0.0, "sft": 0.1, "dpo": 0.2}


def toy_metrics(n: int, model: str) -> dict[str, dict]:
    """What evaluate@<model> scores when the toy data has ``n`` rows."""
    strict = round(n / 10 + BONUS[model], 4)
    return {
        "ifeval": {
            "prompt_level_strict_acc": strict,
            "prompt_level_loose_acc": round(strict + 0.05, 4),
            "inst_level_strict_acc": round(strict + 0.01, 4),
            "inst_level_loose_acc": round(strict + 0.06, 4),
            "num_prompts": 10,
        },
        "followbench": {"hsr": {"avg": round(strict / 2, 4)}, "ssr": {"avg": strict}, "csl": n},
    }


def main(stage: str) -> None:
    n = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["n"]

    def body(params, run) -> None:
        run.log_params({"n": n})
        if stage == "data":
            write_jsonl("data/sft.jsonl", [{"i": i} for i in range(n)])
            return
        model = stage.split("@", 1)[1]
        rows = read_jsonl("data/sft.jsonl")
        write_jsonl(f"data/eval/{model}/responses.jsonl", [{"response": r["i"]} for r in rows])
        metrics = toy_metrics(len(rows), model)
        for benchmark, values in metrics.items():
            write_json(f"metrics/evaluate/{model}/{benchmark}.json", values)
        run.log_metrics(metrics)

    run_stage(stage, body, [])


if __name__ == "__main__":
    main(sys.argv[1])
