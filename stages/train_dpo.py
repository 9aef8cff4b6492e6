"""DVC stage: TRL DPO (+ SFT loss on chosen) from models/sft (or base) -> models/dpo, in one
process or several (train.distributed)."""

from complexif.io import read_jsonl
from complexif.runtime import run_stage
from complexif.tracking.models import register_trained
from complexif.training.dpo import train_dpo
from complexif.training.launch import relaunch
from complexif.training.report import TRAIN_METRICS, log_training


def main(params, run) -> None:
    result = train_dpo(
        read_jsonl(params.paths.dpo),
        params.paths.model_dir(params.train.dpo.start),
        params.paths.model_dir("dpo"),
        params.train.dpo,
        device=params.train.device,
        report_to=["mlflow"] if run.enabled else [],
    )
    log_training(
        run,
        result,
        f"{params.paths.metrics_dir}/train_dpo.json",
        f"{params.paths.reports_dir}/train_dpo_loss.csv",
        str(params.paths.model_dir("dpo") / TRAIN_METRICS),
    )
    register_trained(params, "dpo", run)


if __name__ == "__main__":
    run_stage("train_dpo", main, ["train"], launcher=relaunch)
