"""Compare models' IFEval scores: a markdown table, a long-format CSV and a bar chart by type."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from complexif.io import write_csv, write_text

HEADLINE = (
    ("prompt_level_strict_acc", "prompt strict"),
    ("prompt_level_loose_acc", "prompt loose"),
    ("inst_level_strict_acc", "instr. strict"),
    ("inst_level_loose_acc", "instr. loose"),
)


def load_metrics(metrics_dir: str | Path, models: Sequence[str]) -> dict[str, dict]:
    out = {}
    for model in models:
        path = Path(metrics_dir) / f"ifeval_{model}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no IFEval metrics for model {model!r}; run its evaluate stage"
            )
        out[model] = json.loads(path.read_text(encoding="utf-8"))
    return out


def markdown_table(metrics: dict[str, dict]) -> str:
    header = "| model | n | " + " | ".join(label for _, label in HEADLINE) + " |"
    sep = "|---|---:|" + "---:|" * len(HEADLINE)
    rows = [header, sep]
    for model, m in metrics.items():
        cells = " | ".join(f"{100 * m[key]:.1f}" for key, _ in HEADLINE)
        rows.append(f"| {model} | {m.get('num_prompts', '')} | {cells} |")
    return "\n".join(rows) + "\n"


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
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(types) + 2), 5.5))
    x = np.arange(len(types))
    for i, model in enumerate(models):
        per = metrics[model].get("per_instruction", {})
        vals = [100 * per[t]["strict"] if t in per else np.nan for t in types]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=model)
    ax.set_xticks(x)
    ax.set_xticklabels(types, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("instruction-level strict accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("IFEval accuracy by instruction type")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_report(metrics: dict[str, dict], reports_dir: str | Path) -> dict[str, Path]:
    reports_dir = Path(reports_dir)
    paths = {
        "table": reports_dir / "ifeval_table.md",
        "csv": reports_dir / "ifeval_by_type.csv",
        "plot": reports_dir / "ifeval_by_type.png",
    }
    write_text(paths["table"], markdown_table(metrics))
    write_csv(paths["csv"], by_type_rows(metrics))
    plot_by_type(metrics, paths["plot"])
    return paths
