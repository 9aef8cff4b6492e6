"""DVC stage: verify each response, fix failed constraints one at a time, re-verify every fix."""

from complexif.curation.correct import (
    correct_responses,
    fix_step,
    read_instructions,
    teacher_factory,
)
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.ledger import reconcile
from complexif.llm.session import llm_session
from complexif.runtime import run_stage


def main(params, run) -> None:
    responses = read_jsonl(params.paths.responses)
    with llm_session("correct", params, run) as llm:
        records, summary = correct_responses(
            read_instructions(params.paths.instructions),
            responses,
            params.correct,
            fix_step(params),
            teacher=teacher_factory(params, llm),
            on_round=lambda rnd, stats: run.log_metrics(
                {f"round.{k}": v for k, v in stats.items()}, step=rnd
            ),
        )
        # A failed teacher call leaves its response unresolved, never drops it.
        reconcile("correct", len(responses), len(records), 0)
        llm.check_failures(len(records))
        run.log_metrics(summary)
        write_jsonl(params.paths.corrections, records)


if __name__ == "__main__":
    run_stage("correct", main, ["correct", "llm"])
