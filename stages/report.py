"""DVC stage: compare the models of evaluate.models on the benchmarks of evaluate.benchmarks
(reports/evaluation/: side-by-side summary with the papers' quoted rows, IFEval by type,
FollowBench by level) and show where the curated rows went (the curation funnel)."""

from pathlib import Path

from complexif.curation.funnel import funnel_markdown, read_funnels
from complexif.dataset.index import datasets_markdown, read_headlines
from complexif.evaluation.report import load_metrics, write_report
from complexif.evaluation.summary import load_quoted, summary_markdown
from complexif.io import write_text
from complexif.runtime import run_stage


def main(params, run) -> None:
    models, benchmarks = params.evaluate.models, params.evaluate.benchmarks
    results = load_metrics(params.paths, models, benchmarks)
    quoted = load_quoted()
    paths = write_report(results, models, f"{params.paths.reports_dir}/evaluation", quoted)
    for path in paths.values():
        run.log_artifact(path)
    print("\nBenchmarks (%):\n" + summary_markdown(results, models, quoted))
    # Where the curated rows went, step by step (the Conifer stages write one funnel each).
    funnel = f"{params.paths.reports_dir}/curation_funnel.md"
    table = funnel_markdown(read_funnels(params.paths.reports_dir))
    published = Path(params.paths.metrics_dir) / "publish"
    if published.is_dir():
        sets = datasets_markdown(
            read_headlines(published), params.paths.publish_dir, params.paths.reports_dir
        )
        table = f"## Published datasets\n\n{sets}\n## Funnels\n\n{table}"
    write_text(funnel, "# Curation funnel: rows in, out and dropped per step\n\n" + table)
    run.log_artifact(funnel)
    print("\nCuration funnel:\n" + table)


if __name__ == "__main__":
    run_stage("report", main, ["evaluate"])
