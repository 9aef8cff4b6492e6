"""DVC stage: verify each response, fix failed constraints one at a time, re-verify every fix."""

from complexif.curation.correct import JSONFixTeacher, correct_responses
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.ledger import reconcile
from complexif.llm.prompts import load_template
from complexif.llm.session import llm_session
from complexif.runtime import run_stage


def main(params, run) -> None:
    c = params.correct
    prompts = params.paths.prompts_dir
    json_output = c.teacher_output == "json"
    template = load_template(prompts, c.json_prompt_template if json_output else c.prompt_template)
    responses = read_jsonl(params.paths.responses)
    with llm_session("correct", params, run) as llm:

        def teacher():
            client = llm.client("teacher", c.teacher)
            if json_output:
                return JSONFixTeacher(
                    client, load_template(prompts, params.llm.json_repair_template)
                )
            return client

        records, summary = correct_responses(
            read_jsonl(params.paths.instructions),
            responses,
            c,
            template,
            teacher=teacher,
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
