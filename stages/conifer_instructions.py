"""DVC stage: Conifer's first half. Seeds -> reframed queries (filter 1) -> constraint lists ->
leveled instructions and format/numerical variants (filter 2), each step counted."""

from complexif.conifer.instructions import build_instructions
from complexif.conifer.seeds import select_seeds
from complexif.curation.funnel import Funnel
from complexif.llm.session import llm_session
from complexif.runtime import run_stage, write_gated

STAGE = "conifer_instructions"


def main(params, run) -> None:
    c, paths = params.conifer, params.paths
    funnel = Funnel(STAGE)
    seeds = select_seeds(params, funnel)
    limit = ("conifer.max_failure_fraction", c.max_failure_fraction)
    with llm_session(STAGE, params, run, failure_limit=limit) as llm:
        teacher = llm.client("teacher", c.teacher)
        queries, instructions = build_instructions(teacher, params, seeds, funnel)
        funnel.save(paths.reports_dir, run)
        llm.check_failures(len(instructions))
        write_gated(queries, paths.conifer_queries, "conifer_queries", params, run)
        write_gated(instructions, paths.conifer_instructions, "conifer_instructions", params, run)


if __name__ == "__main__":
    run_stage(STAGE, main, ["conifer", "seeds", "llm"])
