"""The dataset card's figures, one PNG each, drawn from the analysis and the diversity numbers.

Every function writes its file even when it has nothing to draw (a figure that says "no data"):
the stage declares each file as an output, and an SFT set without Conifer levels or a run
without judge scores must still produce them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from complexif.dataset.analysis import DatasetAnalysis, Distribution
from complexif.dataset.diversity import Diversity, Similarity
from complexif.evaluation.figures import save_png

FIGURES = ("lengths", "turns", "constraints", "levels", "diversity", "scores")
# The judge's 1-6 scale: every score keeps its bar even when no row got it.
SCORE_SCALE = tuple(range(1, 7))
SCORE_ASPECTS = ("complexity", "quality")
# Token-length histograms: enough bins to show the shape, few enough to read on a small set.
LENGTH_BINS = 30


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _no_data(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _hist(ax: Any, dist: Distribution, label: str, color: str, bins: Any) -> None:
    ax.hist(
        list(dist.counts),
        bins=bins,
        weights=list(dist.counts.values()),
        alpha=0.6,
        color=color,
        label=f"{label} (n={dist.n}, median {dist.median:g})",
    )


def plot_lengths(analysis: DatasetAnalysis, path: str | Path) -> None:
    """Instruction and response lengths in tokens, one panel each (DPO: the rejected answers
    over the chosen ones)."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ("instruction length (tokens)", [("instructions", analysis.instruction_tokens, "C0")]),
        (
            "response length (tokens)",
            [("responses", analysis.response_tokens, "C1")]
            + (
                [("rejected", analysis.rejected_tokens, "C3")] if analysis.rejected_tokens.n else []
            ),
        ),
    )
    for ax, (title, series) in zip(axes, panels, strict=True):
        series = [s for s in series if s[1].n]
        if not series:
            _no_data(ax, title)
            continue
        # Shared edges, so overlaid chosen and rejected bars line up.
        hi = max(d.max for _, d, _ in series)
        bins = np.linspace(0, max(hi, 1), LENGTH_BINS + 1)
        for label, dist, color in series:
            _hist(ax, dist, label, color, bins)
        ax.set_title(title)
        ax.set_xlabel("tokens")
        ax.set_ylabel("rows")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def _count_bars(ax: Any, counts: Mapping[int, int], title: str, xlabel: str) -> None:
    if not counts:
        _no_data(ax, title)
        return
    # Every integer between the smallest and largest value gets a slot, so gaps show as gaps.
    xs = list(range(min(counts), max(counts) + 1))
    ax.bar(xs, [counts.get(x, 0) for x in xs], color="C0")
    ax.set_xticks(xs)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.grid(axis="y", alpha=0.3)


def plot_turns(analysis: DatasetAnalysis, path: str | Path) -> None:
    """Rows by number of user turns."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    _count_bars(ax, analysis.turns.counts, "turns per conversation", "user turns")
    fig.tight_layout()
    save_png(fig, path)


def plot_constraints(analysis: DatasetAnalysis, path: str | Path) -> None:
    """Constraints per instruction (bars) and the verifiable constraint types (horizontal
    bars, most frequent on top)."""
    plt = _pyplot()
    types = analysis.constraint_types
    fig, (ax, tax) = plt.subplots(
        1,
        2,
        figsize=(12, max(4, 0.3 * len(types) + 1.5)),
        gridspec_kw={"width_ratios": [2, 3]},
    )
    title = "constraints per instruction"
    if analysis.constraints_unstated:
        title += f" ({analysis.constraints_unstated} rows state none)"
    _count_bars(ax, analysis.constraints.counts, title, "constraints")
    if not types:
        _no_data(tax, "constraint types")
    else:
        names = list(types)[::-1]  # barh draws bottom-up: most frequent last, so on top
        tax.barh(names, [types[n] for n in names], color="C2")
        tax.set_title("constraint types")
        tax.set_xlabel("occurrences")
        tax.tick_params(axis="y", labelsize=8)
        tax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def plot_levels(analysis: DatasetAnalysis, path: str | Path) -> None:
    """Conifer difficulty levels: rows by their hardest level, and all levels of all rows."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if not analysis.levels_all:
        _no_data(ax, "Conifer difficulty levels")
    else:
        xs = np.arange(min(analysis.levels_all), max(analysis.levels_all) + 1)
        for offset, counts, label in (
            (-0.2, analysis.levels_max, "rows by hardest level"),
            (0.2, analysis.levels_all, "all levels of all rows"),
        ):
            ax.bar(xs + offset, [counts.get(int(x), 0) for x in xs], 0.4, label=label)
        ax.set_xticks(xs)
        ax.set_title("Conifer difficulty levels")
        ax.set_xlabel("level")
        ax.set_ylabel("count")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def _similarity_label(name: str, sim: Similarity) -> str:
    sampled = f" of {sim.n_total}" if sim.n < sim.n_total else ""
    return f"{name} (n={sim.n}{sampled}, mean {sim.mean:.3f})"


def plot_diversity(diversity: Diversity | None, path: str | Path) -> None:
    """Pairwise cosine similarity of the instructions, curated over reference, as shares of
    each set's pairs (the sets differ in size); the legend gives each mean."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    title = "pairwise instruction similarity"
    sets = []
    if diversity is not None:
        sets = [
            (name, sim, color)
            for name, sim, color in (
                ("curated", diversity.curated, "C0"),
                ("reference", diversity.reference, "C1"),
            )
            if sim.n_pairs
        ]
    if not sets:
        _no_data(ax, title)
    else:
        for name, sim, color in sets:
            widths = [b - a for a, b in zip(sim.edges[:-1], sim.edges[1:], strict=True)]
            shares = [100 * c / sim.n_pairs for c in sim.counts]
            ax.bar(
                sim.edges[:-1],
                shares,
                widths,
                align="edge",
                alpha=0.55,
                color=color,
                label=_similarity_label(name, sim),
            )
        ax.set_title(f"{title} ({sets[0][1].method} cosine)")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("% of pairs")
        ax.set_xlim(0, 1)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)


def plot_scores(
    curated: Mapping[str, Mapping[int, int]] | None,
    reference: Mapping[str, Mapping[int, int]] | None,
    unparseable: Mapping[str, int] | None,
    path: str | Path,
) -> None:
    """The judge's 1-6 scores, one panel per aspect (complexity, quality, then any other the
    counts name): curated and reference side by side, as shares of each set's parsed scores.
    The title says how many judgements could not be parsed (they are in no bar)."""
    import numpy as np

    plt = _pyplot()
    curated = curated or {}
    reference = reference or {}
    named = [*SCORE_ASPECTS, *sorted((set(curated) | set(reference)) - set(SCORE_ASPECTS))]
    fig, axes = plt.subplots(1, len(named), figsize=(5.5 * len(named), 4), squeeze=False)
    for ax, aspect in zip(axes[0], named, strict=True):
        sets = [
            (name, counts[aspect], color)
            for name, counts, color in (("curated", curated, "C0"), ("reference", reference, "C1"))
            if sum(counts.get(aspect, {}).values())
        ]
        if not sets:
            _no_data(ax, aspect)
            continue
        scale = sorted(set(SCORE_SCALE).union(*(c for _, c, _ in sets)))
        xs = np.arange(len(scale))
        width = 0.8 / len(sets)
        for k, (name, counts, color) in enumerate(sets):
            total = sum(counts.values())
            ax.bar(
                xs + k * width - 0.4 + width / 2,
                [100 * counts.get(s, 0) / total for s in scale],
                width,
                color=color,
                label=f"{name} (n={total})",
            )
        ax.set_xticks(xs)
        ax.set_xticklabels([str(s) for s in scale])
        ax.set_title(aspect)
        ax.set_xlabel("score")
        ax.set_ylabel("% of scored rows")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    unparsed = ", ".join(f"{a} {n}" for a, n in (unparseable or {}).items())
    fig.suptitle("judge scores" + (f" (unparseable: {unparsed})" if unparsed else ""))
    fig.tight_layout()
    save_png(fig, path)


def write_figures(
    out_dir: str | Path,
    analysis: DatasetAnalysis,
    diversity: Diversity | None,
    scores: Mapping[str, Mapping[int, int]] | None,
    reference_scores: Mapping[str, Mapping[int, int]] | None,
    unparseable: Mapping[str, int] | None,
) -> dict[str, Path]:
    """Every figure under ``out_dir`` as ``<name>.png`` (names in :data:`FIGURES`), each
    written even without data; returns them by name."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"{name}.png" for name in FIGURES}
    plot_lengths(analysis, paths["lengths"])
    plot_turns(analysis, paths["turns"])
    plot_constraints(analysis, paths["constraints"])
    plot_levels(analysis, paths["levels"])
    plot_diversity(diversity, paths["diversity"])
    plot_scores(scores, reference_scores, unparseable, paths["scores"])
    return paths
