"""All benchmarks side by side for the evaluated models, with the papers' published rows below
them, marked as quoted (``data/benchmarks/quoted_results.yaml``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from complexif.io import DataError

QUOTED_RESULTS = Path(__file__).resolve().parents[3] / "data/benchmarks/quoted_results.yaml"
Metrics = Mapping[str, Any]


def _hsr_4_5(m: Metrics) -> float | None:
    values = [m["hsr"].get("level_4"), m["hsr"].get("level_5")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Column:
    benchmark: str
    label: str
    value: Callable[[Metrics], float | None]
    quoted_key: str  # the key of this figure in quoted_results.yaml (in %)


COLUMNS = (
    Column(
        "ifeval",
        "IFEval prompt strict",
        lambda m: m["prompt_level_strict_acc"],
        "ifeval_prompt_strict",
    ),
    Column(
        "ifeval",
        "IFEval prompt loose",
        lambda m: m["prompt_level_loose_acc"],
        "ifeval_prompt_loose",
    ),
    Column(
        "ifeval", "IFEval instr. strict", lambda m: m["inst_level_strict_acc"], "ifeval_inst_strict"
    ),
    Column(
        "ifeval", "IFEval instr. loose", lambda m: m["inst_level_loose_acc"], "ifeval_inst_loose"
    ),
    Column("followbench", "FollowBench HSR", lambda m: m["hsr"].get("avg"), "followbench_hsr_avg"),
    Column("followbench", "HSR L4-5", _hsr_4_5, "followbench_hsr_level_4_5"),
    Column("followbench", "SSR", lambda m: m["ssr"].get("avg"), "followbench_ssr_avg"),
    Column("infobench", "InFoBench DRFR", lambda m: m.get("drfr"), "infobench_drfr"),
    Column("infobench", "DRFR easy", lambda m: m.get("drfr_easy"), "infobench_drfr_easy"),
    Column("infobench", "DRFR hard", lambda m: m.get("drfr_hard"), "infobench_drfr_hard"),
)


def load_quoted(quoted_file: str | Path = QUOTED_RESULTS) -> list[dict[str, Any]]:
    path = Path(quoted_file)
    rows = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    known = {c.quoted_key for c in COLUMNS} | {"model", "source"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "model" not in row or "source" not in row:
            raise DataError(f"{path}: entry {i}: needs fields 'model' and 'source'")
        unknown = set(row) - known
        if unknown:
            raise DataError(f"{path}: entry {i}: unknown field(s) {sorted(unknown)}")
    return rows


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_markdown(
    results: Mapping[str, Mapping[str, Metrics]],
    models: Sequence[str],
    quoted: Sequence[Mapping[str, Any]] = (),
) -> str:
    """``results``: benchmark -> model -> metrics, for the benchmarks that were evaluated."""
    columns = [c for c in COLUMNS if c.benchmark in results]
    header = "| model | " + " | ".join(c.label for c in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for model in models:
        cells = [_cell(c.value(results[c.benchmark][model])) for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    shown = [q for q in quoted if any(c.quoted_key in q for c in columns)]
    for q in shown:
        cells = ["–" if q.get(c.quoted_key) is None else f"{q[c.quoted_key]:.1f}" for c in columns]
        lines.append(f"| {q['model']} (quoted) | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if shown:
        sources = sorted({q["source"] for q in shown})
        text += (
            "\nRows marked (quoted) are published figures, not measured here (other models, "
            "judges and full benchmarks): " + "; ".join(sources) + ".\n"
        )
    return text
