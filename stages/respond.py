"""DVC stage: the student model answers every instruction (batched local generation)."""

from complexif.curation.respond import respond_all
from complexif.io import read_jsonl
from complexif.llm.factory import make_llm
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    student = params.respond.student
    instructions = read_jsonl(params.paths.instructions)
    llm = make_llm(student, params)
    records = respond_all(llm, instructions, student.generation)
    n_tokens = sum(r["completion_tokens"] for r in records)
    run.log_metrics({"responses": len(records), "completion_tokens": n_tokens})
    write_gated(records, params.paths.responses, "responses", params, run)


if __name__ == "__main__":
    run_stage("respond", main, ["respond"])
