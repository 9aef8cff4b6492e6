"""The few figures per benchmark that DVC tracks as metrics (``metrics/<model>/<benchmark>.json``).

``dvc metrics show`` puts every key of every metrics file in a column of one table, so these
files hold the headline figures only, under short names: the table of a default run (3 models,
IFEval, FollowBench, InFoBench and the two training files) stays within 120 columns. Every
other figure (per instruction type, per level, per category, counts, the judge) stays in the
benchmark's full metrics, ``<eval_dir>/<model>/<benchmark>/metrics.json``, which the report
reads, and in MLflow under the full metrics' own names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from complexif.io import write_json

# benchmark -> (headline key, where it is in the full metrics). Fractions in 0..1 as in the
# full metrics; CSL is a number of levels (0..5).
HEADLINES: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "ifeval": (
        ("prompt_strict", ("prompt_level_strict_acc",)),
        ("inst_strict", ("inst_level_strict_acc",)),
    ),
    "followbench": (
        ("hsr", ("hsr", "avg")),
        ("ssr", ("ssr", "avg")),
        ("csl", ("csl",)),
    ),
    "infobench": (("drfr", ("drfr",)),),
}
# Four decimals (a hundredth of a percentage point) keep every column narrow; the full
# precision stays in the full metrics and in MLflow.
DIGITS = 4


def _lookup(metrics: Mapping[str, Any], where: tuple[str, ...], benchmark: str) -> Any:
    value: Any = metrics
    for i, key in enumerate(where):
        if not isinstance(value, Mapping) or key not in value:
            raise KeyError(f"{benchmark} metrics have no {'.'.join(where[: i + 1])!r}")
        value = value[key]
    return value


def headline(benchmark: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline figures of one benchmark's full metrics, rounded; a figure that could not
    be computed (None: nothing scored) is left out, so DVC shows '-' for it."""
    if benchmark not in HEADLINES:
        raise KeyError(f"no headline metrics defined for benchmark {benchmark!r}")
    out: dict[str, float] = {}
    for name, where in HEADLINES[benchmark]:
        value = _lookup(metrics, where, benchmark)
        if value is not None:
            out[name] = round(float(value), DIGITS)
    return out


def write_headline(path: str | Path, benchmark: str, metrics: Mapping[str, Any]) -> None:
    write_json(path, headline(benchmark, metrics))
