"""DVC stage: Conifer's SFT records (packed levels, feedback samples) and DPO pairs."""

from complexif.conifer.packing import DPO_COLUMNS, build_conifer_data, read_answers
from complexif.curation.funnel import Funnel
from complexif.runtime import run_stage, write_gated


def main(params, run) -> None:
    funnel = Funnel("conifer_data")
    sft, dpo = build_conifer_data(
        read_answers(params.paths.conifer_answers), params.conifer, funnel
    )
    funnel.save(params.paths.reports_dir, run)
    run.log_metrics({"sft_records": len(sft), "dpo_pairs": len(dpo)})
    write_gated(sft, params.paths.conifer_sft, "conifer_sft", params, run)
    # No pairs is a valid outcome (dpo_pairs off, or every weak answer passed): gate the columns.
    write_gated(dpo, params.paths.conifer_dpo, "conifer_dpo", params, run, columns=DPO_COLUMNS)


if __name__ == "__main__":
    run_stage("conifer_data", main, ["conifer"])
