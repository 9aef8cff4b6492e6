"""DVC stage: seed sources -> filtered, deduplicated, decontaminated data/seeds.jsonl."""

from complexif.curation.seed_set import build_seed_set
from complexif.io import write_jsonl
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    seeds = build_seed_set(params.seeds, params.paths)
    seeds.report.log()
    run.log_dict(seeds.report.to_dict(), "seed_report.json")
    run.log_metrics({"seeds.input": seeds.report.input_count, "seeds.kept": len(seeds.records)})
    write_jsonl(f"{params.paths.reports_dir}/decontaminated_seeds.jsonl", seeds.removed_rows())
    write_gated(seeds.rows(), params.paths.seeds, "seeds", params, run)


if __name__ == "__main__":
    run_stage("seeds", main, ["seeds"])
