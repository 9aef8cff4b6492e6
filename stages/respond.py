"""DVC stage: the student model answers every instruction."""

from complexif.curation.respond import respond_all
from complexif.io import read_jsonl
from complexif.llm.ledger import reconcile
from complexif.llm.session import llm_session
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    student = params.respond.student
    instructions = read_jsonl(params.paths.instructions)
    with llm_session("respond", params, run) as llm:
        records, failures = respond_all(
            llm.client("student", student), instructions, student.generation
        )
        # One answer (or one ledgered failure) per instruction and sample.
        expected = len(instructions) * student.generation.n
        reconcile("respond", expected, len(records), len(failures))
        llm.check_failures(len(records))
        n_tokens = sum(r["completion_tokens"] for r in records)
        run.log_metrics(
            {"responses": len(records), "failed": len(failures), "completion_tokens": n_tokens}
        )
        write_gated(records, params.paths.responses, "responses", params, run)


if __name__ == "__main__":
    run_stage("respond", main, ["respond", "llm"])
