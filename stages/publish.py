"""DVC stage: each curated set of publish.datasets -> a Hugging Face datasets folder under
paths.publish_dir (Parquet, dataset card, analysis figures, the judge's scores), an index, and
each set's headline figures in metrics/publish.json."""

from complexif.dataset.publish import publish_all
from complexif.runtime import run_stage


def main(params, run) -> None:
    published = publish_all(params, run)
    for p in published:
        where = p.folder if p.folder is not None else "empty: not exported"
        print(f"[publish] {p.name}: {p.rows} rows -> {where}")


if __name__ == "__main__":
    run_stage("publish", main, ["publish"])
