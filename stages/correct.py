"""DVC stage: verify each response, fix failed constraints one at a time, re-verify every fix."""

from complexif.curation.correct import correct_responses
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.factory import make_llm
from complexif.llm.prompts import load_template
from complexif.runtime import run_stage


def main(params, run) -> None:
    c = params.correct
    template = load_template(params.paths.prompts_dir, c.prompt_template)
    records, summary = correct_responses(
        read_jsonl(params.paths.instructions),
        read_jsonl(params.paths.responses),
        c,
        template,
        teacher=lambda: make_llm(c.teacher, params),
        on_round=lambda rnd, stats: run.log_metrics(
            {f"round.{k}": v for k, v in stats.items()}, step=rnd
        ),
    )
    run.log_metrics(summary)
    write_jsonl(params.paths.corrections, records)


if __name__ == "__main__":
    run_stage("correct", main, ["correct"])
