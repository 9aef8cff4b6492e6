"""DVC stage: TRL SFT (LoRA or full) from models/base -> models/sft, in one process or several
(train.distributed)."""

from complexif.io import read_jsonl
from complexif.runtime import run_stage
from complexif.tracking.models import register_trained
from complexif.training.launch import relaunch
from complexif.training.report import TRAIN_METRICS, log_training
from complexif.training.sft import train_sft


def main(params, run) -> None:
    records = read_jsonl(params.paths.sft)
    result = train_sft(
        records,
        params.paths.model_dir("base"),
        params.paths.model_dir("sft"),
        params.train.sft,
        device=params.train.device,
        curriculum=params.build_data.curriculum == "easy_to_hard",
        report_to=["mlflow"] if run.enabled else [],
    )
    log_training(
        run,
        result,
        f"{params.paths.metrics_dir}/train_sft.json",
        f"{params.paths.reports_dir}/train_sft_loss.csv",
        str(params.paths.model_dir("sft") / TRAIN_METRICS),
    )
    register_trained(params, "sft", run)


if __name__ == "__main__":
    run_stage("train_sft", main, ["train"], launcher=relaunch)
