"""What DVC shows of a run, asked of DVC itself on the real dvc.yaml: `dvc metrics show` fits a
terminal (headline figures only), every chart is declared and drawn once, and the plots page
loads no script from the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from complexif.evaluation.report import write_report
from tests.conftest import REPO_ROOT, repo_params
from tests.default_run_metrics import BENCHMARKS, MODELS, write_default_run

# A wide terminal: 3 models x 3 benchmarks, training and 4 curated sets, 11 keys (155 measured).
WIDTH = 160
CHARTS = {
    "IFEval strict accuracy by instruction type (%)",
    "FollowBench hard satisfaction rate by level (%)",
    "FollowBench soft satisfaction rate by level (%)",
    "Training loss",
}


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"dvc {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _repo(root: Path) -> Path:
    """A DVC repository with this project's dvc.yaml, params.yaml and plot templates."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO_ROOT / name, root / name)
    _dvc(root, "init", "--no-scm", "-q")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    return root


@pytest.fixture(scope="module")
def run_repo(tmp_path_factory) -> Path:
    """The metrics, full metrics, report and loss curves of a default run (and InFoBench)."""
    repo = _repo(tmp_path_factory.mktemp("run"))
    full = write_default_run(repo, repo_params().paths)
    results = {b: {m: full[m][b] for m in MODELS} for b in BENCHMARKS}
    write_report(results, MODELS, repo / "reports" / "evaluation")
    return repo


def test_metrics_show_of_a_default_run_fits_in_160_columns(run_repo):
    shown = _dvc(run_repo, "metrics", "show").stdout
    lines = shown.splitlines()
    # One row per metrics file: 3 models x 3 benchmarks (InFoBench is the room for one more
    # benchmark than the default run has) and the two training files.
    paths = repo_params().paths
    expected = {paths.eval_metrics(m, b).as_posix() for m in MODELS for b in BENCHMARKS}
    expected |= {f"{paths.metrics_dir}/train_sft.json", f"{paths.metrics_dir}/train_dpo.json"}
    expected |= {
        f"{paths.metrics_dir}/publish/{name}.json" for name in repo_params().publish.datasets
    }
    assert {line.split()[0] for line in lines[1:]} == expected, shown
    # Headline figures only: no per-type, per-level or count column came along.
    assert lines[0].split() == [
        "Path",
        "complexity",
        "csl",
        "drfr",
        "hsr",
        "inst_strict",
        "prompt_strict",
        "quality",
        "rows",
        "similarity",
        "ssr",
        "train_loss",
    ], shown
    assert max(len(line) for line in lines) <= WIDTH, shown


def test_metrics_files_hold_the_headline_and_full_metrics_keep_the_rest(run_repo):
    paths = repo_params().paths
    headline = json.loads((run_repo / paths.eval_metrics("sft", "ifeval")).read_text())
    full = json.loads((run_repo / paths.eval_detail("sft", "ifeval")).read_text())
    assert headline == {
        "prompt_strict": round(full["prompt_level_strict_acc"], 4),
        "inst_strict": round(full["inst_level_strict_acc"], 4),
    }
    assert len(full["per_instruction"]) > 10
    fb = json.loads((run_repo / paths.eval_metrics("dpo", "followbench")).read_text())
    assert set(fb) == {"hsr", "ssr", "csl"}
    sft_train = json.loads((run_repo / paths.model_dir("sft") / "train_metrics.json").read_text())
    assert {"entropy", "n_examples", "epoch"} <= set(sft_train)
    assert "train_runtime" not in sft_train  # the machine's speed: MLflow only
    summary = (run_repo / "reports/evaluation/summary.md").read_text()
    assert f"| sft | {100 * full['prompt_level_strict_acc']:.1f} |" in summary


def _sources(props: dict, plot_id: str) -> set[str]:
    """The files a plot definition draws: its y (and x) files, or itself when it names one."""
    files = {f for axis in ("x", "y") if isinstance(props.get(axis), dict) for f in props[axis]}
    return files or {plot_id}


def test_every_chart_is_declared_once_and_drawn_once(run_repo):
    from dvc.repo import Repo

    with Repo(os.fspath(run_repo)) as repo:
        definitions = repo.plots.show()["workspace"]["definitions"]["data"]
    declared = [
        (plot_id, source)
        for config in definitions.values()
        for plot_id, props in config["data"].items()
        for source in _sources(props, plot_id)
    ]
    sources = [source for _, source in declared]
    assert len(sources) == len(set(sources)), declared  # no file drawn by two charts
    assert {plot_id for plot_id, _ in declared} == CHARTS, declared
    # What `dvc plots show` draws: each chart once, each with data.
    drawn = json.loads(_dvc(run_repo, "plots", "show", "--json").stdout)["data"]
    assert set(drawn) == CHARTS
    for plot_id, renderers in drawn.items():
        assert len(renderers) == 1 and renderers[0]["type"] == "vega", plot_id
        assert renderers[0]["content"]["data"]["values"], plot_id
    bars = drawn["IFEval strict accuracy by instruction type (%)"][0]["content"]
    types = {row["instruction_type"] for row in bars["data"]["values"]}
    assert len(types) > 10 and bars["encoding"]["x"]["type"] == "nominal"


REMOTE_SCRIPT = re.compile(r"""<script[^>]*\ssrc\s*=\s*["']?(https?:)?//""", re.IGNORECASE)


def test_plots_page_loads_no_script_from_the_network(tmp_path):
    from complexif.plots_page import use_template

    repo = _repo(tmp_path)
    (repo / "reports").mkdir()
    (repo / "reports/train_sft_loss.csv").write_text("step,loss\n1,2.0\n2,1.5\n")
    page = repo / "dvc_plots" / "index.html"
    _dvc(repo, "plots", "show")
    assert REMOTE_SCRIPT.search(page.read_text(encoding="utf-8"))  # DVC's own page: a CDN
    use_template(repo)
    _dvc(repo, "plots", "show")
    html = page.read_text(encoding="utf-8")
    assert not REMOTE_SCRIPT.search(html)
    assert "window.vegaEmbed=" in html  # the libraries are in the page
    assert html.count("vegaEmbed('#") == len(CHARTS)  # and DVC's charts call them
