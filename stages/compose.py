"""DVC stage: seeds -> complex instructions with k verifiable constraints each, in our own words."""

from collections import Counter

from complexif.constraints.phrasing import Phrasebook
from complexif.curation.compose import compose_instructions
from complexif.io import read_jsonl
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    c = params.compose
    seeds = read_jsonl(params.paths.seeds)
    phrasebook = Phrasebook.load(f"{params.paths.prompts_dir}/{c.phrasings}")
    records = compose_instructions(
        seeds, phrasebook, c.k_distribution, c.per_seed, c.exclude_ids, c.seed
    )
    by_k = Counter(r["n_constraints"] for r in records)
    run.log_metrics(
        {"instructions": len(records), **{f"instructions.k{k}": v for k, v in sorted(by_k.items())}}
    )
    write_gated(records, params.paths.instructions, "instructions", params, run)


if __name__ == "__main__":
    run_stage("compose", main, ["compose"])
