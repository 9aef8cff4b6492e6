"""DVC stage: seeds -> verifiable complex instructions with 1-5 IFEval constraints each."""

from collections import Counter

from complexif.curation.compose import compose_instructions
from complexif.io import read_jsonl
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    c = params.compose
    seeds = read_jsonl(params.paths.seeds)
    records = compose_instructions(seeds, c.k_distribution, c.per_seed, c.exclude_ids, c.seed)
    by_k = Counter(r["n_constraints"] for r in records)
    run.log_metrics(
        {"instructions": len(records), **{f"instructions.k{k}": v for k, v in sorted(by_k.items())}}
    )
    write_gated(records, params.paths.instructions, "instructions", params, run)


if __name__ == "__main__":
    run_stage("compose", main, ["compose"])
