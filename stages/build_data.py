"""DVC stage: correction trajectories -> SFT records (easy-to-hard) and DPO pairs, both gated."""

from complexif.curation.training_data import build_dpo, build_sft
from complexif.io import read_jsonl
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    b = params.build_data
    corrections = read_jsonl(params.paths.corrections)
    sft = build_sft(corrections, b.curriculum, b.seed, b.targets, b.max_targets_per_prompt)
    dpo = build_dpo(corrections, b.max_pairs_per_prompt, b.curriculum, b.seed)
    run.log_metrics({"sft_records": len(sft), "dpo_pairs": len(dpo)})
    write_gated(sft, params.paths.sft, "sft", params, run)
    write_gated(dpo, params.paths.dpo, "dpo", params, run)


if __name__ == "__main__":
    run_stage("build_data", main, ["build_data"])
