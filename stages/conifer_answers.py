"""DVC stage: the teacher answers every Conifer instruction, with internal and external feedback."""

from complexif.conifer.answers import answer_all, read_instructions
from complexif.curation.funnel import Funnel
from complexif.llm.session import llm_session
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    instructions = read_instructions(params.paths.conifer_instructions)
    funnel = Funnel("conifer_answers")
    limit = ("conifer.max_failure_fraction", params.conifer.max_failure_fraction)
    with llm_session("conifer_answers", params, run, failure_limit=limit) as llm:
        records = answer_all(llm, instructions, params, funnel)
        funnel.save(params.paths.reports_dir, run)
        llm.check_failures(len(records))
        run.log_metrics({"answers": len(records)})
        write_gated(records, params.paths.conifer_answers, "conifer_answers", params, run)


if __name__ == "__main__":
    run_stage("conifer_answers", main, ["conifer", "llm"])
