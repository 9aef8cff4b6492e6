"""DVC stage: FCS correction trajectories -> SFT records (easy-to-hard) and DPO pairs, gated;
then mixed with Conifer's records as ``curation.method`` says."""

from complexif.curation.methods import combine
from complexif.curation.training_data import build_dpo, build_sft
from complexif.io import DataError, read_jsonl, write_jsonl
from complexif.runtime import gate_records, run_stage


def main(params, run) -> None:
    b, paths, cur = params.build_data, params.paths, params.curation
    corrections = read_jsonl(paths.corrections)
    fcs_sft = build_sft(corrections, b.curriculum, b.seed, b.targets, b.max_targets_per_prompt)
    fcs_dpo = build_dpo(corrections, b.max_pairs_per_prompt, b.curriculum, b.seed)
    # FCS records are gated whichever method trains (their gate reports are this stage's
    # outputs); Conifer's were gated by their own suites in conifer_data.
    gate_records(fcs_sft, "sft", params, run, artifact=paths.sft)
    gate_records(fcs_dpo, "dpo", params, run, artifact=paths.dpo)
    sft, sft_counts = combine(fcs_sft, read_jsonl(paths.conifer_sft), cur, cur.method)
    dpo, dpo_counts = combine(fcs_dpo, read_jsonl(paths.conifer_dpo), cur, cur.dpo_method)
    for name, key, method, records in (
        ("SFT", "method", cur.method, sft),
        ("DPO", "dpo_method", cur.dpo_method, dpo),
    ):
        if not records:
            raise DataError(
                f"build_data: curation.{key}={method} leaves no {name} records (the funnels in "
                f"{paths.reports_dir}/funnel say where the rows went)"
            )
    run.log_metrics(
        {"sft_records": len(sft), "dpo_pairs": len(dpo)}
        | {f"sft_records.{k}": v for k, v in sft_counts.items()}
        | {f"dpo_pairs.{k}": v for k, v in dpo_counts.items()}
    )
    write_jsonl(paths.sft, sft)
    write_jsonl(paths.dpo, dpo)


if __name__ == "__main__":
    run_stage("build_data", main, ["build_data", "curation"])
