"""DVC stage: compare the models of evaluate.models: markdown table, per-type CSV (dvc plots)
and a bar chart."""

from complexif.evaluation.report import load_metrics, markdown_table, write_report
from complexif.runtime import run_stage


def main(params, run) -> None:
    metrics = load_metrics(params.paths, params.evaluate.models)
    paths = write_report(metrics, params.paths.reports_dir)
    for path in paths.values():
        run.log_artifact(path)
    print("\nIFEval (%):\n" + markdown_table(metrics))


if __name__ == "__main__":
    run_stage("report", main, ["evaluate"])
