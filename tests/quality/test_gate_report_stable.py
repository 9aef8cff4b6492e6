"""reports/gates/*.json are git-tracked DVC outputs: two validations of equal data write the same
bytes, however long they took and whenever they ran; the time goes to MLflow instead."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from complexif.quality.gate import GateFailed, validate
from complexif.runtime import gate_records

# The module, not the `gate` function that complexif.quality exports under the same name.
gate_module = importlib.import_module("complexif.quality.gate")


def slow_clock(step: float) -> SimpleNamespace:
    """A perf_counter that advances ``step`` seconds per reading."""
    ticks = itertools.count()
    return SimpleNamespace(perf_counter=lambda: next(ticks) * step)


class RecordingRun:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path))


@pytest.mark.parametrize("duplicate", [False, True], ids=["passing", "failing"])
def test_equal_data_gives_an_identical_report(
    tmp_path: Path, seed_records, expectations_dir, monkeypatch, duplicate: bool
) -> None:
    if duplicate:  # failures carry row details: they must be stable too
        seed_records[1]["id"] = seed_records[0]["id"]
    reports = []
    for i, step in enumerate([0.25, 9.5]):
        monkeypatch.setattr(gate_module, "time", slow_clock(step))
        out = tmp_path / f"run{i}" / "seeds.json"
        result = validate(pd.DataFrame(seed_records), "seeds", expectations_dir, result_path=out)
        assert result.success is not duplicate
        assert result.duration_s == step  # the runs really did take different times
        reports.append(out.read_bytes())
    assert reports[0] == reports[1]
    assert b"duration_s" not in reports[0]
    assert b"ge_load_time" not in reports[0]


def test_the_gate_time_is_logged_to_mlflow(tmp_path: Path, seed_records, expectations_dir):
    params = SimpleNamespace(
        paths=SimpleNamespace(gates_dir=str(tmp_path / "gates"), expectations_dir=expectations_dir)
    )
    run = RecordingRun()
    gate_records(seed_records, "seeds", params, run, artifact="data/seeds.jsonl")
    assert run.metrics["gate.seeds.rows"] == len(seed_records)
    assert run.metrics["gate.seeds.seconds"] > 0
    assert run.artifacts == [tmp_path / "gates" / "seeds.json"]


def test_a_failed_gate_still_attaches_its_stable_report(tmp_path, seed_records, expectations_dir):
    seed_records[1]["id"] = seed_records[0]["id"]
    params = SimpleNamespace(
        paths=SimpleNamespace(gates_dir=str(tmp_path / "gates"), expectations_dir=expectations_dir)
    )
    run = RecordingRun()
    with pytest.raises(GateFailed):
        gate_records(seed_records, "seeds", params, run, artifact="data/seeds.jsonl")
    assert run.artifacts == [tmp_path / "gates" / "seeds.json"]
    assert b"duration_s" not in run.artifacts[0].read_bytes()
