"""DVC stage: compare the models of evaluate.models (markdown table, per-type CSV for dvc plots,
a bar chart) and show where the curated rows went (the curation funnel)."""

from complexif.curation.funnel import funnel_markdown, read_funnels
from complexif.evaluation.report import load_metrics, markdown_table, write_report
from complexif.io import write_text
from complexif.runtime import run_stage


def main(params, run) -> None:
    metrics = load_metrics(params.paths, params.evaluate.models)
    paths = write_report(metrics, params.paths.reports_dir)
    for path in paths.values():
        run.log_artifact(path)
    print("\nIFEval (%):\n" + markdown_table(metrics))
    # Where the curated rows went, step by step (the Conifer stages write one funnel each).
    funnel = f"{params.paths.reports_dir}/curation_funnel.md"
    table = funnel_markdown(read_funnels(params.paths.reports_dir))
    write_text(funnel, "# Curation funnel: rows in, out and dropped per step\n\n" + table)
    run.log_artifact(funnel)
    print("\nCuration funnel:\n" + table)


if __name__ == "__main__":
    run_stage("report", main, ["evaluate"])
