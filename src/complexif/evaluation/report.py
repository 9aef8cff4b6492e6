"""Compare the evaluated models: every benchmark side by side (``summary.md``, with the papers'
quoted rows), IFEval by instruction type (table, long CSV for dvc plots, bar chart) and
FollowBench by level (table, CSV, figure), all under ``<reports_dir>/evaluation/``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from complexif.config import PathsConfig
from complexif.evaluation.figures import save_png
from complexif.io import write_csv, write_text

HEADLINE = (
    ("prompt_level_strict_acc", "prompt strict"),
    ("prompt_level_loose_acc", "prompt loose"),
    ("inst_level_strict_acc", "instr. strict"),
    ("inst_level_loose_acc", "instr. loose"),
)


def load_metrics(
    paths: PathsConfig, models: Sequence[str], benchmarks: Sequence[str]
) -> dict[str, dict[str, dict]]:
    """benchmark -> model -> full metrics (as evaluate@<model> wrote them beside the answers,
    ``<eval_dir>/<model>/<benchmark>/metrics.json``), in the given orders."""
    out: dict[str, dict[str, dict]] = {}
    for benchmark in benchmarks:
        out[benchmark] = {}
        for model in models:
            path = paths.eval_detail(model, benchmark)
            if not path.exists():
                raise FileNotFoundError(
                    f"{path}: no {benchmark} metrics for model {model!r}; run evaluate@{model}"
                )
            out[benchmark][model] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _delta(value: float, ref: float | None) -> str:
    return "" if ref is None else f" ({value - ref:+.1f})"


def markdown_table(metrics: dict[str, dict]) -> str:
    """Headline scores; every model after the first also shows its change from the first."""
    header = "| model | n | " + " | ".join(label for _, label in HEADLINE) + " |"
    sep = "|---|---:|" + "---:|" * len(HEADLINE)
    rows = [header, sep]
    first = next(iter(metrics.values()), None)
    for i, (model, m) in enumerate(metrics.items()):
        cells = " | ".join(
            f"{100 * m[key]:.1f}" + _delta(100 * m[key], None if i == 0 else 100 * first[key])
            for key, _ in HEADLINE
        )
        rows.append(f"| {model} | {m.get('num_prompts', '')} | {cells} |")
    return "\n".join(rows) + "\n"


def by_type_markdown(metrics: dict[str, dict]) -> str:
    """Instruction-level strict accuracy per type, with each model's change from the first."""
    models = list(metrics)
    counts = _type_counts(metrics)
    header = "| instruction type | n | " + " | ".join(models) + " |"
    rows = [header, "|---|---:|" + "---:|" * len(models)]
    for row in by_type_rows(metrics):
        ref = row[models[0]] if models else ""
        cells = []
        for i, model in enumerate(models):
            v = row[model]
            cells.append(
                "" if v == "" else f"{v:.1f}" + _delta(v, None if i == 0 or ref == "" else ref)
            )
        itype = row["instruction_type"]
        rows.append(f"| {itype} | {counts.get(itype, '')} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _type_counts(metrics: dict[str, dict]) -> dict[str, int]:
    first = next(iter(metrics.values()), {})
    return {t: v.get("count", "") for t, v in first.get("per_instruction", {}).items()}


def by_type_rows(metrics: dict[str, dict]) -> list[dict]:
    """One row per instruction type, one strict-accuracy column per model (what dvc plots reads)."""
    types = sorted({t for m in metrics.values() for t in m.get("per_instruction", {})})
    rows = []
    for itype in types:
        row: dict = {"instruction_type": itype}
        for model, m in metrics.items():
            value = m.get("per_instruction", {}).get(itype, {}).get("strict")
            row[model] = "" if value is None else round(100 * value, 2)
        rows.append(row)
    return rows


def plot_by_type(metrics: dict[str, dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    types = sorted({t for m in metrics.values() for t in m.get("per_instruction", {})})
    models = list(metrics)
    width = 0.8 / max(len(models), 1)
    # Top: accuracy per type; bottom: each later model's change from the first (the gain).
    fig, (ax, dax) = plt.subplots(
        2,
        1,
        figsize=(max(8, 0.45 * len(types) + 2), 8.5),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2]},
    )
    x = np.arange(len(types))

    def values(model: str) -> np.ndarray:
        per = metrics[model].get("per_instruction", {})
        return np.array([100 * per[t]["strict"] if t in per else np.nan for t in types])

    for i, model in enumerate(models):
        ax.bar(x + i * width - 0.4 + width / 2, values(model), width, label=model)
    ax.set_ylabel("instruction-level strict accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("IFEval accuracy by instruction type")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    later = models[1:]
    dwidth = 0.8 / max(len(later), 1)
    for i, model in enumerate(later):
        delta = values(model) - values(models[0])
        dax.bar(x + i * dwidth - 0.4 + dwidth / 2, delta, dwidth, label=model, color=f"C{i + 1}")
    dax.axhline(0, color="black", linewidth=0.8)
    dax.set_ylabel(f"change from {models[0]} (points)" if models else "change")
    dax.grid(axis="y", alpha=0.3)
    dax.set_xticks(x)
    dax.set_xticklabels(types, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def write_report(
    results: dict[str, dict[str, dict]],
    models: Sequence[str],
    out_dir: str | Path,
    quoted: Sequence[dict] = (),
) -> dict[str, Path]:
    """Every file of the comparison; returns them by name."""
    from complexif.evaluation.followbench import report as followbench_report
    from complexif.evaluation.summary import summary_markdown

    out_dir = Path(out_dir)
    paths = {"summary": out_dir / "summary.md"}
    write_text(paths["summary"], summary_markdown(results, models, quoted))
    if "ifeval" in results:
        metrics = results["ifeval"]
        paths |= {
            "ifeval_table": out_dir / "ifeval_table.md",
            "ifeval_csv": out_dir / "ifeval_by_type.csv",
            "ifeval_plot": out_dir / "ifeval_by_type.png",
        }
        write_text(
            paths["ifeval_table"],
            markdown_table(metrics)
            + "\nInstruction-level strict accuracy by type (%; change from the first model):\n\n"
            + by_type_markdown(metrics),
        )
        write_csv(paths["ifeval_csv"], by_type_rows(metrics))
        plot_by_type(metrics, paths["ifeval_plot"])
    if "followbench" in results:
        metrics = results["followbench"]
        paths |= {
            "followbench_table": out_dir / "followbench.md",
            "followbench_hsr_csv": out_dir / "followbench_hsr_by_level.csv",
            "followbench_ssr_csv": out_dir / "followbench_ssr_by_level.csv",
            "followbench_plot": out_dir / "followbench_by_level.png",
        }
        write_text(paths["followbench_table"], followbench_report.markdown(metrics))
        for key in ("hsr", "ssr"):
            write_csv(paths[f"followbench_{key}_csv"], followbench_report.level_rows(metrics, key))
        followbench_report.plot_by_level(metrics, paths["followbench_plot"])
    return paths
