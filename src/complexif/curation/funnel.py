"""What each curation step let through: rows in, rows out, and the rest by reason.

A stage keeps one :class:`Funnel`; every step (an LLM call, a filter, a program) adds its counts,
which must add up (in = out + dropped). The stage writes it to ``<reports_dir>/funnel/<stage>.json``
and logs it to its MLflow run as ``funnel.<step>.in|out|dropped.<reason>``; the report shows all
stages' funnels as one table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from complexif.io import DataError, read_text, write_json


@dataclass(frozen=True)
class StepCount:
    step: str
    n_in: int
    n_out: int
    dropped: dict[str, int] = field(default_factory=dict)


class FunnelError(RuntimeError):
    """A step's counts do not add up: a row went missing (a bug, never expected)."""


@dataclass
class Funnel:
    stage: str
    steps: list[StepCount] = field(default_factory=list)

    def add(
        self, step: str, n_in: int, n_out: int, dropped: Mapping[str, int] | None = None
    ) -> StepCount:
        kept = {k: int(v) for k, v in sorted((dropped or {}).items()) if v}
        if n_in != n_out + sum(kept.values()):
            raise FunnelError(
                f"{self.stage}/{step}: {n_in} in but {n_out} out + {sum(kept.values())} dropped "
                f"({kept})"
            )
        count = StepCount(step, n_in, n_out, kept)
        self.steps.append(count)
        return count

    def add_result(self, result: Any, **more_dropped: int) -> StepCount:
        """Add an LLM step's result under its name (``StepResult.counts()``), with drops decided
        after it (a filter's "no", an answer cut off)."""
        return self.add_counts(result.step, result.counts(), **more_dropped)

    def add_counts(self, step: str, counts: Mapping[str, Any], **more_dropped: int) -> StepCount:
        """Add ``counts`` ({in, out, dropped}) with drops decided after them."""
        dropped = dict(counts["dropped"])
        for reason, n in more_dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
        return self.add(step, counts["in"], counts["out"] - sum(more_dropped.values()), dropped)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.steps:
            out[f"funnel.{s.step}.in"] = float(s.n_in)
            out[f"funnel.{s.step}.out"] = float(s.n_out)
            for reason, n in s.dropped.items():
                out[f"funnel.{s.step}.dropped.{reason}"] = float(n)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "steps": [asdict(s) for s in self.steps]}

    def save(self, reports_dir: str | Path, run: Any | None = None) -> Path:
        path = funnel_path(reports_dir, self.stage)
        write_json(path, self.to_dict())
        if run is not None:
            run.log_metrics(self.metrics())
        return path


def funnel_path(reports_dir: str | Path, stage: str) -> Path:
    return Path(reports_dir) / "funnel" / f"{stage}.json"


# How the report orders the funnels (the data flows this way); others follow by name.
STAGE_ORDER = ("conifer_instructions", "conifer_answers", "conifer_data")


def read_funnels(reports_dir: str | Path) -> list[Funnel]:
    """Every stage's funnel under ``<reports_dir>/funnel``, in pipeline order."""
    funnels = [_read_funnel(p) for p in (Path(reports_dir) / "funnel").glob("*.json")]
    rank = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(funnels, key=lambda f: (rank.get(f.stage, len(rank)), f.stage))


def _read_funnel(path: Path) -> Funnel:
    try:
        data = json.loads(read_text(path))
        funnel = Funnel(data["stage"])
        for s in data["steps"]:
            funnel.add(s["step"], s["n_in"], s["n_out"], s["dropped"])
    except (KeyError, TypeError, ValueError, FunnelError) as exc:
        raise DataError(f"{path}: not a funnel file ({exc})") from exc
    return funnel


def funnel_markdown(funnels: list[Funnel]) -> str:
    """One table per stage: each step's rows in and out, and the dropped ones by reason."""
    parts = []
    for f in funnels:
        lines = [
            f"### {f.stage}",
            "",
            "| step | in | out | dropped (reason: rows) |",
            "|---|---:|---:|---|",
        ]
        for s in f.steps:
            why = ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "-"
            lines.append(f"| {s.step} | {s.n_in} | {s.n_out} | {why} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


__all__ = ["Funnel", "FunnelError", "StepCount", "funnel_markdown", "funnel_path", "read_funnels"]
