"""FollowBench for several models: HSR/SSR by level and by category (markdown, CSV) and one
figure with HSR and SSR by level, a line per model (as the benchmark's paper draws it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from complexif.evaluation.figures import save_png

LEVELS = tuple(f"level_{k}" for k in range(1, 6))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def level_rows(metrics: Mapping[str, Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """One row per level, one column per model (``key``: hsr or ssr, in %): what dvc plots
    reads."""
    rows = []
    for k, level in enumerate(LEVELS, start=1):
        row: dict[str, Any] = {"level": k}
        for model, m in metrics.items():
            value = m[key].get(level)
            row[model] = "" if value is None else round(100 * value, 2)
        rows.append(row)
    return rows


def markdown(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| model | metric | L1 | L2 | L3 | L4 | L5 | avg |", "|---|---|" + "---:|" * 6]
    for model, m in metrics.items():
        for key in ("hsr", "ssr"):
            cells = " | ".join(_pct(m[key].get(level)) for level in (*LEVELS, "avg"))
            lines.append(f"| {model} | {key.upper()} | {cells} |")
    lines += [
        "",
        "| model | CSL | items | rule-scored | judged | unparseable | not judged |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, m in metrics.items():
        c = m["counts"]
        csl = "–" if m.get("csl") is None else f"{m['csl']:.2f}"
        lines.append(
            f"| {model} | {csl} | {c['items']} | {c['rule_scored']} | {c['judged']} | "
            f"{c['unparseable']} | {c.get('not_judged', 0)} |"
        )
    categories = sorted({cat for m in metrics.values() for cat in m.get("by_category", {})})
    if categories:
        lines += [
            "",
            "HSR average over levels by category (%):",
            "",
            "| model | " + " | ".join(categories) + " |",
            "|---|" + "---:|" * len(categories),
        ]
        for model, m in metrics.items():
            by = m.get("by_category", {})
            cells = " | ".join(
                _pct(by.get(cat, {}).get("hsr", {}).get("avg")) for cat in categories
            )
            lines.append(f"| {model} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_by_level(metrics: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    levels = list(range(1, 6))
    for ax, key, title in zip(axes, ("hsr", "ssr"), ("Hard", "Soft"), strict=True):
        for i, (model, m) in enumerate(metrics.items()):
            values = [m[key].get(level) for level in LEVELS]
            ys = [float("nan") if v is None else 100 * v for v in values]
            ax.plot(levels, ys, marker="osD^v*"[i % 6], label=model)
        ax.set_title(f"{title} satisfaction rate ({key.upper()})")
        ax.set_xlabel("level (constraints added)")
        ax.set_xticks(levels)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend()
    fig.suptitle("FollowBench by level")
    fig.tight_layout()
    save_png(fig, path)
